//go:build cgo && openblas

// Package openblas binds the two CBLAS products package surgery uses to
// OpenBLAS (Debian: libopenblas-dev). It is built only with the build tag
// openblas; surgery itself has Go assembly, which a cgo package cannot.
package openblas

/*
#cgo LDFLAGS: -lopenblas
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb,
	float beta, float *c, int ldc);
void cblas_dgemm(int order, int transA, int transB, int m, int n, int k,
	double alpha, const double *a, int lda, const double *b, int ldb,
	double beta, double *c, int ldc);
*/
import "C"

const (
	rowMajor = 101
	noTrans  = 111
	trans    = 112
)

// Sgemm computes C = alpha·op(A)·B + beta·C in row-major float32, op(A) =
// Aᵀ when tA. The caller has checked the shapes against the slices, which
// must be non-empty.
func Sgemm(tA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta := C.int(noTrans)
	if tA {
		ta = trans
	}
	C.cblas_sgemm(rowMajor, ta, noTrans, C.int(m), C.int(n), C.int(k),
		C.float(alpha), (*C.float)(&a[0]), C.int(lda), (*C.float)(&b[0]), C.int(ldb),
		C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}

// Dgemm is Sgemm in float64.
func Dgemm(tA bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	ta := C.int(noTrans)
	if tA {
		ta = trans
	}
	C.cblas_dgemm(rowMajor, ta, noTrans, C.int(m), C.int(n), C.int(k),
		C.double(alpha), (*C.double)(&a[0]), C.int(lda), (*C.double)(&b[0]), C.int(ldb),
		C.double(beta), (*C.double)(&c[0]), C.int(ldc))
}
