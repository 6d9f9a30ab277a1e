package surgery

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/gonum"
)

// topRightSingular returns all singular values of the n × n matrix b (row
// stride ldb; b is not modified), in descending order, and the right
// singular vectors of the top k as the orthonormal columns of y (n × k).
//
// It is the restart step of the Exact method, where n is a few hundred and
// a full SVD with vectors (whose QR sweeps rotate all n vectors, about 12·n³
// flops) would cost more than the products with W. Instead: Householder
// bidiagonalization b = Q·Bd·Pᵀ (LAPACK's dgebrd), the singular values of
// Bd alone (dqds, high relative accuracy), the k wanted vectors of Bd by
// inverse iteration on its Golub–Kahan tridiagonal form (after LAPACK's
// dstein: vectors of close values reorthogonalized against each other), and
// y = P·y_Bd (dormbr). The vectors are finally orthonormalized, so y is
// orthonormal even where inverse iteration could not separate them.
func topRightSingular(b []float64, ldb, n, k int, rng *rand.Rand) (sv, y []float64) {
	impl := gonum.Implementation{}
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		copy(a[i*n:(i+1)*n], b[i*ldb:i*ldb+n])
	}
	d := make([]float64, n)
	e := make([]float64, max(n-1, 1))
	tauQ := make([]float64, n)
	tauP := make([]float64, n)
	query := []float64{0}
	impl.Dgebrd(n, n, a, n, d, e, tauQ, tauP, query, -1)
	lwork := max(int(query[0]), 1)
	impl.Dormbr(lapack.ApplyP, blas.Left, blas.NoTrans, n, k, n, a, n, tauP, make([]float64, n*k), k, query, -1)
	lwork = max(lwork, int(query[0]), 4*n)
	work := make([]float64, lwork)
	impl.Dgebrd(n, n, a, n, d, e, tauQ, tauP, work, lwork)

	sv = make([]float64, n)
	copy(sv, d)
	ev := make([]float64, max(n-1, 1))
	copy(ev, e)
	if !impl.Dbdsqr(blas.Upper, n, 0, 0, 0, sv, ev, nil, 1, nil, 1, nil, 1, work) {
		return nil, nil
	}

	y = make([]float64, n*k)
	gkVectors(d, e[:max(n-1, 0)], sv[:k], y, k, rng)
	impl.Dormbr(lapack.ApplyP, blas.Left, blas.NoTrans, n, k, n, a, n, tauP, y, k, work, lwork)
	ws := newOrthWorkspace(n, k)
	ws.orthonormalize(y, n)
	return sv, y
}

// gkVectors writes to the columns of y (n × k, row stride k) the right
// singular vectors of the upper bidiagonal matrix with diagonal d and
// superdiagonal e for the singular values s (descending), by inverse
// iteration on the Golub–Kahan matrix: the 2n × 2n symmetric tridiagonal
// with zero diagonal and off-diagonal (d₀, e₀, d₁, e₁, …, d_{n−1}), whose
// eigenvector for +σ interleaves the right and left singular vectors
// (v₀, u₀, v₁, u₁, …)/√2.
func gkVectors(d, e, s []float64, y []float64, k int, rng *rand.Rand) {
	n := len(d)
	m := 2 * n
	off := make([]float64, m-1)
	for i := 0; i < n; i++ {
		off[2*i] = d[i]
		if i < n-1 {
			off[2*i+1] = e[i]
		}
	}
	norm := 0.0
	for _, v := range off {
		norm = max(norm, math.Abs(v))
	}
	norm *= 2 // ‖T‖₁ bound
	if norm == 0 {
		norm = 1
	}
	const eps = 0x1p-52
	// Values closer than ortol form a cluster whose vectors are
	// reorthogonalized against each other. dstein's 1e-3·‖T‖ makes nearly
	// all the values of a flat spectrum one cluster, at O(k²·n) per
	// iteration; with shifts accurate to a few ulps, inverse iteration
	// separates vectors whose values differ by more than about √ε, and the
	// final orthonormalization takes care of the rest.
	ortol := 1e-7 * norm
	pertol := 10 * eps * norm
	// Shifts, clusters of close values, then the vectors: clusters are
	// independent and run in parallel.
	shifts := make([]float64, len(s))
	var clusters []int // start index of each cluster
	prevShift := math.Inf(1)
	for i, sigma := range s {
		if i == 0 || s[i-1]-sigma > ortol {
			clusters = append(clusters, i)
		}
		shift := sigma
		// Equal shifts would give equal vectors before reorthogonalization;
		// separate them a little, as dstein does.
		if prevShift-shift < pertol {
			shift = prevShift - pertol
		}
		shifts[i] = shift
		prevShift = shift
	}
	clusters = append(clusters, len(s))
	seed := rng.Uint64()
	parallelFor(len(clusters)-1, 1, func(lo, hi int) {
		lu := newTridiagLU(m)
		for c := lo; c < hi; c++ {
			var z [][]float64
			for i := clusters[c]; i < clusters[c+1]; i++ {
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				lu.factor(off, shifts[i], eps*norm)
				x := make([]float64, m)
				for t := range x {
					x[t] = r.Float64() - 0.5
				}
				for it := 0; it < 3; it++ {
					scale(x, 1/norm2(x))
					lu.solve(x)
					for _, q := range z {
						var dot float64
						for t := range x {
							dot += q[t] * x[t]
						}
						for t := range x {
							x[t] -= dot * q[t]
						}
					}
				}
				nx := norm2(x)
				if !(nx > 0) || math.IsInf(nx, 0) {
					for t := range x {
						x[t] = r.Float64() - 0.5
					}
					nx = norm2(x)
				}
				scale(x, 1/nx)
				z = append(z, x)
				// The right singular vector is the even part; its norm is
				// 1/√2 unless σ is (numerically) zero, where the final
				// orthonormalization sorts the directions out.
				for t := 0; t < n; t++ {
					y[t*k+i] = x[2*t]
				}
			}
		}
	})
}

