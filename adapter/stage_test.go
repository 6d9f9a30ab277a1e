package adapter

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// directOK reports whether dir's file system takes direct reads; in CI it
// must.
func directOK(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	f, err := openDirectRead(p)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("direct reads refused in %s: %v", dir, err)
		}
		t.Logf("direct reads refused in %s: %v", dir, err)
		return false
	}
	f.Close()
	return true
}

// needDirect skips the test where dir's file system refuses direct reads
// (outside CI).
func needDirect(t *testing.T, dir string) {
	t.Helper()
	if !directOK(t, dir) {
		t.Skip("no direct reads")
	}
}

// TestStager stages spans of one file through a ring small enough to wrap
// many times, with spans that straddle page boundaries, one too large to
// stage (read ahead through the page cache instead), and empty ones. As in
// a merge, the writer releases the units in order while consumers read the
// next ones ahead of it: every byte they see is checked against the file,
// once the reader has filled the ring as far as it can.
func TestStager(t *testing.T) {
	needDirect(t, t.TempDir())
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 1<<20+777)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	in := openTestInput(t, data)
	var spans []stageSpan
	for off := int64(0); off < int64(len(data)); {
		n := min(int64(rng.IntN(20000)), int64(len(data))-off)
		switch len(spans) {
		case 5:
			n = 0
		case 9:
			n = min(60000, int64(len(data))-off) // over half the ring: not staged
		}
		spans = append(spans, stageSpan{in, off, n})
		off += n
	}
	spans = append(spans, stageSpan{}) // a tensor of no file
	const ring, ahead = 96 << 10, 2    // three units of up to 24 KiB fit
	s := newStager(spans, ring)
	if s == nil {
		t.Fatal("nothing staged")
	}
	defer s.close()
	served := 0
	check := func(i int, a, b int64, v []byte) {
		if v == nil {
			return
		}
		served++
		if !bytes.Equal(v, data[a:b]) {
			t.Errorf("unit %d: view [%d, %d) differs from the file", i, a, b)
		}
	}
	for i, sp := range spans {
		s.reach(i)
		// The consumers of the next units wait for them to be read; then
		// the reader runs ahead into whatever room it thinks it has.
		for j := i; j <= min(i+ahead, len(spans)-1); j++ {
			s.view(spans[j].in, spans[j].off, spans[j].n)
		}
		time.Sleep(time.Millisecond)
		for j := i; j <= min(i+ahead, len(spans)-1); j++ {
			u := spans[j]
			check(j, u.off, u.off+u.n, s.view(u.in, u.off, u.n))
		}
		if sp.in == nil {
			continue
		}
		// Two consumers read pieces of the unit, as a merge's workers do.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range 2 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				for range 8 {
					var a, b int64
					if sp.n > 0 {
						a = sp.off + r.Int64N(sp.n)
						b = a + r.Int64N(sp.off+sp.n-a+1)
					}
					v := s.view(in, a, b-a)
					got := make([]byte, b-a)
					if _, err := in.ReadAt(got, a); err != nil {
						t.Error(err)
					}
					mu.Lock()
					check(i, a, b, v)
					if !bytes.Equal(got, data[a:b]) {
						t.Errorf("unit %d: ReadAt [%d, %d) differs from the file", i, a, b)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if i == 9 && s.view(in, sp.off, sp.n) != nil {
			t.Errorf("unit %d of %d bytes was staged in a %d-byte ring", i, sp.n, ring)
		}
	}
	if served == 0 {
		t.Error("no read was served from the ring")
	}
	if got := s.touched.Load(); got != spans[9].n {
		t.Errorf("%d bytes of unstaged units read ahead, want unit 9's %d", got, spans[9].n)
	}
	if s.tail < 4*ring {
		t.Errorf("the ring wrapped less than 4 times (%d bytes through %d)", s.tail, ring)
	}
	// A range across two units, or after the last release, is not served.
	if v := s.view(in, spans[2].off+1, spans[2].n+spans[3].n-1); v != nil {
		t.Error("a range across two units was served")
	}
	s.reach(len(spans))
	if v := s.view(in, spans[len(spans)-2].off, 1); v != nil {
		t.Error("a released unit was served")
	}
}

// TestStagerOutOfOrder: a writer that leaves the units' order stops the
// staging; reads then fall through to the file, and nothing hangs.
func TestStagerOutOfOrder(t *testing.T) {
	needDirect(t, t.TempDir())
	data := bytes.Repeat([]byte("0123456789abcdef"), 8192)
	in := openTestInput(t, data)
	var spans []stageSpan
	for off := int64(0); off < int64(len(data)); off += 16384 {
		spans = append(spans, stageSpan{in, off, 16384})
	}
	s := newStager(spans, 40<<10)
	defer s.close()
	s.reach(0)
	s.reach(2) // skips unit 1
	for i, sp := range spans {
		got := make([]byte, sp.n)
		if _, err := in.ReadAt(got, sp.off); err != nil || !bytes.Equal(got, data[sp.off:sp.off+sp.n]) {
			t.Errorf("unit %d: %v, or the bytes differ", i, err)
		}
	}
	if v := s.view(in, spans[5].off, 10); v != nil {
		t.Error("a unit after the stop was served")
	}
}

// TestMergeInputIO merges with the residual read through the page cache and
// with direct I/O (with a ring small enough that units wrap and the largest
// are left to the mapping, read ahead): the outputs are byte-identical, the report
// names the mode used, a residual that differs from the one split is still
// caught, and an unknown mode is refused.
func TestMergeInputIO(t *testing.T) {
	dir, _, out := splitFixture(t, "m", llamaTensors("F16", 2, 256, 640), 2, 8)
	needDirect(t, dir)
	defer func(n int) { stageRingSize = n }(stageRingSize)
	stageRingSize = 512 << 10 // the 640-wide weights (320 KiB) are left to the mapping, the others staged
	var got [][]byte
	for _, mode := range []string{InputCached, InputDirect, InputAuto} {
		merged := filepath.Join(dir, "merged-"+mode)
		rep, err := Merge(context.Background(), filepath.Join(out, "residual"), filepath.Join(out, "adapter"), merged, MergeOptions{InputIO: mode})
		if err != nil {
			t.Fatal(err)
		}
		want := mode
		if mode == InputAuto {
			want = InputCached // the residual was just written: it is in the page cache
		}
		if rep.InputIO != want {
			t.Errorf("%s: report says %q, want %q", mode, rep.InputIO, want)
		}
		var all []byte
		for _, f := range listFiles(t, merged) {
			b, err := os.ReadFile(filepath.Join(merged, f))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		got = append(got, all)
	}
	for i := 1; i < len(got); i++ {
		if !bytes.Equal(got[0], got[i]) {
			t.Errorf("merge %d differs from the cached merge", i)
		}
	}

	// One byte changed in the residual's last shard is caught from the
	// staged reads' checksums.
	shard := filepath.Join(out, "residual", "model-00002-of-00002.safetensors")
	b, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1000] ^= 1
	if err := os.WriteFile(shard, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Merge(context.Background(), filepath.Join(out, "residual"), filepath.Join(out, "adapter"), filepath.Join(dir, "bad"), MergeOptions{InputIO: InputDirect})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("crc32c")) {
		t.Errorf("changed residual: err = %v, want a checksum mismatch", err)
	}

	_, err = Merge(context.Background(), filepath.Join(out, "residual"), filepath.Join(out, "adapter"), filepath.Join(dir, "x"), MergeOptions{InputIO: "mmap"})
	if err == nil {
		t.Error("input I/O \"mmap\" was accepted")
	}
}
