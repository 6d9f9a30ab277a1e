package adapter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
)

var storiesPrompt = []int{1, 403, 407, 262}

// ggufValues decodes a GGUF tensor to float64.
func ggufValues(t *testing.T, path, name string) ([]float64, gguf.TensorInfo) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", path, name)
	}
	raw, err := f.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, ti.NumElements())
	if err := gguf.Dequantize(ti.Type, v, raw); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, ti
}

// TestGGUFSplitMergeRoundTrip splits the real stories260K models and merges
// back: every targeted weight within ulp(W_r) + ulp(W), every other tensor
// byte for byte.
func TestGGUFSplitMergeRoundTrip(t *testing.T) {
	for _, name := range []string{"stories260K-f32.gguf", "stories260K-f16.gguf"} {
		t.Run(name, func(t *testing.T) {
			src := sharedModel(t, name)
			dir := t.TempDir()
			rep, err := Split(context.Background(), src, dir, SplitOptions{Rank: 8})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Targets) != 35 {
				t.Errorf("%d targets, want the 7 projections × 5 blocks", len(rep.Targets))
			}
			res := filepath.Join(dir, "residual.gguf")
			merged := filepath.Join(dir, "merged.gguf")
			if _, err := Merge(context.Background(), res, filepath.Join(dir, "adapter"), merged, MergeOptions{}); err != nil {
				t.Fatal(err)
			}
			// Reading the residual with direct I/O gives the same bytes.
			direct := filepath.Join(dir, "merged-direct.gguf")
			if directOK(t, dir) {
				mr, err := Merge(context.Background(), res, filepath.Join(dir, "adapter"), direct, MergeOptions{InputIO: InputDirect})
				if err != nil {
					t.Fatal(err)
				}
				a, _ := os.ReadFile(merged)
				b, _ := os.ReadFile(direct)
				if mr.InputIO != InputDirect || !bytes.Equal(a, b) {
					t.Errorf("merge with direct input reads (report: %q) differs from the cached one", mr.InputIO)
				}
			}
			vr, err := Verify(context.Background(), src, res, filepath.Join(dir, "adapter"), VerifyOptions{})
			if err != nil || !vr.OK {
				t.Fatalf("verify: %v %+v", err, vr)
			}
			targeted := map[string]bool{}
			for _, tr := range rep.Targets {
				targeted[tr.Tensor] = true
			}
			f, _ := gguf.Open(src)
			defer f.Close()
			mf, err := gguf.Open(merged)
			if err != nil {
				t.Fatal(err)
			}
			defer mf.Close()
			for _, ti := range f.Tensors {
				w, _ := ggufValues(t, src, ti.Name)
				got, mi := ggufValues(t, merged, ti.Name)
				if mi.Type != ti.Type {
					t.Fatalf("%s: merged type %s, want %s", ti.Name, mi.Type, ti.Type)
				}
				if !targeted[ti.Name] {
					a, _ := f.ReadTensor(ti.Name)
					b, _ := mf.ReadTensor(ti.Name)
					if !bytes.Equal(a, b) {
						t.Errorf("%s: untargeted tensor changed", ti.Name)
					}
					continue
				}
				wr, _ := ggufValues(t, res, ti.Name)
				k, _ := ggufKind(ti.Type)
				for i := range got {
					if d := math.Abs(got[i] - w[i]); d > dtype.Ulp(k, wr[i])+dtype.Ulp(k, w[i]) {
						t.Fatalf("%s[%d]: merged %g, original %g", ti.Name, i, got[i], w[i])
					}
				}
			}
		})
	}
}

