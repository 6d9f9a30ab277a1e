package safetensors

import (
	"bytes"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzReader checks that NewReader never panics, fails only with a
// *FormatError, and that whatever it accepts is self-consistent and
// survives a rewrite unchanged.
func FuzzReader(f *testing.F) {
	f.Add(writeSpecs(f, mixedSpecs, map[string]string{"format": "pt"}))
	f.Add(writeSpecs(f, mixedSpecs[:2], nil))
	f.Add(writeSpecs(f, nil, nil))
	f.Add(writeSpecs(f, []spec{{Name: "e", DType: F32, Shape: []int64{0, 3}}, {Name: "s", DType: BF16, Shape: []int64{}}}, map[string]string{}))
	f.Add(rawFile(`{"q":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},"__metadata__":null}`, 3))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}`, 4))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]},"a":{}}`, 4))
	f.Add(rawFile(`{"__metadata__":{"k":"v","k":1}}`, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(data)) {
				t.Fatalf("offset %d outside the %d-byte file: %v", fe.Offset, len(data), err)
			}
			return
		}
		// Accepted: the tensors tile the data section in order.
		end := file.DataOffset()
		for _, ti := range file.Tensors() {
			if file.DataOffset()+ti.Offset != end {
				t.Fatalf("tensor %q at %d, previous ended at %d", ti.Name, ti.Offset, end)
			}
			size, err := ti.DType.ByteSize(ti.Shape)
			if err != nil || size != ti.Size {
				t.Fatalf("tensor %q: size %d, ByteSize %d, %v", ti.Name, ti.Size, size, err)
			}
			end += ti.Size
		}
		if end != int64(len(data)) {
			t.Fatalf("tensors end at %d of %d", end, len(data))
		}
		// Rewriting keeps every tensor and the metadata.
		again := copyFile(t, file)
		g, err := NewReader(bytes.NewReader(again), int64(len(again)))
		if err != nil {
			t.Fatalf("rereading our rewrite: %v", err)
		}
		if !slices.EqualFunc(file.Tensors(), g.Tensors(), func(a, b TensorInfo) bool {
			return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && a.Offset == b.Offset && a.Size == b.Size
		}) {
			t.Fatalf("tensors changed:\n%+v\n%+v", file.Tensors(), g.Tensors())
		}
		if !maps.Equal(file.Metadata(), g.Metadata()) || (file.Metadata() == nil) != (g.Metadata() == nil) {
			t.Fatalf("metadata changed: %q vs %q", file.Metadata(), g.Metadata())
		}
		if !bytes.Equal(again[g.DataOffset():], data[file.DataOffset():]) {
			t.Fatal("data section changed")
		}
		// Our own output is canonical: rewriting it again is the identity.
		if third := copyFile(t, g); !bytes.Equal(third, again) {
			t.Fatal("rewrite of our own file is not byte-identical")
		}
	})
}

// FuzzParseIndex: the sharded index parser never panics, and whatever it
// accepts names only local shard paths and writes back to an index that
// parses to the same map.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"sub/x.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{}}`))
	f.Add([]byte(`{"weight_map":{"a":"../escape.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"/abs"}} {}`))
	f.Add([]byte(`{"metadata":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := parseIndex(data)
		if err != nil {
			return
		}
		for name, shard := range ix.WeightMap {
			if !filepath.IsLocal(filepath.FromSlash(shard)) {
				t.Fatalf("accepted tensor %q in non-local shard %q", name, shard)
			}
		}
		path := filepath.Join(t.TempDir(), IndexFileName)
		if err := WriteIndex(path, ix); err != nil {
			t.Fatalf("accepted index does not write back: %v", err)
		}
		back, err := ReadIndex(path)
		if err != nil {
			t.Fatalf("written index does not read back: %v", err)
		}
		if !maps.Equal(back.WeightMap, ix.WeightMap) {
			t.Fatalf("weight map changed in a write/read round trip: %v → %v", ix.WeightMap, back.WeightMap)
		}
	})
}
