package surgery

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// This file is the blocked, packed, parallel matrix product the SVD spends
// its time in (after Goto and van de Geijn, "Anatomy of high-performance
// matrix multiplication", 2008):
//
//   - the right operand B is packed once into panels nr columns wide,
//     scaled by alpha, zero-padded;
//   - the output rows are cut into chunks that workers take in turn; a worker
//     packs its mc×kc block of op(A) into strips mr rows high (this is where
//     a transposed A costs nothing extra: the strips are filled from
//     contiguous rows of A either way), or, for op(A) = A and a kernel that
//     can, reads A where it lies;
//   - a microkernel (assembly where the CPU allows, see gemm_amd64.go; Go
//     otherwise) adds an mr×kc strip times a kc×nr panel into an mr×nr tile
//     of C held in registers.
//
// Products with few output rows and a long inner dimension (Gram matrices)
// are cut along the inner dimension instead (gemmSplitK); products with few
// columns use a narrow kernel; a Lanczos run over a small W packs it once
// (packedA).
//
// Every element of C is accumulated by one worker in an order fixed by the
// shapes alone, so results are bit-identical from run to run and
// independent of the number of workers; they do depend on the microkernel
// (FMA or not, vector width), that is on the CPU and the build tags.

// microKernel adds the mr×kc strip a (kc groups of mr) times the kc×nr
// panel b (kc rows of nr) into the mr×nr tile of c starting at c[0] with row
// stride ldc.
//
// dirN, when not nil, is a variant for op(A) = A that reads a full strip
// where it lies in A (its rows start at a[0], a[lda], ...) instead of from
// a packed copy, saving the packing pass over A, which for a product with
// few columns costs as much as the arithmetic. (For op(A) = Aᵀ the strips
// are short pieces of rows far apart, and packing them was faster.)
type microKernel[T float] struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b, c []T, ldc int)
	dirN   func(kc int, a []T, lda int, b, c []T, ldc int)
	// fused16[f], when set, is fn on tiles stored in the 16-bit format f
	// (float64 kernels only), going down consecutive strips of A (the
	// first at a[0], the next as elements on) against one panel b: for
	// each strip it adds the product to the mr×nr tile at src (row stride
	// lds elements, the next strip's tile mr rows down) and stores the
	// sums at dst (row stride ldd), each rounded once to nearest even as
	// Principal.AddBlock16 documents. It stops before a tile with a sum it
	// cannot round (NaN; for bfloat16 also below 2^-126 in magnitude),
	// storing nothing of it, and returns the strips done.
	fused16 [2]fused16Kernel[T]
}

// fused16Kernel is the type of microKernel.fused16.
type fused16Kernel[T float] func(kc int, a []T, as, strips int, b []T, src []byte, lds int, dst []byte, ldd int) int

// The microkernels the products use; set at init (gemm_init.go) and
// swapped by tests and benchmarks.
var (
	kernel32 microKernel[float32]
	kernel64 microKernel[float64]
	// kernel32Narrow serves float32 products with at most its nr columns
	// (a thin Lanczos block), which a wide kernel would pad.
	kernel32Narrow microKernel[float32]
)

// packPrefetchRows is how many rows ahead the transposed-A packing
// prefetches.
const packPrefetchRows = 8

// Blocking: a kc×nr panel of B is read from L2 once per strip of A, an
// mr×kc strip of A stays in L1 across all panels of B, and the packed kc×n
// block of B stays in L2 across a chunk's strips.
const (
	gemmKC      = 512
	gemmChunk   = 96 // target rows per chunk, rounded up to a multiple of mr
	gemmChunkTA = 4  // chunk length factor when A is transposed
)

// gemm32 computes C = alpha·op(A)·B (acc false) or C += alpha·op(A)·B (acc
// true) in float32, where op(A) is m×k: A itself (m×k, row stride lda) when
// tA is false, or the transpose of the k×m matrix A when tA is true. B is
// k×n with row stride ldb and C is m×n with row stride ldc.
func gemm32(tA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if gemm32Hook != nil && gemm32Hook(tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc) {
		return
	}
	gemm(kernelFor32(n), fullProduct, tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc)
}

