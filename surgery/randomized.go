package surgery

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// pcgStream is the fixed second word of the sketch generator's PCG state; the
// first is Options.Seed.
const pcgStream = 0x534f5253412d5356 // "SORSA-SV"

// randomizedSVD is Halko–Martinsson–Tropp (2011, algorithms 4.4 and 5.1): a
// Gaussian sketch of width l = r + oversampling, NIter power iterations with
// re-orthonormalisation after every product with W or Wᵀ, then the exact SVD
// of the small projection QᵀW. W is read in place as float32; all arithmetic is
// float64.
func randomizedSVD(w *Matrix, o Options) (triplets, error) {
	m, n, r := w.Rows, w.Cols, o.Rank
	k := min(m, n)
	l := r + min(max(o.Oversample, 0), k) // no overflow: r ≤ k
	l = min(l, k)
	q := max(o.NIter, 0)

	rng := rand.New(rand.NewPCG(o.Seed, pcgStream))
	omega := make([]float64, n*l)
	for i := range omega {
		omega[i] = rng.NormFloat64()
	}

	ws := newOrthWorkspace(max(m, n), l)
	y := make([]float64, m*l) // range basis, m × l
	mul(y, w.Data, omega, m, n, l)
	ws.orthonormalize(y, m)
	z := omega // co-range basis, n × l; the sketch is no longer needed
	for range q {
		mulT(z, w.Data, y, m, n, l)
		ws.orthonormalize(z, n)
		mul(y, w.Data, z, m, n, l)
		ws.orthonormalize(y, m)
	}
	// z = Wᵀ·Q = (Qᵀ·W)ᵀ, n × l. Its SVD z = U'·Σ·V'ᵀ gives Qᵀ·W = V'·Σ·U'ᵀ,
	// so W ≈ (Q·V')·Σ·U'ᵀ.
	mulT(z, w.Data, y, m, n, l)
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(n, l, z), mat.SVDThin) {
		return triplets{}, ErrNoConvergence
	}
	var uz, vz mat.Dense
	svd.UTo(&uz) // n × l
	svd.VTo(&vz) // l × l
	t := triplets{m: m, n: n, r: r, u: make([]float64, m*r), s: svd.Values(nil)[:r], vt: make([]float64, r*n)}
	vr := make([]float64, l*r)
	for i := 0; i < l; i++ {
		for c := 0; c < r; c++ {
			vr[i*r+c] = vz.At(i, c)
		}
	}
	mul(t.u, y, vr, m, l, r)
	for c := 0; c < r; c++ {
		for j := 0; j < n; j++ {
			t.vt[c*n+j] = uz.At(j, c)
		}
	}
	return t, nil
}

// orthWorkspace holds the scratch space of orthonormalize for matrices of up
// to maxRows rows and l columns.
type orthWorkspace struct {
	l          int
	gram       []float64 // l × l
	backup     []float64 // maxRows × l
	tau, work  []float64 // Householder fallback
	householdN int       // number of Householder fallbacks taken, for tests
}

func newOrthWorkspace(maxRows, l int) *orthWorkspace {
	return &orthWorkspace{l: l, gram: make([]float64, l*l), backup: make([]float64, maxRows*l)}
}

// orthonormalize replaces the columns of x (rows × l, rows ≥ l) by an
// orthonormal basis of their span.
//
// It uses Cholesky-QR2 (two passes of X ← X·R⁻¹ with RᵀR = XᵀX): a few
// well-parallelised products, orthonormal to working precision when
// cond(X) ≲ 1e7, which holds after every product of the power iteration since
// its input is orthonormal. When X is (numerically) rank deficient, e.g. W has
// rank below l, the Cholesky factorization fails or the first pass leaves X far
// from orthonormal; then it falls back to Householder QR, which is slower but
// unconditionally stable and completes the basis.
func (ws *orthWorkspace) orthonormalize(x []float64, rows int) {
	l := ws.l
	x = x[:rows*l]
	backup := ws.backup[:rows*l]
	copy(backup, x)
	if ws.cholQR(x, rows, false) && ws.cholQR(x, rows, true) {
		return
	}
	copy(x, backup)
	ws.householder(x, rows)
}

// cholQR does one Cholesky-QR pass on x in place. With second set, x is
// expected to be nearly orthonormal already and the pass is refused (false)
// when it is not, since the result would not be orthonormal either.
func (ws *orthWorkspace) cholQR(x []float64, rows int, second bool) bool {
	l := ws.l
	g := ws.gram
	mulT(g, x, x, rows, l, l)
	if second {
		var dev float64
		for i := 0; i < l; i++ {
			for j := 0; j < l; j++ {
				d := g[i*l+j]
				if i == j {
					d--
				}
				dev += d * d
			}
		}
		if !(dev <= 0.25) { // also catches NaN
			return false
		}
	}
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: l, Stride: l, Data: g})
	if !ok {
		return false
	}
	for i := 0; i < l; i++ {
		d := g[i*l+i]
		if !(d > 0) || math.IsInf(d, 0) {
			return false
		}
	}
	parallelFor(rows, rowChunk(rows, 32), func(lo, hi int) {
		blas64.Trsm(blas.Right, blas.NoTrans, 1, t,
			blas64.General{Rows: hi - lo, Cols: l, Stride: l, Data: x[lo*l : hi*l]})
	})
	return true
}

// householder orthonormalizes x (rows × l) in place by Householder QR.
func (ws *orthWorkspace) householder(x []float64, rows int) {
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
	lapack64.Orgqr(a, tau, ws.work, len(ws.work))
	ws.householdN++
}
