package surgery

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// orthWorkspace holds the scratch space of orthonormalize for matrices of up
// to maxRows rows and l columns.
type orthWorkspace struct {
	l          int
	gram, rinv []float64 // l × l
	rAcc       []float64 // l × l, the accumulated triangular factor
	tmp        []float64 // maxRows × l
	backup     []float64 // maxRows × l
	tau, work  []float64 // Householder fallback
	householdN int       // number of Householder fallbacks taken, for tests
}

func newOrthWorkspace(maxRows, l int) *orthWorkspace {
	return &orthWorkspace{
		l: l, gram: make([]float64, l*l), rinv: make([]float64, l*l), rAcc: make([]float64, l*l),
		tmp: make([]float64, maxRows*l), backup: make([]float64, maxRows*l),
	}
}

// orthonormalize replaces the columns of x (rows × l, rows ≥ l) by an
// orthonormal basis of their span.
//
// It uses Cholesky-QR2 (two passes of X ← X·R⁻¹ with RᵀR = XᵀX): a few
// well-parallelised products, orthonormal to working precision when
// cond(X) ≲ 1e7. When X is (numerically) rank deficient, e.g. W has rank
// below l, the Cholesky factorization fails or the first pass leaves X far
// from orthonormal; then it falls back to Householder QR, which is slower but
// unconditionally stable and completes the basis.
func (ws *orthWorkspace) orthonormalize(x []float64, rows int) {
	ws.qr(x, rows, true, false)
}

// orthonormalizeFast is orthonormalize for the inside of a power iteration,
// where the basis only has to be well conditioned and span the right
// space: it stops after one Cholesky-QR pass when the triangular factor's
// diagonal spans less than five decades, which bounds the loss of
// orthogonality by about 1e-16·1e10.
func (ws *orthWorkspace) orthonormalizeFast(x []float64, rows int) {
	ws.qr(x, rows, false, false)
}

// qr orthonormalizes x in place (see orthonormalize). With wantR, ws.rAcc
// ends up holding the upper triangular R with x_before = x_after·R.
func (ws *orthWorkspace) qr(x []float64, rows int, twice, wantR bool) {
	l := ws.l
	x = x[:rows*l]
	backup := ws.backup[:rows*l]
	copy(backup, x)
	spread, ok := ws.cholQR(x, rows, false, wantR, false)
	if ok && (twice || spread > 1e5 || wantR) {
		_, ok = ws.cholQR(x, rows, true, wantR, true)
	}
	if ok {
		return
	}
	copy(x, backup)
	ws.householder(x, rows, wantR)
}

// cholQR does one Cholesky-QR pass on x in place. With second set, x is
// expected to be nearly orthonormal already and the pass is refused (false)
// when it is not, since the result would not be orthonormal either. It
// returns the ratio of the largest to the smallest diagonal entry of the
// triangular factor. With wantR the factor is stored in ws.rAcc (first
// pass) or multiplied into it from the left (accumulate).
func (ws *orthWorkspace) cholQR(x []float64, rows int, second, wantR, accumulate bool) (spread float64, ok bool) {
	l := ws.l
	g := ws.gram
	gemm64Tri(upperC, true, l, l, rows, 1, x, l, x, l, g, l, false)
	if second {
		var dev float64
		for i := 0; i < l; i++ {
			d := g[i*l+i] - 1
			dev += d * d
			for j := i + 1; j < l; j++ {
				dev += 2 * g[i*l+j] * g[i*l+j]
			}
		}
		if !(dev <= 0.25) { // also catches NaN
			return 0, false
		}
	}
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: l, Stride: l, Data: g})
	if !ok {
		return 0, false
	}
	lo, hi := math.Inf(1), 0.0
	for i := 0; i < l; i++ {
		d := g[i*l+i]
		if !(d > 0) || math.IsInf(d, 0) {
			return 0, false
		}
		lo, hi = min(lo, d), max(hi, d)
		for j := 0; j < i; j++ {
			g[i*l+j] = 0
		}
	}
	rinv := ws.rinv
	copy(rinv, g)
	if !lapack64.Trtri(blas64.Triangular{Uplo: blas.Upper, Diag: blas.NonUnit, N: l, Stride: l, Data: rinv}) {
		return 0, false
	}
	_ = t
	tmp := ws.tmp[:rows*l]
	gemm64Tri(upperB, false, rows, l, l, 1, x, l, rinv, l, tmp, l, false)
	copy(x, tmp)
	if wantR {
		if !accumulate {
			copy(ws.rAcc, g)
		} else {
			// rAcc ← R₂·rAcc (both upper triangular, l × l).
			prod := ws.rinv
			gemm64(false, l, l, l, 1, g, l, ws.rAcc, l, prod, l, false)
			copy(ws.rAcc, prod)
		}
	}
	return hi / lo, true
}