// kernelFor32 returns the microkernel gemm32 uses for a product with n
// columns.
func kernelFor32(n int) microKernel[float32] {
	if n <= kernel32Narrow.nr && kernel32Narrow.fn != nil {
		return kernel32Narrow
	}
	return kernel32
}

// gemm64 is gemm32 in float64 with A in float32 or float64: a float32 A (a
// weight) is widened exactly while it is packed, so the product is a
// float64 product of the stored values.
func gemm64[S float](tA bool, m, n, k int, alpha float64, a []S, lda int, b []float64, ldb int, c []float64, ldc int, acc bool) {
	if gemm64Hook != nil {
		if a64, ok := any(a).([]float64); ok && gemm64Hook(tA, m, n, k, alpha, a64, lda, b, ldb, c, ldc, acc) {
			return
		}
	}
	gemm(kernel64, fullProduct, tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc)
}

// triangle says which part of a product gemm64Tri may skip.
type triangle int

const (
	fullProduct triangle = iota
	// upperC: only the upper triangle of C (m = n) is wanted; tiles
	// wholly below the diagonal are neither computed nor defined.
	upperC
	// upperB: B (k × n) is upper triangular, B[t][j] = 0 for t > j; the
	// inner loop of column j stops at j.
	upperB
)

// gemm64Tri is gemm64 for products with a triangular structure: a Gram
// matrix of which Cholesky reads one triangle, a product with a triangular
// factor's inverse. It saves up to half the work.
func gemm64Tri(tri triangle, tA bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, acc bool) {
	// The full product is a valid result of either variant.
	if gemm64Hook != nil && gemm64Hook(tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc) {
		return
	}
	gemm(kernel64, tri, tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc)
}

// Hooks an accelerated BLAS build (tag openblas) installs; they return false
// to leave a product to the Go kernels.
var (
	gemm32Hook func(tA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) bool
	gemm64Hook func(tA bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, acc bool) bool
)

// checkGemm panics when the slices are too short for the shapes: the
// kernels read through raw pointers, so this is the line that keeps a
// caller's bug from becoming memory corruption.
func checkGemm(tA bool, m, n, k, lda, ldb, ldc, la, lb, lc int) {
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	bad := func(what string, rows, cols, ld, have int) {
		if rows > 0 && cols > 0 && (ld < cols || have < (rows-1)*ld+cols) {
			panic(fmt.Sprintf("surgery: gemm: %s is %d×%d with stride %d in %d elements", what, rows, cols, ld, have))
		}
	}
	bad("A", ar, ac, lda, la)
	bad("B", k, n, ldb, lb)
	bad("C", m, n, ldc, lc)
}

// gemm is the driver behind gemm32 and gemm64.
func gemm[S, T float](kern microKernel[T], tri triangle, tA bool, m, n, k int, alpha T, a []S, lda int, b []T, ldb int, c []T, ldc int, acc bool) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemm(tA, m, n, k, lda, ldb, ldc, len(a), len(b), len(c))
	if k <= 0 || alpha == 0 {
		if !acc {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if gemmSplitK(kern, tri, tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc) {
		return
	}
	gemmRows(kern, tri, tA, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc, nil)
}

// splitKSlice is the inner length of one slice of a split-k product.
const splitKSlice = 1024

// gemmSplitK handles the products whose output is too small to give every
// worker rows of its own (a Gram matrix XᵀX of a tall X, the coefficients
// of a projection): it cuts the inner dimension into fixed slices of
// splitKSlice, computes the slices' products in parallel and adds them up
// in slice order. The cut depends on k alone, so the result stays
// independent of the number of workers. It reports whether it did the
// product.
func gemmSplitK[S, T float](kern microKernel[T], tri triangle, tA bool, m, n, k int, alpha T, a []S, lda int, b []T, ldb int, c []T, ldc int, acc bool) bool {
	slices := (k + splitKSlice - 1) / splitKSlice
	if slices < 2 || m > rowChunk(tA, kern.mr) || m*n > 1<<16 || tri == upperB {
		return false
	}
	parts := make([]T, slices*m*n)
	parallelFor(slices, 1, func(lo, hi int) {
		for sl := lo; sl < hi; sl++ {
			k0 := sl * splitKSlice
			kk := min(splitKSlice, k-k0)
			as := a[k0:]
			if tA {
				as = a[k0*lda:]
			}
			gemmRows(kern, tri, tA, m, n, kk, alpha, as, lda, b[k0*ldb:], ldb, parts[sl*m*n:(sl+1)*m*n], n, false, nil)
		}
	})
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if !acc {
			clear(row)
		}
		for sl := 0; sl < slices; sl++ {
			for j, v := range parts[sl*m*n+i*n : sl*m*n+i*n+n] {
				row[j] += v
			}
		}
	}
	return true
}

