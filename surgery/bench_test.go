package surgery

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchWeight returns a rows × cols weight shaped like a trained projection:
// Gaussian noise of scale 1/√cols plus a decaying low-rank part.
func benchWeight(rows, cols int) *Matrix {
	w := gaussian(42, rows, cols)
	rng := rand.New(rand.NewPCG(43, 1))
	const k = 16
	u := make([]float64, rows*k)
	v := make([]float64, k*cols)
	for i := range u {
		u[i] = rng.NormFloat64()
	}
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	low := make([]float64, rows*cols)
	mul(low, u, v, rows, k, cols)
	s := 1 / float32(cols)
	for i := range w.Data {
		w.Data[i] = w.Data[i]*s*8 + float32(low[i])*s
	}
	return w
}

func BenchmarkDecompose(b *testing.B) {
	for _, bc := range []struct {
		rows, cols int
		opts       Options
	}{
		{1024, 1024, Options{Rank: 64, Method: Randomized}},
		{4096, 4096, Options{Rank: 128, Method: Randomized, NIter: 4}},
		{512, 512, Options{Rank: 64, Method: Full}},
	} {
		name := fmt.Sprintf("%dx%d/r=%d/%s", bc.rows, bc.cols, bc.opts.Rank, bc.opts.Method)
		b.Run(name, func(b *testing.B) {
			w := benchWeight(bc.rows, bc.cols)
			b.SetBytes(int64(4 * len(w.Data)))
			for b.Loop() {
				if _, err := Decompose(w, bc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkResidual(b *testing.B) {
	for _, bc := range []struct{ rows, cols, rank int }{{1024, 1024, 64}, {4096, 4096, 128}} {
		b.Run(fmt.Sprintf("%dx%d/r=%d", bc.rows, bc.cols, bc.rank), func(b *testing.B) {
			w := gaussian(44, bc.rows, bc.cols)
			// Any orthonormal-shaped factors do: the cost is the rank-r product.
			f := &Factors{A: gaussian(45, bc.rank, bc.cols), S: make([]float32, bc.rank), B: gaussian(46, bc.rows, bc.rank)}
			for i := range f.S {
				f.S[i] = float32(bc.rank - i)
			}
			dst := make([]float64, bc.rows*bc.cols)
			b.SetBytes(int64(4 * len(w.Data)))
			for b.Loop() {
				Residual(w, f, 1, dst)
			}
		})
	}
}

func BenchmarkOrthonormality(b *testing.B) {
	f := &Factors{A: gaussian(47, 128, 4096), S: make([]float32, 128), B: gaussian(48, 11008, 128)}
	for b.Loop() {
		Orthonormality(f)
	}
}
