package surgery

import (
	"fmt"
	"sync"
)

// Principal is the principal part P = scale·B·diag(S)·A of a rows × cols
// weight, prepared once for adding to blocks of the weight: merge adds it to
// the residual, the split subtracts it (a negative scale) from the weight.
//
// Preparing forms the coefficients scale·S[c]·B[i,c] in float64 and packs
// them and A for the product's microkernel, so a block costs its arithmetic
// alone; a caller can then decode a block of stored values, add P's block
// and encode the result while all three stay in the processor's cache,
// which is what makes a merge run at the speed of the product rather than
// of memory. Every element is accumulated in float64, in an order fixed by
// the rank alone (the same as AddPrincipal's), so a block's result does not
// depend on how the weight was cut into blocks or on the number of workers.
//
// AddBlock16 does the same for a block stored as binary16 or bfloat16,
// fused: the stored values are widened, added to and rounded in registers.
//
// AddBlock and AddBlock16 may be called concurrently on disjoint
// destinations.
type Principal struct {
	rows, cols, rank int
	kern             microKernel[float64]
	// coef holds, for each block of gemmKC inner indices, the rows of
	// scale·B·diag(S) packed as strips of kern.mr rows (see packA).
	coef [][]float64
	// panels holds A as ⌈cols/nr⌉ panels of rank rows × nr (see packB).
	panels []float64
}

// NewPrincipal prepares scale·B·diag(S)·A. It panics if f is not a
// consistent set of factors (see Factors.Check).
func NewPrincipal(f *Factors, scale float64) *Principal {
	if f == nil || f.A == nil || f.B == nil {
		panic("surgery: NewPrincipal: missing factors")
	}
	m, n, r := f.B.Rows, f.A.Cols, len(f.S)
	mustFit(f, m, n, m*n)
	kern := kernel64
	p := &Principal{rows: m, cols: n, rank: r, kern: kern}
	mr := kern.mr
	strips := (m + mr - 1) / mr
	for k0 := 0; k0 < r; k0 += gemmKC {
		kc := min(gemmKC, r-k0)
		ss := stripStride(mr, kc)
		blk := getBuf[float64](strips * ss)
		// Strip s holds rows s·mr … s·mr+mr−1 of scale·B·diag(S), inner
		// index by inner index (see packA), zero below the last row.
		for st := 0; st < strips; st++ {
			d := blk[st*ss : (st+1)*ss]
			rows := min(mr, m-st*mr)
			if rows < mr {
				clear(d)
			} else {
				clear(d[mr*kc:])
			}
			for o := range rows {
				i := st*mr + o
				for kk, b := range f.B.Data[i*r+k0 : i*r+k0+kc] {
					d[kk*mr+o] = scale * float64(f.S[k0+kk]) * float64(b)
				}
			}
		}
		p.coef = append(p.coef, blk)
	}
	p.panels = packBWide(f.A.Data, n, r, kern.nr)
	return p
}

// packBWide packs the float32 k×n matrix b as packB does (alpha 1),
// widened to float64 on the way, into a buffer from the pool.
func packBWide(b []float32, n, k, nr int) []float64 {
	panels := (n + nr - 1) / nr
	bp := getBuf[float64](panels * k * nr)
	for pn := 0; pn < panels; pn++ {
		c0 := pn * nr
		cols := min(nr, n-c0)
		dst := bp[pn*k*nr : (pn+1)*k*nr]
		for kk := 0; kk < k; kk++ {
			d := dst[kk*nr : kk*nr+nr]
			for j, v := range b[kk*n+c0 : kk*n+c0+cols] {
				d[j] = float64(v)
			}
			clear(d[cols:])
		}
	}
	return bp
}

// Release hands p's packed factors back for reuse by later products; p
// must not be used afterwards. (A merge prepares one Principal per weight:
// reusing their memory spares the system zeroing fresh pages for each.)
func (p *Principal) Release() {
	for _, b := range p.coef {
		putBuf(b)
	}
	if p.panels != nil {
		putBuf(p.panels)
	}
	p.coef, p.panels = nil, nil
}

// BlockShape returns the block of rows × columns a caller should work in:
// big enough that a panel of A, once in the first-level cache, serves many
// strips, small enough that the block of float64 values (192 KiB) and its
// coefficients (96 KiB at rank 128) stay in a core's second-level cache.
// (On AVX2 anything from 48×128 to 96×256 measured within a few percent;
// 24×512 and 192×64 were slower.) AddBlock's blocks must start at
// multiples of it.
func (p *Principal) BlockShape() (rows, cols int) {
	rows = (96 + p.kern.mr - 1) / p.kern.mr * p.kern.mr
	cols = 256 / p.kern.nr * p.kern.nr
	return rows, cols
}