// packedA is op(A) packed once for many products with the same A and
// kernel (the passes of a Lanczos run over a small W, whose packing would
// otherwise cost as much as the arithmetic of a thin block): the blocks
// gemmRows would pack, for each chunk of rows and each block of gemmKC
// inner indices.
type packedA[T float] struct {
	kern   microKernel[T]
	tA     bool
	m, k   int
	blocks [][]T // [chunk·kblocks + kblock]
}

// prepackA packs op(A) (m × k; see gemm32 for tA) for kern.
func prepackA[S, T float](kern microKernel[T], tA bool, m, k int, a []S, lda int) *packedA[T] {
	mr := kern.mr
	mc := rowChunk(tA, mr)
	chunks := (m + mc - 1) / mc
	kblocks := (k + gemmKC - 1) / gemmKC
	pa := &packedA[T]{kern: kern, tA: tA, m: m, k: k, blocks: make([][]T, chunks*kblocks)}
	parallelFor(chunks*kblocks, 1, func(lo, hi int) {
		for bi := lo; bi < hi; bi++ {
			ch, kb := bi/kblocks, bi%kblocks
			i0, k0 := ch*mc, kb*gemmKC
			i1, kc := min(i0+mc, m), min(gemmKC, k-k0)
			blk := make([]T, ((i1-i0+mr-1)/mr)*stripStride(mr, kc))
			packA(blk, a, lda, tA, i0, i1, k0, kc, mr)
			pa.blocks[bi] = blk
		}
	})
	return pa
}

// gemm32Packed is gemm32 with op(A) from pa: C = alpha·op(A)·B (or +=),
// B k × n, C m × n.
func gemm32Packed(pa *packedA[float32], n int, alpha float32, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if pa.m <= 0 || n <= 0 {
		return
	}
	checkGemm(false, pa.m, n, pa.k, pa.k, ldb, ldc, pa.m*pa.k, len(b), len(c))
	gemmRows[float32](pa.kern, fullProduct, pa.tA, pa.m, n, pa.k, alpha, nil, 0, b, ldb, c, ldc, acc, pa)
}

// rowChunk returns the number of output rows a worker takes at a time.
func rowChunk(tA bool, mr int) int {
	// A transposed A is packed from row segments mc long: make them long
	// enough for the hardware prefetcher.
	mc := gemmChunk
	if tA {
		mc *= gemmChunkTA
	}
	return (mc + mr - 1) / mr * mr
}

