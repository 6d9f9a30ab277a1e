package onnx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// Fields the schema does not know (a future ONNX field, a known field with
// a wire type it does not expect, an enum value it does not know) survive a
// read and a write, in the message they belong to.
func TestUnknownFieldsSurvive(t *testing.T) {
	m := linearsModel()
	base, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Append to the model: field 99 (varint 12345) and field 100 (bytes).
	var extra []byte
	extra = protowire.AppendTag(extra, 99, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 12345)
	extra = protowire.AppendTag(extra, 100, protowire.BytesType)
	extra = protowire.AppendBytes(extra, []byte("future"))
	// An initializer with an unknown field and an unknown data_location
	// value (7), put in a graph at the end (a later graph field merges).
	tp := f32Init("W_new", []int64{2}, []float64{1, 2})
	tb, _ := proto.Marshal(tp)
	tb = protowire.AppendTag(tb, 77, protowire.Fixed32Type)
	tb = protowire.AppendFixed32(tb, 0xdeadbeef)
	tb = protowire.AppendTag(tb, 14, protowire.VarintType)
	tb = protowire.AppendVarint(tb, 7)
	var gb []byte
	gb = protowire.AppendTag(gb, 5, protowire.BytesType)
	gb = protowire.AppendBytes(gb, tb)
	data := append(append([]byte{}, base...), extra...)
	data = protowire.AppendTag(data, 7, protowire.BytesType)
	data = protowire.AppendBytes(data, gb)

	// Unknown fields at the end of a message come back byte for byte.
	tail := append(append([]byte{}, base...), extra...)
	if mt, err := Decode(tail); err != nil {
		t.Fatal(err)
	} else if b, _ := mt.Encode(); !bytes.Equal(b, tail) {
		t.Error("a model with trailing unknown fields is not byte-identical after a round trip")
	}

	m2, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{extra[:len(extra)-8], []byte("future"), {0xef, 0xbe, 0xad, 0xde}} {
		if !bytes.Contains(out, want) {
			t.Errorf("re-encoded model lost % x", want)
		}
	}
	// The unknown bytes stay attached to the initializer they came with.
	last := m2.Proto.Graph.Initializer[len(m2.Proto.Graph.Initializer)-1]
	if last.GetName() != "W_new" || len(last.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("initializer W_new lost its unknown fields")
	}
	m3, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m2.Proto, m3.Proto) {
		t.Error("second round trip changed the model")
	}
}

func TestDecodeRefusesNonModels(t *testing.T) {
	valid, err := linearsModel().Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("hello, this is not a model\n")},
		{"truncated", valid[:len(valid)/2]},
		{"truncated by one", valid[:len(valid)-1]},
		{"no graph", func() []byte { b, _ := proto.Marshal(&pb.ModelProto{IrVersion: proto.Int64(8)}); return b }()},
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode: %v, want a FormatError", err)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "bad.onnx")
	os.WriteFile(p, []byte("garbage"), 0o644)
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadFile: %v, want an error naming the file", err)
	}
}

