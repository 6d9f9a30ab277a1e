package surgery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// withKernels runs f once for each microkernel pair this CPU supports,
// with that pair installed.
func withKernels(t *testing.T, f func(t *testing.T)) {
	k32, k64 := archKernels()
	saved32, saved64 := kernel32, kernel64
	defer func() { kernel32, kernel64 = saved32, saved64 }()
	savedNarrow := kernel32Narrow
	defer func() { kernel32Narrow = savedNarrow }()
	kernel32Narrow = microKernel[float32]{}
	for i := range k32 {
		kernel32, kernel64 = k32[i], k64[i]
		t.Run(k32[i].name, f)
	}
}

// naiveGemm returns alpha·op(A)·B (+ C0 when c0 is not nil) in float64 by
// the textbook loop.
func naiveGemm[S, T float](tA bool, m, n, k int, alpha float64, a []S, lda int, b []T, ldb int, c0 []T, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av S
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				s += float64(av) * float64(b[p*ldb+j])
			}
			s *= alpha
			if c0 != nil {
				s += float64(c0[i*ldc+j])
			}
			out[i*n+j] = s
		}
	}
	return out
}

func randSlice[T float](rng *rand.Rand, n int) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = T(rng.NormFloat64())
	}
	return x
}

// TestGemm checks every microkernel, both layouts of A, overwrite and
// accumulate, alpha and padded strides against the textbook loop, on shapes
// that cross the tile and kc block edges, and that the result does not
// depend on the number of workers.
func TestGemm(t *testing.T) {
	shapes := []struct{ m, n, k int }{
		{1, 1, 1}, {7, 5, 3}, {8, 48, 1}, {37, 53, 19}, {97, 144, 400}, {130, 50, 2*gemmKC + 5}, {5, 200, 33},
		{24, 30, 2*splitKSlice + 7}, // split k
	}
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1200, 1))
		for _, sz := range shapes {
			for _, tA := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					name := fmt.Sprintf("%dx%dx%d/tA=%v/acc=%v", sz.m, sz.n, sz.k, tA, acc)
					lda := sz.k + 3
					ar := sz.m
					if tA {
						lda, ar = sz.m+2, sz.k
					}
					ldb, ldc := sz.n+1, sz.n+5
					a32 := randSlice[float32](rng, ar*lda)
					b32 := randSlice[float32](rng, sz.k*ldb)
					c32 := randSlice[float32](rng, sz.m*ldc)
					b64 := randSlice[float64](rng, sz.k*ldb)
					c64 := randSlice[float64](rng, sz.m*ldc)
					a64 := randSlice[float64](rng, ar*lda)
					alpha := -0.75
					var init32 []float32
					var init64 []float64
					if acc {
						init32, init64 = c32, c64
					}
					want32 := naiveGemm(tA, sz.m, sz.n, sz.k, alpha, a32, lda, b32, ldb, init32, ldc)
					want64 := naiveGemm(tA, sz.m, sz.n, sz.k, alpha, a32, lda, b64, ldb, init64, ldc)
					want64d := naiveGemm(tA, sz.m, sz.n, sz.k, alpha, a64, lda, b64, ldb, init64, ldc)
					run := func() (g32, g64, g64d []float32, h64, h64d []float64) {
						got32 := slices.Clone(c32)
						gemm32(tA, sz.m, sz.n, sz.k, float32(alpha), a32, lda, b32, ldb, got32, ldc, acc)
						got64 := slices.Clone(c64)
						gemm64(tA, sz.m, sz.n, sz.k, alpha, a32, lda, b64, ldb, got64, ldc, acc)
						got64d := slices.Clone(c64)
						gemm64(tA, sz.m, sz.n, sz.k, alpha, a64, lda, b64, ldb, got64d, ldc, acc)
						return got32, nil, nil, got64, got64d
					}
					prev := runtime.GOMAXPROCS(1)
					s32, _, _, s64, s64d := run()
					runtime.GOMAXPROCS(max(prev, 3))
					p32, _, _, p64, p64d := run()
					runtime.GOMAXPROCS(prev)
					if !slices.Equal(s32, p32) || !slices.Equal(s64, p64) || !slices.Equal(s64d, p64d) {
						t.Errorf("%s: results depend on the number of workers", name)
					}
					for i := 0; i < sz.m; i++ {
						for j := 0; j < sz.n; j++ {
							w32, w64, w64d := want32[i*sz.n+j], want64[i*sz.n+j], want64d[i*sz.n+j]
							tol32 := 2e-6 * float64(sz.k+4)
							tol64 := 1e-13 * float64(sz.k+4)
							if d := math.Abs(float64(p32[i*ldc+j]) - w32); d > tol32 {
								t.Fatalf("%s: float32 C[%d,%d] = %g, want %g", name, i, j, p32[i*ldc+j], w32)
							}
							if d := math.Abs(p64[i*ldc+j] - w64); d > tol64 {
								t.Fatalf("%s: mixed C[%d,%d] = %g, want %g", name, i, j, p64[i*ldc+j], w64)
							}
							if d := math.Abs(p64d[i*ldc+j] - w64d); d > tol64 {
								t.Fatalf("%s: float64 C[%d,%d] = %g, want %g", name, i, j, p64d[i*ldc+j], w64d)
							}
						}
						// The padding between rows of C is never written.
						for j := sz.n; j < ldc && i < sz.m-1; j++ {
							if p32[i*ldc+j] != c32[i*ldc+j] || p64[i*ldc+j] != c64[i*ldc+j] {
								t.Fatalf("%s: padding C[%d,%d] overwritten", name, i, j)
							}
						}
					}
				}
			}
		}
	})
}

func TestGemmShortSlicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("gemm32 with a short C did not panic")
		}
	}()
	a := make([]float32, 6)
	gemm32(false, 2, 3, 3, 1, a, 3, make([]float32, 9), 3, make([]float32, 5), 3, false)
}

func BenchmarkGemm(b *testing.B) {
	k32, k64 := archKernels()
	saved32, saved64 := kernel32, kernel64
	defer func() { kernel32, kernel64 = saved32, saved64 }()
	for i := range k32 {
		kernel32, kernel64 = k32[i], k64[i]
		for _, sz := range []struct {
			m, n, k int
			tA      bool
		}{{4096, 144, 4096, false}, {4096, 144, 4096, true}, {4096, 48, 4096, false}, {4096, 48, 4096, true}, {4096, 16, 4096, false}} {
			rng := rand.New(rand.NewPCG(1, 2))
			ar, ac := sz.m, sz.k
			if sz.tA {
				ar, ac = sz.k, sz.m
			}
			a := randSlice[float32](rng, ar*ac)
			b32 := randSlice[float32](rng, sz.k*sz.n)
			b64 := randSlice[float64](rng, sz.k*sz.n)
			c32 := make([]float32, sz.m*sz.n)
			c64 := make([]float64, sz.m*sz.n)
			flops := 2 * float64(sz.m) * float64(sz.n) * float64(sz.k)
			name := fmt.Sprintf("%s/%dx%dx%d/tA=%v", k32[i].name, sz.m, sz.n, sz.k, sz.tA)
			b.Run(name+"/f32", func(b *testing.B) {
				for b.Loop() {
					gemm32(sz.tA, sz.m, sz.n, sz.k, 1, a, ac, b32, sz.n, c32, sz.n, false)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run(name+"/f32xf64", func(b *testing.B) {
				for b.Loop() {
					gemm64(sz.tA, sz.m, sz.n, sz.k, 1, a, ac, b64, sz.n, c64, sz.n, false)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestGemmTriangle checks the triangular variants against the full
// product: upperC must get the upper triangle of C right, upperB all of C
// when B is upper triangular.
func TestGemmTriangle(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1300, 1))
		for _, sz := range []struct{ m, k int }{{1, 1}, {37, 37}, {130, 90}, {144, 4096}, {50, 3 * splitKSlice}} {
			// upperC: C = XᵀX, X k × m.
			x := randSlice[float64](rng, sz.k*sz.m)
			full := make([]float64, sz.m*sz.m)
			tri := make([]float64, sz.m*sz.m)
			gemm64(true, sz.m, sz.m, sz.k, 1, x, sz.m, x, sz.m, full, sz.m, false)
			gemm64Tri(upperC, true, sz.m, sz.m, sz.k, 1, x, sz.m, x, sz.m, tri, sz.m, false)
			for i := 0; i < sz.m; i++ {
				for j := i; j < sz.m; j++ {
					if d := math.Abs(tri[i*sz.m+j] - full[i*sz.m+j]); d > 1e-12*float64(sz.k) {
						t.Fatalf("upperC %v: (%d, %d) = %g, want %g", sz, i, j, tri[i*sz.m+j], full[i*sz.m+j])
					}
				}
			}
			// upperB: C = A·R, A k × m, R m × m upper triangular.
			a := randSlice[float64](rng, sz.k*sz.m)
			r := randSlice[float64](rng, sz.m*sz.m)
			for i := 0; i < sz.m; i++ {
				for j := 0; j < i; j++ {
					r[i*sz.m+j] = 0
				}
			}
			fullB := make([]float64, sz.k*sz.m)
			triB := make([]float64, sz.k*sz.m)
			gemm64(false, sz.k, sz.m, sz.m, 1, a, sz.m, r, sz.m, fullB, sz.m, false)
			gemm64Tri(upperB, false, sz.k, sz.m, sz.m, 1, a, sz.m, r, sz.m, triB, sz.m, false)
			for i, v := range fullB {
				if d := math.Abs(triB[i] - v); d > 1e-12*float64(sz.m) {
					t.Fatalf("upperB %v: element %d = %g, want %g", sz, i, triB[i], v)
				}
			}
		}
	})
}

// TestGemmPacked checks the products from a pre-packed A against the plain
// ones, for both layouts and a width that uses the narrow kernel.
func TestGemmPacked(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1400, 1))
		for _, sz := range []struct{ m, n, k int }{{1, 1, 1}, {97, 16, 1100}, {300, 50, 2*gemmKC + 3}} {
			for _, tA := range []bool{false, true} {
				lda := sz.k
				ar := sz.m
				if tA {
					lda, ar = sz.m, sz.k
				}
				a := randSlice[float32](rng, ar*lda)
				b := randSlice[float32](rng, sz.k*sz.n)
				want := make([]float32, sz.m*sz.n)
				gemm(kernel32, fullProduct, tA, sz.m, sz.n, sz.k, 0.5, a, lda, b, sz.n, want, sz.n, false)
				pa := prepackA(kernel32, tA, sz.m, sz.k, a, lda)
				got := randSlice[float32](rng, sz.m*sz.n)
				gemm32Packed(pa, sz.n, 0.5, b, sz.n, got, sz.n, false)
				if !slices.Equal(got, want) {
					t.Errorf("%v tA=%v: packed product differs from the plain one", sz, tA)
				}
			}
		}
	})
}

// BenchmarkMicroKernel measures each microkernel alone on operands that
// stay in the first-level cache (a strip of A, a panel of B, a tile of C,
// kc = 128): the ceiling the packed products can approach.
func BenchmarkMicroKernel(b *testing.B) {
	k32, k64 := archKernels()
	for i := range k32 {
		b.Run(k32[i].name+"/f32", func(b *testing.B) { benchKernel(b, k32[i]) })
		b.Run(k64[i].name+"/f64", func(b *testing.B) { benchKernel(b, k64[i]) })
	}
}

func benchKernel[T float](b *testing.B, k microKernel[T]) {
	const kc = 128
	a, p, c := make([]T, k.mr*kc), make([]T, kc*k.nr), make([]T, k.mr*k.nr)
	for b.Loop() {
		k.fn(kc, a, p, c, k.nr)
	}
	b.ReportMetric(2*float64(k.mr*k.nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
