package onnx

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// sileroModels lists the real models testdata/runtimes/fetch_onnx_models.sh
// puts in <repo>/.cache/onnx-models.
func sileroModels(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), ".cache", "onnx-models")
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.onnx"))
	need(t, "Silero VAD models (testdata/runtimes/fetch_onnx_models.sh .cache/onnx-models)", len(files) >= 8)
	return files
}

// vadInputs feeds a VAD model: half a second of a 440 Hz tone at 16 kHz in
// chunks of 512, sample rate 16000, zero state. The first symbolic
// dimension of each input is the batch (1), a later one the chunk (512).
func vadInputs(m *Model) map[string]ortTensor {
	in := map[string]ortTensor{}
	for _, vi := range m.Proto.Graph.Input {
		tt := vi.GetType().GetTensorType()
		var dims []int64
		seenSym := false
		for _, d := range tt.GetShape().GetDim() {
			if _, ok := d.GetValue().(*pb.TensorShapeProto_Dimension_DimValue); ok {
				dims = append(dims, d.GetDimValue())
			} else if !seenSym {
				dims, seenSym = append(dims, 1), true
			} else {
				dims = append(dims, 512)
			}
		}
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		switch tt.GetElemType() {
		case int32(pb.TensorProto_INT64):
			in[vi.GetName()] = int64Tensor(dims, []int64{16000})
		default:
			v := make([]float32, n)
			if vi.GetName() == "input" {
				for i := range v {
					v[i] = float32(0.5 * math.Sin(2*math.Pi*440*float64(i)/16000))
				}
			}
			in[vi.GetName()] = float32Tensor(dims, v)
		}
	}
	return in
}

// The real Silero VAD models: targets are what their graphs say (Gemm
// initializers read in If branches, Constant-node and LSTM weights that are
// not targets), and rewriting every targetable weight with itself, or
// re-encoding every float tensor, or moving initializers to external data
// leaves ONNX Runtime's outputs bit-identical.
func TestSileroVAD(t *testing.T) {
	files := sileroModels(t)
	ort := newORT(t)
	dir := t.TempDir()
	var jobs []ortJob
	sawGemm, sawConst, sawLSTM := false, false, false
	for i, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		m, err := ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ts, err := Targets(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ix := indexGraphs(m.Proto)
		lstmWeights := map[string]bool{}
		for _, sc := range ix.scopes {
			for _, n := range sc.g.GetNode() {
				if n.GetOpType() == "LSTM" {
					for _, in := range n.GetInput()[1:3] {
						lstmWeights[in] = true
					}
				}
			}
		}
		var targetable []Target
		for _, tg := range ts {
			if lstmWeights[tg.Name] && tg.Targetable {
				t.Errorf("%s: LSTM weight %s is targetable", name, tg.Name)
			}
			if len(lstmWeights) > 0 {
				sawLSTM = true
			}
			if tg.Storage == ConstantNode && strings.Contains(tg.Graph, "_branch") {
				sawConst = true
				if tg.Targetable {
					t.Errorf("%s: %s targetable: %+v", name, tg.Name, tg.Consumers)
				}
			}
			if !tg.Targetable {
				continue
			}
			for _, c := range tg.Consumers {
				if c.OpType == "Gemm" && strings.Contains(c.Graph, "_branch") {
					sawGemm = true
					if tg.Transposed || tg.Out != 512 || tg.In != 128 {
						t.Errorf("%s: %s: %d×%d transposed %v, want 512×128 as stored (transB=1)", name, tg.Name, tg.Out, tg.In, tg.Transposed)
					}
				}
			}
			targetable = append(targetable, tg)
		}
		t.Logf("%s: %d weights listed, %d targetable", name, len(ts), len(targetable))
		inputs := vadInputs(m)

		// Each targetable weight rewritten with its own decoded values.
		for _, tg := range targetable {
			_, w, err := m.Weight(tg.Name)
			if err != nil {
				t.Fatal(err)
			}
			w64 := make([]float64, len(w))
			for i, v := range w {
				w64[i] = float64(v)
			}
			if err := m.ReplaceWeight(tg.Name, w64); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		recodeFloats(t, m)
		sub := filepath.Join(dir, string(rune('a'+i)))
		os.MkdirAll(sub, 0o755)
		rewritten := filepath.Join(sub, "rewritten.onnx")
		if err := WriteFile(rewritten, m, nil); err != nil {
			t.Fatal(err)
		}
		external := filepath.Join(sub, "external.onnx")
		if err := WriteFile(external, m, &WriteOptions{ExternalThreshold: 1024}); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, ortJob{Model: f, Inputs: inputs}, ortJob{Model: rewritten, Inputs: inputs}, ortJob{Model: external, Inputs: inputs})
	}
	if !sawGemm || !sawConst || !sawLSTM {
		t.Errorf("expected Gemm targets in If branches (%v), Constant-node weights in branches (%v), LSTM weights (%v)", sawGemm, sawConst, sawLSTM)
	}
	res := ort.run(t, jobs)
	for i := 0; i < len(res); i += 3 {
		name := files[i/3]
		if res[i].Error != "" {
			t.Errorf("%s: ORT: %s", name, res[i].Error)
			continue
		}
		for _, r := range res[i+1 : i+3] {
			if r.Error != "" {
				t.Errorf("%s: rewritten model: %s", name, r.Error)
			} else if ok, why := sameOutputs(res[i].Outputs, r.Outputs); !ok {
				t.Errorf("%s: %s", name, why)
			}
		}
	}
}
