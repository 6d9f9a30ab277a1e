package adapter

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
	"github.com/sorsa-convert/sorsa-convert/formats/onnx"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// Progress receives progress reports from long operations. Implementations
// must be safe for use from one goroutine at a time (the writer's).
type Progress interface {
	// Start announces total units of work (bytes written).
	Start(total int64)
	// Add reports n more units done; item names the tensor just finished.
	Add(n int64, item string)
	// Finish ends the report.
	Finish()
}

type noProgress struct{}

func (noProgress) Start(int64)       {}
func (noProgress) Add(int64, string) {}
func (noProgress) Finish()           {}

// SplitOptions control Split.
type SplitOptions struct {
	Rank    int
	Alpha   *float64 // nil: scale 1 (SORSA's default); else scale = Alpha/Rank
	SVD     surgery.Options
	Targets []*regexp.Regexp // nil: the default target set
	Threads int              // workers; ≤ 0: all cores
	PEFT    bool             // also write OUT/peft, a PEFT LoRA adapter
	// ResidualType is the stored type of residual weights: "" or "keep" for
	// each weight's own type, else a type name of the model's format (GGUF:
	// f32, f16, bf16 or one of GGUFQuantizedTypes; safetensors: f32, f16, bf16).
	ResidualType string
	// RegularizerOutput adds to an ONNX model's augmented graph an output
	// sorsa_orthonormal_loss computing the SORSA regularizer.
	RegularizerOutput bool
	// AllowNonFinite passes weights holding NaN or Inf through untouched
	// (their factors are zero) instead of refusing the split.
	AllowNonFinite bool
	// NoInitial skips adapter_init.safetensors, the copy of the factors at
	// split time that conversion to a plain LoRA needs.
	NoInitial bool
	// BufferedIO writes the outputs through the page cache; by default
	// large files bypass it (direct I/O), which costs less CPU time and
	// leaves the cache to the input.
	BufferedIO bool
	Progress   Progress
}

// SplitReport describes a finished split.
type SplitReport struct {
	Input     string         `json:"input"`
	Format    string         `json:"format"`
	OutDir    string         `json:"out_dir"`
	Rank      int            `json:"rank"`
	Scale     float64        `json:"scale"`
	SVD       SVDConfig      `json:"svd"`
	Targets   []TargetReport `json:"targets"`
	Files     []string       `json:"files"`
	Seconds   float64        `json:"seconds"`
	Residual  string         `json:"residual"`
	Adapter   string         `json:"adapter"`
	LoRA      string         `json:"lora,omitempty"`      // llama.cpp LoRA of the principal part (GGUF input)
	Augmented string         `json:"augmented,omitempty"` // ONNX residual graph + low-rank branches (ONNX input)
}

// TargetReport describes one split weight.
type TargetReport struct {
	Tensor string  `json:"tensor"`
	Module string  `json:"module"`
	DType  string  `json:"dtype"`
	Out    int     `json:"out"`
	In     int     `json:"in"`
	Method string  `json:"svd"`
	SMax   float64 `json:"s_max"`
	SMin   float64 `json:"s_r"` // the r-th singular value
	// Energy is the fraction of ‖W‖²_F the principal part holds.
	Energy  float64 `json:"energy"`
	Seconds float64 `json:"seconds"`
	// NonFinite marks a weight holding NaN/Inf, passed through untouched
	// with zero factors (only with AllowNonFinite).
	NonFinite string `json:"nonfinite,omitempty"`
}

// ErrInput marks errors caused by the user's input (bad file, bad option);
// the CLI maps them to exit status 2.
var ErrInput = errors.New("bad input")

func inputErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, a...))
}

// openModel opens a model of any supported format.
func openModel(path string) (model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openSafetensors(path)
	}
	magic, n, err := fileStart(path)
	if err != nil {
		return nil, err
	}
	switch {
	case n >= 4 && string(magic[:4]) == gguf.Magic:
		return openGGUF(path)
	case strings.HasSuffix(strings.ToLower(path), ".onnx"):
		return openONNX(path)
	case strings.HasSuffix(path, ".safetensors") || n == 8 && binary.LittleEndian.Uint64(magic[:]) < uint64(st.Size()):
		return openSafetensors(path)
	}
	return nil, fmt.Errorf("%s: unrecognised model format (want .safetensors, a checkpoint folder, .gguf or .onnx)", path)
}

