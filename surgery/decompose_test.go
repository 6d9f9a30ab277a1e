package surgery

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestDecomposeFull(t *testing.T) {
	tests := []struct {
		name       string
		rows, cols int
		rank       int
	}{
		{"tall all", 40, 25, 25},
		{"wide all", 25, 40, 25},
		{"square all", 30, 30, 30},
		{"square r=1", 30, 30, 1},
		{"tall truncated", 50, 8, 3},
		{"wide truncated", 9, 64, 4},
		{"row vector", 1, 7, 1},
		{"column vector", 7, 1, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := gaussian(uint64(100+i), tc.rows, tc.cols)
			f, err := Decompose(w, Options{Rank: tc.rank, Method: Full})
			if err != nil {
				t.Fatal(err)
			}
			checkFactorShape(t, w, f, tc.rank)
			checkDescending(t, f.S)
			checkSigns(t, f)
			if ea, eb := Orthonormality(f); ea > 1e-5 || eb > 1e-5 {
				t.Errorf("orthonormality ‖AAᵀ−I‖=%g ‖BᵀB−I‖=%g, want ≤ 1e-5", ea, eb)
			}
			norm := frobenius32(w)
			// Each kept triplet is a singular triplet: W·a = s·b and Wᵀ·b = s·a.
			if l, r := tripletResidual(w, f, tc.rank); l > 1e-5*norm || r > 1e-5*norm {
				t.Errorf("triplet residuals %g, %g, want ≤ %g", l, r, 1e-5*norm)
			}
			// Truncation is an orthogonal projection: ‖W − W_r‖² = ‖W‖² − Σ s_i².
			got := diffNorm(w, reconstruct(f, 1))
			var kept float64
			for _, s := range f.S {
				kept += float64(s) * float64(s)
			}
			if want := norm*norm - kept; math.Abs(got*got-want) > 1e-5*norm*norm {
				t.Errorf("‖W − BSA‖²_F = %g, want %g (‖W‖_F = %g)", got*got, want, norm)
			}
			if tc.rank == min(tc.rows, tc.cols) && got > 1e-5*norm {
				t.Errorf("full-rank reconstruction error %g, want ≤ %g", got, 1e-5*norm)
			}
		})
	}
}

func TestDecomposeKnownSpectrum(t *testing.T) {
	// A permuted, sign-flipped diagonal matrix has the absolute diagonal as
	// its singular values, and unit vectors as singular vectors.
	w := &Matrix{Rows: 3, Cols: 4, Data: []float32{
		0, -2, 0, 0,
		0, 0, 0, 5,
		3, 0, 0, 0,
	}}
	f, err := Decompose(w, Options{Rank: 3, Method: Full})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.S, []float32{5, 3, 2}) {
		t.Errorf("S = %v, want [5 3 2]", f.S)
	}
	// The left vector of σ=2 is e₀ with sign fixed positive, so its right
	// vector must be −e₁.
	if f.B.At(0, 2) != 1 || f.A.At(2, 1) != -1 {
		t.Errorf("triplet 2: b = column %v, a = row %v", []float32{f.B.At(0, 2), f.B.At(1, 2), f.B.At(2, 2)}, f.A.Data[8:12])
	}
	sv, err := SingularValues(w)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{5, 3, 2} {
		if math.Abs(sv[i]-want) > 1e-12 {
			t.Errorf("SingularValues = %v, want [5 3 2]", sv)
		}
	}
}

