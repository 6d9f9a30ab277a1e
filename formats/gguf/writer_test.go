package gguf

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// requantize rewrites f with each tensor converted by conv (which returns the
// new type, or the old one to copy the bytes unchanged).
func requantize(t *testing.T, f *File, conv func(TensorInfo) Type) []byte {
	t.Helper()
	h := f.Header
	h.Tensors = nil
	for _, ti := range f.Tensors {
		ti.Type = conv(ti)
		ti.Offset = 12345 // ignored by the writer
		h.Tensors = append(h.Tensors, ti)
	}
	var out bytes.Buffer
	w, err := NewWriter(&out, h)
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range f.Tensors {
		nt := h.Tensors[i].Type
		if nt == ti.Type {
			sr, _ := f.Section(ti.Name)
			if err := w.WriteTensorFrom(ti.Name, sr); err != nil {
				t.Fatal(err)
			}
			continue
		}
		vals, err := f.ReadFloat32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := nt.RowSize(len(vals))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, n)
		if err := Quantize(nt, buf, vals); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestWriterChangedTypes converts the tensors of a real model to other types
// (different sizes) and checks the offsets, padding and contents of the
// result against an independent computation.
func TestWriterChangedTypes(t *testing.T) {
	path := filepath.Join(repoRoot(t), "..", "shared", "models", "stories260K-q8_0.gguf")
	f, err := Open(path)
	if err != nil {
		missing(t, err.Error())
	}
	defer f.Close()
	conv := func(ti TensorInfo) Type {
		switch {
		case ti.Type == Q8_0:
			return F32 // larger
		case ti.Type == F16 && ti.Dims[0]%32 == 0:
			return Q4_0
		case len(ti.Dims) == 1:
			return BF16 // 64 × 2 = 128 bytes: no padding needed
		}
		return ti.Type
	}
	b := requantize(t, f, conv)
	g, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.KV, f.KV) || g.Version != f.Version {
		t.Error("metadata changed")
	}
	// Offsets: running sum of sizes rounded up to 32, computed here by hand.
	var off uint64
	for i, ti := range g.Tensors {
		old := f.Tensors[i]
		if ti.Name != old.Name || !reflect.DeepEqual(ti.Dims, old.Dims) || ti.Type != conv(old) {
			t.Fatalf("tensor %d: %+v from %+v", i, ti, old)
		}
		n := uint64(ti.NumElements())
		var size uint64
		switch ti.Type {
		case F32:
			size = 4 * n
		case F16, BF16:
			size = 2 * n
		case Q4_0:
			size = n / 32 * 18
		default:
			t.Fatalf("unexpected type %s", ti.Type)
		}
		if ti.Offset != off {
			t.Errorf("%s at %d, want %d", ti.Name, ti.Offset, off)
		}
		// The padding after each tensor is zeros.
		end := g.DataOffset + int64(off+size)
		padded := g.DataOffset + int64((off+size+31)/32*32)
		if !allZero(b[end:padded]) {
			t.Errorf("%s: padding not zero", ti.Name)
		}
		off = (off + size + 31) / 32 * 32
	}
	if int64(len(b)) != g.DataOffset+int64(off) {
		t.Errorf("file is %d bytes, want %d (data ends padded)", len(b), g.DataOffset+int64(off))
	}
	// Contents: unchanged tensors are byte copies; converted ones hold the
	// original values (exactly for Q8_0 → F32; F16 → Q4_0 within its step).
	for _, ti := range f.Tensors {
		want, _ := f.ReadFloat32(ti.Name)
		got, err := g.ReadFloat32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		nt, _ := g.Tensor(ti.Name)
		switch {
		case nt.Type == ti.Type:
			a, _ := f.ReadTensor(ti.Name)
			c, _ := g.ReadTensor(ti.Name)
			if !bytes.Equal(a, c) {
				t.Errorf("%s: copied bytes differ", ti.Name)
			}
		case nt.Type == F32:
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: F32 copy of Q8_0 differs", ti.Name)
			}
		default:
			for j := range got {
				if d := math.Abs(float64(got[j] - want[j])); d > 0.3*math.Max(1, math.Abs(float64(want[j]))) {
					t.Fatalf("%s[%d]: %g, was %g", ti.Name, j, got[j], want[j])
				}
			}
		}
	}
	// Writing the converted file back reproduces it.
	if rt := roundTrip(t, g); !bytes.Equal(rt, b) {
		t.Error("round trip of the written file differs")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestWriterAlignment(t *testing.T) {
	h := Header{Version: 3,
		KV: []KV{{"general.architecture", String("llama")}, {AlignmentKey, Uint32(256)}},
		Tensors: []TensorInfo{
			{Name: "a", Dims: []uint64{3}, Type: F32},
			{Name: "b", Dims: []uint64{32, 2}, Type: Q8_0},
			{Name: "c", Dims: []uint64{}, Type: F16},
		},
	}
	var out bytes.Buffer
	w, err := NewWriter(&out, h)
	if err != nil {
		t.Fatal(err)
	}
	if w.Alignment() != 256 || w.DataOffset()%256 != 0 {
		t.Errorf("alignment %d, data offset %d", w.Alignment(), w.DataOffset())
	}
	offs := []uint64{0, 256, 512}
	for i, ti := range w.Tensors() {
		if ti.Offset != offs[i] {
			t.Errorf("%s at %d, want %d", ti.Name, ti.Offset, offs[i])
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := map[string][]byte{}
	for _, ti := range w.Tensors() {
		d := make([]byte, ti.Size())
		for i := range d {
			d[i] = byte(rng.Uint32())
		}
		data[ti.Name] = d
		if err := w.WriteTensor(ti.Name, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Len() != int(w.DataOffset())+512+256 {
		t.Errorf("file is %d bytes", out.Len())
	}
	f, err := open(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range data {
		got, _ := f.ReadTensor(name)
		if !bytes.Equal(got, d) {
			t.Errorf("%s differs", name)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	ok := []TensorInfo{{Name: "a", Dims: []uint64{4}, Type: F32}, {Name: "b", Dims: []uint64{2}, Type: F32}}
	cases := []struct {
		name string
		h    Header
		msg  string
	}{
		{"version 1", Header{Version: 1}, "version 1"},
		{"empty key", Header{Version: 3, KV: []KV{{"", Uint8(1)}}}, "empty"},
		{"duplicate key", Header{Version: 3, KV: []KV{{"k", Uint8(1)}, {"k", Uint8(2)}}}, "duplicate metadata key"},
		{"alignment type", Header{Version: 3, KV: []KV{{AlignmentKey, Uint64(32)}}}, "want UINT32"},
		{"alignment value", Header{Version: 3, KV: []KV{{AlignmentKey, Uint32(24)}}}, "power of two"},
		{"bad value type", Header{Version: 3, KV: []KV{{"k", Value{Type: 42}}}}, "invalid value type"},
		{"duplicate tensor", Header{Version: 3, Tensors: []TensorInfo{ok[0], ok[0]}}, "duplicate tensor"},
		{"long name", Header{Version: 3, Tensors: []TensorInfo{{Name: strings.Repeat("x", 64), Dims: []uint64{1}, Type: F32}}}, "at most 63"},
		{"five dims", Header{Version: 3, Tensors: []TensorInfo{{Name: "a", Dims: []uint64{1, 1, 1, 1, 1}, Type: F32}}}, "5 dimensions"},
		{"unknown type", Header{Version: 3, Tensors: []TensorInfo{{Name: "a", Dims: []uint64{1}, Type: 5}}}, "unknown ggml type"},
		{"block", Header{Version: 3, Tensors: []TensorInfo{{Name: "a", Dims: []uint64{16}, Type: Q4_K}}}, "multiple of 256"},
	}
	for _, c := range cases {
		_, err := NewWriter(&bytes.Buffer{}, c.h)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.msg)
		}
	}

	w, err := NewWriter(&bytes.Buffer{}, Header{Version: 3, Tensors: ok})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("b", make([]byte, 8)); err == nil || !strings.Contains(err.Error(), `expected "a"`) {
		t.Errorf("out of order: %v", err)
	}
	if err := w.WriteTensor("a", make([]byte, 15)); err == nil || !strings.Contains(err.Error(), "takes 16") {
		t.Errorf("wrong size: %v", err)
	}
	if err := w.WriteTensor("a", make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensorFrom("b", bytes.NewReader(make([]byte, 3))); err == nil {
		t.Error("short reader accepted")
	}
	w2, _ := NewWriter(&bytes.Buffer{}, Header{Version: 3, Tensors: ok})
	w2.WriteTensor("a", make([]byte, 16))
	if err := w2.Close(); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("missing tensor at Close: %v", err)
	}
	if err := w2.WriteTensor("b", make([]byte, 8)); err == nil {
		t.Error("write after Close accepted")
	}
	// A failing destination is reported.
	_, err = NewWriter(failWriter{}, Header{Version: 3, KV: []KV{{"k", String(strings.Repeat("x", 1<<17))}}})
	if !errors.Is(err, errFail) {
		t.Errorf("failing writer: %v", err)
	}
}

var errFail = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFail }
