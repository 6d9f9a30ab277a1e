package surgery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestPrincipalBlocks: adding P block by block, for any cut into blocks
// and on every microkernel, gives the same bits as the whole product of
// the packed matrix multiply, and agrees with the textbook sum to float64
// accuracy. The shapes cover partial strips and panels and a rank longer
// than one block of inner indices.
func TestPrincipalBlocks(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		for _, sz := range []struct{ m, n, r int }{{1, 1, 1}, {7, 9, 3}, {50, 70, 8}, {97, 300, 16}, {130, 515, gemmKC + 37}} {
			t.Run(fmt.Sprintf("%dx%d/r=%d", sz.m, sz.n, sz.r), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(sz.m), uint64(sz.r)))
				f := &Factors{
					A: &Matrix{Rows: sz.r, Cols: sz.n, Data: randSlice[float32](rng, sz.r*sz.n)},
					S: randSlice[float32](rng, sz.r),
					B: &Matrix{Rows: sz.m, Cols: sz.r, Data: randSlice[float32](rng, sz.m*sz.r)},
				}
				base := randSlice[float64](rng, sz.m*sz.n)
				const scale = -0.75

				// The reference path: coefficients, then the packed product.
				coef := make([]float64, sz.m*sz.r)
				for i := range sz.m {
					for c := range sz.r {
						coef[i*sz.r+c] = scale * float64(f.S[c]) * float64(f.B.Data[i*sz.r+c])
					}
				}
				a := make([]float64, len(f.A.Data))
				for i, v := range f.A.Data {
					a[i] = float64(v)
				}
				want := append([]float64(nil), base...)
				mulAdd(want, 1, coef, a, sz.m, sz.r, sz.n)
				naive := naiveGemm(false, sz.m, sz.n, sz.r, 1, coef, sz.r, a, sz.n, base, sz.n)
				for i := range want {
					if d := math.Abs(want[i] - naive[i]); d > 1e-12*(1+math.Abs(naive[i])) {
						t.Fatalf("element %d: %v, textbook %v", i, want[i], naive[i])
					}
				}

				p := NewPrincipal(f, scale)
				whole := append([]float64(nil), base...)
				p.AddTo(whole)
				same(t, "AddTo", whole, want)

				mb, nb := p.BlockShape()
				for _, cut := range []struct{ rows, cols int }{{mb, nb}, {2 * mb, nb}, {mb, 3 * nb}, {sz.m, sz.n}} {
					got := append([]float64(nil), base...)
					// Blocks copied out to a buffer of their own (as merge
					// does) and back.
					for i0 := 0; i0 < sz.m; i0 += cut.rows {
						i1 := min(i0+cut.rows, sz.m)
						for j0 := 0; j0 < sz.n; j0 += cut.cols {
							j1 := min(j0+cut.cols, sz.n)
							ld := j1 - j0 + 3
							buf := make([]float64, (i1-i0)*ld)
							for i := i0; i < i1; i++ {
								copy(buf[(i-i0)*ld:], got[i*sz.n+j0:i*sz.n+j1])
							}
							p.AddBlock(buf, ld, i0, i1, j0, j1)
							for i := i0; i < i1; i++ {
								copy(got[i*sz.n+j0:i*sz.n+j1], buf[(i-i0)*ld:])
							}
						}
					}
					same(t, fmt.Sprintf("blocks of %d×%d", cut.rows, cut.cols), got, want)
				}
			})
		}
	})
}

func same(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestPrincipalBlockChecks(t *testing.T) {
	f := &Factors{A: gaussian(1, 2, 100), S: []float32{1, 2}, B: gaussian(2, 100, 2)}
	p := NewPrincipal(f, 1)
	mb, nb := p.BlockShape()
	for _, c := range []struct{ i0, i1, j0, j1, ld, n int }{
		{1, 2, 0, 10, 10, 10},          // unaligned row start
		{0, 2, 1, 10, 10, 20},          // unaligned column start
		{0, 101, 0, 10, 10, 1e4},       // past the last row
		{0, 2, 0, 101, 101, 1e4},       // past the last column
		{0, 2, 0, 10, 9, 100},          // ld shorter than a row
		{0, 2, 0, 10, 10, 19},          // destination too short
		{mb, mb + 1, nb, nb + 1, 1, 1}, // aligned, but past the end
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AddBlock(%+v) did not panic", c)
				}
			}()
			p.AddBlock(make([]float64, c.n), c.ld, c.i0, c.i1, c.j0, c.j1)
		}()
	}
}
