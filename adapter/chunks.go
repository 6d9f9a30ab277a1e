package adapter

import "github.com/sorsa-convert/sorsa-convert/surgery"

// chunkElems bounds the float64 working buffer of a residual or merge:
// weights are processed in blocks of whole rows, so memory per matrix stays
// at its stored size plus a few tens of MiB, not 8 bytes per element.
var chunkElems = 1 << 21

// rowBlocks calls fn for consecutive blocks of whole rows of t (out × in),
// each with a float64 buffer of the block's size. A weight stored
// transposed is done in one block (its stored rows are canonical columns).
func rowBlocks(t Tensor, fn func(i0, i1 int, buf []float64) error) error {
	per := t.Out
	if !t.Transposed {
		per = max(1, min(t.Out, chunkElems/max(1, t.In)))
	}
	buf := make([]float64, per*t.In)
	for i0 := 0; i0 < t.Out; i0 += per {
		i1 := min(i0+per, t.Out)
		if err := fn(i0, i1, buf[:(i1-i0)*t.In]); err != nil {
			return err
		}
	}
	return nil
}

// rowsOf returns the factors restricted to rows i0..i1 of B (a view).
func rowsOf(f *surgery.Factors, i0, i1 int) *surgery.Factors {
	r := f.Rank()
	return &surgery.Factors{A: f.A, S: f.S, B: &surgery.Matrix{Rows: i1 - i0, Cols: r, Data: f.B.Data[i0*r : i1*r]}}
}

// encodeRows encodes canonical rows i0..i1 of t. Rows are independent in
// every stored type (ggml blocks run along a row), so the blocks' bytes
// concatenate to the whole tensor's.
func encodeRows(m model, t Tensor, dt string, i0, i1 int, vals []float64) ([]byte, error) {
	if i0 == 0 && i1 == t.Out {
		return m.Encode(t, dt, vals)
	}
	part := t
	part.Out = i1 - i0
	return m.Encode(part, dt, vals)
}

// residualBytes computes W − scale·B·diag(S)·A in float64, block by block,
// and encodes it once in dt (t's own type when empty).
func residualBytes(m model, t Tensor, dt string, w *surgery.Matrix, f *surgery.Factors, scale float64) ([]byte, error) {
	return encodeBlocks(m, t, dt, func(i0, i1 int, buf []float64) {
		sw := &surgery.Matrix{Rows: i1 - i0, Cols: t.In, Data: w.Data[i0*t.In : i1*t.In]}
		surgery.Residual(sw, rowsOf(f, i0, i1), scale, buf)
	})
}

// mergedBytes computes W_r + scale·B·diag(S)·A in float64, block by block,
// and encodes it once in dt (t's own type when empty).
func mergedBytes(m model, t Tensor, dt string, wr *surgery.Matrix, f *surgery.Factors, scale float64) ([]byte, error) {
	return encodeBlocks(m, t, dt, func(i0, i1 int, buf []float64) {
		for i, v := range wr.Data[i0*t.In : i1*t.In] {
			buf[i] = float64(v)
		}
		surgery.AddPrincipal(buf, rowsOf(f, i0, i1), scale)
	})
}

// encodeBlocks fills each block of rows with fill and appends its encoding.
func encodeBlocks(m model, t Tensor, dt string, fill func(i0, i1 int, buf []float64)) ([]byte, error) {
	var out []byte
	err := rowBlocks(t, func(i0, i1 int, buf []float64) error {
		fill(i0, i1, buf)
		b, err := encodeRows(m, t, dt, i0, i1, buf)
		if err != nil {
			return err
		}
		if out == nil {
			out = make([]byte, 0, len(b)/(i1-i0)*t.Out)
		}
		out = append(out, b...)
		return nil
	})
	return out, err
}

// rowDecoder is implemented by models that can decode a block of a weight's
// rows from its stored bytes straight into float64, so merge never holds the
// whole weight as float32.
type rowDecoder interface {
	decodeRows(t Tensor, raw []byte, i0, i1 int, dst []float64) error
}

// mergedBytesRaw is mergedBytes reading W_r block by block from its stored
// bytes.
func mergedBytesRaw(m model, rd rowDecoder, t Tensor, dt string, raw []byte, f *surgery.Factors, scale float64) ([]byte, error) {
	var derr error
	out, err := encodeBlocks(m, t, dt, func(i0, i1 int, buf []float64) {
		if err := rd.decodeRows(t, raw, i0, i1, buf); err != nil {
			derr = err
			return
		}
		surgery.AddPrincipal(buf, rowsOf(f, i0, i1), scale)
	})
	if derr != nil {
		return nil, derr
	}
	return out, err
}