// AddBlock adds P[i0:i1, j0:j1] to dst, whose row i−i0 starts at
// dst[(i−i0)·ld]: dst[(i−i0)·ld + j−j0] += P[i, j]. i0 and j0 must be
// multiples of BlockShape's rows and columns (or 0); it panics otherwise, or
// if the block is out of range or dst too short.
func (p *Principal) AddBlock(dst []float64, ld, i0, i1, j0, j1 int) {
	if !p.checkBlock("AddBlock", i0, i1, j0, j1, ld) {
		return
	}
	if len(dst) < (i1-i0-1)*ld+j1-j0 {
		panic(fmt.Sprintf("surgery: AddBlock: destination of %d elements for %d×%d with ld %d", len(dst), i1-i0, j1-j0, ld))
	}
	mr, nr, r := p.kern.mr, p.kern.nr, p.rank
	var tile []float64
	for kb, blk := range p.coef {
		k0 := kb * gemmKC
		kc := min(gemmKC, r-k0)
		ss := stripStride(mr, kc)
		// Panels outermost: a panel of A (kc×nr) stays in the first-level
		// cache across the block's strips, the block's strips of
		// coefficients in the second.
		for c0 := j0; c0 < j1; c0 += nr {
			pn := c0 / nr
			bs := p.panels[(pn*r+k0)*nr : (pn*r+k0+kc)*nr]
			cols := min(nr, j1-c0)
			for r0 := i0; r0 < i1; r0 += mr {
				as := blk[(r0/mr)*ss : (r0/mr)*ss+mr*kc]
				rows := min(mr, i1-r0)
				c := dst[(r0-i0)*ld+c0-j0:]
				if rows == mr && cols == nr {
					p.kern.fn(kc, as, bs, c, ld)
					continue
				}
				// A ragged tile goes through a whole one, so that its
				// sums are formed as a whole tile's are.
				if tile == nil {
					tile = make([]float64, mr*nr)
				}
				clear(tile)
				for i := 0; i < rows; i++ {
					copy(tile[i*nr:i*nr+cols], c[i*ld:i*ld+cols])
				}
				p.kern.fn(kc, as, bs, tile, nr)
				for i := 0; i < rows; i++ {
					copy(c[i*ld:i*ld+cols], tile[i*nr:i*nr+cols])
				}
			}
		}
	}
}

// checkBlock panics, naming the method, unless [i0:i1, j0:j1] with row
// stride ld is a block the Add methods accept; it reports whether the block
// has any elements.
func (p *Principal) checkBlock(method string, i0, i1, j0, j1, ld int) bool {
	mb, nb := p.BlockShape()
	if i0 < 0 || j0 < 0 || i1 > p.rows || j1 > p.cols || i0%mb != 0 || j0%nb != 0 || i1 < i0 || j1 < j0 || ld < j1-j0 {
		panic(fmt.Sprintf("surgery: %s: block [%d:%d, %d:%d] (ld %d) of a %d×%d principal part",
			method, i0, i1, j0, j1, ld, p.rows, p.cols))
	}
	return i1 > i0 && j1 > j0
}

// Format16 names a 16-bit floating-point format a weight may be stored in,
// for AddBlock16.
type Format16 uint8

const (
	Float16  Format16 = iota // IEEE 754 binary16 ("F16")
	BFloat16                 // bfloat16 ("BF16"): float32's upper half
)

// String returns the format's usual tensor type name.
func (f Format16) String() string {
	switch f {
	case Float16:
		return "F16"
	case BFloat16:
		return "BF16"
	}
	return fmt.Sprintf("Format16(%d)", uint8(f))
}

// AddBlock16 is AddBlock for a block stored as little-endian 16-bit
// floats of format f: it sets dst = round(src + P[i0:i1, j0:j1]), where
// src and dst hold the block's rows, row i−i0 starting at element
// (i−i0)·ld, and may be the same memory. Each sum is the one AddBlock
// forms in float64 from the widened src, rounded once to nearest even, so
// the result is the same whichever way it is computed: where Fuses16
// reports true, whole tiles of the microkernel are widened, added to and
// rounded in registers and the values never cross memory as float64; the
// rest (the block's ragged edges, tiles with a sum the fused rounding
// leaves alone, other machines) goes through decode and encode, which must
// widen exactly and round once to nearest even (formats/dtype's
// DecodeFloat64 and Encode do; encode also decides NaN payloads). It
// panics as AddBlock does, or if dst or src is too short.
func (p *Principal) AddBlock16(f Format16, dst, src []byte, ld, i0, i1, j0, j1 int, decode func([]float64, []byte), encode func([]byte, []float64)) {
	if !p.checkBlock("AddBlock16", i0, i1, j0, j1, ld) {
		return
	}
	if need := 2 * ((i1-i0-1)*ld + j1 - j0); len(dst) < need || len(src) < need {
		panic(fmt.Sprintf("surgery: AddBlock16: %d and %d bytes for %d×%d %v with ld %d", len(dst), len(src), i1-i0, j1-j0, f, ld))
	}
	var fused fused16Kernel[float64]
	if p.Fuses16(f) {
		fused = p.kern.fused16[f]
	}
	if w := j1 - j0; fused != nil && (2*ld)%stageAlias == 0 && i1-i0 > p.kern.mr {
		// Rows a multiple of 2 KiB apart fall into the same few sets of
		// the caches, and a tile's rows, read and written as the kernel
		// goes down a panel, evict one another. Going through a copy
		// whose rows are two cache lines further apart was 10–15% faster
		// on a 4096-wide weight, copies included (BenchmarkAddBlock16).
		ldp := w + stagePad
		bp := stagePool.Get().(*[]byte)
		if need := 2 * ((i1-i0-1)*ldp + w); cap(*bp) < need {
			*bp = make([]byte, need)
		}
		stage := (*bp)[:cap(*bp)]
		for i := 0; i < i1-i0; i++ {
			copy(stage[2*i*ldp:2*(i*ldp+w)], src[2*i*ld:2*(i*ld+w)])
		}
		p.addBlock16(fused, stage, stage, ldp, i0, i1, j0, j1, decode, encode)
		for i := 0; i < i1-i0; i++ {
			copy(dst[2*i*ld:2*(i*ld+w)], stage[2*i*ldp:2*(i*ldp+w)])
		}
		stagePool.Put(bp)
		return
	}
	p.addBlock16(fused, dst, src, ld, i0, i1, j0, j1, decode, encode)
}