// WriteFile with a threshold moves big initializers to <name>.data at
// page-aligned offsets; reading the result gives the same values; writing
// that model elsewhere copies its external data; replaced weights of an
// external model stay external.
func TestWriteExternal(t *testing.T) {
	dir := t.TempDir()
	m := linearsModel()
	want := map[string][]float64{}
	for _, tp := range m.Proto.Graph.Initializer {
		if IsFloat(tp.GetDataType()) {
			want[tp.GetName()], _ = m.Float64s(tp)
		}
	}
	p := filepath.Join(dir, "a", "model.onnx")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := WriteFile(p, m, &WriteOptions{ExternalThreshold: 1024}); err != nil {
		t.Fatal(err)
	}
	if PlaceOf(m.Proto.Graph.Initializer[0]) != Raw {
		t.Fatal("WriteFile changed the model in memory")
	}
	a, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "a", "model.onnx.data"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(m *Model, what string) {
		t.Helper()
		ext := 0
		for _, tp := range m.Proto.Graph.Initializer {
			size, _, _ := rawSize(tp)
			if PlaceOf(tp) == External {
				ext++
				r, _ := parseExternal(tp)
				if r.offset%DataAlign != 0 || r.length != size {
					t.Errorf("%s: %s at offset %d length %d", what, tp.GetName(), r.offset, r.length)
				}
			} else if size >= 1024 {
				t.Errorf("%s: %s (%d bytes) stayed inline", what, tp.GetName(), size)
			}
			if w, ok := want[tp.GetName()]; ok {
				got, err := m.Float64s(tp)
				if err != nil {
					t.Fatal(err)
				}
				if !equalFloats(got, w) {
					t.Errorf("%s: %s changed", what, tp.GetName())
				}
			}
		}
		if ext == 0 {
			t.Errorf("%s: nothing external", what)
		}
	}
	check(a, "written")
	if st.Size() < 4096 {
		t.Errorf("data file %d bytes", st.Size())
	}
	// Writing over the data file the model reads from is refused.
	if err := WriteFile(p, a, nil); err == nil {
		t.Error("WriteFile over its own data file succeeded")
	}
	// Elsewhere, the external data is copied.
	p2 := filepath.Join(dir, "b", "copy.onnx")
	os.MkdirAll(filepath.Dir(p2), 0o755)
	if err := WriteFile(p2, a, nil); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFile(p2)
	if err != nil {
		t.Fatal(err)
	}
	check(b, "copied")
	// A replaced external weight stays external, with the new values.
	tg, _ := b.Target("W_mm")
	if tg.Place != External {
		t.Fatalf("W_mm is %v", tg.Place)
	}
	nw := randValues(77, tg.Out*tg.In)
	if err := b.ReplaceWeight("W_mm", nw); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Encode(); err == nil {
		t.Error("Encode with a staged external replacement succeeded")
	}
	p3 := filepath.Join(dir, "c", "replaced.onnx")
	os.MkdirAll(filepath.Dir(p3), 0o755)
	if err := WriteFile(p3, b, nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	c, err := ReadFile(p3)
	if err != nil {
		t.Fatal(err)
	}
	_, w, err := c.Weight("W_mm")
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if w[i] != float32(nw[i]) {
			t.Fatalf("W_mm[%d] = %g, want %g", i, w[i], float32(nw[i]))
		}
	}
	if tg, _ := c.Target("W_mm"); tg.Place != External {
		t.Errorf("replaced W_mm is %v", tg.Place)
	}
}

// The size limit moves the biggest initializers out first, only as many as
// needed.
func TestWriteMaxSize(t *testing.T) {
	m := linearsModel()
	full, _ := m.Encode()
	p := filepath.Join(t.TempDir(), "m.onnx")
	limit := int64(len(full) - 1300) // moving W_mm (1536 bytes) alone is enough
	if err := WriteFile(p, m, &WriteOptions{MaxSize: limit}); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var ext []string
	for _, tp := range back.Proto.Graph.Initializer {
		if PlaceOf(tp) == External {
			ext = append(ext, tp.GetName())
		}
	}
	if len(ext) != 1 || ext[0] != "W_mm" {
		t.Errorf("external: %v, want [W_mm]", ext)
	}
	if st, _ := os.Stat(p); st.Size() > limit {
		t.Errorf("model is %d bytes, over %d", st.Size(), limit)
	}
	if err := WriteFile(p, m, &WriteOptions{MaxSize: 100}); err == nil {
		t.Error("an impossible limit was met")
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWriteRefusesItsSource: WriteFile never writes its data file over an
// external data file the model still reads, whichever slash the location
// uses.
func TestWriteRefusesItsSource(t *testing.T) {
	for _, loc := range []string{"sub/out.onnx.data", `sub\out.onnx.data`} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
		m := linearsModel()
		m.Dir = dir
		tp := m.Proto.Graph.Initializer[0]
		externalize(t, m, tp, filepath.Join(dir, "sub"), "out.onnx.data")
		for _, e := range tp.ExternalData {
			if e.GetKey() == "location" {
				e.Value = proto.String(loc)
			}
		}
		before, _ := os.ReadFile(filepath.Join(dir, "sub", "out.onnx.data"))
		err := WriteFile(filepath.Join(dir, "sub", "out.onnx"), m, nil)
		if err == nil || !strings.Contains(err.Error(), "holds external data the model reads") {
			t.Errorf("location %q: WriteFile over the model's own data: %v", loc, err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "sub", "out.onnx.data")); !bytes.Equal(before, after) {
			t.Errorf("location %q: the source data file changed", loc)
		}
	}
}
