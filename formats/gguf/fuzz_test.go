package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// smallModel rewrites a real model with its full metadata but only its
// smallest tensors, a valid file small enough to seed the fuzzer.
func smallModel(t testing.TB, f *File) []byte {
	h := f.Header
	h.Tensors = nil
	for _, ti := range f.Tensors {
		if ti.Size() <= 1024 && len(h.Tensors) < 3 {
			h.Tensors = append(h.Tensors, ti)
		}
	}
	var out bytes.Buffer
	w, err := NewWriter(&out, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range h.Tensors {
		sr, _ := f.Section(ti.Name)
		if err := w.WriteTensorFrom(ti.Name, sr); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func FuzzReader(f *testing.F) {
	f.Add(allValuesFile())
	for _, c := range brokenCases {
		var r raw
		c.build(&r)
		f.Add(r.Bytes())
	}
	dir := filepath.Join(repoRoot(f), "..", "shared", "models")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// Valid files with the models' metadata and a few small tensors,
		// and the header alone (tensor data missing) where it is small.
		if m, err := open(b); err == nil && m.DataOffset <= 64<<10 {
			f.Add(smallModel(f, m))
			f.Add(b[:m.DataOffset])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := open(data)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		checkInvariants(t, g, int64(len(data)))
		for _, ti := range g.Tensors {
			if ti.Type.CanDequantize() && ti.Size() <= 1<<20 {
				if _, err := g.ReadFloat32(ti.Name); err != nil {
					t.Fatalf("%s: %v", ti.Name, err)
				}
			}
			if len(ti.Name) > MaxNameLen {
				return // the writer refuses names ggml cannot load
			}
		}
		// What the reader accepts, the writer writes back, and that file
		// reads as the same header and is a fixed point of the round trip.
		out := roundTrip(t, g)
		h, err := open(out)
		if err != nil {
			t.Fatalf("rewritten file rejected: %v", err)
		}
		if h.Version != g.Version || !reflect.DeepEqual(h.KV, g.KV) || !reflect.DeepEqual(h.Tensors, g.Tensors) ||
			h.Alignment != g.Alignment || h.DataOffset != g.DataOffset || h.AlignEmpty != g.AlignEmpty {
			t.Fatal("rewritten header differs")
		}
		for _, ti := range g.Tensors {
			a, _ := g.ReadTensor(ti.Name)
			b, _ := h.ReadTensor(ti.Name)
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: data differs after rewrite", ti.Name)
			}
		}
		if again := roundTrip(t, h); !bytes.Equal(again, out) {
			t.Fatal("second round trip differs")
		}
	})
}

// checkInvariants checks what NewReader promises about an accepted file.
func checkInvariants(t *testing.T, f *File, size int64) {
	t.Helper()
	if f.Version < 2 || f.Version > 3 || f.Alignment == 0 || f.Alignment&(f.Alignment-1) != 0 {
		t.Fatalf("version %d, alignment %d", f.Version, f.Alignment)
	}
	if len(f.Tensors) > 0 && uint64(f.DataOffset)%f.Alignment != 0 {
		t.Fatalf("data offset %d not aligned to %d", f.DataOffset, f.Alignment)
	}
	var next uint64
	for _, ti := range f.Tensors {
		if ti.Offset != next || ti.Offset%f.Alignment != 0 {
			t.Fatalf("%s at %d, expected %d", ti.Name, ti.Offset, next)
		}
		sr, err := f.Section(ti.Name)
		if err != nil || sr.Size() != ti.Size() || f.DataOffset+int64(ti.Offset)+ti.Size() > size {
			t.Fatalf("%s: section %v beyond the file", ti.Name, err)
		}
		next = (ti.Offset + uint64(ti.Size()) + f.Alignment - 1) &^ (f.Alignment - 1)
	}
	for _, kv := range f.KV {
		if v, ok := f.Get(kv.Key); !ok || !reflect.DeepEqual(v, kv.Value) {
			t.Fatalf("Get(%q) disagrees with KV", kv.Key)
		}
	}
}
