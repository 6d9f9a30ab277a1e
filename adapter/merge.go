package adapter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MergeOptions control Merge.
type MergeOptions struct {
	// DType is the stored type of merged weights ("" keeps the residual's).
	// For safetensors: F32, F16 or BF16.
	DType string
	// Force merges even when the residual's checksum differs from the one
	// the adapter recorded.
	Force   bool
	Threads int
	// BufferedIO writes the merged model through the page cache (see
	// SplitOptions.BufferedIO).
	BufferedIO bool
	// InputIO is how the residual is read: InputAuto (""), InputDirect or
	// InputCached (see stager).
	InputIO  string
	Progress Progress
}

// mergeReadAhead is how far merge reads the residual ahead of the tensor
// being written (see readAhead).
const mergeReadAhead = 1 << 30

// MergeReport describes a finished merge.
type MergeReport struct {
	Residual string   `json:"residual"`
	Adapter  string   `json:"adapter"`
	Kind     string   `json:"adapter_kind"`
	Output   string   `json:"output"`
	Merged   []string `json:"merged"`
	Copied   int      `json:"copied"`
	// InputIO is how the residual was read: "direct" or "cached".
	InputIO string  `json:"input_io"`
	Seconds float64 `json:"seconds"`
}

// Merge folds an adapter into a residual model: W = W_r + scale·B·diag(S)·A,
// computed in float64 and rounded once. Tensors the adapter does not touch
// are copied byte for byte. out is a file for a single-file residual and a
// folder for a checkpoint folder.
func Merge(ctx context.Context, residual, adapterDir, out string, opts MergeOptions) (rep *MergeReport, err error) {
	start := time.Now()
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	switch opts.InputIO {
	case "", InputAuto, InputDirect, InputCached:
	default:
		return nil, inputErr("input I/O %q is not one of %s, %s or %s", opts.InputIO, InputAuto, InputDirect, InputCached)
	}
	m, err := openModel(residual)
	if err != nil {
		return nil, wrapInput(err)
	}
	defer m.Close()
	ad, err := Open(adapterDir)
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	mods, err := ad.matchModel(m)
	if err != nil {
		return nil, err
	}
	// The residual's checksum is checked on the bytes the merge reads, as
	// it reads them, when the adapter recorded CRC-32Cs and the residual's
	// files can note their reads (see readsum.go): the checksum is known
	// once the merge has read everything, and a mismatch then fails it
	// before anything is committed. Otherwise the check runs beside the
	// merge (hashing a large model takes as long as reading it) and a
	// mismatch cancels the work at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	checked := func() error { return nil }
	readsAll := false // a background check reads every byte of the residual
	switch {
	case opts.Force || ad.Config == nil:
	case ad.residualDigest(digestCRC32C) == digestCRC32C && recordReads(m):
		if err := ad.checkResidualNames(m); err != nil {
			return nil, err
		}
		checked = func() error { return ad.checkResidual(m, digestCRC32C) }
	default:
		readsAll = true
		c := make(chan error, 1)
		go func() {
			err := ad.checkResidual(m, digestCRC32C)
			if err != nil {
				cancel(err)
			}
			c <- err
		}()
		checked = func() error { return <-c }
	}
	defer func() {
		if c := context.Cause(ctx); err != nil && c != nil && !errors.Is(c, context.Canceled) {
			err = c // the checksum mismatch, not the cancellation it caused
		}
	}()
	dt := opts.DType
	if dt == "keep" {
		dt = ""
	}
	if dt != "" {
		if dt, err = normalizeDType(m, dt); err != nil {
			return nil, err
		}
	}

	tx := newOutputs()
	tx.noHash = true
	tx.buffered = opts.BufferedIO
	defer func() {
		if err != nil {
			tx.abort()
		}
	}()
	rep = &MergeReport{Residual: residual, Adapter: adapterDir, Kind: ad.Kind, Output: out, InputIO: InputCached}
	if om, ok := m.(*onnxModel); ok {
		if dt != "" {
			return nil, inputErr("--dtype is not supported for ONNX: merged weights keep their type")
		}
		if err := mergeONNX(om, ad, mods, out, tx, rep); err != nil {
			return nil, err
		}
		if err := checked(); err != nil {
			return nil, err
		}
		if err := tx.commit(); err != nil {
			return nil, err
		}
		rep.Copied = len(m.Tensors()) - len(rep.Merged)
		rep.Seconds = time.Since(start).Seconds()
		return rep, nil
	}
	var targets []Tensor
	idx := map[string]int{}
	for _, t := range m.Tensors() {
		if _, ok := mods[t.Name]; ok {
			idx[t.Name] = len(targets)
			targets = append(targets, t)
		}
	}
	if err := checkBlockRows(m, targets, dt, "--dtype"); err != nil {
		return nil, err
	}
	newType := map[string]string{}
	if dt != "" {
		for _, t := range targets {
			newType[t.Name] = dt
		}
	}

	// The residual is read ahead of the work, by the stager (direct I/O)
	// or the read-ahead (page cache); consumed tells it when the writer
	// moves on to a tensor. Both start before the pipeline, so that their
	// deferred closes run after it has stopped: the stager frees the
	// memory the workers read.
	consumed := func(Tensor) {}
	if ins := inputList(m); len(ins) > 0 && !readsAll {
		if st := stageModel(m, ins, opts.InputIO); st != nil {
			rep.InputIO = InputDirect
			defer st.close()
			pos := map[string]int{}
			for i, t := range m.Tensors() {
				pos[t.Name] = i
			}
			consumed = func(t Tensor) { st.reach(pos[t.Name]) }
		} else {
			ra := startReadAhead(ins, mergeReadAhead)
			defer ra.close()
			consumed = func(t Tensor) { ra.consumed(t.Bytes) }
		}
	}

	// Results go back to the pool once the writer is done with them (when
	// it asks for the next tensor): at most the pipeline's window of
	// buffers, plus the one being written, ever exist.
	pool := &bufPool{keep: pipelineWindow(opts.Threads) + 1}
	p := startPipeline(ctx, opts.Threads, len(targets), func(ctx context.Context, i int) ([]byte, error) {
		t := targets[i]
		return mergeOne(m, ad, mods[t.Name], t, dt, pool)
	})
	defer p.stop()

	var total int64
	for _, t := range m.Tensors() {
		total += t.Bytes
	}
	opts.Progress.Start(total)
	defer opts.Progress.Finish()
	var written []byte
	repl := func(t Tensor) ([]byte, bool, error) {
		pool.put(written) // the writer has finished with the previous result
		written = nil
		opts.Progress.Add(t.Bytes, t.Name)
		consumed(t)
		i, ok := idx[t.Name]
		if !ok {
			rep.Copied++
			return nil, false, ctx.Err()
		}
		b, err := p.take(ctx, i)
		if err != nil {
			return nil, false, err
		}
		rep.Merged = append(rep.Merged, t.Name)
		written = b
		return b, true, nil
	}
	if err := writeMerged(tx, m, out, newType, repl); err != nil {
		return nil, err
	}
	if err := checked(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func mergeOne(m model, ad *Loaded, mod Module, t Tensor, dt string, pool *bufPool) ([]byte, error) {
	f, err := ad.Factors(mod)
	if err != nil {
		return nil, err
	}
	if err := f.Check(t.Out, t.In); err != nil {
		return nil, inputErr("%s: module %q: %v", ad.Dir, mod.Name, err)
	}
	b, err := mergedBytes(m, t, dt, f, mod.Scale, pool)
	if err != nil {
		return nil, wrapInput(fmt.Errorf("%s: %w", m.Path(), err))
	}
	return b, nil
}

// normalizeDType maps a --dtype value to the model format's type name.
func normalizeDType(m model, dt string) (string, error) {
	switch m.Format() {
	case "gguf":
		if typ, ok := parseGGMLType(dt); ok && (typ.CanQuantize() || isPlain(typ)) {
			return typ.String(), nil
		}
		return "", inputErr("type %q is not writable for GGUF (want one of %s)", dt, ggufWritable(0))
	case "safetensors":
		switch strings.ToLower(dt) {
		case "f32", "float32":
			return "F32", nil
		case "f16", "float16":
			return "F16", nil
		case "bf16", "bfloat16":
			return "BF16", nil
		}
	}
	return "", inputErr("--dtype %q is not supported for %s (want f32, f16 or bf16)", dt, m.Format())
}

// writeMerged writes the merged model at out: a file for a single-file
// model, a folder for a checkpoint folder.
func writeMerged(tx *outputs, m model, out string, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) error {
	switch mm := m.(type) {
	case *stModel:
		if mm.dir != mm.path { // a single file: out is the file
			f, err := tx.create(out)
			if err != nil {
				return err
			}
			if err := mm.rewriteShard(f, mm.shards[0], newType, repl); err != nil {
				return writeErr(out, err)
			}
			return nil
		}
		if st, err := os.Stat(out); err == nil && !st.IsDir() {
			return inputErr("%s: the residual is a checkpoint folder, so the output must be a folder", out)
		}
		_, _, err := writeSafetensors(tx, mm, filepath.Dir(filepath.Clean(out)), filepath.Base(filepath.Clean(out)), newType, repl)
		return err
	case *ggufModel:
		_, _, err := writeGGUF(tx, mm, out, newType, repl)
		return err
	}
	return fmt.Errorf("%s: writing %s is not supported", m.Path(), m.Format())
}