// TestGGUFLlamaCpp loads the split outputs in llama.cpp: the residual with
// lora.gguf applied at run time, and the merged model, give the original's
// greedy tokens and (F32) next-token probabilities within 1e-4 over 16 steps.
func TestGGUFLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp")
	}
	type pair struct{ name, dir string }
	var jobs []llamaJob
	var cases []pair
	var floor llamaJob // the F16 model with every target moved by one ulp
	for _, name := range []string{"stories260K-f32.gguf", "stories260K-f16.gguf"} {
		src := sharedModel(t, name)
		dir := t.TempDir()
		rep, err := Split(context.Background(), src, dir, SplitOptions{Rank: 8})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "f16") {
			floor = llamaJob{Model: ulpPerturbed(t, src, rep, filepath.Join(dir, "ulp.gguf")), Prompt: storiesPrompt, Steps: 16}
		}
		merged := filepath.Join(dir, "merged.gguf")
		if _, err := Merge(context.Background(), filepath.Join(dir, "residual.gguf"), filepath.Join(dir, "adapter"), merged, MergeOptions{}); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, pair{name, dir})
		jobs = append(jobs,
			llamaJob{Model: src, Prompt: storiesPrompt, Steps: 16},
			llamaJob{Model: filepath.Join(dir, "residual.gguf"), LoRA: []string{filepath.Join(dir, "lora.gguf")}, Prompt: storiesPrompt, Steps: 16},
			llamaJob{Model: merged, Prompt: storiesPrompt, Steps: 16},
			llamaJob{Model: filepath.Join(dir, "residual.gguf"), Prompt: storiesPrompt, Steps: 16})
	}
	res := runLlama(t, append(jobs, floor))
	ulp := res[len(res)-1]
	for i, c := range cases {
		orig, withLoRA, merged, alone := res[4*i], res[4*i+1], res[4*i+2], res[4*i+3]
		tol := 1e-4
		if strings.Contains(c.name, "f16") {
			// The residual is rounded to F16 once (by at most half an
			// ulp of W_r), the merged model twice: the yardstick is the
			// same model with every targeted weight moved by one ulp of
			// W, run by the same llama.cpp build (its F16 arithmetic
			// differs between CPUs: 4.2e-3 with AVX-512, 6.2e-3 with
			// AVX2 for residual + lora.gguf).
			_, d, _ := agreeGreedy(orig, ulp, 1)
			tol = max(5e-3, d)
			t.Logf("%s: every target moved by one ulp: max next-token probability difference %.2e", c.name, d)
		}
		for _, r := range []struct {
			what string
			got  llamaResult
		}{{"residual + lora.gguf", withLoRA}, {"merged", merged}} {
			n, d, problem := agreeGreedy(orig, r.got, tol)
			t.Logf("%s, %s: same greedy tokens over %d steps, max next-token probability difference %.2e", c.name, r.what, n, d)
			if problem != "" {
				t.Errorf("%s, %s: %s", c.name, r.what, problem)
			}
			if d > tol {
				t.Errorf("%s, %s: probabilities differ by %g > %g", c.name, r.what, d, tol)
			}
		}
		// The residual alone is a different model: the check above can fail.
		if d := maxProbDiff(orig, alone); d < 1e-2 {
			t.Errorf("%s: the residual alone is as good as the original (diff %g): the LoRA check proves nothing", c.name, d)
		}
	}
}

// TestGGUFMergeLoRA merges llama.cpp's own LoRA adapter format: the result
// equals W + (alpha/r)·B·A computed here independently, and llama.cpp gives
// the same tokens for the merged model as for the base with the LoRA.
func TestGGUFMergeLoRA(t *testing.T) {
	base := sharedModel(t, "stories260K-f32.gguf")
	lora := sharedModel(t, "stories260K-lora-r4.gguf")
	dir := t.TempDir()
	merged := filepath.Join(dir, "merged.gguf")
	rep, err := Merge(context.Background(), base, lora, merged, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Merged) != 15 {
		t.Errorf("merged %d tensors, want 15 (attn_q, attn_v, ffn_up × 5)", len(rep.Merged))
	}
	lf, err := gguf.Open(lora)
	if err != nil {
		t.Fatal(err)
	}
	alphaV, _ := lf.Get("adapter.lora.alpha")
	alpha, _ := alphaV.AsFloat32()
	lf.Close()
	for _, name := range rep.Merged {
		w, ti := ggufValues(t, base, name)
		a, ai := ggufValues(t, lora, name+".lora_a") // ne [in, r]: r rows of in
		b, bi := ggufValues(t, lora, name+".lora_b") // ne [r, out]: out rows of r
		in, out, r := int(ti.Dims[0]), int(ti.Dims[1]), int(ai.Dims[1])
		if int(bi.Dims[0]) != r {
			t.Fatalf("%s: rank mismatch", name)
		}
		scale := float64(alpha) / float64(r)
		got, _ := ggufValues(t, merged, name)
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				s := 0.0
				for k := 0; k < r; k++ {
					s += b[i*r+k] * a[k*in+j]
				}
				want := float64(float32(w[i*in+j] + scale*s))
				if got[i*in+j] != want {
					t.Fatalf("%s[%d,%d]: merged %g, want %g", name, i, j, got[i*in+j], want)
				}
			}
		}
	}
	if testing.Short() {
		return
	}
	res := runLlama(t, []llamaJob{
		{Model: base, LoRA: []string{lora}, Prompt: storiesPrompt, Steps: 16},
		{Model: merged, Prompt: storiesPrompt, Steps: 16},
		{Model: base, Prompt: storiesPrompt, Steps: 16},
	})
	n, d, problem := agreeGreedy(res[0], res[1], 1e-4)
	t.Logf("merged vs base+LoRA: same greedy tokens over %d steps, max probability difference %.2e", n, d)
	if problem != "" {
		t.Errorf("merged vs base+LoRA at run time: %s", problem)
	}
	if d > 1e-4 {
		t.Errorf("merged vs base+LoRA: probabilities differ by %g", d)
	}
	if slices.Equal(res[0].Tokens, res[2].Tokens) {
		t.Error("the LoRA does not change the base's tokens: the check proves nothing")
	}
}

