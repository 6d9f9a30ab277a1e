package onnx

import (
	"math"
	"os/exec"
	"path/filepath"
	"testing"

	"gonum.org/v1/gonum/mat"
	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

const testRank = 4

// svdFactors splits the canonical weights of every targetable weight of m
// with gonum's SVD at rank 4. Every other weight gets its factors scaled off
// orthonormality (A·1.1, B·0.9) so the regularizer has something to
// measure, and one weight gets a scale c = 0.5.
func svdFactors(t *testing.T, m *Model) map[string]Factors {
	t.Helper()
	ts, err := Targets(m)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Factors{}
	i := 0
	for _, tg := range ts {
		if !tg.Targetable {
			continue
		}
		w, err := m.canonical64(tg)
		if err != nil {
			t.Fatal(err)
		}
		var svd mat.SVD
		if !svd.Factorize(mat.NewDense(tg.Out, tg.In, w), mat.SVDThin) {
			t.Fatal("SVD failed")
		}
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		s := svd.Values(nil)
		f := Factors{A: make([]float32, testRank*tg.In), S: make([]float32, testRank), B: make([]float32, tg.Out*testRank)}
		da, db := 1.0, 1.0
		if i%2 == 1 {
			da, db = 1.1, 0.9
		}
		for k := 0; k < testRank; k++ {
			f.S[k] = float32(s[k])
			for j := 0; j < tg.In; j++ {
				f.A[k*tg.In+j] = float32(da * v.At(j, k))
			}
			for o := 0; o < tg.Out; o++ {
				f.B[o*testRank+k] = float32(db * u.At(o, k))
			}
		}
		if tg.Name == "W_t" {
			f.Scale = 0.5
		}
		out[tg.Name] = f
		i++
	}
	return out
}

// residualOf returns a copy of m with W_r = W − c·B·diag(S)·A written into
// each weight.
func residualOf(t *testing.T, m *Model, fs map[string]Factors) *Model {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range fs {
		tg, err := r.Target(name)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := r.canonical64(tg)
		neg := f
		neg.Scale = -f.scale()
		addLowRank(w, neg, tg.Out, tg.In)
		if err := r.ReplaceWeight(name, w); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// orthoLoss is the regularizer computed here, in float64.
func orthoLoss(fs map[string]Factors) float64 {
	sum, n := 0.0, 0
	for _, f := range fs {
		r := f.Rank()
		in, out := len(f.A)/r, len(f.B)/r
		var a2, b2 float64
		for i := 0; i < r; i++ {
			for j := 0; j < r; j++ {
				var aa, bb float64
				for k := 0; k < in; k++ {
					aa += float64(f.A[i*in+k]) * float64(f.A[j*in+k])
				}
				for k := 0; k < out; k++ {
					bb += float64(f.B[k*r+i]) * float64(f.B[k*r+j])
				}
				if i == j {
					aa, bb = aa-1, bb-1
				}
				a2 += aa * aa
				b2 += bb * bb
			}
		}
		sum += math.Sqrt(a2) + math.Sqrt(b2)
		n += 2
	}
	return sum / float64(n)
}

// The augmented graph (residual + branches) gives the original model's
// outputs in ONNX Runtime within 1e-5 and its loss output equals the
// regularizer computed here; folding it back restores the original graph
// exactly (node for node) with weights within two roundings, and outputs
// within 1e-6. Merge of residual and factors gives the same model.
func TestAugmentFoldORT(t *testing.T) {
	ort := newORT(t)
	dir := t.TempDir()
	orig := linearsModel()
	fs := svdFactors(t, orig)
	if len(fs) < 6 {
		t.Fatalf("only %d targets", len(fs))
	}
	res := residualOf(t, orig, fs)
	aug, err := Augment(res, fs, true)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for name, m := range map[string]*Model{"orig": orig, "res": res, "aug": aug} {
		paths[name] = filepath.Join(dir, name+".onnx")
		if err := WriteFile(paths[name], m, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The factor initializers hold SORSA's layout exactly.
	for name, f := range fs {
		mod := Target{Name: name}.Module()
		for _, tp := range aug.Proto.Graph.Initializer {
			if tp.GetName() == mod+".sorsa_A" {
				v, _ := aug.Float32s(tp)
				if tp.Dims[0] != testRank || !sameFloat32s(v, f.A) {
					t.Errorf("%s: A stored as %v", name, tp.Dims)
				}
			}
		}
	}
	folded, gotFs, err := Fold(aug)
	if err != nil {
		t.Fatal(err)
	}
	paths["folded"] = filepath.Join(dir, "folded.onnx")
	if err := WriteFile(paths["folded"], folded, nil); err != nil {
		t.Fatal(err)
	}
	x := randFloat32s(5, batch*16)
	in := map[string]ortTensor{"X": float32Tensor([]int64{batch, 16}, x)}
	results := ort.run(t, []ortJob{{Model: paths["orig"], Inputs: in}, {Model: paths["aug"], Inputs: in},
		{Model: paths["folded"], Inputs: in}, {Model: paths["res"], Inputs: in}})
	for _, r := range results {
		if r.Error != "" {
			t.Fatal(r.Error)
		}
	}
	o, a, f, rr := results[0].Outputs, results[1].Outputs, results[2].Outputs, results[3].Outputs
	changed := 0
	for name, ov := range o {
		want := widen(ov.float32s(t))
		if d := maxAbsDiff(a[name].float32s(t), want); d > 1e-5 {
			t.Errorf("augmented %s differs by %g", name, d)
		}
		if d := maxAbsDiff(f[name].float32s(t), want); d > 1e-6 {
			t.Errorf("folded %s differs by %g", name, d)
		}
		if maxAbsDiff(rr[name].float32s(t), want) > 1e-3 {
			changed++
		}
	}
	if changed < 5 {
		t.Errorf("the residual alone changed only %d outputs: the test would not notice a missing branch", changed)
	}
	loss := a[LossOutput].float32s(t)
	want := orthoLoss(fs)
	if len(loss) != 1 || math.Abs(float64(loss[0])-want) > 1e-5*want || want < 0.05 {
		t.Errorf("loss %v, want %g", loss, want)
	}
	// Fold returns the factors as stored.
	for name, f := range fs {
		g := gotFs[name]
		if !sameFloat32s(g.A, f.A) || !sameFloat32s(g.S, f.S) || !sameFloat32s(g.B, f.B) || g.scale() != f.scale() {
			t.Errorf("%s: folded factors differ", name)
		}
	}
	// Weights within two roundings of the original, then the whole model
	// equal to the original once the original weights are put back.
	for name := range fs {
		_, w, _ := orig.Weight(name)
		_, fw, _ := folded.Weight(name)
		for i := range w {
			if d := math.Abs(float64(w[i] - fw[i])); d > 2*ulp32(w[i])+1e-7 {
				t.Fatalf("%s[%d]: %g vs %g", name, i, fw[i], w[i])
			}
		}
		w64, _ := orig.canonical64(mustTarget(t, orig, name))
		if err := folded.ReplaceWeight(name, w64); err != nil {
			t.Fatal(err)
		}
	}
	if !proto.Equal(folded.Proto, orig.Proto) {
		t.Error("folded model differs from the original beyond its weights")
	}
	merged, err := Merge(res, fs)
	if err != nil {
		t.Fatal(err)
	}
	folded2, _, _ := Fold(aug)
	if !proto.Equal(merged.Proto, folded2.Proto) {
		t.Error("Merge(residual, factors) differs from Fold(augmented)")
	}
	// An independent checker accepts the augmented graph.
	if py := "/usr/bin/python3"; exists(py) && exec.Command(py, "-c", "import onnx").Run() == nil {
		if out, err := exec.Command(py, "-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", paths["aug"]).CombinedOutput(); err != nil {
			t.Errorf("onnx checker: %v\n%s", err, out)
		}
	}
}

// ReduceSum takes its axes as an attribute before opset 13 and as an input
// from 13 on; the regularizer uses neither and works at both.
func TestAugmentOpsets(t *testing.T) {
	ort := newORT(t)
	for _, opset := range []int64{11, 13, 18} {
		m := newModel(&pb.GraphProto{
			Node:        []*pb.NodeProto{node("MatMul", "mm", []string{"X", "W"}, []string{"Y"})},
			Initializer: []*pb.TensorProto{f32Init("W", []int64{16, 20}, randValues(3, 320))},
			Input:       []*pb.ValueInfoProto{valueInfo("X", typeFloat, batch, 16)},
			Output:      []*pb.ValueInfoProto{valueInfo("Y", typeFloat, batch, 20)},
		}, opset)
		fs := svdFactors(t, m)
		f := fs["W"]
		for i := range f.A {
			f.A[i] *= 1.5
		}
		fs["W"] = f
		aug, err := Augment(residualOf(t, m, fs), fs, true)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "aug.onnx")
		if err := WriteFile(p, aug, nil); err != nil {
			t.Fatal(err)
		}
		r := ort.run(t, []ortJob{{Model: p, Inputs: map[string]ortTensor{"X": float32Tensor([]int64{batch, 16}, randFloat32s(1, 32))}}})[0]
		if r.Error != "" {
			t.Fatalf("opset %d: %s", opset, r.Error)
		}
		want := orthoLoss(fs)
		if got := r.Outputs[LossOutput].float32s(t); math.Abs(float64(got[0])-want) > 1e-5*want {
			t.Errorf("opset %d: loss %g, want %g", opset, got[0], want)
		}
		if defaultOpset(aug.Proto) != opset {
			t.Errorf("opset changed to %d", defaultOpset(aug.Proto))
		}
	}
}

func TestAugmentRefuses(t *testing.T) {
	m := linearsModel()
	good := svdFactors(t, m)
	tests := []struct {
		name string
		fs   map[string]Factors
	}{
		{"unknown weight", map[string]Factors{"nope": good["W_mm"]}},
		{"not targetable", map[string]Factors{"W_shared": good["W_mm"]}},
		{"wrong shape", map[string]Factors{"W_g": good["W_mm"]}},
		{"empty", map[string]Factors{"W_mm": {}}},
	}
	for _, tc := range tests {
		if _, err := Augment(m, tc.fs, false); err == nil {
			t.Errorf("%s: Augment succeeded", tc.name)
		}
	}
	if _, _, err := Fold(m); err == nil {
		t.Error("Fold of a model Augment did not make succeeded")
	}
	old := newModel(m.Proto.Graph, 6)
	if _, err := Augment(old, map[string]Factors{"W_mm": good["W_mm"]}, false); err == nil {
		t.Error("Augment at opset 6 succeeded")
	}
}

func mustTarget(t *testing.T, m *Model, name string) Target {
	t.Helper()
	tg, err := m.Target(name)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func sameFloat32s(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func ulp32(x float32) float64 {
	x = float32(math.Abs(float64(x)))
	return float64(math.Nextafter32(x, float32(math.Inf(1))) - x)
}