// gemmRows is the product with the output rows split among the workers.
//
// With pre not nil, op(A) comes packed from pre (and a is not read).
func gemmRows[S, T float](kern microKernel[T], tri triangle, tA bool, m, n, k int, alpha T, a []S, lda int, b []T, ldb int, c []T, ldc int, acc bool, pre *packedA[T]) {
	mr, nr := kern.mr, kern.nr
	panels := (n + nr - 1) / nr
	bp := packB(b, ldb, k, n, nr, alpha)

	mc := rowChunk(tA, mr)
	chunks := (m + mc - 1) / mc
	kblocks := (k + gemmKC - 1) / gemmKC
	aT, direct := any(a).([]T)
	direct = direct && pre == nil && !tA && kern.dirN != nil
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var next atomic.Int64
	work := func() {
		buf := getBuf[T](max((min(mc, m)+mr-1)/mr, 2) * stripStride(mr, min(k, gemmKC)))
		defer putBuf(buf)
		apack := buf
		tile := make([]T, mr*nr)
		for {
			ch := int(next.Add(1)) - 1
			if ch >= chunks {
				return
			}
			i0 := ch * mc
			i1 := min(i0+mc, m)
			if !acc {
				for i := i0; i < i1; i++ {
					clear(c[i*ldc : i*ldc+n])
				}
			}
			strips := (i1 - i0 + mr - 1) / mr
			full := (i1 - i0) / mr
			for k0 := 0; k0 < k; k0 += gemmKC {
				kc := min(gemmKC, k-k0)
				switch {
				case pre != nil:
					apack = pre.blocks[ch*kblocks+k0/gemmKC]
				case direct:
					// Only a partial last strip is packed.
					if full < strips {
						packA(apack, a, lda, tA, i0+full*mr, i1, k0, kc, mr)
					}
				default:
					packA(apack, a, lda, tA, i0, i1, k0, kc, mr)
				}
				for it := 0; it < strips*panels; it++ {
					s, p := it/panels, it%panels
					r0 := i0 + s*mr
					rows := min(mr, i1-r0)
					c0 := p * nr
					cols := min(nr, n-c0)
					kce := kc // inner length of this tile's product
					switch tri {
					case upperC:
						if c0+cols <= r0 {
							continue // wholly below the diagonal
						}
					case upperB:
						// B's panel is zero below its last column's row.
						kce = min(kc, c0+cols-k0)
						if kce <= 0 {
							continue
						}
					}
					bs := bp[(p*k+k0)*nr : (p*k+k0+kce)*nr]
					var as []T
					switch {
					case direct && s < full && cols == nr:
						kern.dirN(kce, aT[r0*lda+k0:], lda, bs, c[r0*ldc+c0:], ldc)
						continue
					case direct && s < full:
						// An edge panel: go through the tile with the
						// packed kernel on a packed copy of this strip.
						packA(apack[stripStride(mr, kc):], a, lda, tA, r0, r0+mr, k0, kc, mr)
						as = apack[stripStride(mr, kc) : stripStride(mr, kc)+mr*kc]
					case direct:
						as = apack[:mr*kc]
					default:
						as = apack[s*stripStride(mr, kc) : s*stripStride(mr, kc)+mr*kc]
					}
					{
						if rows == mr && cols == nr {
							kern.fn(kce, as, bs, c[r0*ldc+c0:], ldc)
							continue
						}
						clear(tile)
						kern.fn(kce, as, bs, tile, nr)
						for i := 0; i < rows; i++ {
							dst := c[(r0+i)*ldc+c0 : (r0+i)*ldc+c0+cols]
							for j, v := range tile[i*nr : i*nr+cols] {
								dst[j] += v
							}
						}
					}
				}
			}
		}
	}
	defer putBuf(bp)
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
}

// Scratch buffers of the products, recycled: a power iteration or a
// Lanczos run makes thousands of products whose packed copies would
// otherwise be allocated, zeroed and collected each time.
var (
	pool32 sync.Pool // *[]float32
	pool64 sync.Pool // *[]float64
)

// getBuf returns a slice of length n with unspecified contents.
func getBuf[T float](n int) []T {
	var p *sync.Pool
	var zero T
	switch any(zero).(type) {
	case float32:
		p = &pool32
	default:
		p = &pool64
	}
	if v, ok := p.Get().(*[]T); ok && cap(*v) >= n {
		return (*v)[:n]
	}
	return make([]T, n)
}

// putBuf hands x back for reuse.
func putBuf[T float](x []T) {
	var p *sync.Pool
	var zero T
	switch any(zero).(type) {
	case float32:
		p = &pool32
	default:
		p = &pool64
	}
	p.Put(&x)
}