// splitResult is what a worker hands the writer for one target.
type splitResult struct {
	residual []byte
	factors  *surgery.Factors
	report   TargetReport
}

// Split decomposes the targeted weights of the model at input and writes
// outDir/residual.<ext> (or outDir/residual/ for a checkpoint folder) and
// outDir/adapter/. Outputs appear only when complete.
func Split(ctx context.Context, input, outDir string, opts SplitOptions) (rep *SplitReport, err error) {
	start := time.Now()
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	if opts.Rank < 1 {
		return nil, inputErr("rank %d: must be at least 1", opts.Rank)
	}
	m, err := openModel(input)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer m.Close()
	targets, err := selectFor(m, opts.Targets)
	if err != nil {
		return nil, inputErr("%s: %v", input, err)
	}
	if len(targets) == 0 {
		return nil, inputErr("%s: no tensor matches the target patterns (see `sorsa-convert inspect`)", input)
	}
	for _, t := range targets {
		if opts.Rank > min(t.Out, t.In) {
			return nil, inputErr("%s: tensor %q: rank %d exceeds min(%d, %d)", input, t.Name, opts.Rank, t.Out, t.In)
		}
	}
	if opts.PEFT && m.Format() == "gguf" {
		// PEFT addresses Hugging Face module names, and llama.cpp's converter
		// permutes attn_q/attn_k rows; a GGUF split gives lora.gguf instead.
		return nil, inputErr("%s: --peft needs a Hugging Face checkpoint; for GGUF, split writes lora.gguf for llama.cpp", input)
	}
	newType := map[string]string{}
	if rt := opts.ResidualType; rt != "" && rt != "keep" {
		dt, err := normalizeDType(m, rt)
		if err != nil {
			return nil, err
		}
		if err := checkBlockRows(m, targets, dt, "--residual-type"); err != nil {
			return nil, err
		}
		for _, t := range targets {
			newType[t.Name] = dt
		}
	}
	scale := 1.0
	if opts.Alpha != nil {
		scale = *opts.Alpha / float64(opts.Rank)
	}
	svd := opts.SVD
	svd.Rank = opts.Rank
	// Record what was asked; the randomized settings as they run on large
	// matrices (each target's report says which algorithm it got).
	big := svd.Normalize(math.MaxInt32, math.MaxInt32)

	tx := newOutputs()
	tx.buffered = opts.BufferedIO
	defer func() {
		if err != nil {
			tx.abort()
		}
	}()

	// Hash the input while the split runs; it only reads.
	srcHash := make(chan hashResult, 1)
	go func() { srcHash <- hashFiles(m, digestSHA256) }()

	rep = &SplitReport{Input: input, Format: m.Format(), OutDir: outDir, Rank: opts.Rank, Scale: scale,
		SVD: SVDConfig{Algorithm: svd.Method.String(), NIter: big.NIter, Oversample: big.Oversample, Seed: svd.Seed, Tol: big.Tol}}
	var resFiles []FileHash
	var resPath string
	if om, ok := m.(*onnxModel); ok {
		resFiles, resPath, err = splitONNX(ctx, om, targets, outDir, opts, svd, scale, tx, rep)
	} else {
		resFiles, resPath, err = splitStream(ctx, m, targets, newType, outDir, opts, svd, scale, tx, rep)
	}
	if err != nil {
		return nil, err
	}
	adapterDir := filepath.Join(outDir, "adapter")
	sh := <-srcHash
	if sh.err != nil {
		return nil, sh.err
	}
	cfg := &Config{
		Format: FormatName, Version: 1, Method: "sorsa", Rank: opts.Rank, Alpha: opts.Alpha, Scale: scale,
		SVD:      rep.SVD,
		Source:   FileSet{Format: m.Format(), Files: sh.files},
		Residual: FileSet{Format: m.Format(), Files: resFiles},
		Training: Training{Gamma: SuggestedGamma, LearningRate: SuggestedLearningRate,
			Regularizer: "mean over all A and B of ||A·Aᵀ−I||_F + ||Bᵀ·B−I||_F (unsquared)"},
	}
	for i, t := range targets {
		rec := targetRecord(t)
		rec.NonFinite = rep.Targets[i].NonFinite != ""
		cfg.Targets = append(cfg.Targets, rec)
		cfg.TargetModules = append(cfg.TargetModules, ModuleName(t.Name))
	}
	b, err := cfg.marshal()
	if err != nil {
		return nil, err
	}
	if _, err := tx.writeFile(filepath.Join(adapterDir, ConfigName), b); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	for _, f := range tx.files {
		rep.Files = append(rep.Files, f.final)
	}
	rep.Residual = resPath
	rep.Adapter = adapterDir
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// defaultGGUFTargets returns the llama preset when the model has
// llama-style projection names, else nil (the generic default).
func defaultGGUFTargets(ts []Tensor) []*regexp.Regexp {
	re := regexp.MustCompile(Presets["llama"])
	for _, t := range ts {
		if re.MatchString(t.Name) {
			return []*regexp.Regexp{re}
		}
	}
	return nil
}

func targetRecord(t Tensor) Target {
	o := OutIn
	if t.Transposed {
		o = InOut
	}
	return Target{Module: ModuleName(t.Name), Tensor: t.Name, File: t.File, DType: t.DType,
		Shape: []int64{int64(t.Out), int64(t.In)}, StoredShape: t.Shape, Orientation: o}
}

// splitOne decomposes one weight and encodes its residual.
func splitOne(m model, t Tensor, dt string, opts surgery.Options, scale float64, allowNonFinite bool) (*splitResult, error) {
	start := time.Now()
	w, f, pass, err := decomposeOne(m, t, opts, allowNonFinite)
	if err != nil {
		return nil, err
	}
	if pass != nil {
		raw, err := m.Raw(t)
		if err != nil {
			return nil, err
		}
		return &splitResult{residual: raw, factors: f, report: *pass}, nil
	}
	enc, err := residualBytes(m, t, dt, w, f, scale)
	if err != nil {
		return nil, err
	}
	return &splitResult{residual: enc, factors: f, report: targetReport(t, w, f, opts, scale, start)}, nil
}

// decomposeOne decodes t and finds its top-r factors. A weight holding NaN
// or Inf is refused, or, with allowNonFinite, given zero factors and a
// report saying so (pass != nil): the caller leaves it as stored.
func decomposeOne(m model, t Tensor, opts surgery.Options, allowNonFinite bool) (w *surgery.Matrix, f *surgery.Factors, pass *TargetReport, err error) {
	w, err = m.Decode(t)
	if err != nil {
		return nil, nil, nil, wrapInput(fmt.Errorf("%s: %w", m.Path(), err))
	}
	f, err = surgery.Decompose(w, opts)
	if err == nil {
		return w, f, nil, nil
	}
	if !isNonFinite(err) {
		return nil, nil, nil, fmt.Errorf("%s: tensor %q: %w", m.Path(), t.Name, err)
	}
	if !allowNonFinite {
		return nil, nil, nil, inputErr("%s: tensor %q: %v (use --allow-nonfinite to pass it through untouched)", m.Path(), t.Name, err)
	}
	r := opts.Rank
	zero := &surgery.Factors{A: surgery.NewMatrix(r, t.In), S: make([]float32, r), B: surgery.NewMatrix(t.Out, r)}
	return nil, zero, &TargetReport{Tensor: t.Name, Module: ModuleName(t.Name), DType: t.DType,
		Out: t.Out, In: t.In, Method: "none", NonFinite: err.Error()}, nil
}

// wrapInput marks file-system and format errors as input errors.
func wrapInput(err error) error {
	if err == nil || errors.Is(err, ErrInput) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInput, err)
}

