package surgery

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// decayingWeight returns a rows × cols float32 matrix with a power-law
// spectrum like compare.py's, cheaply: (G₁/√rows)·diag(s)·(G₂/√cols) with
// Gaussian G₁ (rows × k), G₂ (k × cols), s_i = (1+i)^(-1/2), k = min(rows,
// cols, 1024), plus a Gaussian floor of 1e-3·s_k.
func decayingWeight(rows, cols int) *Matrix {
	k := min(rows, cols, 1024)
	rng := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	g1 := make([]float32, rows*k)
	for i := range g1 {
		g1[i] = float32(rng.NormFloat64() / math.Sqrt(float64(rows)))
	}
	g2 := make([]float32, k*cols)
	for i := 0; i < k; i++ {
		s := 1 / math.Sqrt(1+float64(i))
		for j := 0; j < cols; j++ {
			g2[i*cols+j] = float32(s * rng.NormFloat64() / math.Sqrt(float64(cols)))
		}
	}
	w := NewMatrix(rows, cols)
	floor := 1e-3 / math.Sqrt(float64(k)) / math.Sqrt(float64(max(rows, cols)))
	for i := range w.Data {
		w.Data[i] = float32(floor * rng.NormFloat64())
	}
	gemm32(false, rows, cols, k, 1, g1, k, g2, cols, w.Data, cols, true)
	return w
}

// BenchmarkDecompose times the methods at the sizes of the issue: r = 128,
// four power iterations (randomized), tolerance 1e-6 (exact). The
// 11008×4096 cases take a few seconds to set up; run them with
// -bench 'Decompose/11008'.
func BenchmarkDecompose(b *testing.B) {
	type bcase struct {
		rows, cols int
		opts       Options
	}
	var cases []bcase
	for _, sz := range [][2]int{{1024, 1024}, {4096, 4096}, {11008, 4096}} {
		cases = append(cases,
			bcase{sz[0], sz[1], Options{Rank: 128, Method: Randomized, NIter: 4}},
			bcase{sz[0], sz[1], Options{Rank: 128, Method: Exact}})
	}
	cases = append(cases, bcase{512, 512, Options{Rank: 64, Method: Full}})
	weights := map[[2]int]*Matrix{}
	for _, bc := range cases {
		name := fmt.Sprintf("%dx%d/r=%d/%s", bc.rows, bc.cols, bc.opts.Rank, bc.opts.Method)
		b.Run(name, func(b *testing.B) {
			w := weights[[2]int{bc.rows, bc.cols}]
			if w == nil {
				w = decayingWeight(bc.rows, bc.cols)
				weights[[2]int{bc.rows, bc.cols}] = w
			}
			b.SetBytes(int64(4 * len(w.Data)))
			b.ResetTimer()
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

// BenchmarkAddBlock16 measures the merge's fused product on one block of
// rows (BlockShape's) of a 4096-wide weight stored as binary16 or bfloat16,
// at rank 128, everything in cache but A's panels: compare its GFLOP/s with
// BenchmarkMicroKernel's float64 ceiling (run both with -cpu 1). Rows 8 KiB
// apart are staged (see AddBlock16); F16/unstaged goes without.
func BenchmarkAddBlock16(b *testing.B) {
	const n, r = 4096, 128
	rng := rand.New(rand.NewPCG(1, 2))
	f := &Factors{
		A: &Matrix{Rows: r, Cols: n, Data: randSlice[float32](rng, r*n)},
		S: randSlice[float32](rng, r),
		B: &Matrix{Rows: 96, Cols: r, Data: randSlice[float32](rng, 96*r)},
	}
	p := NewPrincipal(f, 1)
	defer p.Release()
	rows, _ := p.BlockShape()
	for _, c := range []struct {
		name  string
		ff    int
		alias int
	}{{"F16", 0, stageAlias}, {"BF16", 1, stageAlias}, {"F16/unstaged", 0, 1 << 62}} {
		ff := format16s[c.ff]
		b.Run(c.name, func(b *testing.B) {
			defer func(a int) { stageAlias = a }(stageAlias)
			stageAlias = c.alias
			decode, encode := codecs(ff.toF, ff.round)
			src, dst := make([]byte, 2*rows*n), make([]byte, 2*rows*n)
			for i := 0; i < len(src); i += 2 {
				binary.LittleEndian.PutUint16(src[i:], ff.round(rng.NormFloat64()))
			}
			for b.Loop() {
				p.AddBlock16(ff.f, dst, src, n, 0, rows, 0, n, decode, encode)
			}
			b.ReportMetric(2*float64(rows*n*r)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
