package gguf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// The expected numbers come from shared/peers/gguf_info.py, an independent
// stand-alone reader, and from shared/models/README.md.
var modelFacts = map[string]struct {
	kv, tensors int
	dataOffset  int64
	types       map[Type]int
}{
	"llama-2-tiny-random.gguf": {18, 12, 724416, map[Type]int{F16: 9, F32: 3}},
	"stories260K-f16.gguf":     {21, 48, 14432, map[Type]int{F16: 37, F32: 11}},
	"stories260K-f32.gguf":     {19, 48, 14368, map[Type]int{F32: 48}},
	"stories260K-lora-r4.gguf": {5, 30, 2240, map[Type]int{F32: 30}},
	"stories260K-q4_0.gguf":    {21, 48, 14432, map[Type]int{Q8_0: 1, F32: 11, Q4_0: 31, F16: 5}},
	"stories260K-q8_0.gguf":    {21, 48, 14432, map[Type]int{Q8_0: 32, F32: 11, F16: 5}},
}

func TestRealModels(t *testing.T) {
	paths := modelPaths(t)
	if len(paths) != len(modelFacts) {
		t.Errorf("found %d models, expected %d", len(paths), len(modelFacts))
	}
	for _, p := range paths {
		name := filepath.Base(p)
		t.Run(name, func(t *testing.T) {
			want, ok := modelFacts[name]
			if !ok {
				t.Skip("no facts recorded for this model")
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Version != 3 || len(f.KV) != want.kv || len(f.Tensors) != want.tensors || f.DataOffset != want.dataOffset {
				t.Errorf("v%d, %d kv, %d tensors, data at %d; want v3, %d, %d, %d",
					f.Version, len(f.KV), len(f.Tensors), f.DataOffset, want.kv, want.tensors, want.dataOffset)
			}
			types := map[Type]int{}
			for _, ti := range f.Tensors {
				types[ti.Type]++
			}
			if !reflect.DeepEqual(types, want.types) {
				t.Errorf("types %v, want %v", types, want.types)
			}
			if f.Alignment != DefaultAlignment {
				t.Errorf("alignment %d", f.Alignment)
			}
			arch, ok := f.Get("general.architecture")
			if s, _ := arch.AsString(); !ok || s != "llama" {
				t.Errorf("general.architecture = %v", arch)
			}
			// Every tensor decodes to finite values of plausible magnitude.
			for _, ti := range f.Tensors {
				vals, err := f.ReadFloat32(ti.Name)
				if err != nil {
					t.Fatalf("%s: %v", ti.Name, err)
				}
				if int64(len(vals)) != ti.NumElements() {
					t.Fatalf("%s: %d values for %d elements", ti.Name, len(vals), ti.NumElements())
				}
				for _, v := range vals {
					if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 1e4 {
						t.Fatalf("%s: implausible value %g", ti.Name, v)
					}
				}
			}
		})
	}
}

func TestModelMetadata(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "..", "shared", "models")
	f, err := Open(filepath.Join(dir, "stories260K-lora-r4.gguf"))
	if err != nil {
		missing(t, err.Error())
	}
	defer f.Close()
	// README: alpha 8, adapter layout, attn_q lora_a ne [64,4], lora_b ne [4,64].
	if v, _ := f.Get("adapter.lora.alpha"); func() bool { a, ok := v.AsFloat32(); return !ok || a != 8 }() {
		t.Errorf("adapter.lora.alpha = %v", v)
	}
	if v, _ := f.Get("general.type"); v.String() != `"adapter"` {
		t.Errorf("general.type = %v", v)
	}
	a, ok := f.Tensor("blk.0.attn_q.weight.lora_a")
	if !ok || !reflect.DeepEqual(a.Dims, []uint64{64, 4}) || a.Type != F32 || a.Size() != 1024 {
		t.Errorf("lora_a = %+v", a)
	}
	b, ok := f.Tensor("blk.0.attn_q.weight.lora_b")
	if !ok || !reflect.DeepEqual(b.Dims, []uint64{4, 64}) {
		t.Errorf("lora_b = %+v", b)
	}

	g, err := Open(filepath.Join(dir, "llama-2-tiny-random.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	v, _ := g.Get("tokenizer.ggml.tokens")
	toks, ok := Elems[string](v)
	if !ok || len(toks) != 32000 || v.Len() != 32000 || v.ElemType() != ValueString {
		t.Fatalf("tokens: %v", v)
	}
	// The real Llama-2 vocabulary: <unk>, <s>, </s>, then byte tokens.
	if toks[0] != "<unk>" || toks[1] != "<s>" || toks[2] != "</s>" || toks[3] != "<0x00>" {
		t.Errorf("first tokens %q", toks[:4])
	}
	if _, ok := Elems[int32](v); ok {
		t.Error("a string array converted to []int32")
	}
	e, ok := v.Index(1)
	if s, _ := e.AsString(); !ok || s != "<s>" {
		t.Errorf("Index(1) = %v", e)
	}
}

// roundTrip writes f back through Writer, copying each tensor's data.
func roundTrip(t testing.TB, f *File) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, f.Header)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		sr, err := f.Section(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensorFrom(ti.Name, sr); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestRoundTripModels(t *testing.T) {
	for _, p := range modelPaths(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := open(orig)
			if err != nil {
				t.Fatal(err)
			}
			got := roundTrip(t, f)
			if !bytes.Equal(got, orig) {
				t.Fatalf("round trip differs: %d bytes vs %d, first difference at %d", len(got), len(orig), firstDiff(got, orig))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// allValuesFile builds, by hand, a file holding every value type as a scalar
// and as an array, an array of strings and nested arrays, plus two tensors.
func allValuesFile() []byte {
	var r raw
	r.header(3, 2, 17)
	r.str("u8")
	r.u32(0)
	r.u8(200)
	r.str("i8")
	r.u32(1)
	r.u8(0x80)
	r.str("u16")
	r.u32(2)
	r.u16(65000)
	r.str("i16")
	r.u32(3)
	r.u16(0xFFFE)
	r.str("u32")
	r.u32(4)
	r.u32(4000000000)
	r.str("i32")
	r.u32(5)
	r.u32(0xFFFFFFF9)
	r.str("f32")
	r.u32(6)
	r.f32(-1.5)
	r.str("bool")
	r.u32(7)
	r.u8(1)
	r.str("str")
	r.u32(8)
	r.str("héllo")
	r.str("u64")
	r.u32(10)
	r.u64(1<<63 + 5)
	r.str("i64")
	r.u32(11)
	r.u64(math.MaxUint64)
	r.str("f64")
	r.u32(12)
	r.u64(math.Float64bits(math.Pi))
	r.str("arr.i16")
	r.u32(9)
	r.u32(3)
	r.u64(3)
	r.u16(1)
	r.u16(0x8000)
	r.u16(7)
	r.str("arr.str")
	r.u32(9)
	r.u32(8)
	r.u64(3)
	r.str("a")
	r.str("")
	r.str("ccc")
	r.str("arr.empty")
	r.u32(9)
	r.u32(6)
	r.u64(0)
	// [[1, 2], [3]] as UINT32 arrays; elements carry no type tag.
	r.str("arr.nested")
	r.u32(9)
	r.u32(9)
	r.u64(2)
	r.u32(4)
	r.u64(2)
	r.u32(1)
	r.u32(2)
	r.u32(4)
	r.u64(1)
	r.u32(3)
	r.str("general.alignment")
	r.u32(4)
	r.u32(64)
	r.tensorInfo("a", []uint64{3, 2}, F32, 0)
	r.tensorInfo("b", []uint64{32}, Q8_0, 64)
	r.pad(64)
	for i := range 6 {
		r.f32(float32(i))
	}
	r.pad(64)
	r.Write(bytes.Repeat([]byte{1}, 34))
	r.pad(64)
	return r.Bytes()
}

func TestAllValueTypes(t *testing.T) {
	b := allValuesFile()
	f, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) Value {
		v, ok := f.Get(k)
		if !ok {
			t.Fatalf("missing key %q", k)
		}
		return v
	}
	ints := map[string]int64{"u8": 200, "i8": -128, "u16": 65000, "i16": -2, "u32": 4000000000, "i32": -7, "i64": -1}
	for k, want := range ints {
		if got, ok := get(k).AsInt(); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", k, got, ok, want)
		}
	}
	if _, ok := get("u64").AsInt(); ok {
		t.Error("UINT64 above MaxInt64 converted to int64")
	}
	if u, ok := get("u64").AsUint64(); !ok || u != 1<<63+5 {
		t.Errorf("u64 = %d", u)
	}
	if u, ok := get("u32").AsUint32(); !ok || u != 4000000000 {
		t.Errorf("u32 = %d", u)
	}
	if _, ok := get("u8").AsUint32(); ok {
		t.Error("AsUint32 accepted a UINT8")
	}
	if x, ok := get("f32").AsFloat32(); !ok || x != -1.5 {
		t.Errorf("f32 = %g", x)
	}
	if x, ok := get("f64").AsFloat(); !ok || x != math.Pi {
		t.Errorf("f64 = %g", x)
	}
	if x, ok := get("bool").AsBool(); !ok || !x {
		t.Errorf("bool = %v", x)
	}
	if s, ok := get("str").AsString(); !ok || s != "héllo" {
		t.Errorf("str = %q", s)
	}
	if a, ok := Elems[int16](get("arr.i16")); !ok || !reflect.DeepEqual(a, []int16{1, -32768, 7}) {
		t.Errorf("arr.i16 = %v", a)
	}
	if a, ok := Elems[string](get("arr.str")); !ok || !reflect.DeepEqual(a, []string{"a", "", "ccc"}) {
		t.Errorf("arr.str = %v", a)
	}
	if v := get("arr.empty"); v.Len() != 0 || v.ElemType() != ValueFloat32 {
		t.Errorf("arr.empty = %v", v)
	}
	nested := get("arr.nested")
	if nested.Len() != 2 || nested.ElemType() != ValueArray {
		t.Fatalf("arr.nested = %v", nested)
	}
	e0, _ := nested.Index(0)
	e1, _ := nested.Index(1)
	a0, _ := Elems[uint32](e0)
	a1, _ := Elems[uint32](e1)
	if !reflect.DeepEqual(a0, []uint32{1, 2}) || !reflect.DeepEqual(a1, []uint32{3}) {
		t.Errorf("nested = %v %v", a0, a1)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
	}
	vals, err := f.ReadFloat32("a")
	if err != nil || !reflect.DeepEqual(vals, []float32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("a = %v, %v", vals, err)
	}
	if r, c := f.Tensors[0].Rows(); r != 2 || c != 3 {
		t.Errorf("Rows = %d, %d", r, c)
	}
	if got := roundTrip(t, f); !bytes.Equal(got, b) {
		t.Errorf("round trip differs at %d", firstDiff(got, b))
	}
	// The same values built with the constructors encode to the same bytes.
	nestedV, _ := ArrayOfArrays([]Value{Array([]uint32{1, 2}), Array([]uint32{3})})
	built := []KV{
		{"u8", Uint8(200)}, {"i8", Int8(-128)}, {"u16", Uint16(65000)}, {"i16", Int16(-2)},
		{"u32", Uint32(4000000000)}, {"i32", Int32(-7)}, {"f32", Float32(-1.5)}, {"bool", Bool(true)},
		{"str", String("héllo")}, {"u64", Uint64(1<<63 + 5)}, {"i64", Int64(-1)}, {"f64", Float64(math.Pi)},
		{"arr.i16", Array([]int16{1, -32768, 7})}, {"arr.str", Array([]string{"a", "", "ccc"})},
		{"arr.empty", Array([]float32{})}, {"arr.nested", nestedV}, {AlignmentKey, Uint32(64)},
	}
	h := f.Header
	h.KV = built
	var out bytes.Buffer
	w, err := NewWriter(&out, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		data, _ := f.ReadTensor(ti.Name)
		if err := w.WriteTensor(ti.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), b) {
		t.Errorf("constructed values encode differently, first difference at %d", firstDiff(out.Bytes(), b))
	}
}

// TestV2AndEmpty covers a version 2 file and files without tensors, with and
// without the header padding.
func TestV2AndEmpty(t *testing.T) {
	for _, pad := range []bool{false, true} {
		var r raw
		r.header(2, 0, 1)
		r.str("general.name")
		r.u32(8)
		r.str("x")
		if pad {
			r.pad(32)
		}
		b := r.Bytes()
		f, err := open(b)
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != 2 || f.AlignEmpty != pad || len(f.Tensors) != 0 {
			t.Errorf("pad=%v: version %d, AlignEmpty %v", pad, f.Version, f.AlignEmpty)
		}
		if got := roundTrip(t, f); !bytes.Equal(got, b) {
			t.Errorf("pad=%v: round trip differs", pad)
		}
	}
}

// brokenCase describes a hand-made file and what the reader must say.
type brokenCase struct {
	name   string
	build  func(r *raw)
	is     error  // errors.Is target, if any
	substr string // text the message must contain
	ok     bool   // the file is valid after all
}

func validTensorFile(r *raw, infos func(r *raw)) {
	r.header(3, 2, 1)
	r.str("general.architecture")
	r.u32(8)
	r.str("llama")
	infos(r)
	r.pad(32)
	r.Write(make([]byte, 64))
}

var brokenCases = []brokenCase{
	{name: "empty file", build: func(r *raw) {}, is: ErrTruncated},
	{name: "wrong magic", build: func(r *raw) { r.WriteString("GGML"); r.u32(3); r.u64(0); r.u64(0) }, substr: "not a GGUF file"},
	{name: "big-endian version", build: func(r *raw) { r.WriteString("GGUF"); r.Write([]byte{0, 0, 0, 3}); r.u64(0); r.u64(0) }, is: ErrBigEndian},
	{name: "byte-swapped magic", build: func(r *raw) { r.WriteString("FUGG"); r.Write([]byte{0, 0, 0, 3}) }, is: ErrBigEndian},
	{name: "version 1", build: func(r *raw) { r.header(1, 0, 0) }, is: ErrVersion},
	{name: "version 4", build: func(r *raw) { r.header(4, 0, 0) }, is: ErrVersion},
	{name: "version 0", build: func(r *raw) { r.header(0, 0, 0) }, is: ErrVersion},
	{name: "huge tensor count", build: func(r *raw) { r.header(3, 1<<60, 0) }, is: ErrTruncated, substr: "tensor count"},
	{name: "negative tensor count", build: func(r *raw) { r.header(3, math.MaxUint64, 0) }, is: ErrTruncated},
	{name: "huge kv count", build: func(r *raw) { r.header(3, 0, 1<<60) }, is: ErrTruncated, substr: "metadata count"},
	{name: "huge key length", build: func(r *raw) { r.header(3, 0, 1); r.u64(1 << 62); r.WriteString("xxxxxxxxxxxxxxxxxxxx") }, is: ErrTruncated},
	{name: "huge string value", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(8); r.u64(1 << 40) }, is: ErrTruncated, substr: `key "k"`},
	{name: "huge uint8 array", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(9); r.u32(0); r.u64(1 << 60) }, is: ErrTruncated},
	{name: "huge string array", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(9); r.u32(8); r.u64(1 << 60) }, is: ErrTruncated},
	{name: "huge float64 array", build: func(r *raw) {
		r.header(3, 0, 1)
		r.str("k")
		r.u32(9)
		r.u32(12)
		r.u64(1<<61 + 1)
		r.u64(0)
	}, is: ErrTruncated},
	{name: "huge nested array", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(9); r.u32(9); r.u64(1 << 60) }, is: ErrTruncated},
	{name: "deep nesting", build: func(r *raw) {
		r.header(3, 0, 1)
		r.str("k")
		r.u32(9)
		for range 20 {
			r.u32(9)
			r.u64(1)
		}
		r.u32(0)
		r.u64(0)
	}, substr: "nested deeper"},
	{name: "invalid value type", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(13); r.u64(0) }, substr: "invalid value type 13"},
	{name: "invalid array type", build: func(r *raw) { r.header(3, 0, 1); r.str("k"); r.u32(9); r.u32(99); r.u64(0) }, substr: "invalid value type 99"},
	{name: "empty key", build: func(r *raw) { r.header(3, 0, 1); r.str(""); r.u32(0); r.u8(0) }, substr: "empty key"},
	{name: "duplicate key", build: func(r *raw) {
		r.header(3, 0, 2)
		r.str("k")
		r.u32(0)
		r.u8(0)
		r.str("k")
		r.u32(0)
		r.u8(1)
	}, substr: "duplicate key"},
	{name: "alignment not uint32", build: func(r *raw) { r.header(3, 0, 1); r.str(AlignmentKey); r.u32(10); r.u64(32) }, substr: "want UINT32"},
	{name: "alignment not power of two", build: func(r *raw) { r.header(3, 0, 1); r.str(AlignmentKey); r.u32(4); r.u32(48) }, substr: "power of two"},
	{name: "alignment zero", build: func(r *raw) { r.header(3, 0, 1); r.str(AlignmentKey); r.u32(4); r.u32(0) }, substr: "power of two"},
	{name: "five dims", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{1, 1, 1, 1, 1}, F32, 0) })
	}, substr: "5 dimensions"},
	{name: "dims overflow", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{1 << 32, 1 << 32}, F32, 0) })
	}, substr: "overflow"},
	{name: "negative dim", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{1 << 63}, F32, 0) })
	}, substr: "negative"},
	{name: "byte size overflow", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{1 << 31, 1 << 31}, F64, 0) })
	}, substr: "overflows"},
	{name: "removed type id", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{32}, Type(4), 0) })
	}, substr: "unknown ggml type 4"},
	{name: "unknown type id", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{32}, Type(1000), 0) })
	}, substr: "unknown ggml type 1000"},
	{name: "row not a multiple of the block", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{31, 2}, Q4_0, 0) })
	}, substr: "not a multiple"},
	{name: "duplicate tensor", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("t", []uint64{4}, F32, 0); r.tensorInfo("t", []uint64{4}, F32, 32) })
	}, substr: "duplicate tensor"},
	{name: "first offset not zero", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 32); r.tensorInfo("b", []uint64{4}, F32, 64) })
	}, substr: "expected 0"},
	{name: "misaligned offset", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 0); r.tensorInfo("b", []uint64{4}, F32, 16) })
	}, substr: `tensor "b": data offset 16, expected 32`},
	{name: "overlapping offset", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 0); r.tensorInfo("b", []uint64{4}, F32, 0) })
	}, substr: "expected 32"},
	{name: "gap between tensors", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 0); r.tensorInfo("b", []uint64{4}, F32, 64) })
	}, substr: "expected 32"},
	{name: "data past end of file", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 0); r.tensorInfo("b", []uint64{9}, F32, 32) })
	}, is: ErrTruncated, substr: `tensor "b"`},
	{name: "valid two tensors", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{4}, F32, 0); r.tensorInfo("b", []uint64{8}, F32, 32) })
	}, ok: true},
	{name: "undecodable known type passes", build: func(r *raw) {
		r.header(3, 1, 0)
		r.tensorInfo("iq", []uint64{256}, IQ2_XXS, 0)
		r.pad(32)
		r.Write(make([]byte, 66))
		r.pad(32)
	}, ok: true},
	{name: "zero-size tensor", build: func(r *raw) {
		validTensorFile(r, func(r *raw) { r.tensorInfo("a", []uint64{0, 5}, F32, 0); r.tensorInfo("b", []uint64{16}, F32, 0) })
	}, ok: true},
}

