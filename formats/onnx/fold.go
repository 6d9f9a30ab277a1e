package onnx

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// eyeName matches the identity initializers the regularizer adds.
var eyeName = regexp.MustCompile(`^sorsa_eye_[0-9]+$`)

// Fold reads the (trained) factors out of a graph made by Augment and
// returns the model with the original topology — the branches, factor
// initializers, regularizer and metadata removed, consumer outputs renamed
// back — and each adapted weight folded: W = W_r + Scale·B·diag(S)·A,
// computed in float64 and rounded once to the weight's type, in its stored
// orientation and place. It also returns the factors, by weight name.
func Fold(aug *Model) (*Model, map[string]Factors, error) {
	out, err := aug.clone()
	if err != nil {
		return nil, nil, err
	}
	meta, err := readMeta(out.Proto)
	if err != nil {
		return nil, nil, err
	}
	main := out.Proto.Graph
	inits := map[string]*pb.TensorProto{}
	for _, t := range main.GetInitializer() {
		inits[t.GetName()] = t
	}
	factors := map[string]Factors{}
	drop := map[string]bool{"sorsa_loss_count": true}
	for mod, am := range meta {
		var f Factors
		for _, part := range []struct {
			suffix string
			dst    *[]float32
		}{{".sorsa_A", &f.A}, {".sorsa_S", &f.S}, {".sorsa_B", &f.B}} {
			t, ok := inits[mod+part.suffix]
			if !ok {
				return nil, nil, fmt.Errorf("onnx: augmented model lacks initializer %q", mod+part.suffix)
			}
			v, err := out.Float32s(t)
			if err != nil {
				return nil, nil, err
			}
			*part.dst = v
			drop[mod+part.suffix] = true
		}
		f.Scale = am.Scale
		factors[am.Weight] = f
	}
	// Remove the branches; give consumers their outputs back.
	walkGraphs(out.Proto, func(sc *scope) error {
		renamed := map[string]string{}
		kept := sc.g.Node[:0]
		for _, n := range sc.g.GetNode() {
			if !strings.HasPrefix(n.GetName(), branchPrefix) {
				kept = append(kept, n)
				continue
			}
			if n.GetOpType() == "Add" && len(n.GetInput()) == 2 && strings.HasSuffix(n.GetInput()[0], baseSuffix) {
				renamed[n.GetInput()[0]] = n.GetOutput()[0]
			}
		}
		sc.g.Node = kept
		for _, n := range kept {
			for i, o := range n.GetOutput() {
				if orig, ok := renamed[o]; ok {
					n.Output[i] = orig
				}
			}
		}
		return nil
	})
	keptInit := main.Initializer[:0]
	for _, t := range main.GetInitializer() {
		if !drop[t.GetName()] && !eyeName.MatchString(t.GetName()) {
			keptInit = append(keptInit, t)
		}
	}
	main.Initializer = keptInit
	keptOut := main.Output[:0]
	for _, o := range main.GetOutput() {
		if o.GetName() != LossOutput {
			keptOut = append(keptOut, o)
		}
	}
	main.Output = keptOut
	keptMeta := out.Proto.MetadataProps[:0]
	for _, e := range out.Proto.GetMetadataProps() {
		if e.GetKey() != metaKey {
			keptMeta = append(keptMeta, e)
		}
	}
	out.Proto.MetadataProps = keptMeta
	if err := out.merge(factors); err != nil {
		return nil, nil, err
	}
	return out, factors, nil
}

func readMeta(m *pb.ModelProto) (map[string]adapterMeta, error) {
	for _, e := range m.GetMetadataProps() {
		if e.GetKey() == metaKey {
			meta := map[string]adapterMeta{}
			if err := json.Unmarshal([]byte(e.GetValue()), &meta); err != nil {
				return nil, fmt.Errorf("onnx: metadata %s: %w", metaKey, err)
			}
			return meta, nil
		}
	}
	return nil, fmt.Errorf("onnx: not a model made by Augment (no %s metadata)", metaKey)
}

// Merge returns residual with each weight named in factors replaced by
// W = W_r + Scale·B·diag(S)·A, computed in float64 and rounded once to the
// weight's type, in its stored orientation and place. residual is not
// modified.
func Merge(residual *Model, factors map[string]Factors) (*Model, error) {
	out, err := residual.clone()
	if err != nil {
		return nil, err
	}
	if err := out.merge(factors); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

func (m *Model) merge(factors map[string]Factors) error {
	ts, err := Targets(m)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(factors))
	for w := range factors {
		names = append(names, w)
	}
	sort.Strings(names)
	for _, w := range names {
		f := factors[w]
		tg, err := findTarget(ts, w)
		if err != nil {
			return err
		}
		if err := checkFactors(tg, f); err != nil {
			return err
		}
		wr, err := m.canonical64(tg)
		if err != nil {
			return err
		}
		addLowRank(wr, f, tg.Out, tg.In)
		if err := m.ReplaceTarget(tg, wr); err != nil {
			return err
		}
	}
	return nil
}

// addLowRank adds Scale·B·diag(S)·A to the out × in matrix w, in float64.
func addLowRank(w []float64, f Factors, out, in int) {
	r, c := f.Rank(), f.scale()
	for o := 0; o < out; o++ {
		row := w[o*in : (o+1)*in]
		for k := 0; k < r; k++ {
			coef := c * float64(f.B[o*r+k]) * float64(f.S[k])
			a := f.A[k*in : (k+1)*in]
			for i := range row {
				row[i] += coef * float64(a[i])
			}
		}
	}
}

// canonical64 decodes a weight to its canonical out × in matrix in float64.
func (m *Model) canonical64(t Target) ([]float64, error) {
	v, err := m.Float64s(t.tensor)
	if err != nil {
		return nil, err
	}
	if !t.Transposed {
		return v, nil
	}
	out := make([]float64, len(v))
	transposeInto(out, v, t.In, t.Out)
	return out, nil
}
