package adapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// tensorPath returns the file holding tensor name in a model written by a
// fixture or by split/merge (a file, or a checkpoint folder).
func tensorPath(t *testing.T, model, name string) string {
	t.Helper()
	st, err := os.Stat(model)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() {
		return model
	}
	ix, err := safetensors.ReadIndex(filepath.Join(model, IndexName))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(model, ix.WeightMap[name])
}

func TestSplitMergeRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		dtype  string
		shards int
		svd    surgery.Method
	}{
		{"f32-full", "F32", 1, surgery.Full},
		{"f16-full", "F16", 1, surgery.Full},
		{"bf16-full", "BF16", 1, surgery.Full},
		{"f32-randomized", "F32", 1, surgery.Randomized},
		{"bf16-exact", "BF16", 1, surgery.Exact},
		{"bf16-sharded", "BF16", 3, surgery.Auto},
		{"f16-sharded-randomized", "F16", 2, surgery.Randomized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "model.safetensors")
			if tc.shards > 1 {
				src = filepath.Join(dir, "model")
			}
			fx := writeFixture(t, src, llamaTensors(tc.dtype, 2, 48, 80), tc.shards, 42)
			out := filepath.Join(dir, "out")
			rep, err := Split(context.Background(), src, out, SplitOptions{
				Rank: 8, SVD: surgery.Options{Method: tc.svd, NIter: 6, Seed: 3}, PEFT: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Targets) != 6 {
				t.Fatalf("split %d targets, want 6 (q, v, down of 2 layers)", len(rep.Targets))
			}
			residual := filepath.Join(out, "residual.safetensors")
			merged := filepath.Join(dir, "merged.safetensors")
			if tc.shards > 1 {
				residual = filepath.Join(out, "residual")
				merged = filepath.Join(dir, "merged")
				for _, f := range []string{IndexName, "config.json", "tokenizer.json"} {
					if _, err := os.Stat(filepath.Join(residual, f)); err != nil {
						t.Errorf("residual folder lacks %s: %v", f, err)
					}
				}
			}
			vr, err := Verify(context.Background(), src, residual, filepath.Join(out, "adapter"), VerifyOptions{OrthTol: 1e-5})
			if err != nil {
				t.Fatal(err)
			}
			if !vr.OK {
				t.Fatalf("verify failed: %+v", vr)
			}
			if _, err := Merge(context.Background(), residual, filepath.Join(out, "adapter"), merged, MergeOptions{}); err != nil {
				t.Fatal(err)
			}
			k, _ := safetensors.DType(tc.dtype).Kind()
			targeted := map[string]bool{}
			for _, tr := range rep.Targets {
				targeted[tr.Tensor] = true
			}
			for name, want := range fx.values {
				mb, mi := readTensor(t, tensorPath(t, merged, name), name)
				ob, _ := readTensor(t, tensorPath(t, src, name), name)
				if !targeted[name] {
					if !bytes.Equal(mb, ob) {
						t.Errorf("%s: untargeted tensor changed", name)
					}
					continue
				}
				rb, _ := readTensor(t, tensorPath(t, residual, name), name)
				wr := decode(t, rb, mi.DType)
				got := decode(t, mb, mi.DType)
				for i := range got {
					bound := dtype.Ulp(k, wr[i]) + dtype.Ulp(k, want[i])
					if d := math.Abs(got[i] - want[i]); d > bound {
						t.Fatalf("%s[%d]: merged %g, original %g: |diff| %g > ulp(W_r)+ulp(W) = %g", name, i, got[i], want[i], d, bound)
					}
				}
			}
			// The PEFT export merges to the same weights within float32
			// rounding of the √S-scaled factors.
			peftMerged := filepath.Join(dir, "peft-merged.safetensors")
			if tc.shards > 1 {
				peftMerged = filepath.Join(dir, "peft-merged")
			}
			if _, err := Merge(context.Background(), residual, filepath.Join(out, "peft"), peftMerged, MergeOptions{DType: "f32"}); err != nil {
				t.Fatal(err)
			}
			for name := range targeted {
				pb, pi := readTensor(t, tensorPath(t, peftMerged, name), name)
				if pi.DType != "F32" {
					t.Fatalf("%s: --dtype f32 gave %s", name, pi.DType)
				}
				got := decode(t, pb, "F32")
				want := fx.values[name]
				var num, den float64
				for i := range got {
					num += (got[i] - want[i]) * (got[i] - want[i])
					den += want[i] * want[i]
				}
				if rel := math.Sqrt(num / den); rel > 1e-2 {
					t.Errorf("%s: PEFT merge relative error %g", name, rel)
				}
			}
		})
	}
}

