package surgery

import (
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/floats"
)

// The kernels below are the float64 products the decomposition and the split
// spend their time in. They avoid gonum's Dgemm with a transposed operand
// (several times slower than the plain layout, see research/performance.md)
// by expressing every product as row-wise AXPYs over contiguous memory, and
// they run on GOMAXPROCS goroutines over disjoint output rows.
//
// Every output element is accumulated by one goroutine in a fixed order
// (ascending inner index), whatever the chunking, so results are bit-identical
// from run to run and independent of the number of workers.

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

// rowChunk picks a chunk length for n rows so that every worker gets several
// chunks (load balance on a shared machine) but a chunk is not tiny.
func rowChunk(n, minChunk int) int {
	w := runtime.GOMAXPROCS(0)
	c := (n + 4*w - 1) / (4 * w)
	return max(c, minChunk)
}

// gemmBlocks returns the column and inner block lengths for a product whose
// output rows are p long, so that a k×p block of the right operand stays near
// 256 KiB (in L2) while it is reused by a chunk of rows.
func gemmBlocks(k, p int) (nbj, nbk int) {
	nbj = min(p, 512)
	nbk = max(16, (32768+nbj-1)/nbj)
	return nbj, min(nbk, max(k, 1))
}

// mulAdd computes c += alpha·a·b, where a is m×k (row-major, float32 or
// float64), b is k×p and c is m×p (row-major float64).
func mulAdd[T float](c []float64, alpha float64, a []T, b []float64, m, k, p int) {
	if m == 0 || p == 0 || k == 0 {
		return
	}
	nbj, nbk := gemmBlocks(k, p)
	parallelFor(m, rowChunk(m, 8), func(lo, hi int) {
		for j0 := 0; j0 < p; j0 += nbj {
			j1 := min(j0+nbj, p)
			for k0 := 0; k0 < k; k0 += nbk {
				k1 := min(k0+nbk, k)
				for i := lo; i < hi; i++ {
					crow := c[i*p+j0 : i*p+j1]
					for kk, v := range a[i*k+k0 : i*k+k1] {
						r := (k0 + kk) * p
						floats.AddScaled(crow, alpha*float64(v), b[r+j0:r+j1])
					}
				}
			}
		}
	})
}

// mul computes c = a·b (a m×k, b k×p, c m×p), overwriting c.
func mul[T float](c []float64, a []T, b []float64, m, k, p int) {
	clear(c[:m*p])
	mulAdd(c, 1, a, b, m, k, p)
}

// mulT computes c = aᵀ·b, overwriting c, where a is m×n (row-major, float32
// or float64), b is m×p and c is n×p. It reads a once, column block by
// column block, so a is never transposed or copied.
func mulT[T float](c []float64, a []T, b []float64, m, n, p int) {
	clear(c[:n*p])
	if m == 0 || n == 0 || p == 0 {
		return
	}
	// A block of c (chunk×p float64) should stay in L2 while a streams by.
	chunk := max(8, min(rowChunk(n, 8), 32768/max(p, 1)))
	parallelFor(n, chunk, func(lo, hi int) {
		for kk := 0; kk < m; kk++ {
			brow := b[kk*p : kk*p+p]
			for jj, v := range a[kk*n+lo : kk*n+hi] {
				r := (lo + jj) * p
				floats.AddScaled(c[r:r+p], float64(v), brow)
			}
		}
	})
}
