package adapter

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// chunkElems bounds the float64 working buffer of a residual or merge done
// in blocks of rows: a block holds about this many elements (at least a
// block of Principal's rows), so memory per matrix stays at its stored size
// plus a few MiB per worker, not 8 bytes per element.
var chunkElems = 1 << 18

// blockRows returns the rows per block of t for rowBlocks and encodeBlocks:
// a multiple of align, or all of t's rows for a weight stored transposed
// (its stored rows are canonical columns).
func blockRows(t Tensor, align int) int {
	if t.Transposed {
		return max(1, t.Out)
	}
	per := max(1, min(t.Out, chunkElems/max(1, t.In)))
	return max(align, per/align*align)
}

// rowBlocks calls fn for consecutive blocks of whole rows of t (out × in),
// each with a float64 buffer of the block's size (see blockRows).
func rowBlocks(t Tensor, align int, fn func(i0, i1 int, buf []float64) error) error {
	per := blockRows(t, align)
	buf := make([]float64, min(per, t.Out)*t.In)
	for i0 := 0; i0 < t.Out; i0 += per {
		i1 := min(i0+per, t.Out)
		if err := fn(i0, i1, buf[:(i1-i0)*t.In]); err != nil {
			return err
		}
	}
	return nil
}

// encodeRows encodes canonical rows i0..i1 of t. Rows are independent in
// every stored type (ggml blocks run along a row), so the blocks' bytes
// concatenate to the whole tensor's.
func encodeRows(m model, t Tensor, dt string, i0, i1 int, vals []float64) ([]byte, error) {
	part := t
	part.Out = i1 - i0
	return m.Encode(part, dt, vals)
}

// sectioner is implemented by models whose tensors' stored bytes can be
// read where they lie in the file.
type sectioner interface {
	// section reads t's stored bytes.
	section(t Tensor) (io.ReaderAt, error)
}

// elementCodec is implemented by models whose weights can be stored
// element by element (F32, F16, BF16): a rectangle of such a weight decodes
// and encodes where it lies, without its neighbours, which lets a merge or
// a residual run tile by tile in the processor's cache (see tiled).
type elementCodec interface {
	// elementKinds returns t's stored kind and the kind its new values
	// take in dt (t's own when dt is ""); ok is false when either is not
	// an element type or t is stored transposed.
	elementKinds(t Tensor, dt string) (in, out dtype.Kind, ok bool)
	sectioner
}

// residualBytes computes W − scale·B·diag(S)·A in float64 and encodes it
// once in dt (t's own type when empty).
func residualBytes(m model, t Tensor, dt string, w *surgery.Matrix, f *surgery.Factors, scale float64) ([]byte, error) {
	p := surgery.NewPrincipal(f, -scale)
	defer p.Release()
	if ec, ok := m.(elementCodec); ok {
		if _, out, ok := ec.elementKinds(t, dt); ok {
			return tiled(t, out, p, nil, func() tileSource { return matrixSource{w} })
		}
	}
	return encodeBlocks(m, t, dt, p, rowsOf(w))
}

// mergedBytes computes W_r + scale·B·diag(S)·A in float64 and encodes it
// once in dt (t's own type when empty), decoding W_r from the residual
// model as it goes: tile by tile for element types, block by block of rows
// for the others, whole for a weight stored transposed.
func mergedBytes(m model, t Tensor, dt string, f *surgery.Factors, scale float64, pool *bufPool) ([]byte, error) {
	p := surgery.NewPrincipal(f, scale)
	defer p.Release()
	if ec, ok := m.(elementCodec); ok {
		if in, out, ok := ec.elementKinds(t, dt); ok {
			src, err := ec.section(t)
			if err != nil {
				return nil, err
			}
			defer releaseOf(src, 0, t.Bytes)
			if f, ok := format16(in); ok && in == out && p.Fuses16(f) {
				return tiled16(t, in, f, p, pool, src)
			}
			return tiled(t, out, p, pool, func() tileSource { return &readerSource{r: src, kind: in, cols: t.In} })
		}
	}
	if rd, ok := m.(rowDecoder); ok && !t.Transposed {
		sec, err := rd.section(t)
		if err != nil {
			return nil, err
		}
		var out []byte
		err = withStored(sec, t.Bytes, func() ([]byte, error) { return m.Raw(t) }, func(raw []byte) (err error) {
			out, err = encodeBlocks(m, t, dt, p, func(i0, i1 int, buf []float64) error {
				return rd.decodeRows(t, raw, i0, i1, buf)
			})
			return err
		})
		return out, err
	}
	wr, err := m.Decode(t)
	if err != nil {
		return nil, err
	}
	return encodeBlocks(m, t, dt, p, rowsOf(wr))
}

