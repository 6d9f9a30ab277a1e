//go:build !amd64 || purego

package surgery

// archKernels lists the microkernels this build can run: the portable ones.
func archKernels() ([]microKernel[float32], []microKernel[float64]) {
	g32, g64 := goKernels()
	return []microKernel[float32]{g32}, []microKernel[float64]{g64}
}

// packTNFast has no portable fast path.
func packTNFast[S, T float](dst []T, a []S, lda, i0, k0, kc, full, ss, mr int) bool {
	return false
}
