//go:build amd64 && !purego

package surgery

import "golang.org/x/sys/cpu"

// The assembly microkernels in gemm_amd64.s; each adds an mr×kc strip times
// a kc×nr panel into an mr×nr tile of c (row stride ldc, in elements).

//go:noescape
func kernS8x48AVX512(kc int, a, b, c *float32, ldc int)

//go:noescape
func kernS8x48AVX512N(kc int, a *float32, lda int, b, c *float32, ldc int)

//go:noescape
func kernD8x24AVX512(kc int, a, b, c *float64, ldc int)

//go:noescape
func kernS6x16AVX2(kc int, a, b, c *float32, ldc int)

//go:noescape
func kernD6x8AVX2(kc int, a, b, c *float64, ldc int)

// kernD6x8H16AVX2 and kernD6x8B16AVX2 are kernD6x8AVX2 over consecutive
// strips of A on tiles stored as binary16 and bfloat16 (see
// microKernel.fused16; as is in bytes).
//
//go:noescape
func kernD6x8H16AVX2(kc int, a *float64, as, strips int, b *float64, src *byte, lds int, dst *byte, ldd int) int

//go:noescape
func kernD6x8B16AVX2(kc int, a *float64, as, strips int, b *float64, src *byte, lds int, dst *byte, ldd int) int

// fused16AVX2 wraps one of them with the bounds checks the assembly
// relies on.
func fused16AVX2(kern func(kc int, a *float64, as, strips int, b *float64, src *byte, lds int, dst *byte, ldd int) int) fused16Kernel[float64] {
	return func(kc int, a []float64, as, strips int, b []float64, src []byte, lds int, dst []byte, ldd int) int {
		if strips <= 0 {
			return 0
		}
		_, _ = a[(strips-1)*as+6*kc-1], b[8*kc-1]
		_, _ = src[2*((6*strips-1)*lds+7)+1], dst[2*((6*strips-1)*ldd+7)+1]
		return kern(kc, &a[0], 8*as, strips, &b[0], &src[0], lds, &dst[0], ldd)
	}
}

// cpuFeatures reports whether the CPU and the operating system support
// AVX2 with FMA, and AVX-512F (x/sys/cpu checks that the OS saves the
// YMM, and for AVX-512 the opmask and ZMM, state).
func cpuFeatures() (avx2, avx512 bool) {
	avx2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	return avx2, avx2 && cpu.X86.HasAVX512F
}

// archKernels lists the microkernels this CPU can run, fastest first; the
// portable ones are always last.
func archKernels() ([]microKernel[float32], []microKernel[float64]) {
	g32, g64 := goKernels()
	k32 := []microKernel[float32]{g32}
	k64 := []microKernel[float64]{g64}
	avx2, avx512 := cpuFeatures()
	if avx2 {
		k32 = append([]microKernel[float32]{{name: "avx2", mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int) {
			_, _, _ = a[6*kc-1], b[16*kc-1], c[5*ldc+15]
			kernS6x16AVX2(kc, &a[0], &b[0], &c[0], ldc)
		}}}, k32...)
		k64 = append([]microKernel[float64]{{name: "avx2", mr: 6, nr: 8, fn: func(kc int, a, b, c []float64, ldc int) {
			_, _, _ = a[6*kc-1], b[8*kc-1], c[5*ldc+7]
			kernD6x8AVX2(kc, &a[0], &b[0], &c[0], ldc)
		}}}, k64...)
		k64[0].fused16[BFloat16] = fused16AVX2(kernD6x8B16AVX2)
		if cpu.X86.HasF16C {
			k64[0].fused16[Float16] = fused16AVX2(kernD6x8H16AVX2)
		}
	}
	if avx512 {
		k32 = append([]microKernel[float32]{{name: "avx512", mr: 8, nr: 48,
			fn: func(kc int, a, b, c []float32, ldc int) {
				_, _, _ = a[8*kc-1], b[48*kc-1], c[7*ldc+47]
				kernS8x48AVX512(kc, &a[0], &b[0], &c[0], ldc)
			},
			dirN: func(kc int, a []float32, lda int, b, c []float32, ldc int) {
				_, _, _ = a[7*lda+kc-1], b[48*kc-1], c[7*ldc+47]
				kernS8x48AVX512N(kc, &a[0], lda, &b[0], &c[0], ldc)
			},
		}}, k32...)
		k64 = append([]microKernel[float64]{{name: "avx512", mr: 8, nr: 24, fn: func(kc int, a, b, c []float64, ldc int) {
			_, _, _ = a[8*kc-1], b[24*kc-1], c[7*ldc+23]
			kernD8x24AVX512(kc, &a[0], &b[0], &c[0], ldc)
		}}}, k64...)
	}
	return k32, k64
}

// packTN8f32 copies 8-float groups of a transposed A into packed strips;
// see gemm_amd64.s.
//
//go:noescape
func packTN8f32(dst *float32, ss int, src *float32, lda, kc, strips, pf int)

// packTN6f32 is packTN8f32 for 6-float groups; see gemm_amd64.s.
//
//go:noescape
func packTN6f32(dst *float32, ss int, src *float32, lda, kc, strips, pf int)

// packTN6f32f64 is packTN6f32 widening to float64; see gemm_amd64.s.
//
//go:noescape
func packTN6f32f64(dst *float64, ss int, src *float32, lda, kc, strips, pf int)

// packTNFast packs full strips of mr = 8 or 6 rows of a transposed float32
// A (into float32 strips, or for mr = 6 also float64 ones) with vector
// moves and software prefetch; it reports false when it does not apply.
func packTNFast[S, T float](dst []T, a []S, lda, i0, k0, kc, full, ss, mr int) bool {
	s, ok := any(a).([]float32)
	if !ok || !hasAVX2 || full == 0 || kc == 0 || mr != 8 && mr != 6 {
		return false
	}
	_ = s[(k0+kc-1)*lda+i0+mr*full-1]
	src := &s[k0*lda+i0]
	// Prefetch up to packPrefetchRows ahead, staying inside A's rows (the
	// last prefetches may point past A's last full row segment, never past
	// its last row; PREFETCH does not fault anyway).
	pf := max(0, min(packPrefetchRows, len(s)/lda-(k0+kc)))
	switch d := any(dst).(type) {
	case []float64:
		if mr != 6 {
			return false
		}
		_ = d[(full-1)*ss+mr*kc-1]
		packTN6f32f64(&d[0], ss, src, lda, kc, full, pf)
	case []float32:
		_ = d[(full-1)*ss+mr*kc-1]
		if mr == 6 {
			packTN6f32(&d[0], ss, src, lda, kc, full, pf)
		} else {
			packTN8f32(&d[0], ss, src, lda, kc, full, pf)
		}
	default:
		return false
	}
	return true
}

var hasAVX2, _ = cpuFeatures()