// rowsOf fills a block of rows from a decoded weight.
func rowsOf(w *surgery.Matrix) func(i0, i1 int, buf []float64) error {
	return func(i0, i1 int, buf []float64) error {
		widen(buf, w.Data[i0*w.Cols:i1*w.Cols])
		return nil
	}
}

// widen copies src into dst as float64 (exactly).
func widen(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] = float64(v)
	}
}

// encodeBlocks fills each block of rows with fill, adds p's block and
// encodes it, on all cores (fill must be safe for concurrent use on
// disjoint blocks); the blocks' encodings are concatenated in order.
func encodeBlocks(m model, t Tensor, dt string, p *surgery.Principal, fill func(i0, i1 int, buf []float64) error) ([]byte, error) {
	align, _ := p.BlockShape()
	per := blockRows(t, align)
	blocks := (t.Out + per - 1) / per
	parts := make([][]byte, blocks)
	err := eachBlock(blocks, func() []float64 { return make([]float64, min(per, t.Out)*t.In) },
		func(buf []float64, b int) (err error) {
			i0 := b * per
			i1 := min(i0+per, t.Out)
			blk := buf[:(i1-i0)*t.In]
			if err := fill(i0, i1, blk); err != nil {
				return err
			}
			p.AddBlock(blk, t.In, i0, i1, 0, t.In)
			parts[b], err = encodeRows(m, t, dt, i0, i1, blk)
			return err
		})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, b := range parts {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range parts {
		out = append(out, b...)
	}
	return out, nil
}

// rowDecoder is implemented by models that can decode a block of a weight's
// rows from its stored bytes straight into float64, so merge never holds the
// whole weight as float32.
type rowDecoder interface {
	decodeRows(t Tensor, raw []byte, i0, i1 int, dst []float64) error
	sectioner
}

// tileSource supplies the values P is added to, for one worker of tiled: a
// block of rows is loaded, then decoded tile row by tile row.
type tileSource interface {
	load(i0, i1 int) error
	// row writes the values of row i (within the loaded block), columns
	// j0..j0+len(dst), to dst.
	row(i, j0 int, dst []float64)
}

// matrixSource is a decoded float32 weight.
type matrixSource struct{ w *surgery.Matrix }

func (matrixSource) load(i0, i1 int) error { return nil }
func (s matrixSource) row(i, j0 int, dst []float64) {
	widen(dst, s.w.Data[i*s.w.Cols+j0:i*s.w.Cols+j0+len(dst)])
}

// readerSource reads a block of rows of stored elements at a time.
type readerSource struct {
	r      io.ReaderAt
	kind   dtype.Kind
	cols   int
	i0     int
	buf    []byte
	loaded []byte
}

func (s *readerSource) load(i0, i1 int) error {
	rowBytes := s.cols * s.kind.Size()
	n := (i1 - i0) * rowBytes
	off := int64(i0) * int64(rowBytes)
	if v := viewOf(s.r, off, int64(n)); v != nil {
		s.i0, s.loaded = i0, v // mapped: read in place (tiled guards faults)
		noteReadOf(s.r, off, v)
		return nil
	}
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	s.i0, s.loaded = i0, s.buf[:n]
	if _, err := s.r.ReadAt(s.loaded, off); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("rows %d..%d: %w", i0, i1, err)
	}
	noteReadOf(s.r, off, s.loaded)
	return nil
}

func (s *readerSource) row(i, j0 int, dst []float64) {
	sz := s.kind.Size()
	off := ((i-s.i0)*s.cols + j0) * sz
	dtype.DecodeFloat64(s.kind, dst, s.loaded[off:off+len(dst)*sz])
}

