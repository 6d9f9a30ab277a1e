package adapter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
)

// TestCRC32CCombine: the CRC-32C of A‖B put together from A's and B's is
// the CRC-32C of the concatenation, for every split point of inputs of
// several lengths (empty parts and lengths past 2³² bits included through
// xPow8n's exponent).
func TestCRC32CCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 7, 8, 9, 63, 64, 65, 1000, 4099} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := crc32.Checksum(data, castagnoli)
		for k := 0; k <= n; k++ {
			a := crc32.Checksum(data[:k], castagnoli)
			b := crc32.Checksum(data[k:], castagnoli)
			if got := crc32cCombine(a, b, int64(n-k)); got != want {
				t.Fatalf("len %d split at %d: %08x, want %08x", n, k, got, want)
			}
		}
	}
	// x^(8n) for n = 2³⁰ bytes, by squaring, equals multiplying x^(8·2²⁹)
	// by itself: the exponent's high bits are used.
	h := xPow8n(1 << 29)
	if got, want := xPow8n(1<<30), gfMul(h, h); got != want {
		t.Errorf("xPow8n(2^30) = %08x, want %08x", got, want)
	}
	// A long run of zeros: appending it with Update and with combine agree.
	zeros := make([]byte, 3<<20)
	a := crc32.Checksum([]byte("head"), castagnoli)
	if got, want := crc32cCombine(a, crc32.Checksum(zeros, castagnoli), int64(len(zeros))), crc32.Update(a, castagnoli, zeros); got != want {
		t.Errorf("combine over 3 MiB of zeros: %08x, want %08x", got, want)
	}
}

// TestInputFileCRC32C: a file's CRC-32C from noted reads equals its
// checksum whatever was noted: nothing, everything in pieces out of order,
// overlapping ranges, ranges past the end, and bytes that differ from the
// file's (what was read is what counts).
func TestInputFileCRC32C(t *testing.T) {
	data := make([]byte, 100_000)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := crc32.Checksum(data, castagnoli)
	type note struct{ off, end int }
	for _, c := range []struct {
		name  string
		notes []note
	}{
		{"none", nil},
		{"all", []note{{0, len(data)}}},
		{"pieces out of order", []note{{50_000, 100_000}, {10, 20_000}, {20_000, 50_000}}},
		{"gaps", []note{{1, 2}, {30_000, 31_000}, {99_999, 100_000}}},
		{"overlaps", []note{{0, 60_000}, {40_000, 70_000}, {40_000, 41_000}, {59_000, 100_000}}},
		{"empty", []note{{5, 5}, {100_000, 100_000}}},
	} {
		for _, mapped := range []bool{true, false} {
			in, err := openInput(path)
			if err != nil {
				t.Fatal(err)
			}
			if !mapped && in.data != nil {
				unmapFile(in.data)
				in.data = nil
			}
			in.recordReads()
			for _, n := range c.notes {
				in.noteRead(int64(n.off), data[n.off:n.end])
			}
			in.noteRead(int64(len(data))-2, []byte("past the end"))
			got, err := in.crc32c()
			in.Close()
			if err != nil || got != want {
				t.Errorf("%s (mapped %v): %08x, %v; want %08x", c.name, mapped, got, err, want)
			}
		}
	}
	// A noted range whose bytes were not the file's changes the sum.
	in, err := openInput(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.recordReads()
	changed := bytes.Clone(data[100:200])
	changed[7] ^= 1
	in.noteRead(100, changed)
	if got, err := in.crc32c(); err != nil || got == want {
		t.Errorf("a changed read: %08x, %v; want a sum other than %08x", got, err, want)
	}
}

// TestNotingReader: copying through readNoting copies the section and
// notes exactly its bytes.
func TestNotingReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1<<20) // 10 MiB: several pieces
	in := openTestInput(t, data)
	if _, ok := readNoting(io.NewSectionReader(in, 0, 10)).(*io.SectionReader); !ok {
		t.Error("readNoting wraps a file that records nothing")
	}
	in.recordReads()
	var out bytes.Buffer
	if _, err := io.Copy(&out, readNoting(io.NewSectionReader(in, 3, int64(len(data))-5))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data[3:len(data)-2]) {
		t.Fatal("copy differs from the section")
	}
	var covered int64
	for _, s := range in.sums.spans {
		if s.crc != crc32.Checksum(data[s.off:s.off+s.n], castagnoli) {
			t.Errorf("span [%d, %d) has the wrong sum", s.off, s.off+s.n)
		}
		covered += s.n
	}
	if covered != int64(len(data))-5 || len(in.sums.spans) > 3 {
		t.Errorf("noted %d bytes in %d spans, want %d bytes in a few", covered, len(in.sums.spans), len(data)-5)
	}
	// Small reads (io.CopyN's 32 KiB) are noted in the same few ranges,
	// the last one when the section ends.
	in.sums.spans = nil
	out.Reset()
	n := int64(len(data)) - 7
	if _, err := io.CopyN(struct{ io.Writer }{&out}, readNoting(io.NewSectionReader(in, 7, n)), n); err != nil {
		t.Fatal(err)
	}
	if got, want := len(in.sums.spans), int((n+notedRange-1)/notedRange); got != want {
		t.Errorf("32 KiB reads noted in %d spans, want %d", got, want)
	}
	if sum, err := in.crc32c(); err != nil || sum != crc32.Checksum(data, castagnoli) {
		t.Errorf("sum from the small reads: %08x, %v", sum, err)
	}
}

