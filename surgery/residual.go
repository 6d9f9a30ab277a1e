package surgery

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
)

// Check reports whether f is a consistent set of factors for a rows × cols
// weight: A is r × cols, S has r entries, B is rows × r, r ≥ 1 and every Data
// slice has its matrix's length. Errors wrap ErrShape. Factors read from a
// file should pass Check before Residual or AddPrincipal, which panic on
// inconsistent shapes.
func (f *Factors) Check(rows, cols int) error {
	if f == nil || f.A == nil || f.B == nil {
		return fmt.Errorf("surgery: factors: missing A, S or B: %w", ErrShape)
	}
	r := len(f.S)
	switch {
	case r < 1:
		return fmt.Errorf("surgery: factors: empty S: %w", ErrShape)
	case f.A.Rows != r || f.A.Cols != cols || len(f.A.Data) != r*cols:
		return fmt.Errorf("surgery: factors: A is %d×%d (%d elements), want %d×%d: %w",
			f.A.Rows, f.A.Cols, len(f.A.Data), r, cols, ErrShape)
	case f.B.Rows != rows || f.B.Cols != r || len(f.B.Data) != rows*r:
		return fmt.Errorf("surgery: factors: B is %d×%d (%d elements), want %d×%d: %w",
			f.B.Rows, f.B.Cols, len(f.B.Data), rows, r, ErrShape)
	}
	return nil
}

// Residual writes dst = float64(w) − scale·B·diag(S)·A, the frozen residual
// of SORSA's split, computed in float64 so that the caller rounds it once to
// the stored type. dst has w.Rows×w.Cols elements, row-major.
//
// It panics if f does not fit w (see Factors.Check) or dst has the wrong
// length.
func Residual(w *Matrix, f *Factors, scale float64, dst []float64) {
	mustFit(f, w.Rows, w.Cols, len(dst))
	if len(w.Data) != w.Rows*w.Cols {
		panic(fmt.Sprintf("surgery: Residual: %d×%d matrix with %d elements", w.Rows, w.Cols, len(w.Data)))
	}
	widenInto(dst, w.Data)
	p := NewPrincipal(f, -scale)
	p.AddTo(dst)
	p.Release()
}

// AddPrincipal adds scale·B·diag(S)·A to dst (rows × cols, row-major float64):
// SORSA's merge, W = W_r + scale·B·diag(S)·A, before the single rounding to
// the stored type.
//
// It panics if f does not fit a dst of B.Rows × A.Cols elements.
func AddPrincipal(dst []float64, f *Factors, scale float64) {
	p := NewPrincipal(f, scale)
	p.AddTo(dst)
	p.Release()
}

func mustFit(f *Factors, rows, cols, n int) {
	if err := f.Check(rows, cols); err != nil {
		panic(err.Error())
	}
	if n != rows*cols {
		panic(fmt.Sprintf("surgery: destination has %d elements, want %d×%d", n, rows, cols))
	}
}

// Orthonormality returns ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F (unsquared, float64
// accumulation): the two terms of SORSA's orthonormal regularizer. A measure
// is NaN when its matrix is missing or its Data length is not Rows×Cols.
func Orthonormality(f *Factors) (errA, errB float64) {
	if f == nil {
		return math.NaN(), math.NaN()
	}
	return gramDeviationRows(f.A), gramDeviationCols(f.B)
}

// gramDeviationRows returns ‖M·Mᵀ − I‖_F.
func gramDeviationRows(a *Matrix) float64 {
	if a == nil || a.Rows < 0 || a.Cols < 0 || len(a.Data) != a.Rows*a.Cols {
		return math.NaN()
	}
	r, n := a.Rows, a.Cols
	a64 := make([]float64, len(a.Data))
	widenInto(a64, a.Data)
	// Row i of the lower triangle holds i+1 dot products; the per-row sums
	// are added in order afterwards so the result does not depend on
	// scheduling.
	sums := make([]float64, r)
	parallelFor(r, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ri := a64[i*n : (i+1)*n]
			var s float64
			for j := 0; j <= i; j++ {
				d := floats.Dot(ri, a64[j*n:(j+1)*n])
				if i == j {
					d--
					s += d * d
				} else {
					s += 2 * d * d
				}
			}
			sums[i] = s
		}
	})
	return math.Sqrt(floats.Sum(sums))
}

// gramDeviationCols returns ‖Mᵀ·M − I‖_F.
func gramDeviationCols(b *Matrix) float64 {
	if b == nil || b.Rows < 0 || b.Cols < 0 || len(b.Data) != b.Rows*b.Cols {
		return math.NaN()
	}
	m, r := b.Rows, b.Cols
	b64 := make([]float64, len(b.Data))
	widenInto(b64, b.Data)
	g := make([]float64, r*r)
	mulT(g, b64, b64, m, r, r)
	for i := 0; i < r; i++ {
		g[i*r+i]--
	}
	return floats.Norm(g, 2)
}
