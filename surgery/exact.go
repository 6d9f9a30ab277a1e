package surgery

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// exactCycles counts the restart cycles run, for tests that must know the
// Lanczos path (not the dense fallback) ran.
var exactCycles atomic.Int64

// DefaultTol is the relative accuracy Exact converges the top-r singular
// values to when Options.Tol is zero.
const DefaultTol = 1e-6

// Tuning of the Exact method (see exactSVD), measured on power-law
// spectra at 1024², 4096² and 11008×4096 with r = 128.
const (
	exactBlock      = 48      // Lanczos block size b: one panel of the AVX-512 kernel
	exactSteps      = 4       // blocks added per restart cycle
	exactSmall      = 1 << 22 // rows·cols up to which the thin blocks below are used
	exactBlockSmall = 16
	exactStepsSmall = 8
	exactMaxCycles  = 200 // restart cycles before giving up with ErrNoConvergence
	// exactSafety multiplies the error estimate before it is compared with
	// the tolerance: the quadratic bound takes the first Ritz value not
	// kept for σ_{k+1}, which it underestimates while that value has not
	// converged (by up to about 2.5× in our measurements).
	exactSafety = 4.0
)

// exactSVD is a block Golub–Kahan–Lanczos bidiagonalization with full
// reorthogonalization and thick restarts (after Baglama and Reichel's
// augmented restarted Lanczos bidiagonalization), run in two precisions:
//
//  1. In float32, like the randomized method's products: bases V (n × D) and
//     U (m × D) with W·V = U·B, B upper triangular, are grown by blocks of b
//     columns (one product with W and one with Wᵀ per block); at D = k +
//     steps·b columns the top Ritz triplets of B are formed
//     (topRightSingular), and the cycle restarts from the top k = r +
//     oversample of them. Each Ritz triplet's residual ‖Wᵀu − σv‖ comes
//     free from the last Lanczos coefficients. The cycles stop when every
//     top-r Ritz value's error estimate min(res/σ, res²/(2·(σ² − σ_k²)))
//     (the linear and the quadratic residual bound, relative to σ; σ_k the
//     first Ritz value not kept), times exactSafety, is at most tol.
//  2. In float64: the k converged right Ritz vectors are orthonormalized and
//     one Rayleigh–Ritz step W·V_k = (Q·U_R)·Σ·V_Rᵀ in float64 gives the
//     result. Ritz values are accurate to the square of the vectors' error,
//     so this removes the float32 rounding from the singular values.
//
// A matrix too small for k + b columns is left to the dense SVD.
func exactSVD(w *Matrix, o Options) (triplets, error) {
	m, n, r := w.Rows, w.Cols, o.Rank
	kmin := min(m, n)
	tol := o.Tol
	k := min(r+max(o.Oversample, 0), kmin)
	b, steps := exactBlock, exactSteps
	if m*n <= exactSmall {
		// The passes over a small W are cheap and the restarts, whose cost
		// grows as the cube of the basis, dominate: thinner blocks build
		// the Krylov space in more, cheaper steps and converge in fewer
		// restarts.
		b, steps = exactBlockSmall, exactStepsSmall
	}
	b = min(b, kmin)
	// The full basis cannot exceed min(m, n) columns.
	for steps > 1 && k+steps*b > kmin {
		steps--
	}
	if k+steps*b > kmin {
		// Small matrix: the Krylov space is the whole space; fall back to
		// the dense SVD, which is exact and cheap at this size.
		if firstNonFinite(w.Data) >= 0 {
			return triplets{}, errProductNonFinite
		}
		return fullSVD(w, r)
	}
	d := k + steps*b // basis size at restart

	rng := rand.New(rand.NewPCG(o.Seed, pcgStream))
	lz := newLanczos(w, d, b, rng)
	// Start block.
	start := make([]float32, n*b)
	for i := range start {
		start[i] = float32(rng.NormFloat64())
	}
	lz.setNext(start)

	var (
		vk  []float32 // n × k Ritz vectors of the last cycle
		err error
	)
	for cycle := 0; ; cycle++ {
		for lz.j+b <= d {
			if !lz.extend() {
				return triplets{}, errProductNonFinite
			}
		}
		conv, restartErr := lz.restart(k, r, tol)
		exactCycles.Add(1)
		if restartErr != nil {
			return triplets{}, restartErr
		}
		if conv || cycle+1 >= exactMaxCycles {
			if !conv {
				err = ErrNoConvergence
			}
			vk = lz.v // restart left the k Ritz vectors in the first k columns
			break
		}
	}
	if err != nil {
		return triplets{}, err
	}
	return finalRayleighRitz(w, vk, d, k, r, rng)
}

