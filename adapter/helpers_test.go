package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
)

// fixture is a small Llama-shaped checkpoint written by a test.
type fixture struct {
	path   string               // file, or folder when sharded
	values map[string][]float64 // values as stored (after rounding), canonical
	dtype  string
}

type fixTensor struct {
	name    string
	shape   []int64
	dtype   string
	decayed bool
}

func llamaTensors(dt string, layers, hidden, ffn int) []fixTensor {
	ts := []fixTensor{{name: "model.embed_tokens.weight", shape: []int64{64, int64(hidden)}, dtype: dt}}
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			fixTensor{name: p + "input_layernorm.weight", shape: []int64{int64(hidden)}, dtype: dt},
			fixTensor{name: p + "self_attn.q_proj.weight", shape: []int64{int64(hidden), int64(hidden)}, dtype: dt, decayed: true},
			fixTensor{name: p + "self_attn.v_proj.weight", shape: []int64{int64(hidden / 2), int64(hidden)}, dtype: dt, decayed: true},
			fixTensor{name: p + "mlp.down_proj.weight", shape: []int64{int64(hidden), int64(ffn)}, dtype: dt, decayed: true},
			fixTensor{name: p + "mlp.up_proj.bias", shape: []int64{int64(ffn)}, dtype: dt},
		)
	}
	return append(ts,
		fixTensor{name: "model.position_ids", shape: []int64{16}, dtype: "I64"},
		fixTensor{name: "lm_head.weight", shape: []int64{64, int64(hidden)}, dtype: dt})
}

// writeFixture writes ts into path (one file) or, with shards > 1, into a
// checkpoint folder with an index and a config.json.
func writeFixture(t testing.TB, path string, ts []fixTensor, shards int, seed uint64) *fixture {
	t.Helper()
	fx := &fixture{path: path, values: map[string][]float64{}, dtype: ts[min(1, len(ts)-1)].dtype}
	rng := rand.New(rand.NewPCG(seed, 7))
	data := map[string][]byte{}
	for _, ft := range ts {
		n := int64(1)
		for _, d := range ft.shape {
			n *= d
		}
		if ft.dtype == "I64" {
			b := make([]byte, 8*n)
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			data[ft.name] = b
			continue
		}
		vals := make([]float64, n)
		if ft.decayed {
			decayedMatrix(rng, int(ft.shape[0]), int(ft.shape[1]), vals)
		} else {
			for i := range vals {
				vals[i] = rng.NormFloat64()
			}
		}
		k, _ := safetensors.DType(ft.dtype).Kind()
		b := make([]byte, int(n)*k.Size())
		dtype.Encode(k, b, vals)
		stored := make([]float32, n)
		dtype.Decode(k, stored, b)
		for i := range vals {
			vals[i] = float64(stored[i])
		}
		fx.values[ft.name] = vals
		data[ft.name] = b
	}
	write := func(file string, part []fixTensor) {
		var infos []safetensors.TensorInfo
		for _, ft := range part {
			infos = append(infos, safetensors.TensorInfo{Name: ft.name, DType: safetensors.DType(ft.dtype), Shape: ft.shape})
		}
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := safetensors.NewWriter(f, infos, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		for _, ft := range part {
			if err := w.WriteTensor(ft.name, data[ft.name]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if shards <= 1 {
		write(path, ts)
		return fx
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	per := (len(ts) + shards - 1) / shards
	wm := map[string]string{}
	for i := 0; i < shards; i++ {
		part := ts[min(i*per, len(ts)):min((i+1)*per, len(ts))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		for _, ft := range part {
			wm[ft.name] = name
		}
		write(filepath.Join(path, name), part)
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": wm})
	os.WriteFile(filepath.Join(path, IndexName), idx, 0o644)
	os.WriteFile(filepath.Join(path, "config.json"), []byte(`{"model_type":"llama"}`), 0o644)
	os.WriteFile(filepath.Join(path, "tokenizer.json"), []byte(`{"version":"1.0"}`), 0o644)
	return fx
}

// decayedMatrix fills w (rows × cols) with Σ s_k u_k v_kᵀ + small noise,
// s_k decaying geometrically, like a trained weight's spectrum.
func decayedMatrix(rng *rand.Rand, rows, cols int, w []float64) {
	k := min(rows, cols)
	for i := range w {
		w[i] = 1e-3 * rng.NormFloat64()
	}
	u := make([]float64, rows)
	v := make([]float64, cols)
	for j := 0; j < k; j++ {
		s := 3 * math.Exp(-float64(j)/6)
		for i := range u {
			u[i] = rng.NormFloat64() / math.Sqrt(float64(rows))
		}
		for i := range v {
			v[i] = rng.NormFloat64() / math.Sqrt(float64(cols))
		}
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				w[r*cols+c] += s * u[r] * v[c]
			}
		}
	}
}

// readTensor reads one tensor's raw bytes from a single safetensors file.
func readTensor(t testing.TB, path, name string) ([]byte, safetensors.TensorInfo) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, ok := f.Lookup(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", path, name)
	}
	b, err := f.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return b, ti
}

// decode returns a float tensor's values as float64.
func decode(t testing.TB, b []byte, dt safetensors.DType) []float64 {
	k, ok := dt.Kind()
	if !ok {
		t.Fatalf("dtype %s is not float", dt)
	}
	f := make([]float32, len(b)/k.Size())
	dtype.Decode(k, f, b)
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out
}

// listFiles returns every file under dir, relative.
func listFiles(t testing.TB, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	return out
}

// splitFixture writes ts as name in a temporary folder (shards > 1: a
// checkpoint folder) and splits it at rank into dir/out; it returns the
// folder, the model's path and the split's folder.
func splitFixture(t *testing.T, name string, ts []fixTensor, shards int, rank int) (dir, src, out string) {
	t.Helper()
	dir = t.TempDir()
	src = filepath.Join(dir, name)
	writeFixture(t, src, ts, shards, 1)
	out = filepath.Join(dir, "out")
	if _, err := Split(context.Background(), src, out, SplitOptions{Rank: rank}); err != nil {
		t.Fatal(err)
	}
	return dir, src, out
}

// openTestInput writes data to a temporary file and opens it as an
// inputFile, closed when the test ends.
func openTestInput(t *testing.T, data []byte) *inputFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := openInput(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}
