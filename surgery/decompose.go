package surgery

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// ErrNonFinite reports a matrix holding NaN or ±Inf, which has no SVD.
var ErrNonFinite = errors.New("matrix holds NaN or Inf")

// ErrShape reports a matrix that is nil, empty, or whose Data length is not
// Rows×Cols.
var ErrShape = errors.New("bad matrix shape")

// ErrNoConvergence reports an SVD iteration that did not converge.
var ErrNoConvergence = errors.New("SVD did not converge")

// Normalize returns the options Decompose actually runs for a rows × cols
// matrix, so a caller can record them:
//   - Auto becomes Full when min(rows, cols) ≤ AutoFullLimit, else Randomized;
//   - for Randomized, NIter 0 becomes DefaultNIter and Oversample 0 becomes
//     DefaultOversample; a negative value means none (no power iteration, no
//     oversampling) and is kept as given;
//   - for Exact, Oversample 0 becomes DefaultExactOversample and Tol 0
//     becomes DefaultTol; NIter is set to 0 (unused);
//   - for Full, NIter, Oversample and Tol are set to 0 (unused), and Tol is
//     set to 0 for Randomized;
//   - Rank and Seed are kept as given (Decompose validates Rank and Tol).
//
// The sketch width r + Oversample is further capped at min(rows, cols) inside
// Decompose; that cap is not reflected here. Normalize is idempotent.
func (o Options) Normalize(rows, cols int) Options {
	if o.Method == Auto {
		if min(rows, cols) <= AutoFullLimit {
			o.Method = Full
		} else {
			o.Method = Randomized
		}
	}
	switch o.Method {
	case Full:
		o.NIter, o.Oversample, o.Tol = 0, 0, 0
	case Randomized:
		if o.NIter == 0 {
			o.NIter = DefaultNIter
		}
		if o.Oversample == 0 {
			o.Oversample = DefaultOversample
		}
		o.Tol = 0
	case Exact:
		o.NIter = 0
		if o.Oversample == 0 {
			o.Oversample = DefaultExactOversample
		}
		if o.Tol == 0 {
			o.Tol = DefaultTol
		}
	}
	return o
}

// check validates the shape and contents of w.
func (m *Matrix) check() error {
	if err := m.checkShape(); err != nil {
		return err
	}
	if i := firstNonFinite(m.Data); i >= 0 {
		v := m.Data[i]
		return fmt.Errorf("element (%d, %d) = %v: %w", i/m.Cols, i%m.Cols, v, ErrNonFinite)
	}
	return nil
}

// checkShape validates the shape of w.
func (m *Matrix) checkShape() error {
	if m == nil {
		return fmt.Errorf("nil matrix: %w", ErrShape)
	}
	if m.Rows <= 0 || m.Cols <= 0 || len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("%d×%d matrix with %d elements: %w", m.Rows, m.Cols, len(m.Data), ErrShape)
	}
	return nil
}

// errProductNonFinite is what the iterative methods return when their
// first product with W holds NaN or Inf. They do not scan W for NaN and Inf
// beforehand, which would cost a pass over W as long as a product's: a NaN
// or Inf in W reaches every element of its row (or column) of a product
// with a Gaussian block, whose entries are nonzero. Decompose then scans W to
// report where.
var errProductNonFinite = errors.New("product with W is not finite")

// Decompose returns the top-r singular triplets of w (out × in) in SORSA's
// layout: A (r × in) holds the right singular vectors as rows, S the singular
// values in descending order and B (out × r) the left singular vectors as
// columns, so that w ≈ B·diag(S)·A.
//
// Each triplet's sign is fixed so that the largest-magnitude entry of its left
// vector (column of B; the first one on a tie) is positive, with the matching
// row of A flipped along; equal options on equal input therefore give
// bit-identical factors on one machine and build (the matrix kernels differ
// between CPUs and build tags in the last bits). Full works in float64;
// Randomized and Exact do their products with w in float32, as
// torch.svd_lowrank does, and the rest in float64 (Exact refines its result
// with one float64 product); the result is rounded once to the float32
// factors.
//
// Errors wrap ErrShape (nil, empty or inconsistent matrix), ErrNonFinite (NaN
// or Inf in w, or products that overflow float32), ErrRank (Rank outside
// 1..min(rows, cols)) or ErrNoConvergence.
func Decompose(w *Matrix, opts Options) (*Factors, error) {
	if err := w.checkShape(); err != nil {
		return nil, fmt.Errorf("surgery: decompose: %w", err)
	}
	k := min(w.Rows, w.Cols)
	if opts.Rank < 1 || opts.Rank > k {
		return nil, fmt.Errorf("surgery: decompose %d×%d matrix: rank %d not in 1..%d: %w",
			w.Rows, w.Cols, opts.Rank, k, ErrRank)
	}
	opts = opts.Normalize(w.Rows, w.Cols)
	var (
		t   triplets
		err error
	)
	switch opts.Method {
	case Full:
		if err := w.check(); err != nil {
			return nil, fmt.Errorf("surgery: decompose: %w", err)
		}
		t, err = fullSVD(w, opts.Rank)
	case Randomized:
		t, err = randomizedSVD(w, opts)
	case Exact:
		if !(opts.Tol > 0) || math.IsInf(opts.Tol, 0) {
			return nil, fmt.Errorf("surgery: decompose: tolerance %v not positive and finite", opts.Tol)
		}
		t, err = exactSVD(w, opts)
	default:
		return nil, fmt.Errorf("surgery: decompose: unknown method %d", int(opts.Method))
	}
	if errors.Is(err, errProductNonFinite) {
		if err := w.check(); err != nil {
			return nil, fmt.Errorf("surgery: decompose: %w", err)
		}
		err = fmt.Errorf("products of finite values overflow float32: %w", ErrNonFinite)
	}
	if err != nil {
		return nil, fmt.Errorf("surgery: decompose %d×%d matrix (%s, rank %d): %w",
			w.Rows, w.Cols, opts.Method, opts.Rank, err)
	}
	t.fixSigns()
	return t.factors(), nil
}