// finalRayleighRitz computes the best rank-r approximation of w within
// the span of the first k columns of v (n × ld, float32) in float64.
func finalRayleighRitz(w *Matrix, v []float32, ld, k, r int, rng *rand.Rand) (triplets, error) {
	m, n := w.Rows, w.Cols
	v64 := make([]float64, n*k)
	for i := 0; i < n; i++ {
		for c := 0; c < k; c++ {
			v64[i*k+c] = float64(v[i*ld+c])
		}
	}
	ws := newOrthWorkspace(max(m, n), k)
	ws.orthonormalize(v64, n)
	x := make([]float64, m*k)
	gemm64(false, m, k, n, 1, w.Data, n, v64, k, x, k, false) // X = W·V, float64
	left, s, right, err := smallSVD(x, m, k, r, ws, rng)
	if err != nil {
		return triplets{}, err
	}
	t := triplets{m: m, n: n, r: r, u: left, s: s, vt: make([]float64, r*n)}
	vr := make([]float64, n*r)
	gemm64(false, n, r, k, 1, v64, k, right, r, vr, r, false)
	for j := 0; j < n; j++ {
		for c := 0; c < r; c++ {
			t.vt[c*n+j] = vr[j*r+c]
		}
	}
	return t, nil
}

// lanczos is the state of the block Lanczos bidiagonalization: W·V = U·B
// on the first j columns, and Wᵀ·U = V·Bᵀ + next·F·E where E selects the
// last block of U.
type lanczos struct {
	w        *Matrix
	m, n     int
	d, b     int
	j        int
	v, u     []float32 // n × d and m × d, row-major with stride d
	bm       []float64 // d × d, B
	next     []float32 // n × b, the next block of V
	f        []float64 // b × b, couples the last block of U to next
	rng      *rand.Rand
	scale    float64 // a lower estimate of ‖W‖₂, the yardstick for a numerically zero vector
	x, y     []float32
	coef     []float32
	ws       *orthWorkspace
	buf64    []float64
	restarts int
	// W and Wᵀ packed for the kernels, for a small W (see packedA).
	packedW, packedWT *packedA[float32]
}

func newLanczos(w *Matrix, d, b int, rng *rand.Rand) *lanczos {
	m, n := w.Rows, w.Cols
	lz := &lanczos{
		w: w, m: m, n: n, d: d, b: b,
		v: make([]float32, n*d), u: make([]float32, m*d), bm: make([]float64, d*d),
		next: make([]float32, n*b), f: make([]float64, b*b), rng: rng,
		x: make([]float32, m*b), y: make([]float32, n*b), coef: make([]float32, d*b),
		ws: newOrthWorkspace(max(m, n), b), buf64: make([]float64, max(m, n)*b),
	}
	if m*n <= exactSmall && gemm32Hook == nil {
		kern := kernelFor32(b)
		lz.packedW = prepackA(kern, false, m, n, w.Data, n)
		lz.packedWT = prepackA(kern, true, n, m, w.Data, n)
	}
	return lz
}

// mulW sets x (m × b) = W·v (v n × b).
func (lz *lanczos) mulW(v, x []float32) {
	if lz.packedW != nil {
		gemm32Packed(lz.packedW, lz.b, 1, v, lz.b, x, lz.b, false)
		return
	}
	gemm32(false, lz.m, lz.b, lz.n, 1, lz.w.Data, lz.n, v, lz.b, x, lz.b, false)
}

// mulWT sets y (n × b) = Wᵀ·u (u m × b).
func (lz *lanczos) mulWT(u, y []float32) {
	if lz.packedWT != nil {
		gemm32Packed(lz.packedWT, lz.b, 1, u, lz.b, y, lz.b, false)
		return
	}
	gemm32(true, lz.n, lz.b, lz.m, 1, lz.w.Data, lz.n, u, lz.b, y, lz.b, false)
}

// setNext orthonormalizes x (n × b) into the next block of V.
func (lz *lanczos) setNext(x []float32) {
	copy(lz.next, x)
	lz.orthBlock(lz.next, lz.n, lz.v, 0, nil)
}