// modelFiles lists the files a model consists of, relative to its folder.
func modelFiles(m model) []string {
	switch mm := m.(type) {
	case *stModel:
		fs := append([]string(nil), mm.shards...)
		if mm.index != nil {
			fs = append(fs, IndexName)
		}
		return fs
	case *onnxModel:
		fs := []string{filepath.Base(mm.path)}
		if _, err := os.Stat(filepath.Join(filepath.Dir(mm.path), onnx.DataFileName(mm.path))); err == nil {
			fs = append(fs, onnx.DataFileName(mm.path))
		}
		return fs
	}
	return []string{filepath.Base(m.Path())}
}

type hashResult struct {
	files []FileHash
	err   error
}

// hashFiles hashes m's files (see modelFiles) with the checksums want
// selects. A file that records its reads (see recordReads) has its CRC-32C
// put together from them.
func hashFiles(m model, want digest) hashResult {
	files := modelFiles(m)
	dir := m.Path()
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	var out []FileHash
	var inputs map[string]*inputFile
	if want == digestCRC32C {
		inputs = inputFiles(m)
	}
	for _, f := range files {
		var s, c string
		var err error
		if in := inputs[f]; in != nil && in.sums != nil { // inputs is nil unless want is CRC-32C
			var sum uint32
			sum, err = in.crc32c()
			c = fmt.Sprintf("%08x", sum)
		} else {
			s, c, err = hashFile(filepath.Join(dir, f), want)
		}
		if err != nil {
			return hashResult{err: err}
		}
		out = append(out, FileHash{Path: f, SHA256: s, CRC32C: c})
	}
	return hashResult{files: out}
}