// packB returns alpha·B (k×n, row stride ldb) as ⌈n/nr⌉ panels, each k rows
// of nr elements, zero-padded on the right.
func packB[T float](b []T, ldb, k, n, nr int, alpha T) []T {
	panels := (n + nr - 1) / nr
	bp := getBuf[T](panels * k * nr)
	pack := func(lo, hi int) {
		for p := lo; p < hi; p++ {
			c0 := p * nr
			cols := min(nr, n-c0)
			dst := bp[p*k*nr : (p+1)*k*nr]
			for kk := 0; kk < k; kk++ {
				src := b[kk*ldb+c0 : kk*ldb+c0+cols]
				d := dst[kk*nr : kk*nr+cols]
				if cols < nr {
					clear(dst[kk*nr+cols : kk*nr+nr])
				}
				if alpha == 1 {
					copy(d, src)
				} else {
					for j, v := range src {
						d[j] = alpha * v
					}
				}
			}
		}
	}
	if k*n < 1<<16 {
		pack(0, panels)
	} else {
		parallelFor(panels, 1, pack)
	}
	return bp
}

// stripStride is the distance between packed strips of A: mr·kc plus a
// cache line, so that the strips a transposed A is scattered into do not
// all map to the same cache set (kc·mr·4 bytes is often a multiple of 4 KiB).
func stripStride(mr, kc int) int { return mr*kc + 16 }

// packA fills dst with rows i0..i1 and inner indices k0..k0+kc of op(A) as
// strips of mr rows: strip s, at s·stripStride, holds kc groups of mr elements, zero-padded
// below the last row.
func packA[S, T float](dst []T, a []S, lda int, tA bool, i0, i1, k0, kc, mr int) {
	rows := i1 - i0
	full := rows / mr
	ss := stripStride(mr, kc)
	if !tA {
		// op(A) = A: a strip interleaves mr contiguous rows.
		for s := 0; s < full; s++ {
			d := dst[s*ss : s*ss+mr*kc]
			r := (i0 + s*mr) * lda
			switch mr {
			case 8:
				interleave8(d, a[r+k0:], lda, kc)
			case 6:
				interleave6(d, a[r+k0:], lda, kc)
			case 4:
				interleave4(d, a[r+k0:], lda, kc)
			default:
				for o := 0; o < mr; o++ {
					for kk, v := range a[r+o*lda+k0 : r+o*lda+k0+kc] {
						d[kk*mr+o] = T(v)
					}
				}
			}
		}
		if rows > full*mr {
			d := dst[full*ss : full*ss+mr*kc]
			clear(d)
			for o := 0; o < rows-full*mr; o++ {
				r := (i0+full*mr+o)*lda + k0
				for kk, v := range a[r : r+kc] {
					d[kk*mr+o] = T(v)
				}
			}
		}
		return
	}
	// op(A) = Aᵀ: row kk of A holds the groups for inner index kk of all
	// strips, contiguous.
	if rows > full*mr {
		clear(dst[full*ss : full*ss+mr*kc])
	}
	fast := packTNFast(dst, a, lda, i0, k0, kc, full, ss, mr)
	for kk := 0; kk < kc; kk++ {
		src := a[(k0+kk)*lda+i0 : (k0+kk)*lda+i1]
		switch {
		case fast:
		case mr == 8:
			for s := 0; s < full; s++ {
				d := dst[s*ss+kk*8 : s*ss+kk*8+8 : s*ss+kk*8+8]
				g := src[s*8 : s*8+8 : s*8+8]
				d[0], d[1], d[2], d[3] = T(g[0]), T(g[1]), T(g[2]), T(g[3])
				d[4], d[5], d[6], d[7] = T(g[4]), T(g[5]), T(g[6]), T(g[7])
			}
		default:
			for s := 0; s < full; s++ {
				d := dst[s*ss+kk*mr : s*ss+kk*mr+mr]
				for o, v := range src[s*mr : s*mr+mr] {
					d[o] = T(v)
				}
			}
		}
		if rows > full*mr {
			d := dst[full*ss+kk*mr:]
			for o, v := range src[full*mr:] {
				d[o] = T(v)
			}
		}
	}
}

