package surgery

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestDecomposeExact checks that Exact reaches its tolerance against the
// dense SVD, on a decaying spectrum, a flat one (a Gaussian matrix, whose
// singular values are close together) and a wide matrix, and that its
// factors are orthonormal, reproducible and near-optimal.
func TestDecomposeExact(t *testing.T) {
	tests := []struct {
		name       string
		w          *Matrix
		rank       int
		tol        float64
		seed       uint64
		wantCycles int // at least this many restart cycles (the Lanczos path ran)
	}{
		{"decaying 600x400", withSpectrum(700, 600, 400, decaying(400, 20)), 32, 0, 1, 1},
		{"power law 600x400 r=64", withSpectrum(701, 600, 400, powerLaw(400)), 64, 0, 2, 1},
		{"gaussian 500x300", gaussian(702, 500, 300), 24, 0, 3, 2},
		{"wide 250x640 tol 1e-9", withSpectrum(703, 250, 640, powerLaw(250)), 16, 1e-9, 4, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := SingularValues(tc.w)
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{Rank: tc.rank, Method: Exact, Tol: tc.tol, Seed: tc.seed}
			cycles0 := exactCycles.Load()
			f, err := Decompose(tc.w, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := exactCycles.Load() - cycles0; got < int64(tc.wantCycles) {
				t.Fatalf("%d Lanczos cycles, want ≥ %d (did it fall back to Full?)", got, tc.wantCycles)
			}
			checkFactorShape(t, tc.w, f, tc.rank)
			checkDescending(t, f.S)
			checkSigns(t, f)
			tol := tc.tol
			if tol == 0 {
				tol = DefaultTol
			}
			tol = max(tol, 1.2e-7) // S is float32: one rounding, 2⁻²⁴ relative
			for c, s := range f.S {
				if rel := math.Abs(float64(s)-ref[c]) / ref[c]; rel > tol {
					t.Errorf("σ_%d = %.9g, exact %.9g (rel error %.2g > %g)", c, s, ref[c], rel, tol)
				}
			}
			if ea, eb := Orthonormality(f); ea > 1e-5 || eb > 1e-5 {
				t.Errorf("orthonormality ‖AAᵀ−I‖=%g ‖BᵀB−I‖=%g, want ≤ 1e-5", ea, eb)
			}
			var tail float64
			for _, s := range ref[tc.rank:] {
				tail += s * s
			}
			if got, opt := diffNorm(tc.w, reconstruct(f, 1)), math.Sqrt(tail); got > opt*(1+1e-6)+1e-6 {
				t.Errorf("‖W − BSA‖_F = %.9g, optimal %.9g", got, opt)
			}
			// The tolerance is on the singular values, which converge as
			// the square of the vectors: the vectors themselves are only
			// as good as √tol (worse inside clusters of close values,
			// where any basis of the cluster's subspace is as good).
			if l, r := tripletResidual(tc.w, f, tc.rank); l > 1e-5*ref[0] || r > 1e-2*ref[0] {
				t.Errorf("triplet residuals %g, %g, want ≤ %g, %g", l, r, 1e-5*ref[0], 1e-2*ref[0])
			}
			g, err := Decompose(tc.w, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.A.Data, g.A.Data) || !slices.Equal(f.S, g.S) || !slices.Equal(f.B.Data, g.B.Data) {
				t.Error("same options gave different factors")
			}
		})
	}
}

// TestDecomposeExactDegenerate runs the Lanczos path on matrices whose
// Krylov spaces run out: rank below the requested rank, and zero.
func TestDecomposeExactDegenerate(t *testing.T) {
	tests := []struct {
		name string
		w    *Matrix
	}{
		{"rank 5", withSpectrum(710, 300, 200, []float64{5, 4, 3, 2, 1})},
		{"rank 30 of 40 asked", withSpectrum(711, 300, 200, decaying(30, 10))},
		{"zero", NewMatrix(300, 200)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const r = 40
			cycles0 := exactCycles.Load()
			f, err := Decompose(tc.w, Options{Rank: r, Method: Exact})
			if err != nil {
				t.Fatal(err)
			}
			if exactCycles.Load() == cycles0 {
				t.Fatal("the Lanczos path did not run")
			}
			checkFactorShape(t, tc.w, f, r)
			checkDescending(t, f.S)
			if ea, eb := Orthonormality(f); ea > 1e-5 || eb > 1e-5 {
				t.Errorf("orthonormality ‖AAᵀ−I‖=%g ‖BᵀB−I‖=%g, want ≤ 1e-5", ea, eb)
			}
			if d := diffNorm(tc.w, reconstruct(f, 1)); d > 1e-5*max(frobenius32(tc.w), 1) {
				t.Errorf("‖W − BSA‖_F = %g", d)
			}
			ref, err := SingularValues(tc.w)
			if err != nil {
				t.Fatal(err)
			}
			for c, s := range f.S {
				if math.Abs(float64(s)-ref[c]) > 1e-6*max(ref[0], 1e-30)+1e-30 {
					t.Errorf("σ_%d = %g, exact %g", c, s, ref[c])
				}
			}
		})
	}
}