// writeResidual writes the residual model (same format, same layout) and
// returns its files with their checksums and the path users pass to merge.
func writeResidual(tx *outputs, m model, outDir string, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) ([]FileHash, string, error) {
	switch mm := m.(type) {
	case *stModel:
		return writeSafetensors(tx, mm, outDir, "residual", newType, repl)
	case *ggufModel:
		return writeGGUF(tx, mm, filepath.Join(outDir, "residual.gguf"), newType, repl)
	}
	return nil, "", fmt.Errorf("%s: writing %s is not supported", m.Path(), m.Format())
}

// writeSafetensors writes m as dst.safetensors (a single-file input) or as a
// folder dst/ with the same shards, index and side files (a checkpoint
// folder).
func writeSafetensors(tx *outputs, m *stModel, outDir, stem string, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) ([]FileHash, string, error) {
	single := m.dir != m.path
	var files []FileHash
	var written []*outFile
	root := filepath.Join(outDir, stem)
	if single {
		root = filepath.Join(outDir, stem+".safetensors")
	}
	for _, s := range m.shards {
		path := root
		if !single {
			path = filepath.Join(root, s)
		}
		f, err := tx.create(path)
		if err != nil {
			return nil, "", err
		}
		if err := m.rewriteShard(f, s, newType, repl); err != nil {
			return nil, "", writeErr(path, err)
		}
		written = append(written, f)
	}
	if !single {
		extra, err := sideFiles(m.dir, m.shards)
		if err != nil {
			return nil, "", err
		}
		for _, e := range extra {
			var f *outFile
			if e == IndexName && len(newType) > 0 {
				f, err = writeIndex(tx, m, filepath.Join(root, e), newType)
			} else {
				f, err = tx.copyFile(filepath.Join(root, e), filepath.Join(m.dir, e))
			}
			if err != nil {
				return nil, "", err
			}
			if e == IndexName {
				written = append(written, f)
			}
		}
	}
	for _, f := range written {
		files = append(files, f.hashSoFar())
	}
	return files, root, nil
}

// writeIndex writes a sharded checkpoint's index with total_size updated for
// tensors whose dtype changed.
func writeIndex(tx *outputs, m *stModel, path string, newType map[string]string) (*outFile, error) {
	ix := *m.index
	var total int64
	for _, t := range m.ts {
		n := t.Bytes
		if nt, ok := newType[t.Name]; ok {
			if sz, ok := safetensors.DType(nt).Size(); ok {
				n = int64(t.Out*t.In) * int64(sz)
			}
		}
		total += n
	}
	md := map[string]any{}
	for k, v := range ix.Metadata {
		md[k] = v
	}
	md["total_size"] = total
	ix.Metadata = md
	f, err := tx.create(path)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(map[string]any{"metadata": ix.Metadata, "weight_map": ix.WeightMap}, "", "  ")
	if err != nil {
		return nil, err
	}
	_, err = f.Write(append(b, '\n'))
	return f, err
}