// TestGGUFQuantized splits the Q8_0 and Q4_0 models: residuals are
// requantized in each tensor's own type (QPiSSA-style) and verify accepts
// them within the type's tolerance; it reports the residual's quantization
// error next to that of quantizing W directly.
func TestGGUFQuantized(t *testing.T) {
	for _, name := range []string{"stories260K-q8_0.gguf", "stories260K-q4_0.gguf"} {
		t.Run(name, func(t *testing.T) {
			src := sharedModel(t, name)
			dir := t.TempDir()
			if _, err := Split(context.Background(), src, dir, SplitOptions{Rank: 8}); err != nil {
				t.Fatal(err)
			}
			vr, err := Verify(context.Background(), src, filepath.Join(dir, "residual.gguf"), filepath.Join(dir, "adapter"), VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !vr.OK {
				t.Fatalf("verify: %+v", vr)
			}
			quantized := 0
			for _, tv := range vr.Targets {
				if tv.ResidualType != "" {
					quantized++
				}
			}
			if quantized == 0 {
				t.Error("no quantized residual")
			}
			src2, _ := gguf.Open(filepath.Join(dir, "residual.gguf"))
			orig, _ := gguf.Open(src)
			for i, ti := range orig.Tensors {
				if src2.Tensors[i].Type != ti.Type {
					t.Errorf("%s: residual type %s, original %s", ti.Name, src2.Tensors[i].Type, ti.Type)
				}
			}
			src2.Close()
			orig.Close()
		})
	}
}

// TestGGUFBlockRows: a quantized type whose blocks the targets' rows do not
// fill (K-quants need rows of 256; stories260K's are 64) is refused before
// any work starts, by split (--residual-type) and by merge (--dtype), with
// the tensor named and the types that fit listed, and nothing is written.
func TestGGUFBlockRows(t *testing.T) {
	src := sharedModel(t, "stories260K-f32.gguf")
	dir := t.TempDir()
	split := filepath.Join(dir, "split")
	if _, err := Split(context.Background(), src, split, SplitOptions{Rank: 4}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		run  func(out string) error
		want string
	}{
		{"split q4_k", func(out string) error {
			_, err := Split(context.Background(), src, out, SplitOptions{Rank: 4, ResidualType: "q4_k"})
			return err
		}, `--residual-type q4_k: tensor "blk.0.attn_q.weight" has rows of 64 values, not a multiple of Q4_K's block of 256`},
		{"split q2_k", func(out string) error {
			_, err := Split(context.Background(), src, out, SplitOptions{Rank: 4, ResidualType: "Q2_K"})
			return err
		}, "not a multiple of Q2_K's block of 256 (types its rows fit: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0; or keep)"},
		{"merge q6_k", func(out string) error {
			_, err := Merge(context.Background(), filepath.Join(split, "residual.gguf"), filepath.Join(split, "adapter"), out, MergeOptions{DType: "q6_k"})
			return err
		}, `--dtype q6_k: tensor "blk.0.attn_q.weight" has rows of 64 values, not a multiple of Q6_K's block of 256`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			err := c.run(out)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an input error with %q", err, c.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the refused run left %s", out)
			}
		})
	}
}

// TestGGUFResidualType requantizes an F32 model's residual (QPiSSA): its
// quantization error is smaller than quantizing W itself.
func TestGGUFResidualType(t *testing.T) {
	src := sharedModel(t, "stories260K-f32.gguf")
	for _, typ := range []string{"q8_0", "q4_0", "f16", "bf16"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			// ffn_down's rows (172) are not a multiple of 32: leave it out.
			pats, _ := CompilePatterns([]string{`attn_(q|k|v|output)\.weight$|ffn_(gate|up)\.weight$`})
			if _, err := Split(context.Background(), src, dir, SplitOptions{Rank: 16, ResidualType: typ, Targets: pats}); err != nil {
				t.Fatal(err)
			}
			vr, err := Verify(context.Background(), src, filepath.Join(dir, "residual.gguf"), filepath.Join(dir, "adapter"), VerifyOptions{})
			if err != nil || !vr.OK {
				t.Fatalf("verify: %v %+v", err, vr)
			}
			if !strings.HasPrefix(typ, "q") {
				return
			}
			var res, plain float64
			for _, tv := range vr.Targets {
				res += tv.FroRel
				plain += tv.PlainQuantError
			}
			t.Logf("%s: mean relative error, residual quantized %.3e, W quantized %.3e", typ, res/float64(len(vr.Targets)), plain/float64(len(vr.Targets)))
			if res >= plain {
				t.Errorf("%s: residual quantization error %g not below plain quantization %g", typ, res, plain)
			}
		})
	}
}