// tiled computes V + P for an element-typed weight t (V from the sources
// newSource makes, one per worker) and encodes it in out, on all cores,
// into a buffer from pool (nil: a new one). A
// worker takes a block of rows at a time and goes along it a tile at a
// time: decode the tile into float64, add P's tile, encode it into the
// result. A tile stays in the core's cache through the three steps, so the
// values cross memory once in their stored width, never as float64.
func tiled(t Tensor, out dtype.Kind, p *surgery.Principal, pool *bufPool, newSource func() tileSource) ([]byte, error) {
	rows, cols := t.Out, t.In
	osz := out.Size()
	dst := pool.get(rows * cols * osz)
	mb, nb := p.BlockShape()
	blocks := (rows + mb - 1) / mb
	type worker struct {
		src  tileSource
		tile []float64
	}
	err := eachBlock(blocks, func() worker { return worker{newSource(), make([]float64, mb*nb)} },
		func(wk worker, b int) error {
			src, tile := wk.src, wk.tile
			i0 := b * mb
			i1 := min(i0+mb, rows)
			if err := src.load(i0, i1); err != nil {
				return err
			}
			for j0 := 0; j0 < cols; j0 += nb {
				j1 := min(j0+nb, cols)
				w := j1 - j0
				for i := i0; i < i1; i++ {
					src.row(i, j0, tile[(i-i0)*nb:(i-i0)*nb+w])
				}
				p.AddBlock(tile, nb, i0, i1, j0, j1)
				for i := i0; i < i1; i++ {
					o := i*cols + j0
					dtype.Encode(out, dst[o*osz:(o+w)*osz], tile[(i-i0)*nb:(i-i0)*nb+w])
				}
			}
			return nil
		})
	if err != nil {
		pool.put(dst)
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return dst, nil
}

// tiled16 is tiled for a weight stored in a 16-bit float kind k (F16 or
// BF16, f to surgery) merged into the same kind, reading it from r:
// Principal.AddBlock16 widens each tile of the microkernel, adds P and
// rounds it in registers, so the values never cross memory as float64
// (on a 7B merge this removed the CPU time spent decoding and encoding,
// about a tenth; see README "Performance"). The bytes are the ones tiled
// writes.
func tiled16(t Tensor, k dtype.Kind, f surgery.Format16, p *surgery.Principal, pool *bufPool, r io.ReaderAt) ([]byte, error) {
	rows, cols := t.Out, t.In
	dst := pool.get(2 * rows * cols)
	mb, _ := p.BlockShape()
	decode := func(dst []float64, src []byte) { dtype.DecodeFloat64(k, dst, src) }
	encode := func(dst []byte, src []float64) { dtype.Encode(k, dst, src) }
	err := eachBlock((rows+mb-1)/mb, func() *readerSource { return &readerSource{r: r, kind: k, cols: cols} },
		func(src *readerSource, b int) error {
			i0 := b * mb
			i1 := min(i0+mb, rows)
			if err := src.load(i0, i1); err != nil {
				return err
			}
			p.AddBlock16(f, dst[2*i0*cols:], src.loaded, cols, i0, i1, 0, cols, decode, encode)
			return nil
		})
	if err != nil {
		pool.put(dst)
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return dst, nil
}

// format16 maps a 16-bit float kind to surgery's name for it.
func format16(k dtype.Kind) (surgery.Format16, bool) {
	switch k {
	case dtype.F16:
		return surgery.Float16, true
	case dtype.BF16:
		return surgery.BFloat16, true
	}
	return 0, false
}

// eachBlock calls body for blocks 0..n-1 on all cores, each worker with
// its own state from newState, and returns the first error (which stops
// the other workers at their next block). The blocks may read memory-mapped
// input: a fault there is returned as an error (see catchFault).
func eachBlock[S any](n int, newState func() S, body func(s S, b int) error) error {
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		err     error
		wg      sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			var e error
			defer func() {
				if e != nil {
					errOnce.Do(func() { err = e })
					failed.Store(true)
				}
			}()
			defer catchFault(guardFaults(), &e)
			st := newState()
			for !failed.Load() {
				b := int(next.Add(1)) - 1
				if b >= n {
					return
				}
				if e = body(st, b); e != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return err
}
