package surgery

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

func TestResidualRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		rows, cols int
		rank       int
		scale      float64
	}{
		{"tall c=1", 300, 200, 20, 1},
		{"wide c=0.75", 90, 700, 16, 0.75},
		{"r=1 c=2", 33, 17, 1, 2},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := gaussian(uint64(700+i), tc.rows, tc.cols)
			f, err := Decompose(w, Options{Rank: tc.rank, Method: Full})
			if err != nil {
				t.Fatal(err)
			}
			res := make([]float64, tc.rows*tc.cols)
			Residual(w, f, tc.scale, res)

			maxW := 0.0
			for _, v := range w.Data {
				maxW = max(maxW, math.Abs(float64(v)))
			}
			// Against the textbook product.
			p := reconstruct(f, tc.scale)
			for k, v := range w.Data {
				if d := math.Abs(float64(v) - p[k] - res[k]); d > 1e-12*maxW {
					t.Fatalf("residual[%d] = %g, want %g", k, res[k], float64(v)-p[k])
				}
			}
			// The residual of the top-r triplets removes exactly their energy
			// (for scale 1): ‖W_r‖² = ‖W‖² − Σ s².
			if tc.scale == 1 {
				var rn, kept float64
				for _, v := range res {
					rn += v * v
				}
				for _, s := range f.S {
					kept += float64(s) * float64(s)
				}
				wn := frobenius32(w)
				if d := math.Abs(rn - (wn*wn - kept)); d > 1e-5*wn*wn {
					t.Errorf("‖W_r‖² = %g, want %g", rn, wn*wn-kept)
				}
			}
			// Merge back.
			AddPrincipal(res, f, tc.scale)
			for k, v := range w.Data {
				if d := math.Abs(res[k] - float64(v)); d > 1e-12*maxW {
					t.Fatalf("merged[%d] = %.17g, want %v (diff %g)", k, res[k], v, d)
				}
			}
		})
	}
}

func TestResidualPanicsOnMismatch(t *testing.T) {
	w := gaussian(800, 8, 6)
	f, err := Decompose(w, Options{Rank: 2})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(){
		"short dst":      func() { Residual(w, f, 1, make([]float64, 47)) },
		"wrong weight":   func() { Residual(gaussian(801, 6, 8), f, 1, make([]float64, 48)) },
		"add short dst":  func() { AddPrincipal(make([]float64, 10), f, 1) },
		"add nil factor": func() { AddPrincipal(make([]float64, 48), &Factors{}, 1) },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn()
		})
	}
}

func TestFactorsCheck(t *testing.T) {
	good := &Factors{A: NewMatrix(2, 5), S: []float32{2, 1}, B: NewMatrix(4, 2)}
	tests := []struct {
		name string
		f    *Factors
		ok   bool
	}{
		{"good", good, true},
		{"nil", nil, false},
		{"no S", &Factors{A: NewMatrix(0, 5), B: NewMatrix(4, 0)}, false},
		{"A rows", &Factors{A: NewMatrix(3, 5), S: []float32{2, 1}, B: NewMatrix(4, 2)}, false},
		{"A cols", &Factors{A: NewMatrix(2, 6), S: []float32{2, 1}, B: NewMatrix(4, 2)}, false},
		{"B rows", &Factors{A: NewMatrix(2, 5), S: []float32{2, 1}, B: NewMatrix(3, 2)}, false},
		{"B data", &Factors{A: NewMatrix(2, 5), S: []float32{2, 1}, B: &Matrix{Rows: 4, Cols: 2, Data: make([]float32, 7)}}, false},
	}
	for _, tc := range tests {
		err := tc.f.Check(4, 5)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrShape)) {
			t.Errorf("%s: Check = %v", tc.name, err)
		}
	}
}

func TestOrthonormality(t *testing.T) {
	eye := func(n int, v float32) *Matrix {
		m := NewMatrix(n, n)
		for i := 0; i < n; i++ {
			m.Data[i*n+i] = v
		}
		return m
	}
	tests := []struct {
		name         string
		f            *Factors
		wantA, wantB float64
	}{
		{"identity", &Factors{A: eye(3, 1), S: []float32{1, 1, 1}, B: eye(3, 1)}, 0, 0},
		// 2·I: every diagonal entry of the Gram is 4, off by 3.
		{"scaled", &Factors{A: eye(3, 2), S: []float32{1, 1, 1}, B: eye(3, 1)}, math.Sqrt(27), 0},
		// Two equal unit columns: BᵀB − I = [[0 1] [1 0]].
		{"parallel columns", &Factors{A: eye(2, 1), S: []float32{1, 1},
			B: &Matrix{Rows: 2, Cols: 2, Data: []float32{1, 1, 0, 0}}}, 0, math.Sqrt2},
		// A row pair at 45°: AAᵀ − I has off-diagonal cos 45° = 1/√2.
		{"rows at 45 degrees", &Factors{A: &Matrix{Rows: 2, Cols: 2, Data: []float32{1, 0, float32(math.Sqrt2 / 2), float32(math.Sqrt2 / 2)}},
			S: []float32{1, 1}, B: eye(2, 1)}, 1, 0},
	}
	for _, tc := range tests {
		ea, eb := Orthonormality(tc.f)
		if math.Abs(ea-tc.wantA) > 1e-6 || math.Abs(eb-tc.wantB) > 1e-6 {
			t.Errorf("%s: Orthonormality = %g, %g, want %g, %g", tc.name, ea, eb, tc.wantA, tc.wantB)
		}
	}
	ea, eb := Orthonormality(&Factors{A: &Matrix{Rows: 2, Cols: 2, Data: make([]float32, 3)}, B: eye(2, 1)})
	if !math.IsNaN(ea) || eb != 0 {
		t.Errorf("inconsistent A: Orthonormality = %g, %g, want NaN, 0", ea, eb)
	}
}

