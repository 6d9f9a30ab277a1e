package adapter

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// tinyLlama is a float32 llama model that llama.cpp can run and whose
// projections all have rows of whole K-quant super-blocks (256 values).
type tinyLlama struct {
	kv      []gguf.KV
	vocab   int
	tensors []gguf.TensorInfo // all F32 here; write chooses the stored types
	values  [][]float32
}

// tinyLlamaProj matches the projections split's default targets on llama.
var tinyLlamaProj = regexp.MustCompile(`\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$`)

// newTinyLlama takes the tokenizer and llama keys of stories260K-f32.gguf,
// resizes the model to two blocks of width 256 (4 heads of 64, an FFN of
// 512) and fills it from a seeded RNG: token embeddings N(0, 1), norms 1,
// projections from decayedMatrix (singular values 3·e^(−j/6), so a rank-8
// split takes most of each and attention logits stay of order 1), and an
// output matrix scaled for logits of standard deviation ~3, so that the
// next-token distributions over the 512 tokens are peaked, not uniform.
func newTinyLlama(t testing.TB, seed uint64) *tinyLlama {
	t.Helper()
	const embd, ff, heads, blocks = 256, 512, 4, 2
	src := sharedModel(t, "stories260K-f32.gguf")
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]uint32{
		"llama.embedding_length":        embd,
		"llama.feed_forward_length":     ff,
		"llama.attention.head_count":    heads,
		"llama.attention.head_count_kv": heads,
		"llama.block_count":             blocks,
		"llama.rope.dimension_count":    embd / heads,
	}
	m := &tinyLlama{}
	for _, kv := range f.KV {
		if v, ok := set[kv.Key]; ok {
			if _, isU32 := kv.Value.AsUint32(); !isU32 {
				t.Fatalf("%s: %s is %s, want UINT32", src, kv.Key, kv.Value.Type)
			}
			kv.Value = gguf.Uint32(v)
			delete(set, kv.Key)
		}
		m.kv = append(m.kv, kv)
	}
	if len(set) != 0 {
		t.Fatalf("%s lacks keys %v", src, set)
	}
	vocab, ok := f.Tensor("token_embd.weight")
	if !ok || len(vocab.Dims) != 2 {
		t.Fatalf("%s: no 2-D token_embd.weight", src)
	}
	nv := int(vocab.Dims[1])
	m.vocab = nv

	rng := rand.New(rand.NewPCG(seed, 256))
	add := func(name string, dims []uint64, fill func(x []float32)) {
		n := uint64(1)
		for _, d := range dims {
			n *= d
		}
		x := make([]float32, n)
		fill(x)
		m.tensors = append(m.tensors, gguf.TensorInfo{Name: name, Dims: dims, Type: gguf.F32})
		m.values = append(m.values, x)
	}
	normal := func(sd float64) func([]float32) {
		return func(x []float32) {
			for i := range x {
				x[i] = float32(sd * rng.NormFloat64())
			}
		}
	}
	ones := func(x []float32) {
		for i := range x {
			x[i] = 1
		}
	}
	w := make([]float64, ff*embd)
	proj := func(in, out int) func([]float32) {
		return func(x []float32) {
			decayedMatrix(rng, out, in, w[:in*out])
			for i := range x {
				x[i] = float32(w[i])
			}
		}
	}
	add("token_embd.weight", []uint64{embd, uint64(nv)}, normal(1))
	add("output_norm.weight", []uint64{embd}, ones)
	add("output.weight", []uint64{embd, uint64(nv)}, normal(3/math.Sqrt(embd)))
	for b := range blocks {
		p := fmt.Sprintf("blk.%d.", b)
		add(p+"attn_norm.weight", []uint64{embd}, ones)
		for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
			add(p+n+".weight", []uint64{embd, embd}, proj(embd, embd))
		}
		add(p+"ffn_norm.weight", []uint64{embd}, ones)
		add(p+"ffn_gate.weight", []uint64{embd, ff}, proj(embd, ff))
		add(p+"ffn_up.weight", []uint64{embd, ff}, proj(embd, ff))
		add(p+"ffn_down.weight", []uint64{ff, embd}, proj(ff, embd))
	}
	return m
}

