package adapter

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// TestInputFile: views of a mapped file are its bytes, sections included,
// and out-of-range views are nil.
func TestInputFile(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	in := openTestInput(t, data)
	if in.data == nil {
		if runtime.GOOS == "linux" {
			t.Fatal("file not mapped on Linux")
		}
		t.Skip("files are not mapped here")
	}
	sec := io.NewSectionReader(in, 5, 10)
	for _, c := range []struct {
		r       io.ReaderAt
		off, n  int64
		want    string
		invalid bool
	}{
		{r: in, off: 0, n: 20, want: string(data)},
		{r: in, off: 19, n: 1, want: "j"},
		{r: in, off: 20, n: 0, want: ""},
		{r: in, off: 15, n: 6, invalid: true},
		{r: in, off: -1, n: 2, invalid: true},
		{r: sec, off: 0, n: 10, want: "56789abcde"},
		{r: sec, off: 3, n: 2, want: "89"},
		{r: sec, off: 5, n: 6, invalid: true},
		{r: bytes.NewReader(data), off: 0, n: 1, invalid: true},
	} {
		v := viewOf(c.r, c.off, c.n)
		if c.invalid != (v == nil) || !c.invalid && string(v) != c.want {
			t.Errorf("viewOf(%T, %d, %d) = %q, want %q (invalid %v)", c.r, c.off, c.n, v, c.want, c.invalid)
		}
	}
	// Copying in place from the mapping and through ReadAt give the bytes,
	// and so does hashing the file (which maps it again).
	var b1, b2 bytes.Buffer
	if err := copyInput(&b1, in); err != nil {
		t.Fatal(err)
	}
	if err := copyInput(&b2, &inputFile{File: in.File, size: in.size}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), data) || !bytes.Equal(b2.Bytes(), data) {
		t.Fatalf("copyInput: mapped %q, unmapped %q", b1.Bytes(), b2.Bytes())
	}
	sum := sha256.Sum256(data)
	if s, c, err := hashFile(in.Name(), digestSHA256|digestCRC32C); err != nil || s != hex.EncodeToString(sum[:]) ||
		c != fmt.Sprintf("%08x", crc32.Checksum(data, castagnoli)) {
		t.Fatalf("hashFile = %s, %s, %v", s, c, err)
	}
}

// TestMappedInputTruncated: a residual cut short while a merge reads it
// through the mapping gives an input error, not a crash, on the tiled path
// (F16 safetensors) and on the block path (a Q8_0 GGUF), and so does
// decoding the weight whole.
func TestMappedInputTruncated(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "m.safetensors")
	writeFixture(t, st, []fixTensor{{name: "w.weight", shape: []int64{512, 1024}, dtype: "F16"}}, 1, 1)
	q8 := filepath.Join(dir, "m.gguf")
	b, err := os.ReadFile(sharedModel(t, "stories260K-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q8, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{st, q8} {
		m, err := openModel(path)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var tn Tensor // the last matrix in the file: it lies past the cut
		for _, c := range m.Tensors() {
			if c.Matrix() && (c.DType == "F16" || c.DType == "Q8_0") {
				tn = c
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		f := &surgery.Factors{A: randMatrix(rng, 4, tn.In), S: randMatrix(rng, 1, 4).Data, B: randMatrix(rng, tn.Out, 4)}
		if _, err := mergedBytes(m, tn, "", f, 1, nil); err != nil {
			t.Fatal(err)
		}
		if !mapped(m) {
			t.Skip("files are not mapped here")
		}
		if err := os.Truncate(path, 4096); err != nil {
			t.Fatal(err)
		}
		_, err = mergedBytes(m, tn, "", f, 1, nil)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "changed while it was being read") {
			t.Fatalf("%s: merge of a truncated mapped file: %v", filepath.Base(path), err)
		}
		// What split and verify read.
		if _, err := m.Decode(tn); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "changed while it was being read") {
			t.Fatalf("%s: decoding a truncated mapped file: %v", filepath.Base(path), err)
		}
	}
}

func mapped(m model) bool {
	switch mm := m.(type) {
	case *stModel:
		return mm.inputs[0].data != nil
	case *ggufModel:
		return mm.in.data != nil
	}
	return false
}
