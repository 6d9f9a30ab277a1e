package safetensors

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// bench64 describes a 64 MiB checkpoint: 16 F32 matrices of 1024×1024.
func bench64() []TensorInfo {
	ts := make([]TensorInfo, 16)
	for i := range ts {
		ts[i] = TensorInfo{Name: fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", i), DType: F32, Shape: []int64{1024, 1024}}
	}
	return ts
}

func writeBench(b *testing.B, path string, data []byte) {
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w, err := NewWriter(out, bench64(), map[string]string{"format": "pt"})
	if err != nil {
		b.Fatal(err)
	}
	for _, ti := range bench64() {
		if err := w.WriteTensor(ti.Name, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite64MiB writes a 64 MiB file to disk, one tensor at a time.
func BenchmarkWrite64MiB(b *testing.B) {
	path := filepath.Join(b.TempDir(), "w.safetensors")
	data := make([]byte, 4<<20)
	b.SetBytes(64 << 20)
	for b.Loop() {
		writeBench(b, path, data)
	}
}

// BenchmarkRead64MiB opens a 64 MiB file and reads every tensor into one
// reused tensor-sized buffer.
func BenchmarkRead64MiB(b *testing.B) {
	path := filepath.Join(b.TempDir(), "r.safetensors")
	writeBench(b, path, make([]byte, 4<<20))
	buf := make([]byte, 4<<20)
	b.SetBytes(64 << 20)
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, ti := range f.Tensors() {
			sr, err := f.Section(ti.Name)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(sr, buf[:ti.Size]); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// BenchmarkParseHeader parses the header of a file with 3000 tensors (a
// 7B-parameter model has a few hundred per shard).
func BenchmarkParseHeader(b *testing.B) {
	ts := make([]TensorInfo, 3000)
	for i := range ts {
		ts[i] = TensorInfo{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", i), DType: BF16, Shape: []int64{4, 2}}
	}
	path := filepath.Join(b.TempDir(), "h.safetensors")
	out, _ := os.Create(path)
	bw := bufio.NewWriter(out)
	w, err := NewWriter(bw, ts, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, ti := range ts {
		w.WriteTensor(ti.Name, make([]byte, 16))
	}
	w.Close()
	bw.Flush()
	out.Close()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := NewReader(f, st.Size()); err != nil {
			b.Fatal(err)
		}
	}
}
