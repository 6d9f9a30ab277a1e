// Package surgery is the linear algebra of SORSA: truncated SVD (full,
// randomized and exact), the split of a weight into principal factors and a
// residual, the merge back, and the measurements around them.
//
// It knows matrices, never file formats: it must not import any formats package.
//
// Its matrix products run on blocked, packed kernels: Go assembly for
// AVX-512 or AVX2+FMA on amd64 (chosen at run time), portable Go elsewhere
// or with the build tag purego, and OpenBLAS through cgo with the build tag
// openblas (measured slower than the assembly kernels on our 2-core AVX-512
// machine; see bench/compare.py).
package surgery

import (
	"errors"
	"fmt"
)

// Matrix is a dense row-major float32 matrix. A weight is held in PyTorch's
// nn.Linear orientation: Rows = out features, Cols = in features, y = x·Wᵀ.
type Matrix struct {
	Rows, Cols int
	Data       []float32 // len Rows*Cols, element (i, j) at Data[i*Cols+j]
}

// NewMatrix returns a zeroed rows × cols matrix.
func NewMatrix(rows, cols int) *Matrix {
	return &Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
}

// At returns element (i, j).
func (m *Matrix) At(i, j int) float32 { return m.Data[i*m.Cols+j] }

// Method selects the SVD algorithm.
type Method int

const (
	// Auto picks Full when min(rows, cols) ≤ AutoFullLimit and Randomized otherwise.
	Auto Method = iota
	// Full is the exact thin SVD (gonum, float64); slow beyond a few hundred.
	Full
	// Randomized is Halko–Martinsson–Tropp: Gaussian sketch with oversampling,
	// power iterations with re-orthonormalisation, small exact SVD.
	Randomized
	// Exact is a restarted block Lanczos bidiagonalization that iterates
	// until the top-r singular values are converged to Options.Tol
	// (relative), then refines them in float64; it costs a small multiple
	// of Randomized and, unlike Full, scales to large matrices.
	Exact
)

// AutoFullLimit is the largest min(rows, cols) for which Auto uses Full.
const AutoFullLimit = 512

// String returns the method's command-line name.
func (m Method) String() string {
	switch m {
	case Full:
		return "full"
	case Randomized:
		return "randomized"
	case Exact:
		return "exact"
	}
	return "auto"
}

// ParseMethod parses a command-line method name.
func ParseMethod(s string) (Method, error) {
	switch s {
	case "auto", "":
		return Auto, nil
	case "full":
		return Full, nil
	case "randomized":
		return Randomized, nil
	case "exact":
		return Exact, nil
	}
	return Auto, fmt.Errorf("unknown SVD method %q (want auto, full, randomized or exact)", s)
}

// Options control Decompose.
type Options struct {
	Rank       int     // r, number of principal triplets kept; 1 ≤ r ≤ min(rows, cols)
	Method     Method  // algorithm
	NIter      int     // power iterations for Randomized; 0 means DefaultNIter, negative means none (see Normalize)
	Oversample int     // extra sketch columns for Randomized, extra Ritz vectors kept at a restart for Exact; 0 means the default, negative means none
	Seed       uint64  // sketch or start-block seed; equal seeds give bit-identical results (on one CPU and build)
	Tol        float64 // relative accuracy of the top-r singular values for Exact; 0 means DefaultTol
}

// Defaults for Options fields a caller leaves at zero through Normalize.
const (
	DefaultNIter      = 4
	DefaultOversample = 16
	// DefaultExactOversample is Exact's default number of Ritz vectors
	// kept beyond the rank at a restart: a wider gap to the unwanted part
	// of the spectrum speeds convergence.
	DefaultExactOversample = 16
)

// ErrRank reports a rank outside 1..min(rows, cols).
var ErrRank = errors.New("rank out of range")

// Factors are the top-r singular triplets of a weight W (out × in) in SORSA's
// layout: W ≈ B·diag(S)·A.
type Factors struct {
	A *Matrix   // r × in: top-r right singular vectors, as rows (sorsa_A)
	S []float32 // r singular values, descending (sorsa_S)
	B *Matrix   // out × r: top-r left singular vectors, as columns (sorsa_B)
}

// Rank returns r.
func (f *Factors) Rank() int { return len(f.S) }