// kquantWeights are the projections of writeKQuantModel's model, one per
// K-quant type.
var kquantWeights = []struct {
	name string
	typ  gguf.Type
}{
	{"blk.0.attn_q.weight", gguf.Q2_K},
	{"blk.0.attn_k.weight", gguf.Q3_K},
	{"blk.0.attn_v.weight", gguf.Q4_K},
	{"blk.0.attn_output.weight", gguf.Q5_K},
	{"blk.0.ffn_up.weight", gguf.Q6_K},
}

// writeKQuantModel writes at path a one-block llama GGUF whose projections
// (64 × 256, rows a whole super-block, decaying spectra) are stored in
// kquantWeights' types, or all in F32 when plain is set, next to an F32 norm.
func writeKQuantModel(t *testing.T, path string, plain bool) {
	t.Helper()
	const out, in = 64, 256
	rng := rand.New(rand.NewPCG(23, 24))
	h := gguf.Header{Version: 3, KV: []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")}}}
	var data [][]byte
	w := make([]float64, out*in)
	x := make([]float32, out*in)
	for _, kw := range kquantWeights {
		typ := kw.typ
		if plain {
			typ = gguf.F32
		}
		decayedMatrix(rng, out, in, w)
		for i, v := range w {
			x[i] = float32(v)
		}
		ti := gguf.TensorInfo{Name: kw.name, Dims: []uint64{in, out}, Type: typ}
		b := make([]byte, ti.Size())
		if err := gguf.Quantize(typ, b, x); err != nil {
			t.Fatal(err)
		}
		h.Tensors = append(h.Tensors, ti)
		data = append(data, b)
	}
	norm := make([]byte, 4*in)
	for i := range in {
		binary.LittleEndian.PutUint32(norm[4*i:], math.Float32bits(1+float32(i)/in))
	}
	h.Tensors = append(h.Tensors, gguf.TensorInfo{Name: "blk.0.attn_norm.weight", Dims: []uint64{in}, Type: gguf.F32})
	data = append(data, norm)
	writeGGUFFile(t, path, h, data)
}

// writeGGUFFile writes a GGUF file at path with header h, data[i] being the
// bytes of h.Tensors[i].
func writeGGUFFile(t testing.TB, path string, h gguf.Header, data [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gw, err := gguf.NewWriter(f, h)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for i, ti := range h.Tensors {
		if err := gw.WriteTensor(ti.Name, data[i]); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if err := gw.Close(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// relErrorTo returns ‖got − want‖_F / ‖want‖_F.
func relErrorTo(got, want []float64) float64 {
	var num, den float64
	for i := range want {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

// TestGGUFKQuants splits and merges K-quant weights end to end. With the
// default --residual-type keep, each residual is requantized in its own
// type (Q2_K … Q6_K) and merge writes that type back; from an F32 model,
// an explicit q2_k, q3_k or q5_k residual beats quantizing W itself, and
// merge --dtype writes the type asked for. Verify accepts every residual
// within its type's tolerance, and each merged weight is within it of W.
func TestGGUFKQuants(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	splitMerge := func(t *testing.T, src, out string, opts SplitOptions, mopts MergeOptions) *VerifyReport {
		t.Helper()
		if _, err := Split(ctx, src, out, opts); err != nil {
			t.Fatal(err)
		}
		res, ad := filepath.Join(out, "residual.gguf"), filepath.Join(out, "adapter")
		vr, err := Verify(ctx, src, res, ad, VerifyOptions{})
		if err != nil || !vr.OK {
			t.Fatalf("verify: %v %+v", err, vr)
		}
		merged := filepath.Join(out, "merged.gguf")
		if _, err := Merge(ctx, res, ad, merged, mopts); err != nil {
			t.Fatal(err)
		}
		return vr
	}
	// check compares each projection's residual and merged types with
	// want(i), and the merged weight with the original.
	check := func(t *testing.T, src, out string, want func(i int) gguf.Type) {
		t.Helper()
		for i, kw := range kquantWeights {
			typ := want(i)
			if _, ri := ggufValues(t, filepath.Join(out, "residual.gguf"), kw.name); ri.Type != typ {
				t.Errorf("%s: residual type %s, want %s", kw.name, ri.Type, typ)
			}
			w, _ := ggufValues(t, src, kw.name)
			got, mi := ggufValues(t, filepath.Join(out, "merged.gguf"), kw.name)
			if mi.Type != typ {
				t.Errorf("%s: merged type %s, want %s", kw.name, mi.Type, typ)
			}
			e := relErrorTo(got, w)
			t.Logf("%s: merged %s, relative error %.3e", kw.name, typ, e)
			if e > quantTolerance(typ.String()) {
				t.Errorf("%s: merged %s off by %g of W", kw.name, typ, e)
			}
		}
	}

	t.Run("keep", func(t *testing.T) {
		src := filepath.Join(dir, "kquant.gguf")
		writeKQuantModel(t, src, false)
		out := filepath.Join(dir, "keep")
		vr := splitMerge(t, src, out, SplitOptions{Rank: 8}, MergeOptions{})
		if len(vr.Targets) != len(kquantWeights) {
			t.Fatalf("%d targets, want %d", len(vr.Targets), len(kquantWeights))
		}
		check(t, src, out, func(i int) gguf.Type { return kquantWeights[i].typ })
	})

	src := filepath.Join(dir, "f32.gguf")
	writeKQuantModel(t, src, true)
	for _, typ := range []gguf.Type{gguf.Q2_K, gguf.Q3_K, gguf.Q5_K} {
		name := strings.ToLower(typ.String())
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, name)
			vr := splitMerge(t, src, out, SplitOptions{Rank: 8, ResidualType: name}, MergeOptions{DType: name})
			for _, tv := range vr.Targets {
				t.Logf("%s: residual quantized %.3e, W quantized %.3e", tv.Tensor, tv.FroRel, tv.PlainQuantError)
				if tv.ResidualType != typ.String() || tv.FroRel >= tv.PlainQuantError {
					t.Errorf("%s: residual %s error %g not below plain quantization %g", tv.Tensor, tv.ResidualType, tv.FroRel, tv.PlainQuantError)
				}
			}
			check(t, src, out, func(int) gguf.Type { return typ })
		})
	}
	// A type without an encoder is refused up front, with the list of those
	// that have one.
	_, err := Split(ctx, src, filepath.Join(dir, "q8_k"), SplitOptions{Rank: 8, ResidualType: "q8_k"})
	if err == nil || !strings.Contains(err.Error(), "q2_k, q3_k, q4_k, q5_k, q6_k") {
		t.Errorf("q8_k residual: %v", err)
	}
}

// ulpPerturbed writes a copy of the GGUF model src at out in which every
// weight the split rep targeted (F16) is moved by one ulp, up or down at
// random: the size of perturbation one rounding to F16 can make.
func ulpPerturbed(t *testing.T, src string, rep *SplitReport, out string) string {
	t.Helper()
	m, err := openModel(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	targets := map[string]bool{}
	for _, tr := range rep.Targets {
		targets[tr.Tensor] = true
	}
	rng := rand.New(rand.NewPCG(16, 1))
	tx := newOutputs()
	_, _, err = writeGGUF(tx, m.(*ggufModel), out, nil, func(tn Tensor) ([]byte, bool, error) {
		if !targets[tn.Name] {
			return nil, false, nil
		}
		if tn.DType != "F16" {
			return nil, false, fmt.Errorf("%s is %s, not F16", tn.Name, tn.DType)
		}
		raw, err := m.Raw(tn)
		if err != nil {
			return nil, false, err
		}
		b := bytes.Clone(raw)
		for i := 0; i < len(b); i += 2 {
			h := binary.LittleEndian.Uint16(b[i:])
			switch {
			case h&0x7fff == 0:
				h = h&0x8000 | 1 // ±0: to the smallest subnormal
			case h&0x7c00 == 0x7c00:
				continue // Inf, NaN
			case rng.IntN(2) == 0 || h&0x7fff == 0x7bff:
				h-- // toward zero
			default:
				h++
			}
			binary.LittleEndian.PutUint16(b[i:], h)
		}
		return b, true, nil
	})
	if err != nil {
		tx.abort()
		t.Fatal(err)
	}
	if err := tx.commit(); err != nil {
		t.Fatal(err)
	}
	return out
}