func TestFactorsAreOrthonormal(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 1, 64, 96), 1, 5)
	out := filepath.Join(dir, "out")
	if _, err := Split(context.Background(), src, out, SplitOptions{Rank: 12}); err != nil {
		t.Fatal(err)
	}
	ad, err := Open(filepath.Join(out, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	for _, mod := range ad.Modules {
		f, err := ad.Factors(mod)
		if err != nil {
			t.Fatal(err)
		}
		ea, eb := surgery.Orthonormality(f)
		if ea > 1e-5 || eb > 1e-5 {
			t.Errorf("%s: ‖AAᵀ−I‖ %g, ‖BᵀB−I‖ %g", mod.Name, ea, eb)
		}
		for i := 1; i < len(f.S); i++ {
			if f.S[i] > f.S[i-1] {
				t.Errorf("%s: S not descending at %d", mod.Name, i)
			}
		}
	}
	// adapter_init holds the same bytes as adapter_model at split time.
	a, _ := os.ReadFile(filepath.Join(out, "adapter", ModelName))
	b, _ := os.ReadFile(filepath.Join(out, "adapter", InitialModelName))
	if !bytes.Equal(a, b) {
		t.Error("adapter_init.safetensors differs from adapter_model.safetensors")
	}
	cfg, err := ReadConfig(filepath.Join(out, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rank != 12 || cfg.Scale != 1 || cfg.Training.Gamma != 4e-4 || len(cfg.Targets) != 3 || cfg.Source.Files[0].SHA256 == "" || cfg.Residual.Files[0].SHA256 == "" {
		t.Errorf("config: %+v", cfg)
	}
}

func TestSplitDeterministic(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 1, 64, 96), 1, 9)
	var outs [2][]byte
	for i := range outs {
		out := filepath.Join(dir, "out", string(rune('a'+i)))
		if _, err := Split(context.Background(), src, out, SplitOptions{Rank: 4, Threads: i + 1,
			SVD: surgery.Options{Method: surgery.Randomized, Seed: 11}}); err != nil {
			t.Fatal(err)
		}
		outs[i], _ = os.ReadFile(filepath.Join(out, "residual.safetensors"))
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("same seed, different thread counts: residuals differ")
	}
}

func TestMergeChecksResidual(t *testing.T) {
	dir, src, out := splitFixture(t, "m.safetensors", llamaTensors("F16", 1, 32, 48), 1, 4)
	ad := filepath.Join(out, "adapter")
	x := filepath.Join(dir, "x.safetensors")
	// The residual itself passes; the original (not the residual) is
	// refused, by CRC-32C, and by sha256 for an adapter that recorded
	// only that (written before CRC-32C was).
	if _, err := Merge(context.Background(), filepath.Join(out, "residual.safetensors"), ad, x, MergeOptions{}); err != nil {
		t.Fatalf("merge onto its residual: %v", err)
	}
	os.Remove(x)
	for _, sum := range []string{"crc32c", "sha256"} {
		if sum == "sha256" {
			cfgPath := filepath.Join(ad, ConfigName)
			b, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			old := regexp.MustCompile(`,\s*"crc32c":\s*"[0-9a-f]+"`).ReplaceAll(b, nil)
			if bytes.Equal(old, b) || bytes.Contains(old, []byte("crc32c")) {
				t.Fatalf("the config records no crc32c to remove:\n%s", b)
			}
			if err := os.WriteFile(cfgPath, old, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Merge(context.Background(), src, ad, x, MergeOptions{})
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), sum) {
			t.Fatalf("merge onto the wrong residual (%s): %v", sum, err)
		}
		if _, err := os.Stat(x); !os.IsNotExist(err) {
			t.Error("refused merge left an output")
		}
	}
	if _, err := Merge(context.Background(), src, ad, x, MergeOptions{Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
}

func TestSplitBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	writeFixture(t, good, llamaTensors("F32", 1, 32, 48), 1, 1)
	raw, _ := os.ReadFile(good)
	truncated := filepath.Join(dir, "truncated.safetensors")
	os.WriteFile(truncated, raw[:len(raw)-100], 0o644)
	longHeader := filepath.Join(dir, "longheader.safetensors")
	lh := append([]byte(nil), raw...)
	lh[0], lh[1], lh[2], lh[3] = 0xff, 0xff, 0xff, 0x0f
	os.WriteFile(longHeader, lh, 0o644)

	cases := []struct {
		name  string
		input string
		opts  SplitOptions
		want  string
	}{
		{"missing", filepath.Join(dir, "nope.safetensors"), SplitOptions{Rank: 4}, "no such file"},
		{"truncated", truncated, SplitOptions{Rank: 4}, "truncated.safetensors"},
		{"header past end", longHeader, SplitOptions{Rank: 4}, "header"},
		{"rank too large", good, SplitOptions{Rank: 33}, "exceeds min"},
		{"rank zero", good, SplitOptions{Rank: 0}, "rank"},
		{"no match", good, SplitOptions{Rank: 4, Targets: []*regexp.Regexp{regexp.MustCompile(`nothing`)}}, "no tensor matches"},
		{"non-float target", good, SplitOptions{Rank: 4, Targets: []*regexp.Regexp{regexp.MustCompile(`position_ids`)}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
			before, _ := os.ReadFile(tc.input)
			_, err := Split(context.Background(), tc.input, out, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInput) && !os.IsNotExist(err) {
				t.Errorf("error not marked as bad input: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Errorf("output folder left behind: %v", listFiles(t, out))
			}
			after, _ := os.ReadFile(tc.input)
			if !bytes.Equal(before, after) {
				t.Error("input modified")
			}
		})
	}
}

func TestSplitInterrupted(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 3, 64, 96), 1, 2)
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithCancel(context.Background())
	p := &cancelAfter{n: 3, cancel: cancel}
	_, err := Split(ctx, src, out, SplitOptions{Rank: 4, Progress: p})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("interrupted split left %v", listFiles(t, out))
	}
}

