package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		specs []spec
		md    map[string]string
	}{
		{name: "single f32", specs: []spec{{Name: "w", DType: F32, Shape: []int64{2, 3}, Start: 1, Step: 1}}},
		{name: "mixed dtypes with metadata", specs: mixedSpecs, md: map[string]string{
			"format": "pt", "note": "ünïcode \"quoted\" back\\slash\nnewline\x01 <&> \u2028",
		}},
		{name: "no tensors"},
		{name: "no tensors, metadata", md: map[string]string{"framework": "pt"}},
		{name: "empty metadata map", specs: mixedSpecs[:1], md: map[string]string{}},
		{name: "zero-sized and scalar tensors", specs: []spec{
			{Name: "empty", DType: F32, Shape: []int64{0, 4}},
			{Name: "scalar", DType: F16, Shape: []int64{}, Start: 1.5},
			{Name: "empty2", DType: BF16, Shape: []int64{3, 0}},
			{Name: "after", DType: I64, Shape: []int64{3}, Start: 9, Step: -4},
		}},
		{name: "all 64 bit", specs: []spec{
			{Name: "d", DType: F64, Shape: []int64{3}, Start: math.Pi, Step: math.E},
			{Name: "i", DType: I32, Shape: []int64{3}, Start: -1 << 30, Step: 1 << 20},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeSpecs(t, tc.specs, tc.md)
			f, err := NewReader(bytes.NewReader(file), int64(len(file)))
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			if f.DataOffset()%8 != 0 {
				t.Errorf("DataOffset %d is not a multiple of 8", f.DataOffset())
			}
			if hdr := binary.LittleEndian.Uint64(file); int64(hdr)+8 != f.DataOffset() {
				t.Errorf("DataOffset %d, header length %d", f.DataOffset(), hdr)
			}
			if got := f.Metadata(); !maps.Equal(got, tc.md) || (got == nil) != (tc.md == nil) {
				t.Errorf("Metadata = %#v, want %#v", got, tc.md)
			}
			got := f.Tensors()
			if len(got) != len(tc.specs) {
				t.Fatalf("%d tensors, want %d", len(got), len(tc.specs))
			}
			var off int64
			for i, s := range tc.specs {
				ti := got[i]
				if ti.Name != s.Name || ti.DType != s.DType || !slices.Equal(ti.Shape, s.Shape) {
					t.Errorf("tensor %d = %+v, want %+v", i, ti, s)
				}
				want := s.bytes(t)
				if ti.Offset != off || ti.Size != int64(len(want)) {
					t.Errorf("tensor %s at [%d,+%d), want [%d,+%d)", s.Name, ti.Offset, ti.Size, off, len(want))
				}
				off += int64(len(want))
				if lk, ok := f.Lookup(s.Name); !ok || lk.Offset != ti.Offset {
					t.Errorf("Lookup(%s) = %+v, %v", s.Name, lk, ok)
				}
				data, err := f.ReadTensor(s.Name)
				if err != nil {
					t.Fatalf("ReadTensor(%s): %v", s.Name, err)
				}
				if !bytes.Equal(data, want) {
					t.Errorf("tensor %s data = %x, want %x", s.Name, data, want)
				}
				// The raw bytes sit where the header says, in the file itself.
				if abs := f.DataOffset() + ti.Offset; !bytes.Equal(file[abs:abs+ti.Size], want) {
					t.Errorf("tensor %s: file bytes at %d differ", s.Name, abs)
				}
			}
			if f.DataOffset()+off != int64(len(file)) {
				t.Errorf("file is %d bytes, want %d", len(file), f.DataOffset()+off)
			}
			// Reading then writing in the same order reproduces the file.
			if again := copyFile(t, f); !bytes.Equal(again, file) {
				t.Errorf("read-then-write differs:\n got %q\nwant %q", again[:f.DataOffset()], file[:f.DataOffset()])
			}
		})
	}
}