// TestKernels checks the blocked parallel products against textbook loops,
// on sizes that cross the block boundaries, and that they give bit-identical
// results on one worker and on several.
func TestKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(900, 1))
	fill := func(n int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		return x
	}
	for _, sz := range []struct{ m, k, p int }{{1, 1, 1}, {37, 53, 19}, {70, 300, 1100}, {513, 700, 3}} {
		a, b := fill(sz.m*sz.k), fill(sz.k*sz.p)
		a32 := make([]float32, len(a))
		for i, v := range a {
			a32[i] = float32(v)
		}
		want := make([]float64, sz.m*sz.p)
		for i := 0; i < sz.m; i++ {
			for j := 0; j < sz.p; j++ {
				var s float64
				for kk := 0; kk < sz.k; kk++ {
					s += float64(a32[i*sz.k+kk]) * b[kk*sz.p+j]
				}
				want[i*sz.p+j] = s
			}
		}
		// mulT reads a (k × m here) transposed: c = aᵀ·b with aᵀ = a32 as m × k.
		at := make([]float64, len(a))
		for i := 0; i < sz.m; i++ {
			for kk := 0; kk < sz.k; kk++ {
				at[kk*sz.m+i] = float64(a32[i*sz.k+kk])
			}
		}
		bt := make([]float64, sz.k*sz.p)
		copy(bt, b)
		run := func() (c1, c2, c3 []float64) {
			c1 = make([]float64, sz.m*sz.p)
			mul(c1, a32, b, sz.m, sz.k, sz.p)
			c2 = make([]float64, sz.m*sz.p)
			mulT(c2, at, bt, sz.k, sz.m, sz.p)
			c3 = slices.Clone(want)
			mulAdd(c3, -1, a32, b, sz.m, sz.k, sz.p)
			return
		}
		prev := runtime.GOMAXPROCS(1)
		s1, s2, s3 := run()
		runtime.GOMAXPROCS(max(prev, 3))
		p1, p2, p3 := run()
		runtime.GOMAXPROCS(prev)
		if !slices.Equal(s1, p1) || !slices.Equal(s2, p2) || !slices.Equal(s3, p3) {
			t.Errorf("%v: results depend on the number of workers", sz)
		}
		for i := range want {
			tol := 1e-12 * float64(sz.k)
			if math.Abs(p1[i]-want[i]) > tol || math.Abs(p2[i]-want[i]) > tol || math.Abs(p3[i]) > tol {
				t.Fatalf("%v: element %d: mul %g mulT %g mulAdd residue %g, want %g", sz, i, p1[i], p2[i], p3[i], want[i])
			}
		}
	}
}

func TestOrthonormalizeFallback(t *testing.T) {
	rng := rand.New(rand.NewPCG(950, 1))
	const rows, l = 200, 12
	tests := []struct {
		name     string
		rank     int // columns beyond rank are combinations of the first ones
		fallback bool
	}{
		{"full rank", l, false},
		{"rank 4", 4, true},
		{"zero", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := make([]float64, rows*l)
			for i := 0; i < rows; i++ {
				for c := 0; c < tc.rank; c++ {
					x[i*l+c] = rng.NormFloat64()
				}
			}
			for c := tc.rank; c < l && tc.rank > 0; c++ {
				for i := 0; i < rows; i++ {
					x[i*l+c] = 0.5*x[i*l+c%tc.rank] - 2*x[i*l+(c+1)%tc.rank]
				}
			}
			orig := slices.Clone(x)
			ws := newOrthWorkspace(rows, l)
			ws.orthonormalize(x, rows)
			if got := ws.householdN > 0; got != tc.fallback {
				t.Errorf("Householder fallback taken = %v, want %v", got, tc.fallback)
			}
			g := make([]float64, l*l)
			mulT(g, x, x, rows, l, l)
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
			if math.Sqrt(dev) > 1e-12 {
				t.Errorf("‖QᵀQ − I‖_F = %g", math.Sqrt(dev))
			}
			// The span is kept: each original column equals Q·(Qᵀ·x).
			coef := make([]float64, l*l)
			mulT(coef, x, orig, rows, l, l)
			proj := make([]float64, rows*l)
			mul(proj, x, coef, rows, l, l)
			for i := range proj {
				if math.Abs(proj[i]-orig[i]) > 1e-10 {
					t.Fatalf("column span changed at %d: %g vs %g", i, proj[i], orig[i])
				}
			}
		})
	}
}