// sideFiles lists the files of a checkpoint folder to copy through: the
// index, config, tokenizer and other small metadata, never the shards.
func sideFiles(dir string, shards []string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	isShard := map[string]bool{}
	for _, s := range shards {
		isShard[s] = true
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || isShard[n] || strings.HasPrefix(n, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(n)) {
		case ".json", ".txt", ".model", ".tiktoken", ".jinja", ".py", ".md":
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// splitStream is Split for the formats written tensor by tensor
// (safetensors, GGUF): workers decompose targets in file order while the
// writer streams the residual, the adapter and (GGUF) lora.gguf.
func splitStream(ctx context.Context, m model, targets []Tensor, newType map[string]string, outDir string, opts SplitOptions, svd surgery.Options, scale float64, tx *outputs, rep *SplitReport) ([]FileHash, string, error) {
	p := startPipeline(ctx, opts.Threads, len(targets), func(ctx context.Context, i int) (*splitResult, error) {
		return splitOne(m, targets[i], newType[targets[i].Name], svd, scale, opts.AllowNonFinite)
	})
	defer p.stop()

	targetIdx := map[string]int{}
	for i, t := range targets {
		targetIdx[t.Name] = i
	}

	// Adapter writers, fed in target order as the residual is written.
	adapterDir := filepath.Join(outDir, "adapter")
	aw, err := newFactorWriter(tx, adapterDir, targets, opts.Rank, !opts.NoInitial)
	if err != nil {
		return nil, "", err
	}
	var lw *loraWriter
	if gm, ok := m.(*ggufModel); ok {
		lf, err := tx.create(filepath.Join(outDir, "lora.gguf"))
		if err != nil {
			return nil, "", err
		}
		if lw, err = newLoRAWriter(lf, gm, targets, opts.Rank, scale); err != nil {
			return nil, "", err
		}
	}
	var pw *peftWriter
	if opts.PEFT {
		if pw, err = newPEFTWriter(tx, filepath.Join(outDir, "peft"), targets, opts.Rank); err != nil {
			return nil, "", err
		}
	}

	var total int64
	for _, t := range m.Tensors() {
		total += t.Bytes
	}
	opts.Progress.Start(total)
	defer opts.Progress.Finish()

	next := 0
	repl := func(t Tensor) ([]byte, bool, error) {
		i, ok := targetIdx[t.Name]
		if !ok {
			opts.Progress.Add(t.Bytes, t.Name)
			return nil, false, ctx.Err()
		}
		if i != next {
			return nil, false, fmt.Errorf("internal: target %q written out of order", t.Name)
		}
		next++
		r, err := p.take(ctx, i)
		if err != nil {
			return nil, false, err
		}
		if err := aw.add(ModuleName(t.Name), r.factors); err != nil {
			return nil, false, err
		}
		if pw != nil {
			if err := pw.add(ModuleName(t.Name), r.factors); err != nil {
				return nil, false, err
			}
		}
		if lw != nil {
			if err := lw.add(t.Name, r.factors); err != nil {
				return nil, false, err
			}
		}
		rep.Targets = append(rep.Targets, r.report)
		opts.Progress.Add(t.Bytes, t.Name)
		return r.residual, true, nil
	}

	resFiles, resPath, err := writeResidual(tx, m, outDir, newType, repl)
	if err != nil {
		return nil, "", err
	}

	if lw != nil {
		if err := lw.close(); err != nil {
			return nil, "", err
		}
		rep.LoRA = filepath.Join(outDir, "lora.gguf")
	}
	if err := aw.close(); err != nil {
		return nil, "", err
	}
	if pw != nil {
		if err := pw.close(scale); err != nil {
			return nil, "", err
		}
	}
	return resFiles, resPath, nil
}

func isNonFinite(err error) bool { return errors.Is(err, surgery.ErrNonFinite) }

// targetReport measures one split weight.
func targetReport(t Tensor, w *surgery.Matrix, f *surgery.Factors, opts surgery.Options, scale float64, start time.Time) TargetReport {
	var total, principal float64
	for _, v := range w.Data {
		total += float64(v) * float64(v)
	}
	for _, s := range f.S {
		principal += float64(s) * float64(s)
	}
	rep := TargetReport{Tensor: t.Name, Module: ModuleName(t.Name), DType: t.DType, Out: t.Out, In: t.In,
		Method: opts.Normalize(t.Out, t.In).Method.String(),
		SMax:   float64(f.S[0]), SMin: float64(f.S[len(f.S)-1]), Seconds: time.Since(start).Seconds()}
	if total > 0 {
		rep.Energy = math.Min(1, principal*scale*scale/total)
	}
	return rep
}

// selectFor picks a model's targets: the patterns, else the format's
// default (GGUF: llama's projections; ONNX: MatMul/Gemm weights of at least
// 16×16; otherwise every *.weight matrix but embeddings, heads and norms).
func selectFor(m model, pats []*regexp.Regexp) ([]Tensor, error) {
	if len(pats) == 0 {
		if d, ok := m.(interface{ defaultTargets() []Tensor }); ok {
			return d.defaultTargets(), nil
		}
		if m.Format() == "gguf" {
			pats = defaultGGUFTargets(m.Tensors())
		}
	}
	return SelectTargets(m.Tensors(), pats)
}