// copyFile rewrites f tensor by tensor, streaming each Section through
// the Writer.
func copyFile(t testing.TB, f *File) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, f.Tensors(), f.Metadata())
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, ti := range f.Tensors() {
		sr, err := f.Section(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		tw, err := w.Create(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, sr); err != nil {
			t.Fatalf("copy %s: %v", ti.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReferenceLayout checks byte for byte the files the reference writer's
// own tests expect (huggingface/safetensors, safetensors/src/tensor.rs:
// test_serialization, test_serialization_forced_alignement, test_empty).
func TestReferenceLayout(t *testing.T) {
	floats := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	six := floats(0, 1, 2, 3, 4, 5)
	tests := []struct {
		name    string
		tensors []TensorInfo
		data    [][]byte
		md      map[string]string
		want    []byte
	}{
		{
			name:    "attn.0 F32 [1,2,3]",
			tensors: []TensorInfo{{Name: "attn.0", DType: F32, Shape: []int64{1, 2, 3}}},
			data:    [][]byte{six},
			want: slices.Concat([]byte{64, 0, 0, 0, 0, 0, 0, 0},
				[]byte(`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`), six),
		},
		{
			name:    "attn0 F32 [1,1,2,3], padded",
			tensors: []TensorInfo{{Name: "attn0", DType: F32, Shape: []int64{1, 1, 2, 3}}},
			data:    [][]byte{six},
			want: slices.Concat([]byte{72, 0, 0, 0, 0, 0, 0, 0},
				[]byte(`{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `), six),
		},
		{
			name: "empty",
			want: []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '},
		},
		{
			name: "empty with metadata",
			md:   map[string]string{"framework": "pt"},
			want: slices.Concat([]byte{40, 0, 0, 0, 0, 0, 0, 0}, []byte(`{"__metadata__":{"framework":"pt"}}     `)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, tc.tensors, tc.md)
			if err != nil {
				t.Fatal(err)
			}
			for i, ti := range tc.tensors {
				if err := w.WriteTensor(ti.Name, tc.data[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tc.want) {
				t.Errorf("got  %q\nwant %q", buf.Bytes(), tc.want)
			}
			if _, err := NewReader(bytes.NewReader(tc.want), int64(len(tc.want))); err != nil {
				t.Errorf("reading the reference bytes: %v", err)
			}
		})
	}
}

// TestReadAccepts covers valid files the writer never produces.
func TestReadAccepts(t *testing.T) {
	tests := []struct {
		name    string
		file    []byte
		order   []string // expected Tensors() order
		md      map[string]string
		hasMeta bool
	}{
		{
			name:  "header order differs from data order",
			file:  rawFile(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, 5),
			order: []string{"a", "b"}, md: map[string]string{"k": "v"}, hasMeta: true,
		},
		{
			name:  "zero-sized tensors keep header order",
			file:  rawFile(`{"z2":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, 4),
			order: []string{"x", "z2", "z1"},
		},
		{
			name:  "null metadata, unknown field, whitespace padding",
			file:  rawFile("{\"__metadata__\":null, \"t\" : {\"extra\":[1,{\"x\":2}],\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[0,2]}}\n\t  ", 2),
			order: []string{"t"},
		},
		{
			name:  "sub-byte dtype with whole bytes",
			file:  rawFile(`{"q":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},"r":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[3,6]}}`, 6),
			order: []string{"q", "r"},
		},
		{
			name:  "escaped names",
			file:  rawFile(`{"a\"b\u00e9\/c":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}`, 1),
			order: []string{"a\"bé/c"},
		},
		{name: "no tensors, no padding", file: rawFile(`{}`, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewReader(bytes.NewReader(tc.file), int64(len(tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, ti := range f.Tensors() {
				names = append(names, ti.Name)
			}
			if !slices.Equal(names, tc.order) {
				t.Errorf("tensors %q, want %q", names, tc.order)
			}
			if md := f.Metadata(); !maps.Equal(md, tc.md) || (md != nil) != tc.hasMeta {
				t.Errorf("metadata %#v, want %#v", md, tc.md)
			}
			// The data section survives a read-then-write byte for byte.
			again := copyFile(t, f)
			g, err := NewReader(bytes.NewReader(again), int64(len(again)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again[g.DataOffset():], tc.file[f.DataOffset():]) {
				t.Error("data section changed on rewrite")
			}
		})
	}
}

func TestBrokenFiles(t *testing.T) {
	f32 := func(name string, shape string, begin, end string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + begin + `,` + end + `]}`
	}
	le := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }
	tests := []struct {
		name   string
		file   []byte
		tensor string // expected FormatError.Tensor
		msg    string // expected substring of FormatError.Msg
	}{
		{name: "empty file", file: nil, msg: "too short"},
		{name: "7 bytes", file: []byte{2, 0, 0, 0, 0, 0, 0}, msg: "too short"},
		{name: "header length past end", file: append(le(100), "{}"...), msg: "past the end"},
		{name: "header length 2^64-1", file: append(le(math.MaxUint64), "{}"...), msg: "limit"},
		{name: "header length over 100 MB", file: append(le(MaxHeaderSize+1), "{}"...), msg: "limit"},
		{name: "zero-length header", file: le(0), msg: "start with '{'"},
		{name: "header is an array", file: rawFile(`[]`, 0), msg: "start with '{'"},
		{name: "leading space", file: rawFile(` {}`, 0), msg: "start with '{'"},
		{name: "not JSON", file: rawFile(`{abc}`, 0), msg: "invalid JSON"},
		{name: "truncated JSON", file: rawFile(`{"a":{"dtype":"F32"`, 0), tensor: "a", msg: "invalid JSON"},
		{name: "invalid UTF-8", file: rawFile("{\"\xff\":1}", 0), msg: "UTF-8"},
		{name: "garbage after object", file: rawFile(`{} x`, 0), msg: "invalid JSON"},
		{name: "second object", file: rawFile(`{}{}`, 0), msg: "after the header"},
		{name: "entry not an object", file: rawFile(`{"a":1}`, 0), tensor: "a", msg: "not an object"},
		{name: "duplicate tensor", file: rawFile(`{`+f32("a", "[1]", "0", "4")+`,`+f32("a", "[1]", "4", "8")+`}`, 8), tensor: "a", msg: "duplicate tensor"},
		{name: "duplicate metadata", file: rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), msg: "duplicate __metadata__"},
		{name: "duplicate metadata key", file: rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, 0), msg: "duplicate __metadata__ key"},
		{name: "metadata value not a string", file: rawFile(`{"__metadata__":{"k":1}}`, 0), msg: "not a string"},
		{name: "metadata not an object", file: rawFile(`{"__metadata__":"x"}`, 0), msg: "not an object"},
		{name: "duplicate field", file: rawFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), tensor: "a", msg: "duplicate field"},
		{name: "missing dtype", file: rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, 4), tensor: "a", msg: "missing dtype"},
		{name: "missing shape", file: rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), tensor: "a", msg: "missing shape"},
		{name: "missing offsets", file: rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, 4), tensor: "a", msg: "missing data_offsets"},
		{name: "dtype not a string", file: rawFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, 4), tensor: "a", msg: "not a string"},
		{name: "unknown dtype", file: rawFile(`{"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}}`, 4), tensor: "a", msg: "unknown dtype"},
		{name: "lower-case dtype", file: rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4), tensor: "a", msg: "unknown dtype"},
		{name: "negative dim", file: rawFile(`{`+f32("a", "[-1]", "0", "4")+`}`, 4), tensor: "a", msg: "negative"},
		{name: "fractional dim", file: rawFile(`{`+f32("a", "[1.5]", "0", "4")+`}`, 4), tensor: "a", msg: "not an integer"},
		{name: "dim over int64", file: rawFile(`{`+f32("a", "[9223372036854775808]", "0", "4")+`}`, 4), tensor: "a", msg: "not an integer"},
		{name: "shape not an array", file: rawFile(`{`+f32("a", "3", "0", "4")+`}`, 4), tensor: "a", msg: "not an array"},
		{name: "shape holds a string", file: rawFile(`{`+f32("a", `["3"]`, "0", "4")+`}`, 4), tensor: "a", msg: "not a number"},
		{name: "element count overflow", file: rawFile(`{`+f32("a", "[4294967296,4294967296,2]", "0", "4")+`}`, 4), tensor: "a", msg: "overflow"},
		{name: "byte size overflow", file: rawFile(`{`+f32("a", "[4611686018427387904]", "0", "4")+`}`, 4), tensor: "a", msg: "overflow"},
		{name: "overflow after a zero dim is fine but wrong size", file: rawFile(`{`+f32("a", "[0,9223372036854775807,9223372036854775807]", "0", "4")+`}`, 4), tensor: "a", msg: "needs 0"},
		{name: "partial byte", file: rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), tensor: "a", msg: "whole number of bytes"},
		{name: "three offsets", file: rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8), tensor: "a", msg: "want 2"},
		{name: "negative offset", file: rawFile(`{`+f32("a", "[1]", "-4", "0")+`}`, 4), tensor: "a", msg: "non-negative"},
		{name: "begin after end", file: rawFile(`{`+f32("a", "[1]", "8", "4")+`}`, 8), tensor: "a", msg: "end before they begin"},
		{name: "size mismatch", file: rawFile(`{`+f32("a", "[2]", "0", "4")+`}`, 4), tensor: "a", msg: "needs 8"},
		{name: "past end of data", file: rawFile(`{`+f32("a", "[2]", "0", "8")+`}`, 4), tensor: "a", msg: "past the end"},
		{name: "huge offsets", file: rawFile(`{`+f32("a", "[1]", "18446744073709551611", "18446744073709551615")+`}`, 4), tensor: "a", msg: "past the end"},
		{name: "overlap", file: rawFile(`{`+f32("a", "[2]", "0", "8")+`,`+f32("b", "[2]", "4", "12")+`}`, 12), tensor: "b", msg: "overlap"},
		{name: "same range twice", file: rawFile(`{`+f32("a", "[1]", "0", "4")+`,`+f32("b", "[1]", "0", "4")+`}`, 4), tensor: "b", msg: "overlap"},
		{name: "hole", file: rawFile(`{`+f32("a", "[1]", "0", "4")+`,`+f32("b", "[1]", "8", "12")+`}`, 12), tensor: "b", msg: "hole"},
		{name: "hole at start", file: rawFile(`{`+f32("a", "[1]", "4", "8")+`}`, 8), tensor: "a", msg: "hole"},
		{name: "trailing bytes", file: rawFile(`{`+f32("a", "[1]", "0", "4")+`}`, 8), msg: "trailing"},
		{name: "data but no tensors", file: rawFile(`{}`, 1), msg: "trailing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewReader(bytes.NewReader(tc.file), int64(len(tc.file)))
			if err == nil {
				t.Fatalf("no error; tensors %+v", f.Tensors())
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if fe.Tensor != tc.tensor {
				t.Errorf("Tensor = %q, want %q (%v)", fe.Tensor, tc.tensor, err)
			}
			if !strings.Contains(fe.Msg, tc.msg) {
				t.Errorf("Msg %q does not mention %q", fe.Msg, tc.msg)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(tc.file)) {
				t.Errorf("Offset %d outside the %d-byte file", fe.Offset, len(tc.file))
			}
			if strings.Contains(tc.msg, "unknown dtype") != errors.Is(err, ErrUnknownDType) {
				t.Errorf("errors.Is(ErrUnknownDType) = %v for %v", errors.Is(err, ErrUnknownDType), err)
			}
		})
	}
}

// sparseFile is a ReaderAt over a header followed by size−len(head) zero
// bytes that are never stored; it counts the bytes read.
type sparseFile struct {
	head []byte
	size int64
	read int64
}

func (s *sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < s.size {
		if i := off + int64(n); i < int64(len(s.head)) {
			n += copy(p[n:], s.head[i:])
		} else {
			clear(p[n:min(len(p), n+int(s.size-i))])
			n = min(len(p), n+int(s.size-i))
		}
	}
	s.read += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestHugeFilesStayCheap opens files whose sizes would exhaust memory if
// anything scaled with them.
func TestHugeFilesStayCheap(t *testing.T) {
	t.Run("1 TiB tensor", func(t *testing.T) {
		const tib = 1 << 40
		head := rawFile(`{"w":{"dtype":"BF16","shape":[524288,1048576],"data_offsets":[0,1099511627776]}}`, 0)
		sf := &sparseFile{head: head, size: int64(len(head)) + tib}
		f, err := NewReader(sf, sf.size)
		if err != nil {
			t.Fatal(err)
		}
		if sf.read != int64(len(head)) {
			t.Errorf("opening read %d bytes, want the %d-byte header only", sf.read, len(head))
		}
		sr, err := f.Section("w")
		if err != nil || sr.Size() != tib {
			t.Fatalf("Section: %v, size %d", err, sr.Size())
		}
		var b [16]byte
		if _, err := sr.ReadAt(b[:], tib-16); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("claimed 100 MB+1 header refused before reading", func(t *testing.T) {
		head := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
		sf := &sparseFile{head: head, size: 1 << 30}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := NewReader(sf, sf.size)
		runtime.ReadMemStats(&after)
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v", err)
		}
		if sf.read != 8 {
			t.Errorf("read %d bytes, want 8", sf.read)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("allocated %d bytes for a refused header", grew)
		}
	})
	t.Run("streaming write of 64 MiB allocates little", func(t *testing.T) {
		const size = 64 << 20
		w, err := NewWriter(io.Discard, []TensorInfo{{Name: "w", DType: U8, Shape: []int64{size}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 1<<16)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tw, err := w.Create("w")
		if err != nil {
			t.Fatal(err)
		}
		for range size / len(chunk) {
			if _, err := tw.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("writing %d bytes allocated %d", size, grew)
		}
	})
}

func TestWriterMisuse(t *testing.T) {
	two := []TensorInfo{{Name: "a", DType: F32, Shape: []int64{1}}, {Name: "b", DType: U8, Shape: []int64{2}}}
	tests := []struct {
		name    string
		tensors []TensorInfo
		md      map[string]string
		do      func(w *Writer) error // nil: NewWriter itself must fail
		want    string
	}{
		{name: "unknown dtype", tensors: []TensorInfo{{Name: "a", DType: "Q4_0", Shape: []int64{1}}}, want: "unknown dtype"},
		{name: "negative dim", tensors: []TensorInfo{{Name: "a", DType: F32, Shape: []int64{2, -1}}}, want: "negative"},
		{name: "overflow", tensors: []TensorInfo{{Name: "a", DType: F64, Shape: []int64{1 << 62}}}, want: "overflow"},
		{name: "total over 2^63", tensors: hugeTensors(5), want: "exceeds"},
		{name: "partial byte", tensors: []TensorInfo{{Name: "a", DType: F6E2M3, Shape: []int64{3}}}, want: "whole number"},
		{name: "duplicate name", tensors: []TensorInfo{two[0], two[0]}, want: "duplicate"},
		{name: "reserved name", tensors: []TensorInfo{{Name: "__metadata__", DType: U8}}, want: "reserved"},
		{name: "invalid UTF-8 name", tensors: []TensorInfo{{Name: "\xff", DType: U8}}, want: "UTF-8"},
		{name: "invalid UTF-8 metadata", md: map[string]string{"k": "\xc3"}, want: "UTF-8"},
		{name: "out of order", tensors: two, do: func(w *Writer) error { return w.WriteTensor("b", []byte{1, 2}) }, want: "out of order"},
		{name: "unknown tensor", tensors: two, do: func(w *Writer) error { return w.WriteTensor("c", nil) }, want: "out of order"},
		{name: "short data", tensors: two, do: func(w *Writer) error { return w.WriteTensor("a", []byte{1}) }, want: "got 1 bytes, want 4"},
		{name: "long data", tensors: two, do: func(w *Writer) error { return w.WriteTensor("a", make([]byte, 5)) }, want: "got 5 bytes, want 4"},
		{name: "stream too long", tensors: two, do: func(w *Writer) error {
			tw, _ := w.Create("a")
			_, err := tw.Write(make([]byte, 6))
			return err
		}, want: "past its 4-byte size"},
		{name: "stream too short then next", tensors: two, do: func(w *Writer) error {
			tw, _ := w.Create("a")
			tw.Write(make([]byte, 3))
			return w.WriteTensor("b", []byte{1, 2})
		}, want: "3 of 4 bytes"},
		{name: "stale tensor writer", tensors: two, do: func(w *Writer) error {
			tw, _ := w.Create("a")
			tw.Write(make([]byte, 4))
			w.Create("b")
			_, err := tw.Write([]byte{1})
			return err
		}, want: "after the next tensor"},
		{name: "missing tensor at close", tensors: two, do: func(w *Writer) error {
			w.WriteTensor("a", make([]byte, 4))
			return w.Close()
		}, want: `"b" (and 0 after it) never written`},
		{name: "incomplete tensor at close", tensors: two, do: func(w *Writer) error {
			tw, _ := w.Create("a")
			tw.Write(make([]byte, 2))
			return w.Close()
		}, want: "2 of 4 bytes"},
		{name: "too many tensors", tensors: two[:1], do: func(w *Writer) error {
			w.WriteTensor("a", make([]byte, 4))
			return w.WriteTensor("a", make([]byte, 4))
		}, want: "already written"},
		{name: "write after close", tensors: two[:1], do: func(w *Writer) error {
			w.WriteTensor("a", make([]byte, 4))
			w.Close()
			return w.WriteTensor("a", make([]byte, 4))
		}, want: "closed"},
		{name: "errors are sticky", tensors: two, do: func(w *Writer) error {
			w.WriteTensor("b", []byte{1, 2})
			return w.WriteTensor("a", make([]byte, 4))
		}, want: "out of order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, tc.tensors, tc.md)
			if tc.do == nil {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("NewWriter error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.do(w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// hugeTensors returns n U8 tensors of 2^61−1 bytes each, the largest a
// byte count in bits can express.
func hugeTensors(n int) []TensorInfo {
	var ts []TensorInfo
	for i := range n {
		ts = append(ts, TensorInfo{Name: string(rune('a' + i)), DType: U8, Shape: []int64{1<<61 - 1}})
	}
	return ts
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterPropagatesIOErrors(t *testing.T) {
	infos := []TensorInfo{{Name: "w", DType: F32, Shape: []int64{1 << 19}}} // 2 MiB, past the buffer
	w, err := NewWriter(&failWriter{n: 1 << 20}, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteTensor("w", make([]byte, 4<<19))
	if err == nil {
		err = w.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("error %v, want disk full", err)
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, writeSpecs(t, mixedSpecs, map[string]string{"format": "pt"}), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := f.Section("model.norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(sr)
	got := make([]float32, 8)
	k, _ := BF16.Kind()
	dtype.Decode(k, got, raw)
	for i, v := range got {
		if want := float32(1 - 0.5*float64(i)); v != want {
			t.Errorf("element %d = %v, want %v", i, v, want)
		}
	}
	if _, err := f.Section("nope"); !errors.Is(err, ErrTensorNotFound) {
		t.Errorf("Section(nope) error %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, rawFile(`{"a":1}`, 0), 0o644)
	_, err = Open(bad)
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Open(bad) = %v, want a FormatError naming the path", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v", err)
	}
}

func TestDTypes(t *testing.T) {
	tests := []struct {
		d          DType
		bits, size int
		sizeOK     bool
	}{
		{Bool, 8, 1, true}, {U8, 8, 1, true}, {I8, 8, 1, true}, {F8E5M2, 8, 1, true}, {F8E4M3, 8, 1, true},
		{F8E8M0, 8, 1, true}, {F8E4M3FNUZ, 8, 1, true}, {F8E5M2FNUZ, 8, 1, true},
		{I16, 16, 2, true}, {U16, 16, 2, true}, {F16, 16, 2, true}, {BF16, 16, 2, true},
		{I32, 32, 4, true}, {U32, 32, 4, true}, {F32, 32, 4, true},
		{C64, 64, 8, true}, {F64, 64, 8, true}, {I64, 64, 8, true}, {U64, 64, 8, true},
		{F4, 4, 0, false}, {F6E2M3, 6, 0, false}, {F6E3M2, 6, 0, false},
		{"F128", 0, 0, false}, {"", 0, 0, false},
	}
	for _, tc := range tests {
		b, bok := tc.d.Bits()
		s, sok := tc.d.Size()
		if b != tc.bits || bok != (tc.bits != 0) || s != tc.size || sok != tc.sizeOK {
			t.Errorf("%q: Bits %d,%v Size %d,%v; want %d, %d,%v", tc.d, b, bok, s, sok, tc.bits, tc.size, tc.sizeOK)
		}
	}
	for _, d := range []DType{F32, F16, BF16, F64} {
		k, ok := d.Kind()
		back, ok2 := FromKind(k)
		if !ok || !ok2 || back != d {
			t.Errorf("%s: Kind %v,%v back %v", d, k, ok, back)
		}
		if s, _ := d.Size(); s != k.Size() {
			t.Errorf("%s: size %d, codec size %d", d, s, k.Size())
		}
	}
	if _, ok := I64.Kind(); ok {
		t.Error("I64 has a float codec")
	}
}

func TestSortLikeReference(t *testing.T) {
	ts := []TensorInfo{{Name: "b", DType: F16}, {Name: "a", DType: F16}, {Name: "m", DType: U8},
		{Name: "z", DType: F32}, {Name: "y", DType: I64}, {Name: "c", DType: BF16}}
	SortLikeReference(ts)
	var got []string
	for _, t := range ts {
		got = append(got, t.Name)
	}
	// The reference enum orders ... F16 < BF16 < ... F32 < ... I64, and
	// the writer sorts it descending, then by name.
	if want := []string{"y", "z", "c", "a", "b", "m"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}