func TestDecomposeRandomized(t *testing.T) {
	tests := []struct {
		name       string
		rows, cols int
		rank       int
		opts       Options
	}{
		{"tall 600x400", 600, 400, 32, Options{Method: Randomized, Seed: 7}},
		{"wide 300x700", 300, 700, 40, Options{Method: Randomized, Seed: 8}},
		{"tall niter=2 p=24", 600, 400, 24, Options{Method: Randomized, NIter: 2, Oversample: 24, Seed: 9}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := min(tc.rows, tc.cols)
			w := withSpectrum(uint64(200+i), tc.rows, tc.cols, decaying(k, 20))
			ref, err := SingularValues(w)
			if err != nil {
				t.Fatal(err)
			}
			opts := tc.opts
			opts.Rank = tc.rank
			f, err := Decompose(w, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkFactorShape(t, w, f, tc.rank)
			checkDescending(t, f.S)
			checkSigns(t, f)
			for c, s := range f.S {
				if rel := math.Abs(float64(s)-ref[c]) / ref[c]; rel > 1e-4 {
					t.Errorf("σ_%d = %g, exact %g (rel error %g > 1e-4)", c, s, ref[c], rel)
				}
			}
			if ea, eb := Orthonormality(f); ea > 1e-5 || eb > 1e-5 {
				t.Errorf("orthonormality ‖AAᵀ−I‖=%g ‖BᵀB−I‖=%g, want ≤ 1e-5", ea, eb)
			}
			// Near-optimal truncation error (Eckart–Young: √Σ_{i≥r} σ_i²).
			var tail float64
			for _, s := range ref[tc.rank:] {
				tail += s * s
			}
			opt := math.Sqrt(tail)
			if got := diffNorm(w, reconstruct(f, 1)); got > opt*(1+1e-4)+1e-6 {
				t.Errorf("‖W − BSA‖_F = %g, optimal %g", got, opt)
			}

			// Same seed: bit-identical factors.
			g, err := Decompose(w, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.A.Data, g.A.Data) || !slices.Equal(f.B.Data, g.B.Data) || !slices.Equal(f.S, g.S) {
				t.Error("same seed gave different factors")
			}
			// Another seed: a different sketch, equally accurate.
			opts.Seed++
			h, err := Decompose(w, opts)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(f.A.Data, h.A.Data) {
				t.Error("different seeds gave bit-identical A; is the seed used?")
			}
			for c, s := range h.S {
				if rel := math.Abs(float64(s)-ref[c]) / ref[c]; rel > 1e-4 {
					t.Errorf("seed+1: σ_%d = %g, exact %g (rel error %g)", c, s, ref[c], rel)
				}
			}
		})
	}
}

func TestDecomposeRankDeficient(t *testing.T) {
	// W of rank 5 asked for 10 (randomized, sketch wider than the rank) and
	// the zero matrix: the QR must fall back and still give orthonormal
	// factors, and the factors must reproduce W.
	tests := []struct {
		name string
		w    *Matrix
	}{
		{"rank 5", withSpectrum(300, 80, 60, []float64{5, 4, 3, 2, 1})},
		{"zero", NewMatrix(50, 40)},
	}
	for _, tc := range tests {
		for _, method := range []Method{Full, Randomized} {
			t.Run(tc.name+"/"+method.String(), func(t *testing.T) {
				f, err := Decompose(tc.w, Options{Rank: 10, Method: method, Oversample: 5})
				if err != nil {
					t.Fatal(err)
				}
				checkFactorShape(t, tc.w, f, 10)
				checkDescending(t, f.S)
				if ea, eb := Orthonormality(f); ea > 1e-5 || eb > 1e-5 {
					t.Errorf("orthonormality ‖AAᵀ−I‖=%g ‖BᵀB−I‖=%g, want ≤ 1e-5", ea, eb)
				}
				if d := diffNorm(tc.w, reconstruct(f, 1)); d > 1e-5*max(frobenius32(tc.w), 1) {
					t.Errorf("‖W − BSA‖_F = %g", d)
				}
			})
		}
	}
}

