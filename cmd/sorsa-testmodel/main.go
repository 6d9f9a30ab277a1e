// Command sorsa-testmodel writes synthetic Llama-shaped checkpoints with a
// realistic decaying singular spectrum, for demos, tests and benchmarks. It
// streams tensor by tensor, so a 7B-shaped model needs no more memory than
// one matrix.
//
//	sorsa-testmodel -o tiny.safetensors                       # 2 layers, hidden 256
//	sorsa-testmodel -preset 7b -dtype F16 -shards 3 -o llama7b/  # Llama-2-7B shapes
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
)

// shape of a Llama-family model.
type shape struct {
	Layers, Hidden, FFN, Vocab, Heads, KVHeads int
}

var presets = map[string]shape{
	"tiny":  {Layers: 2, Hidden: 256, FFN: 688, Vocab: 512, Heads: 4, KVHeads: 4},
	"small": {Layers: 4, Hidden: 1024, FFN: 2752, Vocab: 4096, Heads: 8, KVHeads: 8},
	"7b":    {Layers: 32, Hidden: 4096, FFN: 11008, Vocab: 32000, Heads: 32, KVHeads: 32},
}

type tensor struct {
	name     string
	out, in  int
	vector   bool
	embedded bool
}

func (s shape) tensors() []tensor {
	d, f := s.Hidden, s.FFN
	kv := d / s.Heads * s.KVHeads
	ts := []tensor{{name: "model.embed_tokens.weight", out: s.Vocab, in: d, embedded: true}}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			tensor{name: p + "input_layernorm.weight", out: d, vector: true},
			tensor{name: p + "self_attn.q_proj.weight", out: d, in: d},
			tensor{name: p + "self_attn.k_proj.weight", out: kv, in: d},
			tensor{name: p + "self_attn.v_proj.weight", out: kv, in: d},
			tensor{name: p + "self_attn.o_proj.weight", out: d, in: d},
			tensor{name: p + "post_attention_layernorm.weight", out: d, vector: true},
			tensor{name: p + "mlp.gate_proj.weight", out: f, in: d},
			tensor{name: p + "mlp.up_proj.weight", out: f, in: d},
			tensor{name: p + "mlp.down_proj.weight", out: d, in: f},
		)
	}
	return append(ts,
		tensor{name: "model.norm.weight", out: d, vector: true},
		tensor{name: "lm_head.weight", out: s.Vocab, in: d, embedded: true})
}

func main() {
	var (
		out    = flag.String("o", "", "output .safetensors file, or a folder for -shards > 1")
		preset = flag.String("preset", "tiny", "model shape: tiny, small or 7b")
		dt     = flag.String("dtype", "F32", "F32, F16 or BF16")
		shards = flag.Int("shards", 1, "number of shards (> 1 writes a checkpoint folder with an index)")
		seed   = flag.Uint64("seed", 1, "random seed")
		layers = flag.Int("layers", 0, "override the number of layers")
	)
	flag.Parse()
	if err := run(*out, *preset, *dt, *shards, *seed, *layers); err != nil {
		fmt.Fprintln(os.Stderr, "sorsa-testmodel:", err)
		os.Exit(1)
	}
}

func run(out, preset, dt string, shards int, seed uint64, layers int) error {
	s, ok := presets[preset]
	if !ok || out == "" {
		return fmt.Errorf("want -o PATH and -preset tiny|small|7b")
	}
	if layers > 0 {
		s.Layers = layers
	}
	st := safetensors.DType(dt)
	kind, ok := st.Kind()
	if !ok {
		return fmt.Errorf("dtype %q: want F32, F16 or BF16", dt)
	}
	ts := s.tensors()
	if shards <= 1 {
		return writeShard(out, ts, st, kind, seed)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	per := (len(ts) + shards - 1) / shards
	wm := map[string]string{}
	var total int64
	for i := 0; i < shards; i++ {
		part := ts[min(i*per, len(ts)):min((i+1)*per, len(ts))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		for _, t := range part {
			wm[t.name] = name
			total += int64(t.out*max(t.in, 1)) * int64(kind.Size())
		}
		if err := writeShard(filepath.Join(out, name), part, st, kind, seed+uint64(i)*1000); err != nil {
			return err
		}
	}
	idx, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "model.safetensors.index.json"), idx, 0o644); err != nil {
		return err
	}
	cfg, _ := json.MarshalIndent(map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": s.Hidden, "intermediate_size": s.FFN, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "vocab_size": s.Vocab,
	}, "", "  ")
	return os.WriteFile(filepath.Join(out, "config.json"), cfg, 0o644)
}

func writeShard(path string, ts []tensor, st safetensors.DType, kind dtype.Kind, seed uint64) error {
	var infos []safetensors.TensorInfo
	for _, t := range ts {
		sh := []int64{int64(t.out), int64(t.in)}
		if t.vector {
			sh = sh[:1]
		}
		infos = append(infos, safetensors.TensorInfo{Name: t.name, DType: st, Shape: sh})
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, infos, map[string]string{"format": "pt", "generator": "sorsa-testmodel"})
	if err != nil {
		return err
	}
	for i, t := range ts {
		vals := weight(t, seed+uint64(i))
		b := make([]byte, len(vals)*kind.Size())
		dtype.Encode(kind, b, vals)
		if err := w.WriteTensor(t.name, b); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// weight returns a tensor's values: norms near 1; matrices
// Σ_k s_k·u_k·v_kᵀ + noise with s_k decaying like trained LLM weights
// (a few large directions, a long power-law tail).
func weight(t tensor, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	if t.vector {
		v := make([]float64, t.out)
		for i := range v {
			v[i] = 1 + 0.05*rng.NormFloat64()
		}
		return v
	}
	out, in := t.out, t.in
	w := make([]float64, out*in)
	noise := 0.2 / math.Sqrt(float64(in))
	for i := range w {
		w[i] = noise * rng.NormFloat64()
	}
	if t.embedded {
		return w
	}
	k := min(out, in, 256)
	u := make([]float64, k*out)
	v := make([]float64, k*in)
	for i := range u {
		u[i] = rng.NormFloat64() / math.Sqrt(float64(out))
	}
	for i := range v {
		v[i] = rng.NormFloat64() / math.Sqrt(float64(in))
	}
	s := make([]float64, k)
	for j := range s {
		s[j] = 4 / math.Pow(1+float64(j), 0.7)
	}
	// w += U·diag(s)·Vᵀ, rows in parallel.
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			us := make([]float64, k)
			for i := g; i < out; i += workers {
				for j := 0; j < k; j++ {
					us[j] = u[j*out+i] * s[j]
				}
				row := w[i*in : (i+1)*in]
				for j := 0; j < k; j++ {
					c := us[j]
					vj := v[j*in : (j+1)*in]
					for c2 := range row {
						row[c2] += c * vj[c2]
					}
				}
			}
		}(g)
	}
	wg.Wait()
	return w
}
