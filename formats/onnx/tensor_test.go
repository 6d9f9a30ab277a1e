package onnx

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

var floatTypes = []int32{typeFloat, typeFloat16, typeBFloat16, typeDouble}

// exact holds values every float type represents exactly.
var exact = []float64{1, -2, 0.5, 0.375, 1024, math.Copysign(0, -1), 3, -0.125}

// externalize moves t's elements to a file in dir (raw encoding at offset
// 16 behind junk bytes) the way another writer might.
func externalize(t *testing.T, m *Model, tp *pb.TensorProto, dir, file string) {
	t.Helper()
	b, err := m.RawBytes(tp)
	if err != nil {
		t.Fatal(err)
	}
	data := append(make([]byte, 16), b...)
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
	clearData(tp)
	tp.DataLocation = pb.TensorProto_EXTERNAL.Enum()
	tp.ExternalData = []*pb.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String(file)},
		{Key: proto.String("offset"), Value: proto.String("16")},
		{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(b)))},
	}
}

// Every float type decodes from every place, and SetFloat64s rounds once
// and keeps the place.
func TestFloatCodecs(t *testing.T) {
	dir := t.TempDir()
	// 1/3 in each type, and a value a float64→float32→narrow chain rounds
	// wrongly: just above the half-way point between two binary16
	// (resp. bfloat16) values next to 1, by less than float32 resolves.
	third := map[int32]uint64{typeFloat: 0x3EAAAAAB, typeFloat16: 0x3555, typeBFloat16: 0x3EAB, typeDouble: math.Float64bits(1.0 / 3)}
	tricky := map[int32]float64{typeFloat16: 1 + 0x1p-11 + 0x1p-40, typeBFloat16: 1 + 0x1p-8 + 0x1p-40}
	trickyBits := map[int32]uint64{typeFloat16: 0x3C01, typeBFloat16: 0x3F81}
	for _, dt := range floatTypes {
		for _, place := range []Place{Raw, Typed, External} {
			t.Run(fmt.Sprintf("%s/%v", TypeName(dt), place), func(t *testing.T) {
				m := &Model{Dir: dir}
				defer m.Close()
				tp := floatTensor("w", dt, []int64{2, 4}, exact, Raw)
				if place == Typed {
					tp = floatTensor("w", dt, []int64{2, 4}, exact, Typed)
				}
				if place == External {
					externalize(t, m, tp, dir, TypeName(dt)+".bin")
				}
				if PlaceOf(tp) != place {
					t.Fatalf("place %v", PlaceOf(tp))
				}
				got, err := m.Float32s(tp)
				if err != nil {
					t.Fatal(err)
				}
				for i := range exact {
					if math.Float64bits(float64(got[i])) != math.Float64bits(exact[i]) {
						t.Fatalf("element %d = %g, want %g", i, got[i], exact[i])
					}
				}
				vals := append([]float64{1.0 / 3}, exact[1:]...)
				if x, ok := tricky[dt]; ok {
					vals[1] = x
				}
				if err := m.SetFloat64s(tp, vals); err != nil {
					t.Fatal(err)
				}
				if PlaceOf(tp) != place {
					t.Fatalf("moved to %v", PlaceOf(tp))
				}
				raw, err := m.RawBytes(tp)
				if err != nil {
					t.Fatal(err)
				}
				if got := elemBitsAt(raw, dt, 0); got != third[dt] {
					t.Errorf("1/3 stored as %#x, want %#x", got, third[dt])
				}
				if want, ok := trickyBits[dt]; ok {
					if got := elemBitsAt(raw, dt, 1); got != want {
						t.Errorf("%.17g stored as %#x, want %#x (one rounding)", vals[1], got, want)
					}
				}
				back, err := m.Float64s(tp)
				if err != nil {
					t.Fatal(err)
				}
				for i := 2; i < len(exact); i++ {
					if back[i] != exact[i] {
						t.Errorf("element %d = %g after rewrite, want %g", i, back[i], exact[i])
					}
				}
			})
		}
	}
}

func elemBitsAt(raw []byte, dt int32, i int) uint64 {
	switch dt {
	case typeFloat:
		return uint64(binary.LittleEndian.Uint32(raw[4*i:]))
	case typeDouble:
		return binary.LittleEndian.Uint64(raw[8*i:])
	}
	return uint64(binary.LittleEndian.Uint16(raw[2*i:]))
}

func TestTensorErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "short.bin"), make([]byte, 20), 0o644); err != nil {
		t.Fatal(err)
	}
	ext := func(kv ...string) *pb.TensorProto {
		tp := &pb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(typeFloat), Dims: []int64{2, 2},
			DataLocation: pb.TensorProto_EXTERNAL.Enum()}
		for i := 0; i < len(kv); i += 2 {
			tp.ExternalData = append(tp.ExternalData, &pb.StringStringEntryProto{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
		return tp
	}
	tests := []struct {
		name string
		t    *pb.TensorProto
		dir  string
	}{
		{"missing file", ext("location", "nope.bin"), dir},
		{"too short", ext("location", "short.bin", "offset", "8"), dir},
		{"length past end", ext("location", "short.bin", "offset", "8", "length", "16"), dir},
		{"offset past end", ext("location", "short.bin", "offset", "4096", "length", "16"), dir},
		{"wrong length", ext("location", "short.bin", "length", "12"), dir},
		{"absolute", ext("location", filepath.Join(dir, "short.bin"), "length", "16"), dir},
		{"escape", ext("location", "../x/short.bin", "length", "16"), dir},
		{"escape backslash", ext("location", `a\..\..\short.bin`, "length", "16"), dir},
		{"no location", ext("length", "16"), dir},
		{"bad offset", ext("location", "short.bin", "offset", "0x10", "length", "16"), dir},
		{"negative offset", ext("location", "short.bin", "offset", "-4", "length", "16"), dir},
		{"no folder", ext("location", "short.bin", "length", "16"), ""},
		{"raw too short", &pb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(typeFloat), Dims: []int64{2, 2}, RawData: make([]byte, 15)}, dir},
		{"typed too short", &pb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(typeFloat16), Dims: []int64{2, 2}, Int32Data: []int32{1, 2, 3}}, dir},
		{"negative dim", &pb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(typeFloat), Dims: []int64{-1, 2}, RawData: make([]byte, 8)}, dir},
		{"huge dims", &pb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(typeFloat), Dims: []int64{1 << 40, 1 << 40}, RawData: make([]byte, 8)}, dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Model{Dir: tc.dir}
			_, err := m.Float32s(tc.t)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FormatError", err)
			}
			if fe.Tensor != "w" {
				t.Errorf("error names tensor %q: %v", fe.Tensor, err)
			}
		})
	}
	// Unsupported element types are refused with a testable cause.
	m := &Model{}
	if _, err := m.Float32s(int64Init("i", 1, 2)); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("INT64: %v, want ErrUnsupportedType", err)
	}
}

// python3Onnx returns Debian's python3 when it has the onnx module.
func python3Onnx(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	ok := exists(py) && exec.Command(py, "-c", "import onnx, numpy").Run() == nil
	need(t, "Debian python3-onnx", ok)
	return py
}

// What WriteFile writes, every tensor kind and place, the onnx Python
// package (an independent reader) loads with the same values, and its
// checker accepts.
func TestWriteReadByOnnxPython(t *testing.T) {
	py := python3Onnx(t)
	dir := t.TempDir()
	g := &pb.GraphProto{Name: proto.String("g")}
	var names []string
	var nodes []*pb.NodeProto
	for _, dt := range floatTypes {
		for _, place := range []Place{Raw, Typed} {
			for _, size := range []int{3, 1000} {
				name := fmt.Sprintf("%s_%v_%d", TypeName(dt), place, size)
				v := randValues(uint64(size), size)
				g.Initializer = append(g.Initializer, floatTensor(name, dt, []int64{int64(size)}, v, place))
				names = append(names, name)
				nodes = append(nodes, node("Identity", "id_"+name, []string{name}, []string{"out_" + name}))
				g.Output = append(g.Output, valueInfo("out_"+name, dt, int64(size)))
			}
		}
	}
	g.Node = nodes
	m := newModel(g, 13)
	p := filepath.Join(dir, "m.onnx")
	// 1000 floats of 2 bytes or more go external; the small ones stay.
	if err := WriteFile(p, m, &WriteOptions{ExternalThreshold: 2000}); err != nil {
		t.Fatal(err)
	}
	script := `
import json, sys, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
onnx.checker.check_model(sys.argv[1])
out = {}
for t in m.graph.initializer:
    out[t.name] = {"external": t.data_location == onnx.TensorProto.EXTERNAL,
                   "values": [float(x) for x in numpy_helper.to_array(t).astype("float64").ravel()]}
json.dump(out, sys.stdout)
`
	// onnx.load resolves external data itself; give it the model without
	// it to see what is external.
	cmd := exec.Command(py, "-c", script+"\n", p)
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v %s", err, exitStderr(err))
	}
	var got map[string]struct {
		External bool
		Values   []float64
	}
	if err := json.Unmarshal(outb, &got); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	nExt := 0
	for i, tp := range back.Proto.Graph.Initializer {
		ours, err := back.Float64s(tp)
		if err != nil {
			t.Fatal(err)
		}
		theirs := got[names[i]].Values
		if len(ours) != len(theirs) {
			t.Fatalf("%s: %d values, python %d", names[i], len(ours), len(theirs))
		}
		for j := range ours {
			if ours[j] != theirs[j] {
				t.Fatalf("%s[%d]: ours %g, onnx %g", names[i], j, ours[j], theirs[j])
			}
		}
		if PlaceOf(tp) == External {
			nExt++
			r, _ := parseExternal(tp)
			if r.offset%DataAlign != 0 || r.location != "m.onnx.data" {
				t.Errorf("%s: external at %s offset %d", names[i], r.location, r.offset)
			}
		}
	}
	if nExt != 8 {
		t.Errorf("%d tensors external, want the 8 of 1000 elements", nExt)
	}
}

func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