// extend appends one block: U_new from W·next, then the following next
// from Wᵀ·U_new. It reports false when W·next is not finite (on the first
// block, which is a product with a Gaussian block: see errProductNonFinite).
func (lz *lanczos) extend() bool {
	m, n, d, b, j := lz.m, lz.n, lz.d, lz.b, lz.j
	// V[:, j:j+b] = next.
	for i := 0; i < n; i++ {
		copy(lz.v[i*d+j:i*d+j+b], lz.next[i*b:(i+1)*b])
	}
	// X = W·next, orthogonalized against U[:, :j]: X = U·C + U_new·R.
	lz.mulW(lz.next, lz.x)
	if j == 0 && lz.restarts == 0 {
		if firstNonFinite(lz.x) >= 0 {
			return false
		}
		// ‖W‖ is at least the norm of W times a unit vector: the
		// yardstick for numerically zero directions.
		for _, c := range colNorms(lz.x, m, b) {
			lz.scale = max(lz.scale, c)
		}
	}
	c := make([]float64, (j+b)*b)
	lz.orthBlock(lz.x, m, lz.u, j, c)
	for i := 0; i < m; i++ {
		copy(lz.u[i*d+j:i*d+j+b], lz.x[i*b:(i+1)*b])
	}
	for i := 0; i < j+b; i++ {
		for cc := 0; cc < b; cc++ {
			lz.bm[i*d+j+cc] = c[i*b+cc]
		}
	}
	// Y = Wᵀ·U_new, orthogonalized against V[:, :j+b]: the part outside
	// is next·F.
	lz.mulWT(lz.x, lz.y)
	g := make([]float64, (j+2*b)*b)
	lz.orthBlock(lz.y, n, lz.v, j+b, g)
	copy(lz.next, lz.y)
	for i := 0; i < b; i++ {
		for cc := 0; cc < b; cc++ {
			lz.f[i*b+cc] = g[(j+b+i)*b+cc]
		}
	}
	lz.j = j + b
	return true
}

// orthBlock orthonormalizes x (rows × b) against the first j columns of
// basis (rows × d) and then within itself, in place: x_before =
// basis·C + x_after·R. When coef is not nil it receives C stacked over R,
// (j+b) × b, R upper triangular. Directions of x that are numerically in
// the span of the basis (or zero) are replaced by random ones orthogonal to
// it, with zero rows in R, so the basis always grows by b orthonormal
// columns.
func (lz *lanczos) orthBlock(x []float32, rows int, basis []float32, j int, coef []float64) {
	d, b := lz.d, lz.b
	c := lz.coef[:max(j, 1)*b]
	if coef != nil {
		clear(coef)
	}
	before := colNorms(x, rows, b) // column norms before projection
	for pass := 0; pass < 2 && j > 0; pass++ {
		gemm32(true, j, b, rows, 1, basis, d, x, b, c, b, false)
		gemm32(false, rows, b, j, -1, basis, d, c, b, x, b, true)
		if coef != nil {
			for i := 0; i < j*b; i++ {
				coef[i] += float64(c[i])
			}
		}
	}
	x64 := lz.buf64[:rows*b]
	widenInto(x64, x[:rows*b])
	ws := lz.ws
	ok := true
	if spread, good := ws.cholQR(x64, rows, false, true, false); !good || spread > 1e6 {
		ok = false
	} else if _, good := ws.cholQR(x64, rows, true, true, true); !good {
		ok = false
	}
	if ok {
		// A direction lost in the projection shows as a tiny diagonal
		// entry of R relative to the column's norm before it.
		for cc := 0; cc < b; cc++ {
			if !(ws.rAcc[cc*b+cc] > 1e-5*max(before[cc], 1e-3*lz.scale)) {
				ok = false
				break
			}
		}
	}
	if !ok {
		widenInto(x64, x[:rows*b])
		lz.mgsBlock(x64, rows, basis, j, before)
	}
	narrowInto(x[:rows*b], x64)
	if coef != nil {
		for i := 0; i < b; i++ {
			for cc := 0; cc < b; cc++ {
				coef[(j+i)*b+cc] = ws.rAcc[i*b+cc]
			}
		}
	}
}

// mgsBlock is orthBlock's careful path: modified Gram–Schmidt with
// reorthogonalization, column by column, in float64, replacing lost
// directions by random ones. It leaves R in lz.ws.rAcc.
func (lz *lanczos) mgsBlock(x []float64, rows int, basis []float32, j int, before []float64) {
	d, b := lz.d, lz.b
	r := lz.ws.rAcc
	clear(r)
	col := make([]float64, rows)
	proj := make([]float64, max(j, 1))
	orthAgainst := func(col []float64, upto int) []float64 {
		// Against the basis (float32, stride d) and the accepted columns
		// of x, twice; returns the coefficients on x's columns.
		h := make([]float64, b)
		for pass := 0; pass < 2; pass++ {
			if j > 0 {
				gemm64(true, j, 1, rows, 1, basis, d, col, 1, proj, 1, false)
				gemm64(false, rows, 1, j, -1, basis, d, proj, 1, col, 1, true)
			}
			for q := 0; q < upto; q++ {
				var s float64
				for i := 0; i < rows; i++ {
					s += x[i*b+q] * col[i]
				}
				for i := 0; i < rows; i++ {
					col[i] -= s * x[i*b+q]
				}
				h[q] += s
			}
		}
		return h
	}
	for cc := 0; cc < b; cc++ {
		for i := 0; i < rows; i++ {
			col[i] = x[i*b+cc]
		}
		h := orthAgainst(col, cc)
		nrm := norm2(col)
		if !(nrm > 1e-5*max(before[cc], 1e-3*lz.scale) && nrm > 0) {
			// Lost: the column is (numerically) a combination of the basis
			// and the columns before it, which h and C record; the new
			// direction is random, with a zero diagonal entry in R.
			nrm = 0
			for tries := 0; tries < 5; tries++ {
				for i := range col {
					col[i] = lz.rng.NormFloat64()
				}
				orthAgainst(col, cc)
				if norm2(col) > 1e-3 { // a random vector keeps most of its norm
					break
				}
			}
		}
		for q := 0; q < cc; q++ {
			r[q*b+cc] = h[q]
		}
		r[cc*b+cc] = nrm
		s := norm2(col)
		for i := 0; i < rows; i++ {
			x[i*b+cc] = col[i] / s
		}
	}
}