func TestBrokenFiles(t *testing.T) {
	for _, c := range brokenCases {
		t.Run(c.name, func(t *testing.T) {
			var r raw
			c.build(&r)
			f, err := open(r.Bytes())
			if c.ok {
				if err != nil {
					t.Fatalf("valid file rejected: %v", err)
				}
				if got := roundTrip(t, f); !bytes.Equal(got, r.Bytes()) {
					t.Errorf("round trip differs at %d", firstDiff(got, r.Bytes()))
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.substr) {
				t.Errorf("error %q does not mention %q", err, c.substr)
			}
			if fe.Offset < 0 || fe.Offset > int64(r.Len()) {
				t.Errorf("offset %d outside the %d-byte file", fe.Offset, r.Len())
			}
		})
	}
}

func TestUndecodableType(t *testing.T) {
	var r raw
	for _, c := range brokenCases {
		if c.name == "undecodable known type passes" {
			c.build(&r)
		}
	}
	f, err := open(r.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFloat32("iq"); err == nil || !strings.Contains(err.Error(), "IQ2_XXS") {
		t.Errorf("decoding IQ2_XXS: %v", err)
	}
	if raw, err := f.ReadTensor("iq"); err != nil || len(raw) != 66 {
		t.Errorf("raw read: %d bytes, %v", len(raw), err)
	}
	if _, err := f.Section("nope"); err == nil {
		t.Error("Section of a missing tensor succeeded")
	}
}

// TestTruncation cuts real files at many lengths: every cut inside the
// header and a spread of cuts in the data must fail with a FormatError,
// except cuts that only lose the padding after the last tensor.
func TestTruncation(t *testing.T) {
	for _, p := range modelPaths(t) {
		name := filepath.Base(p)
		if !strings.Contains(name, "lora") && !strings.Contains(name, "q4_0") {
			continue // two models cover the header and data paths; keep the test fast
		}
		t.Run(name, func(t *testing.T) {
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := open(orig)
			if err != nil {
				t.Fatal(err)
			}
			last := f.Tensors[len(f.Tensors)-1]
			dataEnd := f.DataOffset + int64(last.Offset) + last.Size()
			check := func(n int64) {
				_, err := NewReader(bytes.NewReader(orig[:n]), n)
				if n >= dataEnd {
					if err != nil {
						t.Errorf("cut at %d (after the data): %v", n, err)
					}
					return
				}
				var fe *FormatError
				if !errors.As(err, &fe) || !errors.Is(err, ErrTruncated) {
					t.Fatalf("cut at %d: %v", n, err)
				}
			}
			for n := int64(0); n <= f.DataOffset; n++ {
				check(n)
			}
			for n := f.DataOffset; n < int64(len(orig)); n += 211 {
				check(n)
			}
			for n := dataEnd - 3; n <= int64(len(orig)); n++ {
				check(n)
			}
		})
	}
}

// TestNoHugeAllocation checks that a crafted count is refused before any
// allocation proportional to it.
func TestNoHugeAllocation(t *testing.T) {
	var r raw
	r.header(3, 0, 1)
	r.str("k")
	r.u32(9)
	r.u32(4)
	r.u64(1 << 60)
	r.Write(make([]byte, 64))
	allocs := testing.AllocsPerRun(5, func() { _, _ = open(r.Bytes()) })
	var ms1, ms2 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	_, err := open(r.Bytes())
	runtime.ReadMemStats(&ms2)
	if err == nil {
		t.Fatal("accepted")
	}
	if d := ms2.TotalAlloc - ms1.TotalAlloc; d > 1<<20 {
		t.Errorf("allocated %d bytes for a 100-byte file", d)
	}
	if allocs > 100 {
		t.Errorf("%g allocations", allocs)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("opened a missing file")
	}
	p := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(p, []byte("GGUF\x03\x00"), 0o644)
	_, err := Open(p)
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v should be a FormatError naming the file", err)
	}
}

// TestSectionLazy checks that tensor data is read through the ReaderAt on
// demand: NewReader touches only the header.
func TestSectionLazy(t *testing.T) {
	const n = 1 << 20
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Version: 3, Tensors: []TensorInfo{{Name: "big", Dims: []uint64{n}, Type: I8}}})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	data[n-1] = 7
	if err := w.WriteTensor("big", data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b := buf.Bytes()
	cr := &countingReaderAt{r: bytes.NewReader(b)}
	f, err := NewReader(cr, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if cr.max > 1<<17 {
		t.Errorf("NewReader read up to offset %d of a file whose header is %d bytes", cr.max, f.DataOffset)
	}
	sr, _ := f.Section("big")
	last := make([]byte, 1)
	if _, err := sr.ReadAt(last, n-1); err != nil || last[0] != 7 {
		t.Errorf("last byte %v, %v", last, err)
	}
}

type countingReaderAt struct {
	r   io.ReaderAt
	max int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.max = max(c.max, off+int64(n))
	return n, err
}
