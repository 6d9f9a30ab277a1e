package adapter

import (
	"context"
	"math"
	"sort"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// VerifyOptions control Verify.
type VerifyOptions struct {
	// OrthTol bounds ‖AAᵀ−I‖_F and ‖BᵀB−I‖_F (default 1e-4).
	OrthTol float64
	// RelTol, when > 0, replaces the rounding bound with a bound on the
	// relative Frobenius error ‖W_r + W_p − W‖_F / ‖W‖_F (for trained or
	// quantized adapters, whose error is not a single rounding).
	RelTol  float64
	Threads int
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Original string         `json:"original"`
	Residual string         `json:"residual"`
	Adapter  string         `json:"adapter"`
	Targets  []TargetVerify `json:"targets"`
	// Linkage checks: the files match the checksums the adapter recorded.
	SourceMatches   bool     `json:"source_matches"`
	ResidualMatches bool     `json:"residual_matches"`
	Problems        []string `json:"problems"`
	OK              bool     `json:"ok"`
}

// TargetVerify holds one module's measurements.
type TargetVerify struct {
	Tensor string  `json:"tensor"`
	MaxAbs float64 `json:"max_abs_error"`
	// MaxRel is MaxAbs over max|W|.
	MaxRel float64 `json:"max_rel_error"`
	// FroRel is ‖W_r + W_p − W‖_F / ‖W‖_F.
	FroRel float64 `json:"fro_rel_error"`
	// RoundingRatio is max over elements of |error| / (½·ulp(W_r) in the
	// residual's type); ≤ 1 means the reconstruction is exact up to the one
	// rounding of the residual.
	RoundingRatio float64 `json:"rounding_ratio"`
	OrthA         float64 `json:"orth_a"`
	OrthB         float64 `json:"orth_b"`
	OK            bool    `json:"ok"`
	Skipped       string  `json:"skipped,omitempty"`
	// For a quantized residual: its type, and the relative error of
	// quantizing the original W in that type instead (what the residual's
	// FroRel compares with, QPiSSA-style).
	ResidualType    string  `json:"residual_type,omitempty"`
	PlainQuantError float64 `json:"plain_quant_error,omitempty"`
}

// quantTolerance is the relative Frobenius error verify accepts for a
// residual stored in a quantized type.
func quantTolerance(typ string) float64 {
	switch typ {
	case "Q8_0":
		return 0.01
	case "Q6_K":
		return 0.02
	case "Q5_0", "Q5_1", "Q5_K":
		return 0.05
	case "Q4_0", "Q4_1", "Q4_K":
		return 0.1
	case "Q3_K":
		return 0.2
	}
	return 0.35
}

// plainQuantError quantizes w in t's type and returns ‖deq(Q(W)) − W‖_F / ‖W‖_F
// (−1 when the type cannot be written).
func plainQuantError(m model, t Tensor, w *surgery.Matrix) float64 {
	x := make([]float64, len(w.Data))
	widen(x, w.Data)
	enc, err := m.Encode(t, "", x)
	if err != nil {
		return -1
	}
	if _, ok := m.(*ggufModel); !ok {
		return -1
	}
	typ, _ := parseGGMLType(t.DType)
	deq := make([]float32, len(x))
	if err := gguf.Dequantize(typ, deq, enc); err != nil {
		return -1
	}
	return quantError(x, deq, w.Data)
}

func bytesEqualTensor(a, b model, ta, tb Tensor) bool {
	x, err := a.Raw(ta)
	if err != nil {
		return false
	}
	y, err := b.Raw(tb)
	return err == nil && string(x) == string(y)
}

// Verify checks a split: for every module, W_r + scale·B·diag(S)·A against
// the original W, the orthonormality of A and B, and that the files are the
// ones the adapter recorded. The report's OK is false when any check fails.
func Verify(ctx context.Context, original, residual, adapterDir string, opts VerifyOptions) (*VerifyReport, error) {
	if opts.OrthTol == 0 {
		opts.OrthTol = 1e-4
	}
	om, err := openModel(original)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer om.Close()
	rm, err := openModel(residual)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer rm.Close()
	ad, err := Open(adapterDir)
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	rmods, err := ad.matchModel(rm)
	if err != nil {
		return nil, err
	}
	if _, err := ad.matchModel(om); err != nil {
		return nil, err
	}
	rep := &VerifyReport{Original: original, Residual: residual, Adapter: adapterDir, SourceMatches: true, ResidualMatches: true}
	// File checksums are computed while the weights are compared.
	linkage := make(chan func(), 1)
	go func() {
		var resErr error
		srcOK, srcMsg := true, ""
		if ad.Config != nil {
			resErr = ad.checkResidual(rm, digestSHA256)
			srcOK, srcMsg = checkSource(ad.Config, om)
		}
		linkage <- func() {
			if resErr != nil {
				rep.ResidualMatches = false
				rep.Problems = append(rep.Problems, resErr.Error())
			}
			if !srcOK {
				rep.SourceMatches = false
				rep.Problems = append(rep.Problems, srcMsg)
			}
		}
	}()
	otensors := map[string]Tensor{}
	for _, t := range om.Tensors() {
		otensors[t.Name] = t
	}
	rtensors := map[string]Tensor{}
	for _, t := range rm.Tensors() {
		rtensors[t.Name] = t
	}
	names := make([]string, 0, len(rmods))
	for n := range rmods {
		names = append(names, n)
	}
	sort.Strings(names)
	p := startPipeline(ctx, opts.Threads, len(names), func(ctx context.Context, i int) (TargetVerify, error) {
		n := names[i]
		return verifyOne(om, rm, ad, rmods[n], otensors[n], rtensors[n], opts)
	})
	defer p.stop()
	rep.OK = true
	for i := range names {
		tv, err := p.take(ctx, i)
		if err != nil {
			return nil, err
		}
		rep.Targets = append(rep.Targets, tv)
		rep.OK = rep.OK && tv.OK
	}
	(<-linkage)()
	rep.OK = rep.OK && rep.SourceMatches && rep.ResidualMatches
	return rep, nil
}

func checkSource(cfg *Config, m model) (bool, string) {
	got, w, diff, err := fileDiff(m, cfg.Source.Files, digestSHA256)
	if err != nil {
		return false, err.Error()
	}
	if diff {
		return false, m.Path() + ": " + got.Path + " is not the file the adapter was split from (sha256 " + got.SHA256 + ", recorded " + w.SHA256 + ")"
	}
	return true, ""
}

func verifyOne(om, rm model, ad *Loaded, mod Module, ot, rt Tensor, opts VerifyOptions) (TargetVerify, error) {
	tv := TargetVerify{Tensor: ot.Name}
	if mod.NonFinite {
		// Passed through untouched: the residual must equal the original
		// (rebuilding it would only spread the NaN into the measures).
		tv.OK = bytesEqualTensor(om, rm, ot, rt)
		tv.Skipped = "holds NaN/Inf; passed through"
		return tv, nil
	}
	w, err := om.Decode(ot)
	if err != nil {
		return tv, wrapInput(err)
	}
	wr, err := rm.Decode(rt)
	if err != nil {
		return tv, wrapInput(err)
	}
	f, err := ad.Factors(mod)
	if err != nil {
		return tv, err
	}
	kind, hasKind := residualKind(rm, rt)
	var num, den, wmax float64
	if err := f.Check(rt.Out, rt.In); err != nil {
		return tv, inputErr("%s: module %q: %v", ad.Dir, mod.Name, err)
	}
	p := surgery.NewPrincipal(f, mod.Scale)
	defer p.Release()
	align, _ := p.BlockShape()
	rowBlocks(rt, align, func(i0, i1 int, acc []float64) error {
		off := i0 * rt.In
		widen(acc, wr.Data[off:off+len(acc)])
		p.AddBlock(acc, rt.In, i0, i1, 0, rt.In)
		for i, x := range acc {
			ref, r := float64(w.Data[off+i]), float64(wr.Data[off+i])
			d := math.Abs(x - ref)
			num += d * d
			den += ref * ref
			wmax = math.Max(wmax, math.Abs(ref))
			tv.MaxAbs = math.Max(tv.MaxAbs, d)
			if hasKind {
				bound := 0.5*dtype.Ulp(kind, r) + 1e-12*(math.Abs(ref)+math.Abs(x-r))
				if bound > 0 {
					tv.RoundingRatio = math.Max(tv.RoundingRatio, d/bound)
				} else if d > 0 {
					tv.RoundingRatio = math.Inf(1)
				}
			}
		}
		return nil
	})
	if wmax > 0 {
		tv.MaxRel = tv.MaxAbs / wmax
	}
	if den > 0 {
		tv.FroRel = math.Sqrt(num / den)
	}
	if ad.Kind == KindSORSA {
		tv.OrthA, tv.OrthB = surgery.Orthonormality(f)
	}
	okRecon := hasKind && tv.RoundingRatio <= 1
	if !hasKind {
		// A quantized residual: its error is the quantization of W_r.
		// Compare with quantizing W itself in the same type, and accept up
		// to the type's tolerance.
		tv.ResidualType = rt.DType
		tv.PlainQuantError = plainQuantError(rm, rt, w)
		okRecon = tv.FroRel <= quantTolerance(rt.DType)
	}
	if opts.RelTol > 0 {
		okRecon = tv.FroRel <= opts.RelTol
	}
	tv.OK = okRecon && tv.OrthA <= opts.OrthTol && tv.OrthB <= opts.OrthTol
	return tv, nil
}

// residualKind returns the element codec of a residual tensor, when it is a
// plain float type whose rounding Verify can bound.
func residualKind(m model, t Tensor) (dtype.Kind, bool) {
	switch m.Format() {
	case "safetensors":
		return safetensors.DType(t.DType).Kind()
	case "onnx":
		return onnxKind(t.DType)
	case "gguf":
		if typ, ok := parseGGMLType(t.DType); ok {
			return ggufKind(typ)
		}
	}
	return 0, false
}