func scale(x []float64, a float64) {
	for i := range x {
		x[i] *= a
	}
}

// tridiagLU is the LU factorization with partial pivoting of T − λI for a
// symmetric tridiagonal T with zero diagonal (LAPACK's dgttrf/dgtts2).
type tridiagLU struct {
	dl, dd, du, du2 []float64
	piv             []bool // row i and i+1 were swapped
}

func newTridiagLU(m int) *tridiagLU {
	return &tridiagLU{
		dl: make([]float64, max(m-1, 0)), dd: make([]float64, m),
		du: make([]float64, max(m-1, 0)), du2: make([]float64, max(m-2, 0)), piv: make([]bool, m),
	}
}

// factor factors T − λI where T has zero diagonal and off-diagonal off;
// pivots smaller than tiny are replaced by tiny so the solve never divides
// by zero.
func (f *tridiagLU) factor(off []float64, lambda, tiny float64) {
	m := len(f.dd)
	for i := range f.dd {
		f.dd[i] = -lambda
	}
	copy(f.dl, off)
	copy(f.du, off)
	clear(f.du2)
	for i := 0; i < m-1; i++ {
		f.piv[i] = false
		if math.Abs(f.dd[i]) >= math.Abs(f.dl[i]) {
			// No interchange.
			if f.dd[i] != 0 {
				l := f.dl[i] / f.dd[i]
				f.dl[i] = l
				f.dd[i+1] -= l * f.du[i]
			} else {
				f.dl[i] = 0
			}
		} else {
			// Interchange rows i and i+1.
			l := f.dd[i] / f.dl[i]
			f.dd[i] = f.dl[i]
			f.dl[i] = l
			tmp := f.du[i]
			f.du[i] = f.dd[i+1]
			f.dd[i+1] = tmp - l*f.dd[i+1]
			if i < m-2 {
				f.du2[i] = f.du[i+1]
				f.du[i+1] = -l * f.du[i+1]
			}
			f.piv[i] = true
		}
	}
	f.piv[m-1] = false
	for i := range f.dd {
		if math.Abs(f.dd[i]) < tiny {
			f.dd[i] = math.Copysign(tiny, f.dd[i])
		}
	}
}

// solve overwrites x with (T − λI)⁻¹·x.
func (f *tridiagLU) solve(x []float64) {
	m := len(f.dd)
	// L·y = P·x.
	for i := 0; i < m-1; i++ {
		if f.piv[i] {
			x[i], x[i+1] = x[i+1], x[i]-f.dl[i]*x[i+1]
		} else {
			x[i+1] -= f.dl[i] * x[i]
		}
	}
	// U·x = y, U upper triangular with two superdiagonals.
	x[m-1] /= f.dd[m-1]
	if m > 1 {
		x[m-2] = (x[m-2] - f.du[m-2]*x[m-1]) / f.dd[m-2]
	}
	for i := m - 3; i >= 0; i-- {
		x[i] = (x[i] - f.du[i]*x[i+1] - f.du2[i]*x[i+2]) / f.dd[i]
	}
}
