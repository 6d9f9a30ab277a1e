package surgery

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// float is the element type of an operand a kernel reads without copying.
type float interface{ ~float32 | ~float64 }

// parallelFor calls body on consecutive chunks [lo, hi) of [0, n), each at
// most chunk long, on up to GOMAXPROCS goroutines.
func parallelFor(n, chunk int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if chunk < 1 {
		chunk = 1
	}
	chunks := (n + chunk - 1) / chunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	if workers <= 1 {
		for lo := 0; lo < n; lo += chunk {
			body(lo, min(lo+chunk, n))
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				c := int(next.Add(1)) - 1
				if c >= chunks {
					return
				}
				lo := c * chunk
				body(lo, min(lo+chunk, n))
			}
		})
	}
	wg.Wait()
}

// mulT below is the dense-layout entry point the measurements use (the
// tests add mulAdd and mul); it runs on the packed kernels of gemm.go, so it
// shares their determinism (independent of the number of workers).

// mulT computes c = aᵀ·b, overwriting c, where a is m×n (row-major, float32
// or float64), b is m×p and c is n×p. a is read in place, never transposed
// into a copy.
func mulT[T float](c []float64, a []T, b []float64, m, n, p int) {
	gemm64(true, n, p, m, 1, a, n, b, p, c, p, false)
}