// write writes the model at path with every projection stored as typ and
// every other tensor in F32, and returns the path.
func (m *tinyLlama) write(t testing.TB, path string, typ gguf.Type) string {
	t.Helper()
	h := gguf.Header{Version: 3, KV: m.kv}
	data := make([][]byte, len(m.tensors))
	for i, ti := range m.tensors {
		if tinyLlamaProj.MatchString(ti.Name) {
			ti.Type = typ
		}
		b := make([]byte, ti.Size())
		if err := gguf.Quantize(ti.Type, b, m.values[i]); err != nil {
			t.Fatalf("%s: %s as %s: %v", path, ti.Name, ti.Type, err)
		}
		h.Tensors = append(h.Tensors, ti)
		data[i] = b
	}
	writeGGUFFile(t, path, h, data)
	return path
}

// TestGGUFKQuantsLlamaCpp has llama.cpp itself run K-quant models that
// sorsa-convert wrote. For each of Q2_K … Q6_K, a two-block llama with every
// projection quantized to that type (newTinyLlama) is split at r = 8 with
// the residual requantized in the type (--residual-type keep) and merged
// back into it; llama.cpp loads the original, residual.gguf + lora.gguf,
// merged.gguf and the residual alone, and runs each along the same 19
// tokens (teacher-forced: a random model has near-ties, and greedy runs
// that part at one would be compared over different steps), giving 16
// finite next-token distributions that sum to 1. The yardstick, measured
// in the same run, is how far the original's probabilities are from those
// of the float model it was quantized from. Residual + lora.gguf and merged
// must stay within it, with the original's greedy picks except at a
// near-tie (agreeForced): split and merge cost less than quantizing to the
// type did, because the only new rounding is the residual's, and it is
// smaller than W. The residual alone must be further off than the
// yardstick, or the check would prove nothing.
func TestGGUFKQuantsLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp")
	}
	ctx := context.Background()
	m := newTinyLlama(t, 1)
	dir := t.TempDir()
	// Every model is run along the same tokens: the stories prompt, then
	// 15 seeded ones, so that all distributions compared share a context.
	rng := rand.New(rand.NewPCG(2, 0))
	forced := make([]int, 15)
	for i := range forced {
		forced[i] = 3 + rng.IntN(m.vocab-3) // not <unk>, <s> or </s>
	}
	steps := len(forced) + 1
	job := func(model string, lora ...string) llamaJob {
		return llamaJob{Model: model, LoRA: lora, Prompt: storiesPrompt, Forced: forced}
	}
	jobs := []llamaJob{job(m.write(t, filepath.Join(dir, "f32.gguf"), gguf.F32))}
	types := []gguf.Type{gguf.Q2_K, gguf.Q3_K, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K}
	type weightErrors struct{ orig, withLoRA, merged float64 } // max relative Frobenius errors
	werr := make([]weightErrors, len(types))
	for i, typ := range types {
		name := strings.ToLower(typ.String())
		orig := m.write(t, filepath.Join(dir, name+".gguf"), typ)
		out := filepath.Join(dir, name)
		// Randomized SVD: faster than the full one on these sizes, and as
		// exact on a spectrum this steep.
		rep, err := Split(ctx, orig, out, SplitOptions{Rank: 8, ResidualType: "keep", SVD: surgery.Options{Method: surgery.Randomized}})
		if err != nil {
			t.Fatalf("%s: split: %v", typ, err)
		}
		if len(rep.Targets) != 14 {
			t.Fatalf("%s: %d targets, want the 7 projections × 2 blocks", typ, len(rep.Targets))
		}
		res, lora, ad := filepath.Join(out, "residual.gguf"), filepath.Join(out, "lora.gguf"), filepath.Join(out, "adapter")
		merged := filepath.Join(out, "merged.gguf")
		if _, err := Merge(ctx, res, ad, merged, MergeOptions{}); err != nil {
			t.Fatalf("%s: merge: %v", typ, err)
		}
		vr, err := Verify(ctx, orig, res, ad, VerifyOptions{})
		if err != nil {
			t.Fatalf("%s: verify: %v", typ, err)
		}
		for _, tv := range vr.Targets {
			w, _ := ggufValues(t, orig, tv.Tensor)
			g, gi := ggufValues(t, merged, tv.Tensor)
			if _, ri := ggufValues(t, res, tv.Tensor); ri.Type != typ || gi.Type != typ {
				t.Fatalf("%s: residual %s, merged %s, want %s", tv.Tensor, ri.Type, gi.Type, typ)
			}
			x := m.values[slices.IndexFunc(m.tensors, func(mt gguf.TensorInfo) bool { return mt.Name == tv.Tensor })]
			f := make([]float64, len(x))
			for j, v := range x {
				f[j] = float64(v)
			}
			werr[i].orig = max(werr[i].orig, relErrorTo(w, f))
			werr[i].withLoRA = max(werr[i].withLoRA, tv.FroRel)
			werr[i].merged = max(werr[i].merged, relErrorTo(g, w))
		}
		jobs = append(jobs, job(orig), job(res, lora), job(merged), job(res))
	}
	results := runLlama(t, jobs)
	for j, r := range results {
		if problem := distributionProblem(r, steps); problem != "" {
			t.Fatalf("llama.cpp on %s (LoRA %v): %s", jobs[j].Model, jobs[j].LoRA, problem)
		}
	}
	float := results[0]
	for i, typ := range types {
		orig, withLoRA, merged, alone := results[1+4*i], results[2+4*i], results[3+4*i], results[4+4*i]
		tol := maxProbDiff(orig, float)
		t.Logf("%s: weights off by at most %.2e (relative Frobenius) of the float model, residual + LoRA %.2e of the original, merged %.2e",
			typ, werr[i].orig, werr[i].withLoRA, werr[i].merged)
		t.Logf("%s: the float model: max next-token probability difference %.2e over %d steps (the yardstick)", typ, tol, steps)
		for _, c := range []struct {
			what string
			got  llamaResult
		}{{"residual + lora.gguf", withLoRA}, {"merged", merged}} {
			ties, d, problem := agreeForced(orig, c.got, tol)
			t.Logf("%s, %s: max next-token probability difference %.2e, greedy picks differ at %d near-ties", typ, c.what, d, ties)
			if problem != "" {
				t.Errorf("%s, %s: %s", typ, c.what, problem)
			}
			if d > tol {
				t.Errorf("%s, %s: probabilities differ by %.3g, more than the float model's %.3g", typ, c.what, d, tol)
			}
		}
		d := maxProbDiff(orig, alone)
		t.Logf("%s, the residual alone: max next-token probability difference %.2e", typ, d)
		if d <= tol {
			t.Errorf("%s: the residual alone is within the yardstick (%.3g ≤ %.3g): the check proves nothing", typ, d, tol)
		}
	}
}

// distributionProblem says what is wrong with a llama.cpp run ("" when
// nothing): fewer than steps tokens, or a next-token distribution that is
// not finite and non-negative or does not sum to 1.
func distributionProblem(r llamaResult, steps int) string {
	if len(r.Tokens) < steps || len(r.Probs) < steps {
		return fmt.Sprintf("%d tokens, %d distributions, want %d", len(r.Tokens), len(r.Probs), steps)
	}
	for s, p := range r.Probs {
		sum := 0.0
		for tok, v := range p {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return fmt.Sprintf("step %d: p(%d) = %g", s, tok, v)
			}
			sum += v
		}
		if math.Abs(sum-1) > 1e-3 {
			return fmt.Sprintf("step %d: probabilities sum to %g", s, sum)
		}
	}
	return ""
}