// triplets are r singular triplets in float64, before rounding to Factors.
type triplets struct {
	m, n, r int
	u       []float64 // m × r, left vectors as columns
	s       []float64 // r, descending
	vt      []float64 // r × n, right vectors as rows
}

// fixSigns flips each triplet so that the largest-magnitude entry of its left
// vector (the first such entry on a tie) is positive.
func (t *triplets) fixSigns() {
	for c := 0; c < t.r; c++ {
		best, arg := -1.0, 0
		for i := 0; i < t.m; i++ {
			if a := math.Abs(t.u[i*t.r+c]); a > best {
				best, arg = a, i
			}
		}
		if t.u[arg*t.r+c] >= 0 {
			continue
		}
		for i := 0; i < t.m; i++ {
			t.u[i*t.r+c] = -t.u[i*t.r+c]
		}
		row := t.vt[c*t.n : (c+1)*t.n]
		for j := range row {
			row[j] = -row[j]
		}
	}
}

// factors rounds t once to float32 Factors.
func (t *triplets) factors() *Factors {
	f := &Factors{A: NewMatrix(t.r, t.n), S: make([]float32, t.r), B: NewMatrix(t.m, t.r)}
	narrowInto(f.A.Data, t.vt)
	narrowInto(f.S, t.s)
	narrowInto(f.B.Data, t.u)
	return f
}

// toDense returns w as a float64 gonum matrix.
func toDense(w *Matrix) *mat.Dense {
	d := make([]float64, len(w.Data))
	widenInto(d, w.Data)
	return mat.NewDense(w.Rows, w.Cols, d)
}

// fullSVD computes the top-r triplets from gonum's exact thin SVD.
func fullSVD(w *Matrix, r int) (triplets, error) {
	var svd mat.SVD
	if !svd.Factorize(toDense(w), mat.SVDThin) {
		return triplets{}, ErrNoConvergence
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	m, n := w.Rows, w.Cols
	t := triplets{m: m, n: n, r: r, u: make([]float64, m*r), s: svd.Values(nil)[:r], vt: make([]float64, r*n)}
	for i := 0; i < m; i++ {
		for c := 0; c < r; c++ {
			t.u[i*r+c] = u.At(i, c)
		}
	}
	for c := 0; c < r; c++ {
		for j := 0; j < n; j++ {
			t.vt[c*n+j] = v.At(j, c)
		}
	}
	return t, nil
}

// SingularValues returns all min(rows, cols) singular values of w in
// descending order, from gonum's exact SVD in float64. It is the reference the
// randomized method is measured against and a helper for spectrum analysis;
// it costs O(rows·cols·min(rows, cols)).
func SingularValues(w *Matrix) ([]float64, error) {
	if err := w.check(); err != nil {
		return nil, fmt.Errorf("surgery: singular values: %w", err)
	}
	var svd mat.SVD
	if !svd.Factorize(toDense(w), mat.SVDNone) {
		return nil, fmt.Errorf("surgery: singular values of %d×%d matrix: %w", w.Rows, w.Cols, ErrNoConvergence)
	}
	return svd.Values(nil), nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in x, or -1.
// It reads every weight of every matrix, so it tests the exponent bits
// without a branch per element, in parallel: an exponent field of all ones
// is the one that carries into the sign bit when 1 is added to it.
func firstNonFinite(x []float32) int {
	const chunk = 1 << 16
	n := (len(x) + chunk - 1) / chunk
	bad := make([]bool, n)
	parallelFor(n, 16, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var acc uint32
			for _, v := range x[c*chunk : min((c+1)*chunk, len(x))] {
				acc |= math.Float32bits(v)&0x7f800000 + 0x00800000
			}
			bad[c] = acc&0x80000000 != 0
		}
	})
	for c, b := range bad {
		if !b {
			continue
		}
		for i, v := range x[c*chunk : min((c+1)*chunk, len(x))] {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
				return c*chunk + i
			}
		}
	}
	return -1
}