// TestMergeChecksWhatItReads: merge refuses a residual changed by one bit
// anywhere: in a weight it merges (read tile by tile), in a tensor it
// copies, or in its header (which only the final check reads).
func TestMergeChecksWhatItReads(t *testing.T) {
	dir, _, out := splitFixture(t, "m.safetensors", llamaTensors("F16", 1, 32, 48), 1, 4)
	ad := filepath.Join(out, "adapter")
	res := filepath.Join(out, "residual.safetensors")
	raw, err := os.ReadFile(res)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	offset := func(name string) int {
		sec, err := f.Section(name)
		if err != nil {
			t.Fatal(err)
		}
		_, base, n := sec.Outer()
		return int(base + n/2)
	}
	const renamed = "model.layers.0.input_layernorm.weight"
	hdr := bytes.Index(raw[:f.DataOffset()], []byte(`"`+renamed+`"`))
	if hdr < 0 {
		t.Fatalf("no %q in the header", renamed)
	}
	for _, c := range []struct {
		what string
		at   int
	}{
		{"a merged weight", offset("model.layers.0.mlp.down_proj.weight")},
		{"a copied tensor", offset("model.embed_tokens.weight")},
		{"the header (a copied tensor's name)", hdr + len(renamed)},
	} {
		bad := bytes.Clone(raw)
		bad[c.at] ^= 1
		p := filepath.Join(dir, "bad.safetensors")
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		x := filepath.Join(dir, "x.safetensors")
		_, err := Merge(context.Background(), p, ad, x, MergeOptions{})
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "crc32c") {
			t.Errorf("%s changed: %v, want a crc32c mismatch", c.what, err)
		}
		if _, err := os.Stat(x); !os.IsNotExist(err) {
			t.Errorf("%s changed: the refused merge left an output", c.what)
		}
		os.Remove(x)
	}
}

// TestReadAhead: the reader goes through every file, mapped or not, never
// more than its distance (plus the piece in hand) ahead of what is
// consumed, and stops when closed even while it waits.
func TestReadAhead(t *testing.T) {
	dir := t.TempDir()
	var files []*inputFile
	var total int64
	for i, size := range []int64{3*readAheadPiece + 5, 0, readAheadPiece / 2} {
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i + 1)}, int(size)), 0o644); err != nil {
			t.Fatal(err)
		}
		in, err := openInput(p)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if i == 2 && in.data != nil { // the last one read with ReadAt
			unmapFile(in.data)
			in.data = nil
		}
		files = append(files, in)
		total += size
	}
	wait := func(ra *readAhead, want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ra.read.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("read %d bytes, want %d", ra.read.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	const ahead = readAheadPiece
	ra := startReadAhead(files, ahead)
	wait(ra, 2*readAheadPiece) // up to the distance, and the piece that crosses it
	time.Sleep(50 * time.Millisecond)
	if got := ra.read.Load(); got != 2*readAheadPiece {
		t.Fatalf("read %d bytes ahead of nothing consumed, want %d", got, 2*readAheadPiece)
	}
	ra.consumed(total)
	wait(ra, total)
	ra.close()

	ra = startReadAhead(files, 0)
	wait(ra, readAheadPiece)
	done := make(chan struct{})
	go func() { ra.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not stop a waiting reader")
	}
}

// TestMergeRefusesUnknownFiles: a residual whose files the adapter has no
// record of is refused before the merge starts, naming the file.
func TestMergeRefusesUnknownFiles(t *testing.T) {
	dir, _, out := splitFixture(t, "ckpt", llamaTensors("BF16", 2, 32, 48), 2, 4)
	single := filepath.Join(dir, "single.safetensors") // same tensors, one file
	writeFixture(t, single, llamaTensors("BF16", 2, 32, 48), 1, 1)
	x := filepath.Join(dir, "x.safetensors")
	_, err := Merge(context.Background(), single, filepath.Join(out, "adapter"), x, MergeOptions{})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "single.safetensors is not one this adapter was split with") {
		t.Fatalf("merge onto a file the adapter has no record of: %v", err)
	}
	if _, err := os.Stat(x); !os.IsNotExist(err) {
		t.Error("refused merge left an output")
	}
}
