package adapter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/onnx"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// onnxModel is an ONNX model. Its weights are the 2-D float tensors read
// as the B input of MatMul or Gemm (directly or through Transpose/Identity),
// in initializers or Constant nodes, in any (sub)graph. An ONNX model is one
// protobuf message, so unlike the other formats it is held in memory whole
// (external data stays on disk until written).
type onnxModel struct {
	path    string
	m       *onnx.Model
	targets map[string]onnx.Target
	ts      []Tensor
}

func openONNX(path string) (*onnxModel, error) {
	m, err := onnx.ReadFile(path)
	if err != nil {
		return nil, err
	}
	om := &onnxModel{path: path, m: m, targets: map[string]onnx.Target{}}
	if err := om.scan(); err != nil {
		m.Close()
		return nil, err
	}
	return om, nil
}

func (om *onnxModel) scan() error {
	ts, err := onnx.Targets(om.m)
	if err != nil {
		return err
	}
	om.ts = om.ts[:0]
	for _, t := range ts {
		om.targets[t.Name] = t
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		tt := Tensor{Name: t.Name, DType: onnx.TypeName(t.DType), Shape: t.Shape, Out: t.Out, In: t.In,
			Transposed: t.Transposed, Reason: t.Reason}
		if k, ok := onnxKind(tt.DType); ok {
			tt.Bytes = n * int64(k.Size())
		}
		for _, c := range t.Consumers {
			r := c.OpType + " " + c.Node
			if c.Graph != "" && c.Graph != "graph" {
				r += " in " + c.Graph
			}
			if len(c.Via) > 0 {
				r += " via " + strings.Join(c.Via, ", ")
			}
			if c.Alpha != 1 && c.OpType == "Gemm" {
				r += fmt.Sprintf(" (alpha %g)", c.Alpha)
			}
			tt.Readers = append(tt.Readers, r)
		}
		if t.Transposed {
			tt.Readers = append(tt.Readers, "stored [in, out]")
		}
		if !t.Targetable && tt.Reason == "" {
			tt.Reason = "not read by MatMul or Gemm"
		}
		om.ts = append(om.ts, tt)
	}
	return nil
}

func onnxKind(name string) (dtype.Kind, bool) {
	switch name {
	case "FLOAT":
		return dtype.F32, true
	case "FLOAT16":
		return dtype.F16, true
	case "BFLOAT16":
		return dtype.BF16, true
	case "DOUBLE":
		return dtype.F64, true
	}
	return 0, false
}

func (om *onnxModel) Format() string    { return "onnx" }
func (om *onnxModel) Path() string      { return om.path }
func (om *onnxModel) Tensors() []Tensor { return om.ts }
func (om *onnxModel) Close() error      { return om.m.Close() }

// defaultTargets: targetable weights with both dimensions at least
// onnx.DefaultMinDim (tiny heads are not worth a low-rank split).
func (om *onnxModel) defaultTargets() []Tensor {
	var out []Tensor
	for _, t := range om.ts {
		if om.targets[t.Name].Default {
			out = append(out, t)
		}
	}
	return out
}

// weight decodes t from the targets found when the model was opened (not
// walking the graph again for each weight).
func (om *onnxModel) weight(t Tensor) (onnx.Target, []float32, error) {
	tg, ok := om.targets[t.Name]
	if !ok {
		return tg, nil, fmt.Errorf("%s: tensor %q: %w", om.path, t.Name, onnx.ErrNotFound)
	}
	data, err := om.m.WeightOf(tg)
	return tg, data, err
}

func (om *onnxModel) Decode(t Tensor) (*surgery.Matrix, error) {
	tg, data, err := om.weight(t)
	if err != nil {
		return nil, err
	}
	return &surgery.Matrix{Rows: tg.Out, Cols: tg.In, Data: data}, nil
}

func (om *onnxModel) Raw(t Tensor) ([]byte, error) {
	_, data, err := om.weight(t)
	if err != nil {
		return nil, err
	}
	return f32Bytes(data), nil
}

func (om *onnxModel) Encode(t Tensor, dt string, canon []float64) ([]byte, error) {
	return nil, fmt.Errorf("%s: ONNX weights are replaced in the model, not encoded one by one", om.path)
}