// cancelAfter cancels a context after n progress steps.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Start(int64) {}
func (c *cancelAfter) Add(int64, string) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
}
func (c *cancelAfter) Finish() {}

func TestExistingOutputKept(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 1, 32, 48), 1, 3)
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	old := []byte("previous residual")
	os.WriteFile(filepath.Join(out, "residual.safetensors"), old, 0o644)
	if _, err := Split(context.Background(), src, out, SplitOptions{Rank: 40}); err == nil {
		t.Fatal("rank 40 > 32 accepted")
	}
	got, _ := os.ReadFile(filepath.Join(out, "residual.safetensors"))
	if !bytes.Equal(got, old) {
		t.Error("failed split overwrote an existing output")
	}
	if fs := listFiles(t, out); len(fs) != 1 {
		t.Errorf("failed split left %v", fs)
	}
}

func TestPresetsAndDefaults(t *testing.T) {
	ts := []Tensor{
		{Name: "model.embed_tokens.weight", Out: 10, In: 4},
		{Name: "model.layers.0.self_attn.q_proj.weight", Out: 4, In: 4},
		{Name: "model.layers.0.mlp.gate_proj.weight", Out: 8, In: 4},
		{Name: "model.layers.0.input_layernorm.weight", Shape: []int64{4}},
		{Name: "model.layers.0.custom.weight", Out: 4, In: 4},
		{Name: "lm_head.weight", Out: 10, In: 4},
		{Name: "blk.0.attn_q.weight", Out: 4, In: 4},
		{Name: "output.weight", Out: 10, In: 4},
		{Name: "token_embd.weight", Out: 10, In: 4},
	}
	names := func(pats []string) []string {
		res, err := CompilePatterns(pats)
		if err != nil {
			t.Fatal(err)
		}
		sel, err := SelectTargets(ts, res)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range sel {
			out = append(out, s.Name)
		}
		return out
	}
	if got := strings.Join(names(nil), ","); got != "model.layers.0.self_attn.q_proj.weight,model.layers.0.mlp.gate_proj.weight,model.layers.0.custom.weight,blk.0.attn_q.weight" {
		t.Errorf("defaults: %s", got)
	}
	if got := strings.Join(names([]string{"llama"}), ","); got != "model.layers.0.self_attn.q_proj.weight,model.layers.0.mlp.gate_proj.weight,blk.0.attn_q.weight" {
		t.Errorf("llama preset: %s", got)
	}
	if got := strings.Join(names([]string{"attention"}), ","); got != "model.layers.0.self_attn.q_proj.weight,blk.0.attn_q.weight" {
		t.Errorf("attention preset: %s", got)
	}
}