// interleave8 writes kc groups of 8 to d: group kk holds element kk of
// each of the 8 rows of a that start at a[0], a[lda], ..., a[7·lda].
func interleave8[S, T float](d []T, a []S, lda, kc int) {
	r0 := a[0*lda : 0*lda+kc : 0*lda+kc]
	r1 := a[1*lda : 1*lda+kc : 1*lda+kc]
	r2 := a[2*lda : 2*lda+kc : 2*lda+kc]
	r3 := a[3*lda : 3*lda+kc : 3*lda+kc]
	r4 := a[4*lda : 4*lda+kc : 4*lda+kc]
	r5 := a[5*lda : 5*lda+kc : 5*lda+kc]
	r6 := a[6*lda : 6*lda+kc : 6*lda+kc]
	r7 := a[7*lda : 7*lda+kc : 7*lda+kc]
	d = d[:8*kc]
	for kk := range r0 {
		g := d[kk*8 : kk*8+8 : kk*8+8]
		g[0], g[1], g[2], g[3] = T(r0[kk]), T(r1[kk]), T(r2[kk]), T(r3[kk])
		g[4], g[5], g[6], g[7] = T(r4[kk]), T(r5[kk]), T(r6[kk]), T(r7[kk])
	}
}

// interleave6 is interleave8 for 6 rows.
func interleave6[S, T float](d []T, a []S, lda, kc int) {
	r0 := a[0*lda : 0*lda+kc : 0*lda+kc]
	r1 := a[1*lda : 1*lda+kc : 1*lda+kc]
	r2 := a[2*lda : 2*lda+kc : 2*lda+kc]
	r3 := a[3*lda : 3*lda+kc : 3*lda+kc]
	r4 := a[4*lda : 4*lda+kc : 4*lda+kc]
	r5 := a[5*lda : 5*lda+kc : 5*lda+kc]
	d = d[:6*kc]
	for kk := range r0 {
		g := d[kk*6 : kk*6+6 : kk*6+6]
		g[0], g[1], g[2] = T(r0[kk]), T(r1[kk]), T(r2[kk])
		g[3], g[4], g[5] = T(r3[kk]), T(r4[kk]), T(r5[kk])
	}
}

// interleave4 is interleave8 for 4 rows.
func interleave4[S, T float](d []T, a []S, lda, kc int) {
	r0 := a[0*lda : 0*lda+kc : 0*lda+kc]
	r1 := a[1*lda : 1*lda+kc : 1*lda+kc]
	r2 := a[2*lda : 2*lda+kc : 2*lda+kc]
	r3 := a[3*lda : 3*lda+kc : 3*lda+kc]
	d = d[:4*kc]
	for kk := range r0 {
		g := d[kk*4 : kk*4+4 : kk*4+4]
		g[0], g[1], g[2], g[3] = T(r0[kk]), T(r1[kk]), T(r2[kk]), T(r3[kk])
	}
}

// kernelGo is the portable microkernel: a 4×2 tile. Eight accumulators
// and the six operands of a step fit the sixteen floating-point registers
// of amd64 (a 4×4 tile spills and runs at two thirds of the speed); the
// compiler does not vectorize, so this is scalar code.
func kernelGo[T float](kc int, a, b, c []T, ldc int) {
	const mr, nr = 4, 2
	a = a[:kc*mr]
	b = b[:kc*nr]
	_ = c[3*ldc+1]
	var c00, c01, c10, c11, c20, c21, c30, c31 T
	for kk := 0; kk < kc; kk++ {
		av := a[kk*mr : kk*mr+mr : kk*mr+mr]
		bv := b[kk*nr : kk*nr+nr : kk*nr+nr]
		b0, b1 := bv[0], bv[1]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c10 += a1 * b0
		c11 += a1 * b1
		c20 += a2 * b0
		c21 += a2 * b1
		c30 += a3 * b0
		c31 += a3 * b1
	}
	c[0] += c00
	c[1] += c01
	c[ldc] += c10
	c[ldc+1] += c11
	c[2*ldc] += c20
	c[2*ldc+1] += c21
	c[3*ldc] += c30
	c[3*ldc+1] += c31
}

// goKernels returns the portable microkernels.
func goKernels() (microKernel[float32], microKernel[float64]) {
	return microKernel[float32]{name: "go", mr: 4, nr: 2, fn: kernelGo[float32]},
		microKernel[float64]{name: "go", mr: 4, nr: 2, fn: kernelGo[float64]}
}
