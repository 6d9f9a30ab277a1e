//go:build cgo && openblas

package surgery

// With the build tag openblas (and cgo), the float32 and float64 products
// go to OpenBLAS through internal/openblas; the products with a float32 A
// and a float64 B, the pre-packed Lanczos products and the degenerate
// shapes stay on the Go kernels. OpenBLAS runs its own threads
// (OPENBLAS_NUM_THREADS); its results may differ from the Go kernels' in
// the last bits.

import "github.com/sorsa-convert/sorsa-convert/surgery/internal/openblas"

func init() {
	gemm32Hook = func(tA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) bool {
		if m <= 0 || n <= 0 || k <= 0 {
			return false
		}
		checkGemm(tA, m, n, k, lda, ldb, ldc, len(a), len(b), len(c))
		var beta float32
		if acc {
			beta = 1
		}
		openblas.Sgemm(tA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return true
	}
	gemm64Hook = func(tA bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, acc bool) bool {
		if m <= 0 || n <= 0 || k <= 0 {
			return false
		}
		checkGemm(tA, m, n, k, lda, ldb, ldc, len(a), len(b), len(c))
		var beta float64
		if acc {
			beta = 1
		}
		openblas.Dgemm(tA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return true
	}
}