// householder orthonormalizes x (rows × l) in place by Householder QR; with
// wantR it stores R in ws.rAcc.
func (ws *orthWorkspace) householder(x []float64, rows int, wantR bool) {
	l := ws.l
	a := blas64.General{Rows: rows, Cols: l, Stride: l, Data: x}
	if len(ws.tau) < l {
		ws.tau = make([]float64, l)
	}
	query := []float64{0}
	tau := ws.tau[:l]
	lapack64.Geqrf(a, tau, query, -1)
	lwork := int(query[0])
	lapack64.Orgqr(a, tau, query, -1)
	lwork = max(lwork, int(query[0]), 1)
	if len(ws.work) < lwork {
		ws.work = make([]float64, lwork)
	}
	lapack64.Geqrf(a, tau, ws.work, len(ws.work))
	if wantR {
		for i := 0; i < l; i++ {
			for j := 0; j < l; j++ {
				v := 0.0
				if j >= i {
					v = x[i*l+j]
				}
				ws.rAcc[i*l+j] = v
			}
		}
	}
	lapack64.Orgqr(a, tau, ws.work, len(ws.work))
	ws.householdN++
}

// smallSVD returns the leading keep singular triplets of x (rows × l,
// rows ≥ l, float64): x ≈ left·diag(s)·rightᵀ with left rows × keep
// (orthonormal columns), s descending and right l × keep (orthonormal
// columns). It factors x = Q·R (Cholesky-QR2, Householder when x is rank
// deficient), takes the top right singular vectors Y of the small R
// (topRightSingular) and the left ones from R·Y = U_R·R' (a QR, R' diagonal
// up to rounding), so the cost is a few rows×l×l products plus O(l³) with
// small constants.
func smallSVD(x []float64, rows, l, keep int, ws *orthWorkspace, rng *rand.Rand) (left, s, right []float64, err error) {
	q := make([]float64, rows*l)
	copy(q, x[:rows*l])
	ws.qr(q, rows, true, true)
	sv, y := topRightSingular(ws.rAcc, l, l, keep, rng)
	if sv == nil {
		return nil, nil, nil, ErrNoConvergence
	}
	ry := make([]float64, l*keep)
	gemm64(false, l, keep, l, 1, ws.rAcc, l, y, keep, ry, keep, false)
	wk := newOrthWorkspace(l, keep)
	wk.qr(ry, l, true, true)
	// R·y_i = σ_i·u_i with σ_i ≥ 0: a Householder QR may have flipped u_i.
	for c := 0; c < keep; c++ {
		if wk.rAcc[c*keep+c] < 0 {
			for i := 0; i < l; i++ {
				ry[i*keep+c] = -ry[i*keep+c]
			}
		}
	}
	left = make([]float64, rows*keep)
	gemm64(false, rows, keep, l, 1, q, l, ry, keep, left, keep, false)
	return left, sv[:keep], y, nil
}

// widenInto writes x to dst as float64, in parallel for long slices.
func widenInto(dst []float64, x []float32) {
	parallelFor(len(x), convertChunk, func(lo, hi int) {
		d := dst[lo:hi]
		for i, v := range x[lo:hi] {
			d[i] = float64(v)
		}
	})
}

// narrowInto rounds x into dst, in parallel for long slices.
func narrowInto(dst []float32, x []float64) {
	parallelFor(len(x), convertChunk, func(lo, hi int) {
		d := dst[lo:hi]
		for i, v := range x[lo:hi] {
			d[i] = float32(v)
		}
	})
}

// convertChunk is the slice length below which a conversion is not worth
// a goroutine.
const convertChunk = 1 << 16