func norm2(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s)
}

func colNorms(x []float32, rows, b int) []float64 {
	s := make([]float64, b)
	for i := 0; i < rows; i++ {
		for c, v := range x[i*b : (i+1)*b] {
			s[c] += float64(v) * float64(v)
		}
	}
	for c := range s {
		s[c] = math.Sqrt(s[c])
	}
	return s
}

// restart computes the Ritz triplets of B, reports whether the top r have
// converged to tol, and compresses the bases to the top k Ritz vectors for
// the next cycle.
//
// Only B's right singular vectors Y are computed (half the work of a full
// SVD of B); the left ones come from B·Y_k = X_q·R_x (a QR), so the bases
// become V·Y_k and U·X_q with W·(V·Y_k) = (U·X_q)·R_x exactly: B is
// replaced by the k × k upper triangular R_x, which is diag(σ) up to
// rounding when the σ are distinct from zero, and stays exact when they
// are not.
func (lz *lanczos) restart(k, r int, tol float64) (bool, error) {
	d, b, j := lz.d, lz.b, lz.j
	kk := min(k+1, j) // one more than kept, for the gap estimate
	sv, y := topRightSingular(lz.bm, d, j, kk, lz.rng)
	if sv == nil {
		return false, ErrNoConvergence
	}
	xt := make([]float64, j*kk) // B·Y
	gemm64(false, j, kk, j, 1, lz.bm, d, y, kk, xt, kk, false)
	// Residual of Ritz triplet i: ‖F·x_i[last block]‖ with x_i = B·y_i/σ_i.
	fx := make([]float64, b*kk)
	gemm64(false, b, kk, b, 1, lz.f, b, xt[(j-b)*kk:], kk, fx, kk, false)
	res := make([]float64, kk)
	for c := 0; c < kk; c++ {
		var s2 float64
		for p := 0; p < b; p++ {
			s2 += fx[p*kk+c] * fx[p*kk+c]
		}
		if sv[c] > 0 {
			res[c] = math.Sqrt(s2) / sv[c]
		}
	}
	gapRef := 0.0
	if k < kk {
		gapRef = sv[k]
	}
	noise := 1e-7 * max(sv[0], 0)
	conv := true
	for i := 0; i < r; i++ {
		s := sv[i]
		if res[i] <= noise {
			continue
		}
		est := res[i] / s
		if gap := s*s - gapRef*gapRef; gap > 0 {
			est = min(est, res[i]*res[i]/(2*gap))
		}
		if !(exactSafety*est <= tol) {
			conv = false
		}
	}
	// X_q·R_x = B·Y_k.
	xq := make([]float64, j*k)
	for i := 0; i < j; i++ {
		copy(xq[i*k:(i+1)*k], xt[i*kk:i*kk+k])
	}
	ws := newOrthWorkspace(j, k)
	ws.qr(xq, j, true, true)
	// Compress: V ← V·Y_k, U ← U·X_q (float32 products).
	yk := make([]float32, j*k)
	xk := make([]float32, j*k)
	for i := 0; i < j; i++ {
		for c := 0; c < k; c++ {
			yk[i*k+c] = float32(y[i*kk+c])
			xk[i*k+c] = float32(xq[i*k+c])
		}
	}
	compress := func(basis []float32, rows int, coef []float32) {
		out := make([]float32, rows*k)
		gemm32(false, rows, k, j, 1, basis, d, coef, k, out, k, false)
		for i := 0; i < rows; i++ {
			copy(basis[i*d:i*d+k], out[i*k:(i+1)*k])
		}
	}
	compress(lz.v, lz.n, yk)
	compress(lz.u, lz.m, xk)
	clear(lz.bm)
	for i := 0; i < k; i++ {
		copy(lz.bm[i*d+i:i*d+k], ws.rAcc[i*k+i:(i+1)*k])
	}
	lz.j = k
	lz.restarts++
	return conv, nil
}
