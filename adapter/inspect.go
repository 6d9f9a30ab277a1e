package adapter

import "regexp"

// ModelInfo is what inspect reports about a model.
type ModelInfo struct {
	Path    string         `json:"path"`
	Format  string         `json:"format"`
	Tensors []TensorInfo   `json:"tensors"`
	Totals  Totals         `json:"totals"`
	Meta    map[string]any `json:"metadata,omitempty"`
}

// TensorInfo is one row of inspect's table.
type TensorInfo struct {
	Name       string   `json:"name"`
	File       string   `json:"file,omitempty"`
	DType      string   `json:"dtype"`
	Shape      []int64  `json:"shape"`
	Bytes      int64    `json:"bytes"`
	Matrix     bool     `json:"matrix"`
	Out        int      `json:"out,omitempty"`
	In         int      `json:"in,omitempty"`
	Transposed bool     `json:"transposed,omitempty"`
	Target     bool     `json:"target"`
	Reason     string   `json:"reason,omitempty"`
	Readers    []string `json:"readers,omitempty"`
}

// Totals sums a model's tensors.
type Totals struct {
	Tensors      int   `json:"tensors"`
	Bytes        int64 `json:"bytes"`
	Params       int64 `json:"params"`
	Matrices     int   `json:"matrices"`
	Targets      int   `json:"targets"`
	TargetParams int64 `json:"target_params"`
}

// Inspect lists a model's tensors, marking those split would target with
// the given patterns (nil: the defaults).
func Inspect(path string, pats []*regexp.Regexp) (*ModelInfo, error) {
	m, err := openModel(path)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer m.Close()
	targets, err := selectFor(m, pats)
	if err != nil {
		return nil, inputErr("%s: %v", path, err)
	}
	isTarget := map[string]bool{}
	for _, t := range targets {
		isTarget[t.Name] = true
	}
	info := &ModelInfo{Path: path, Format: m.Format()}
	if mm, ok := m.(interface{ metadata() map[string]any }); ok {
		info.Meta = mm.metadata()
	}
	for _, t := range m.Tensors() {
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		ti := TensorInfo{Name: t.Name, File: t.File, DType: t.DType, Shape: t.Shape, Bytes: t.Bytes,
			Matrix: t.Matrix(), Out: t.Out, In: t.In, Transposed: t.Transposed, Target: isTarget[t.Name], Reason: t.Reason, Readers: t.Readers}
		info.Tensors = append(info.Tensors, ti)
		info.Totals.Tensors++
		info.Totals.Bytes += t.Bytes
		info.Totals.Params += n
		if ti.Matrix {
			info.Totals.Matrices++
		}
		if ti.Target {
			info.Totals.Targets++
			info.Totals.TargetParams += n
		}
	}
	return info, nil
}