// splitONNX is Split for an ONNX model: residual.onnx (the same graph,
// each target holding W_r in its own type and place), the adapter folder,
// and augmented.onnx, the residual graph plus a low-rank branch per target
// whose factors are initializers named <module>.sorsa_A/S/B.
func splitONNX(ctx context.Context, om *onnxModel, targets []Tensor, outDir string, opts SplitOptions, svd surgery.Options, scale float64, tx *outputs, rep *SplitReport) ([]FileHash, string, error) {
	type result struct {
		residual []float64 // nil: leave the weight as it is
		factors  *surgery.Factors
		report   TargetReport
	}
	p := startPipeline(ctx, opts.Threads, len(targets), func(ctx context.Context, i int) (*result, error) {
		t := targets[i]
		start := time.Now()
		w, f, pass, err := decomposeOne(om, t, svd, opts.AllowNonFinite)
		if err != nil {
			return nil, err
		}
		if pass != nil {
			return &result{factors: f, report: *pass}, nil
		}
		res := make([]float64, t.Out*t.In)
		surgery.Residual(w, f, scale, res)
		return &result{residual: res, factors: f, report: targetReport(t, w, f, svd, scale, start)}, nil
	})
	defer p.stop()

	adapterDir := filepath.Join(outDir, "adapter")
	aw, err := newFactorWriter(tx, adapterDir, targets, opts.Rank, !opts.NoInitial)
	if err != nil {
		return nil, "", err
	}
	var pw *peftWriter
	if opts.PEFT {
		if pw, err = newPEFTWriter(tx, filepath.Join(outDir, "peft"), targets, opts.Rank); err != nil {
			return nil, "", err
		}
	}
	factors := map[string]onnx.Factors{}
	var total int64
	for _, t := range targets {
		total += t.Bytes
	}
	opts.Progress.Start(total)
	defer opts.Progress.Finish()
	for i, t := range targets {
		r, err := p.take(ctx, i)
		if err != nil {
			return nil, "", err
		}
		if r.residual != nil {
			if err := om.m.ReplaceTarget(om.targets[t.Name], r.residual); err != nil {
				return nil, "", fmt.Errorf("%s: %w", om.path, err)
			}
		}
		mod := ModuleName(t.Name)
		if err := aw.add(mod, r.factors); err != nil {
			return nil, "", err
		}
		if pw != nil {
			if err := pw.add(mod, r.factors); err != nil {
				return nil, "", err
			}
		}
		factors[t.Name] = onnx.Factors{A: r.factors.A.Data, S: r.factors.S, B: r.factors.B.Data, Scale: scale}
		rep.Targets = append(rep.Targets, r.report)
		opts.Progress.Add(t.Bytes, t.Name)
	}
	if err := aw.close(); err != nil {
		return nil, "", err
	}
	if pw != nil {
		if err := pw.close(scale); err != nil {
			return nil, "", err
		}
	}
	stage, err := tx.stage(outDir)
	if err != nil {
		return nil, "", err
	}
	if err := onnx.WriteFile(filepath.Join(stage, "residual.onnx"), om.m, nil); err != nil {
		return nil, "", err
	}
	aug, err := onnx.Augment(om.m, factors, opts.RegularizerOutput)
	if err != nil {
		return nil, "", err
	}
	defer aug.Close()
	if err := onnx.WriteFile(filepath.Join(stage, "augmented.onnx"), aug, nil); err != nil {
		return nil, "", err
	}
	rep.Augmented = filepath.Join(outDir, "augmented.onnx")
	files, err := hashStaged(stage, "residual.onnx")
	if err != nil {
		return nil, "", err
	}
	return files, filepath.Join(outDir, "residual.onnx"), nil
}

// hashStaged hashes a staged ONNX model and its data file, if any.
func hashStaged(stage, name string) ([]FileHash, error) {
	var out []FileHash
	for _, n := range []string{name, onnx.DataFileName(name)} {
		p := filepath.Join(stage, n)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		s, c, err := hashFile(p, digestSHA256|digestCRC32C)
		if err != nil {
			return nil, err
		}
		out = append(out, FileHash{Path: n, SHA256: s, CRC32C: c})
	}
	return out, nil
}

// mergeONNX folds factors into an ONNX residual and writes out.
func mergeONNX(om *onnxModel, ad *Loaded, mods map[string]Module, out string, tx *outputs, rep *MergeReport) error {
	factors := map[string]onnx.Factors{}
	for name, mod := range mods {
		f, err := ad.Factors(mod)
		if err != nil {
			return err
		}
		factors[name] = onnx.Factors{A: f.A.Data, S: f.S, B: f.B.Data, Scale: mod.Scale}
		rep.Merged = append(rep.Merged, name)
	}
	merged, err := onnx.Merge(om.m, factors)
	if err != nil {
		return fmt.Errorf("%s: %w", om.path, err)
	}
	defer merged.Close()
	return writeStagedONNX(tx, merged, out)
}

// FoldAugmented reads the (trained) factors out of an augmented ONNX graph
// written by split and writes the original topology with
// W = W_r + scale·B·diag(S)·A folded into each weight.
func FoldAugmented(ctx context.Context, augmented, out string) (rep *MergeReport, err error) {
	start := time.Now()
	m, err := onnx.ReadFile(augmented)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer m.Close()
	folded, factors, err := onnx.Fold(m)
	if err != nil {
		return nil, wrapInput(fmt.Errorf("%s: %w", augmented, err))
	}
	defer folded.Close()
	tx := newOutputs()
	defer func() {
		if err != nil {
			tx.abort()
		}
	}()
	if err := writeStagedONNX(tx, folded, out); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	rep = &MergeReport{Residual: augmented, Kind: "onnx-augmented", Output: out, InputIO: InputCached, Seconds: time.Since(start).Seconds()}
	for name := range factors {
		rep.Merged = append(rep.Merged, name)
	}
	return rep, nil
}

// writeStagedONNX writes m (and its data file) through a staging folder of
// the transaction, so it appears only on commit.
func writeStagedONNX(tx *outputs, m *onnx.Model, out string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return inputErr("%s is a folder; an ONNX output is a file", out)
	}
	stage, err := tx.stage(filepath.Dir(out))
	if err != nil {
		return err
	}
	return onnx.WriteFile(filepath.Join(stage, filepath.Base(out)), m, nil)
}