func TestDecomposeAuto(t *testing.T) {
	// Below AutoFullLimit, Auto is the exact SVD: same factors as Full.
	w := gaussian(400, 60, 45)
	a, err := Decompose(w, Options{Rank: 10})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Decompose(w, Options{Rank: 10, Method: Full, NIter: 9, Oversample: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.A.Data, f.A.Data) || !slices.Equal(a.S, f.S) || !slices.Equal(a.B.Data, f.B.Data) {
		t.Error("Auto on a small matrix differs from Full")
	}
}

func TestDecomposeBadInput(t *testing.T) {
	ok := gaussian(500, 6, 4)
	nan := gaussian(500, 6, 4)
	nan.Data[13] = float32(math.NaN())
	inf := gaussian(500, 6, 4)
	inf.Data[0] = float32(math.Inf(-1))
	// The iterative methods find NaN and Inf in their first product.
	bigNaN := gaussian(501, 300, 200)
	bigNaN.Data[299*200+199] = float32(math.NaN())
	bigInf := gaussian(502, 300, 200)
	bigInf.Data[12345] = float32(math.Inf(1))
	huge := gaussian(503, 300, 200)
	for i := range huge.Data {
		huge.Data[i] = 3e38
	}
	tests := []struct {
		name string
		w    *Matrix
		opts Options
		want error
	}{
		{"rank 0", ok, Options{Rank: 0}, ErrRank},
		{"negative rank", ok, Options{Rank: -3}, ErrRank},
		{"rank above min", ok, Options{Rank: 5}, ErrRank},
		{"rank above min randomized", ok, Options{Rank: 5, Method: Randomized}, ErrRank},
		{"NaN", nan, Options{Rank: 2}, ErrNonFinite},
		{"NaN randomized", nan, Options{Rank: 2, Method: Randomized}, ErrNonFinite},
		{"Inf", inf, Options{Rank: 2}, ErrNonFinite},
		{"Inf exact", inf, Options{Rank: 2, Method: Exact}, ErrNonFinite},
		{"NaN exact Lanczos", bigNaN, Options{Rank: 10, Method: Exact}, ErrNonFinite},
		{"Inf randomized", bigInf, Options{Rank: 10, Method: Randomized}, ErrNonFinite},
		{"overflow randomized", huge, Options{Rank: 10, Method: Randomized}, ErrNonFinite},
		{"nil", nil, Options{Rank: 1}, ErrShape},
		{"empty", NewMatrix(0, 5), Options{Rank: 1}, ErrShape},
		{"short data", &Matrix{Rows: 3, Cols: 3, Data: make([]float32, 8)}, Options{Rank: 1}, ErrShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decompose(tc.w, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decompose: err = %v, want %v", err, tc.want)
			}
			if f != nil {
				t.Error("factors returned with an error")
			}
		})
	}
	if _, err := Decompose(ok, Options{Rank: 2, Method: Method(42)}); err == nil {
		t.Error("unknown method accepted")
	}
	if _, err := SingularValues(nan); !errors.Is(err, ErrNonFinite) {
		t.Errorf("SingularValues(NaN): err = %v", err)
	}
	if _, err := SingularValues(NewMatrix(0, 0)); !errors.Is(err, ErrShape) {
		t.Errorf("SingularValues(empty): err = %v", err)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name       string
		in         Options
		rows, cols int
		want       Options
	}{
		{"auto small is full", Options{Rank: 8, Seed: 3, NIter: 2}, 4096, AutoFullLimit, Options{Rank: 8, Method: Full, Seed: 3}},
		{"auto large is randomized", Options{Rank: 8}, AutoFullLimit + 1, 4096,
			Options{Rank: 8, Method: Randomized, NIter: DefaultNIter, Oversample: DefaultOversample}},
		{"randomized keeps explicit", Options{Rank: 8, Method: Randomized, NIter: 7, Oversample: 3}, 10, 10,
			Options{Rank: 8, Method: Randomized, NIter: 7, Oversample: 3}},
		{"randomized keeps none", Options{Rank: 8, Method: Randomized, NIter: -1, Oversample: -1}, 10, 10,
			Options{Rank: 8, Method: Randomized, NIter: -1, Oversample: -1}},
		{"full clears", Options{Rank: 8, Method: Full, NIter: 7, Oversample: 3, Tol: 1e-3}, 5000, 5000, Options{Rank: 8, Method: Full}},
		{"randomized clears tol", Options{Rank: 8, Method: Randomized, Tol: 1e-3}, 10, 10,
			Options{Rank: 8, Method: Randomized, NIter: DefaultNIter, Oversample: DefaultOversample}},
		{"exact defaults", Options{Rank: 8, Method: Exact, NIter: 3}, 5000, 5000,
			Options{Rank: 8, Method: Exact, Oversample: DefaultExactOversample, Tol: DefaultTol}},
		{"exact keeps explicit", Options{Rank: 8, Method: Exact, Oversample: -1, Tol: 1e-9}, 5000, 5000,
			Options{Rank: 8, Method: Exact, Oversample: -1, Tol: 1e-9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.Normalize(tc.rows, tc.cols)
			if got != tc.want {
				t.Errorf("Normalize = %+v, want %+v", got, tc.want)
			}
			if again := got.Normalize(tc.rows, tc.cols); again != got {
				t.Errorf("Normalize not idempotent: %+v then %+v", got, again)
			}
		})
	}
}

func TestParseMethod(t *testing.T) {
	for _, m := range []Method{Auto, Full, Randomized, Exact} {
		got, err := ParseMethod(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMethod("lanczos"); err == nil {
		t.Error("ParseMethod accepted an unknown name")
	}
}

func TestRandomizedNoPowerIteration(t *testing.T) {
	// With a sketch as wide as the matrix the range is captured exactly, even
	// without power iterations or oversampling.
	w := gaussian(600, 50, 30)
	f, err := Decompose(w, Options{Rank: 30, Method: Randomized, NIter: -1, Oversample: -1})
	if err != nil {
		t.Fatal(err)
	}
	if d := diffNorm(w, reconstruct(f, 1)); d > 1e-5*frobenius32(w) {
		t.Errorf("‖W − BSA‖_F = %g", d)
	}
}