func TestNonFiniteWeights(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 1, 32, 48), 1, 4)
	// Poison one element of q_proj with NaN, in place.
	f, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Lookup("model.layers.0.self_attn.q_proj.weight")
	off := f.DataOffset() + ti.Offset + 4*37
	f.Close()
	raw, _ := os.ReadFile(src)
	copy(raw[off:], []byte{0, 0, 0xc0, 0x7f}) // float32 NaN
	os.WriteFile(src, raw, 0o644)

	_, err = Split(context.Background(), src, filepath.Join(dir, "refused"), SplitOptions{Rank: 4})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "q_proj") || !strings.Contains(err.Error(), "allow-nonfinite") {
		t.Fatalf("NaN weight: %v", err)
	}
	out := filepath.Join(dir, "out")
	rep, err := Split(context.Background(), src, out, SplitOptions{Rank: 4, AllowNonFinite: true})
	if err != nil {
		t.Fatal(err)
	}
	flagged := 0
	for _, tr := range rep.Targets {
		if tr.NonFinite != "" {
			flagged++
		}
	}
	if flagged != 1 {
		t.Fatalf("%d weights flagged non-finite, want 1", flagged)
	}
	orig, _ := readTensor(t, src, ti.Name)
	res, _ := readTensor(t, filepath.Join(out, "residual.safetensors"), ti.Name)
	if !bytes.Equal(orig, res) {
		t.Error("non-finite weight was not passed through untouched")
	}
	vr, err := Verify(context.Background(), src, filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter"), VerifyOptions{})
	if err != nil || !vr.OK {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	// The report is what `verify --json` prints: no NaN may leak into it.
	if _, err := json.Marshal(vr); err != nil {
		t.Errorf("verify report: %v", err)
	}
}

func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, llamaTensors("F32", 2, 48, 80), 1, 6)
	for _, budget := range []int64{1, 100, 20000} {
		simulateFullDisk = budget
		out := filepath.Join(dir, fmt.Sprintf("out-%d", budget))
		_, err := Split(context.Background(), src, out, SplitOptions{Rank: 4})
		simulateFullDisk = 0
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("budget %d: got %v, want ENOSPC", budget, err)
		}
		if errors.Is(err, ErrInput) {
			t.Errorf("a full disk is reported as bad input: %v", err)
		}
		if _, serr := os.Stat(out); !os.IsNotExist(serr) {
			t.Errorf("budget %d: left %v", budget, listFiles(t, out))
		}
	}
}

// TestRowBlocksMatchWhole: residuals and merges computed in blocks of rows
// are byte-identical to whole-matrix ones, for float and quantized types.
func TestRowBlocksMatchWhole(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "m.safetensors")
	writeFixture(t, st, llamaTensors("BF16", 1, 64, 96), 1, 8)
	inputs := []string{st, sharedModel(t, "stories260K-q4_0.gguf"), sharedModel(t, "stories260K-q8_0.gguf")}
	saved := chunkElems
	defer func() { chunkElems = saved }()
	for _, in := range inputs {
		var got [2][]byte
		var merged [2][]byte
		for i, ce := range []int{saved, 200} { // 200 elements: a few rows per block
			chunkElems = ce
			out := filepath.Join(dir, fmt.Sprintf("%s-%d", filepath.Base(in), ce))
			if _, err := Split(context.Background(), in, out, SplitOptions{Rank: 4}); err != nil {
				t.Fatal(err)
			}
			res := filepath.Join(out, "residual"+filepath.Ext(in))
			got[i], _ = os.ReadFile(res)
			mp := filepath.Join(out, "merged"+filepath.Ext(in))
			if _, err := Merge(context.Background(), res, filepath.Join(out, "adapter"), mp, MergeOptions{}); err != nil {
				t.Fatal(err)
			}
			merged[i], _ = os.ReadFile(mp)
		}
		if !bytes.Equal(got[0], got[1]) || len(got[0]) == 0 {
			t.Errorf("%s: residual computed in row blocks differs", filepath.Base(in))
		}
		if !bytes.Equal(merged[0], merged[1]) || len(merged[0]) == 0 {
			t.Errorf("%s: merge computed in row blocks differs", filepath.Base(in))
		}
	}
}

// TestMergeChecksShardedResidual: each shard of a checkpoint folder is
// checked against its own record.
func TestMergeChecksShardedResidual(t *testing.T) {
	dir, src, out := splitFixture(t, "ckpt", llamaTensors("BF16", 2, 32, 48), 2, 4)
	ad := filepath.Join(out, "adapter")
	if _, err := Merge(context.Background(), filepath.Join(out, "residual"), ad, filepath.Join(dir, "ok"), MergeOptions{}); err != nil {
		t.Fatalf("merge onto its residual: %v", err)
	}
	_, err := Merge(context.Background(), src, ad, filepath.Join(dir, "x"), MergeOptions{})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "crc32c") || !strings.Contains(err.Error(), "model-0000") {
		t.Fatalf("merge onto the wrong checkpoint: %v", err)
	}
}
