package onnx

import (
	"fmt"
)

// Target returns the description of the weight called name.
func (m *Model) Target(name string) (Target, error) {
	ts, err := Targets(m)
	if err != nil {
		return Target{}, err
	}
	return findTarget(ts, name)
}

func findTarget(ts []Target, name string) (Target, error) {
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("onnx: %q: %w (no MatMul or Gemm reads it as B)", name, ErrNotFound)
}

// Weight decodes the weight called name to its canonical out × in matrix,
// row-major, as float32.
func (m *Model) Weight(name string) (Target, []float32, error) {
	t, err := m.Target(name)
	if err != nil {
		return t, nil, err
	}
	w, err := m.WeightOf(t)
	return t, w, err
}

// WeightOf is Weight for a Target found earlier by Targets on this model,
// without walking the graph again.
func (m *Model) WeightOf(t Target) ([]float32, error) {
	if !IsFloat(t.DType) || len(t.Shape) != 2 {
		return nil, fmt.Errorf("onnx: %q: %w: %s", t.Name, ErrNotTarget, t.Reason)
	}
	v, err := m.Float32s(t.tensor)
	if err != nil {
		return nil, err
	}
	if !t.Transposed {
		return v, nil
	}
	out := make([]float32, len(v))
	transposeInto(out, v, t.In, t.Out) // stored in × out → canonical out × in
	return out, nil
}

// ReplaceWeight replaces the weight called name with w, its canonical
// out × in matrix (row-major): each value is rounded once to the stored
// element type and written in the stored orientation and place (raw_data,
// typed field or external data). The weight must be targetable.
func (m *Model) ReplaceWeight(name string, w []float64) error {
	t, err := m.Target(name)
	if err != nil {
		return err
	}
	return m.ReplaceTarget(t, w)
}

// ReplaceTarget is ReplaceWeight for a Target found earlier by Targets on
// this model, without walking the graph again. Weights may be read
// (WeightOf) while another is being replaced.
func (m *Model) ReplaceTarget(t Target, w []float64) error {
	if !t.Targetable {
		return fmt.Errorf("onnx: %q: %w: %s", t.Name, ErrNotTarget, t.Reason)
	}
	if len(w) != t.Out*t.In {
		return fmt.Errorf("onnx: %q: got %d values for a %d×%d weight", t.Name, len(w), t.Out, t.In)
	}
	if t.Transposed {
		s := make([]float64, len(w))
		transposeInto(s, w, t.Out, t.In)
		w = s
	}
	return m.SetFloat64s(t.tensor, w)
}

// transposeInto writes the transpose of the rows × cols matrix src into dst
// (cols × rows).
func transposeInto[T any](dst, src []T, rows, cols int) {
	const blk = 32
	for i0 := 0; i0 < rows; i0 += blk {
		for j0 := 0; j0 < cols; j0 += blk {
			for i := i0; i < min(i0+blk, rows); i++ {
				for j := j0; j < min(j0+blk, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}
