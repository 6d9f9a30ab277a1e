package surgery

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// gaussian returns a rows × cols matrix of standard normal entries.
func gaussian(seed uint64, rows, cols int) *Matrix {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := NewMatrix(rows, cols)
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64())
	}
	return w
}

// randomOrthonormal returns a rows × k matrix with orthonormal columns, from
// gonum's Householder QR of a Gaussian matrix (independent of our own code).
func randomOrthonormal(rng *rand.Rand, rows, k int) *mat.Dense {
	g := mat.NewDense(rows, k, nil)
	for i := 0; i < rows; i++ {
		for j := 0; j < k; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, rows, 0, k))
}

// withSpectrum returns U·diag(s)·Vᵀ rounded to float32, for random orthonormal
// U (rows × k) and V (cols × k), k = len(s).
func withSpectrum(seed uint64, rows, cols int, s []float64) *Matrix {
	rng := rand.New(rand.NewPCG(seed, 2))
	k := len(s)
	u := randomOrthonormal(rng, rows, k)
	v := randomOrthonormal(rng, cols, k)
	for c := 0; c < k; c++ {
		for i := 0; i < rows; i++ {
			u.Set(i, c, u.At(i, c)*s[c])
		}
	}
	var w mat.Dense
	w.Mul(u, v.T())
	out := NewMatrix(rows, cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out.Data[i*cols+j] = float32(w.At(i, j))
		}
	}
	return out
}

// decaying returns the spectrum s_i = exp(−i/tau), i = 0..k-1.
func decaying(k int, tau float64) []float64 {
	s := make([]float64, k)
	for i := range s {
		s[i] = math.Exp(-float64(i) / tau)
	}
	return s
}

// reconstruct returns scale·B·diag(S)·A by the textbook triple loop.
func reconstruct(f *Factors, scale float64) []float64 {
	m, n, r := f.B.Rows, f.A.Cols, len(f.S)
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for c := 0; c < r; c++ {
				s += float64(f.B.At(i, c)) * float64(f.S[c]) * float64(f.A.At(c, j))
			}
			out[i*n+j] = scale * s
		}
	}
	return out
}

func frobenius32(w *Matrix) float64 {
	var s float64
	for _, v := range w.Data {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// diffNorm returns ‖w − x‖_F.
func diffNorm(w *Matrix, x []float64) float64 {
	var s float64
	for i, v := range w.Data {
		d := float64(v) - x[i]
		s += d * d
	}
	return math.Sqrt(s)
}

// checkFactorShape fails unless f has the shapes of a rank-r split of w.
func checkFactorShape(t *testing.T, w *Matrix, f *Factors, r int) {
	t.Helper()
	if err := f.Check(w.Rows, w.Cols); err != nil {
		t.Fatal(err)
	}
	if f.Rank() != r {
		t.Fatalf("rank %d, want %d", f.Rank(), r)
	}
}

// checkSigns fails unless the largest-magnitude entry of every column of B
// is positive.
func checkSigns(t *testing.T, f *Factors) {
	t.Helper()
	for c := 0; c < f.Rank(); c++ {
		best := float32(0)
		for i := 0; i < f.B.Rows; i++ {
			if v := f.B.At(i, c); abs32(v) > abs32(best) {
				best = v
			}
		}
		if best < 0 {
			t.Errorf("column %d of B: largest-magnitude entry %v is negative", c, best)
		}
	}
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

// checkDescending fails unless S is non-increasing and non-negative.
func checkDescending(t *testing.T, s []float32) {
	t.Helper()
	for i := range s {
		if s[i] < 0 || (i > 0 && s[i] > s[i-1]) {
			t.Fatalf("S not descending and non-negative at %d: %v", i, s)
		}
	}
}

// tripletResidual returns max_c ‖W·a_c − s_c·b_c‖ and max_c ‖Wᵀ·b_c − s_c·a_c‖
// over the first k triplets, computed naively in float64.
func tripletResidual(w *Matrix, f *Factors, k int) (left, right float64) {
	m, n := w.Rows, w.Cols
	for c := 0; c < k; c++ {
		s := float64(f.S[c])
		var l2, r2 float64
		for i := 0; i < m; i++ {
			var d float64
			for j := 0; j < n; j++ {
				d += float64(w.At(i, j)) * float64(f.A.At(c, j))
			}
			d -= s * float64(f.B.At(i, c))
			l2 += d * d
		}
		for j := 0; j < n; j++ {
			var d float64
			for i := 0; i < m; i++ {
				d += float64(w.At(i, j)) * float64(f.B.At(i, c))
			}
			d -= s * float64(f.A.At(c, j))
			r2 += d * d
		}
		left, right = max(left, math.Sqrt(l2)), max(right, math.Sqrt(r2))
	}
	return left, right
}

// mulAdd computes c += alpha·a·b, where a is m×k (row-major, float32 or
// float64), b is k×p and c is m×p (row-major float64).
func mulAdd[T float](c []float64, alpha float64, a []T, b []float64, m, k, p int) {
	gemm64(false, m, p, k, alpha, a, k, b, p, c, p, true)
}

// mul computes c = a·b (a m×k, b k×p, c m×p), overwriting c.
func mul[T float](c []float64, a []T, b []float64, m, k, p int) {
	gemm64(false, m, p, k, 1, a, k, b, p, c, p, false)
}