// Staging for AddBlock16: rows whose stride in bytes is a multiple of
// stageAlias are copied to rows stagePad elements longer. (A variable so
// that the benchmark can compare without it.)
var stageAlias = 2048

const stagePad = 64

var stagePool = sync.Pool{New: func() any { return new([]byte) }}

// addBlock16 is AddBlock16 on the memory given, with fused the kernel's
// form for the format or nil.
func (p *Principal) addBlock16(fused fused16Kernel[float64], dst, src []byte, ld, i0, i1, j0, j1 int, decode func([]float64, []byte), encode func([]byte, []float64)) {
	mr, nr, r := p.kern.mr, p.kern.nr, p.rank
	ss := stripStride(mr, r)
	var tile []float64
	for c0 := j0; c0 < j1; c0 += nr {
		pn := c0 / nr
		cols := min(nr, j1-c0)
		for r0 := i0; r0 < i1; r0 += mr {
			off := 2 * ((r0-i0)*ld + c0 - j0)
			if fused != nil && cols == nr {
				// Whole strips in one call, up to a tile it leaves.
				st := r0 / mr
				done := fused(r, p.coef[0][st*ss:], ss, (i1-r0)/mr, p.panels[pn*r*nr:(pn+1)*r*nr], src[off:], ld, dst[off:], ld)
				r0 += done * mr
				if r0 >= i1 {
					break
				}
				off = 2 * ((r0-i0)*ld + c0 - j0)
			}
			if tile == nil {
				tile = make([]float64, mr*nr)
			}
			p.addTile16(tile, dst[off:], src[off:], ld, r0, pn, min(mr, i1-r0), cols, decode, encode)
		}
	}
}

// Fuses16 reports whether AddBlock16 runs fused for format f on this
// machine: the microkernel has a form for f (AVX2, and F16C for binary16)
// and the rank fits one pass of it. Where it does not, AddBlock16 goes
// tile by tile through its decode and encode, and a caller that decodes
// and encodes longer rows itself around AddBlock does better.
func (p *Principal) Fuses16(f Format16) bool {
	return int(f) < len(p.kern.fused16) && p.kern.fused16[f] != nil && len(p.coef) == 1
}

// addTile16 is AddBlock16 for the tile of rows × cols at row r0 of
// panel pn (its first rows and columns, if it is ragged) through a float64
// tile and the caller's decode and encode.
func (p *Principal) addTile16(tile []float64, dst, src []byte, ld, r0, pn, rows, cols int, decode func([]float64, []byte), encode func([]byte, []float64)) {
	mr, nr, r := p.kern.mr, p.kern.nr, p.rank
	clear(tile)
	for i := 0; i < rows; i++ {
		decode(tile[i*nr:i*nr+cols], src[2*i*ld:2*(i*ld+cols)])
	}
	for kb, blk := range p.coef {
		k0 := kb * gemmKC
		kc := min(gemmKC, r-k0)
		ss := stripStride(mr, kc)
		p.kern.fn(kc, blk[(r0/mr)*ss:(r0/mr)*ss+mr*kc], p.panels[(pn*r+k0)*nr:(pn*r+k0+kc)*nr], tile, nr)
	}
	for i := 0; i < rows; i++ {
		encode(dst[2*i*ld:2*(i*ld+cols)], tile[i*nr:i*nr+cols])
	}
}

// AddTo adds all of P to dst (rows × cols, row-major), on all cores.
func (p *Principal) AddTo(dst []float64) {
	if len(dst) != p.rows*p.cols {
		panic(fmt.Sprintf("surgery: AddTo: destination has %d elements, want %d×%d", len(dst), p.rows, p.cols))
	}
	mb, nb := p.BlockShape()
	blocks := (p.cols + nb - 1) / nb
	parallelFor(p.rows, mb, func(lo, hi int) {
		for b := 0; b < blocks; b++ {
			j0 := b * nb
			p.AddBlock(dst[lo*p.cols+j0:], p.cols, lo, hi, j0, min(j0+nb, p.cols))
		}
	})
}