func TestDecomposeExactOptions(t *testing.T) {
	w := gaussian(720, 30, 20)
	for _, tol := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := Decompose(w, Options{Rank: 3, Method: Exact, Tol: tol}); err == nil {
			t.Errorf("tolerance %v accepted", tol)
		}
	}
	// A matrix too small for the Lanczos blocks is done by the dense SVD,
	// with the same result as Full.
	f, err := Decompose(w, Options{Rank: 5, Method: Exact})
	if err != nil {
		t.Fatal(err)
	}
	g, err := Decompose(w, Options{Rank: 5, Method: Full})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.S, g.S) || !slices.Equal(f.A.Data, g.A.Data) {
		t.Error("Exact on a tiny matrix differs from Full")
	}
	if _, err := Decompose(w, Options{Rank: 21, Method: Exact}); !errors.Is(err, ErrRank) {
		t.Errorf("rank 21 of 20: err = %v", err)
	}
}

// TestTopRightSingular checks the restart's small SVD against gonum's on
// matrices with distinct, repeated and zero singular values.
func TestTopRightSingular(t *testing.T) {
	rng := rand.New(rand.NewPCG(730, 1))
	upper := func(n int) []float64 {
		b := make([]float64, n*n)
		for i := 0; i < n; i++ {
			for j := i; j < n; j++ {
				b[i*n+j] = rng.NormFloat64()
			}
		}
		return b
	}
	// withValues returns Q₁·diag(s)·Q₂ᵀ for random orthogonal Q₁, Q₂.
	withValues := func(s []float64) []float64 {
		n := len(s)
		q1, q2 := randomOrthonormal(rng, n, n), randomOrthonormal(rng, n, n)
		for c := 0; c < n; c++ {
			for i := 0; i < n; i++ {
				q1.Set(i, c, q1.At(i, c)*s[c])
			}
		}
		var m mat.Dense
		m.Mul(q1, q2.T())
		return slices.Clone(m.RawMatrix().Data)
	}
	repeated := make([]float64, 60)
	for i := range repeated {
		repeated[i] = float64(3 - i/20) // 3 (×20), 2 (×20), 1 (×20)
	}
	withZeros := make([]float64, 50)
	for i := 0; i < 10; i++ {
		withZeros[i] = float64(10 - i)
	}
	tests := []struct {
		name string
		b    []float64
		n, k int
	}{
		{"upper triangular 120", upper(120), 120, 70},
		{"repeated values", withValues(repeated), 60, 45},
		{"rank 10 of 50", withValues(withZeros), 50, 20},
		{"1x1", []float64{-2}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, k := tc.n, tc.k
			sv, y := topRightSingular(tc.b, n, n, k, rand.New(rand.NewPCG(1, 2)))
			var svd mat.SVD
			if !svd.Factorize(mat.NewDense(n, n, slices.Clone(tc.b)), mat.SVDNone) {
				t.Fatal("gonum SVD failed")
			}
			want := svd.Values(nil)
			for i := range want {
				if math.Abs(sv[i]-want[i]) > 1e-12*want[0] {
					t.Fatalf("σ_%d = %.15g, gonum %.15g", i, sv[i], want[i])
				}
			}
			// Y is orthonormal and BᵀB·y_i = σ_i²·y_i for σ_i > 0 (for zero
			// σ any orthonormal completion will do: check B·y_i = 0).
			bm := mat.NewDense(n, n, tc.b)
			ym := mat.NewDense(n, k, y)
			var yty, by, btby mat.Dense
			yty.Mul(ym.T(), ym)
			for i := 0; i < k; i++ {
				for j := 0; j < k; j++ {
					d := yty.At(i, j)
					if i == j {
						d--
					}
					if math.Abs(d) > 1e-12 {
						t.Fatalf("YᵀY − I at (%d, %d) = %g", i, j, d)
					}
				}
			}
			by.Mul(bm, ym)
			btby.Mul(bm.T(), &by)
			for i := 0; i < k; i++ {
				var res float64
				for r := 0; r < n; r++ {
					d := btby.At(r, i) - sv[i]*sv[i]*y[r*k+i]
					res += d * d
				}
				if math.Sqrt(res) > 1e-10*want[0]*want[0] {
					t.Errorf("vector %d: ‖BᵀB·y − σ²y‖ = %g", i, math.Sqrt(res))
				}
			}
		})
	}
}

// powerLaw returns the spectrum s_i = (1 + i)^(-1/2) of compare.py's
// benchmark matrices.
func powerLaw(k int) []float64 {
	s := make([]float64, k)
	for i := range s {
		s[i] = 1 / math.Sqrt(1+float64(i))
	}
	return s
}
