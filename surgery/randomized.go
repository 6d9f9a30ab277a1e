package surgery

import (
	"math/rand/v2"
)

// pcgStream is the fixed second word of the sketch generator's PCG state; the
// first is Options.Seed.
const pcgStream = 0x534f5253412d5356 // "SORSA-SV"

// randomizedSVD is Halko–Martinsson–Tropp (2011, algorithms 4.4 and 5.1): a
// Gaussian sketch of width l = r + oversampling, NIter power iterations with
// re-orthonormalisation after every product with W or Wᵀ, then the exact SVD
// of the small projection QᵀW.
//
// The products with W, which are nearly all the work, are float32 (W as
// stored, the bases rounded to float32, float32 accumulation in blocks of
// gemmKC), as in torch.svd_lowrank; the orthonormalisations and the final
// small SVD are float64.
func randomizedSVD(w *Matrix, o Options) (triplets, error) {
	m, n, r := w.Rows, w.Cols, o.Rank
	k := min(m, n)
	l := r + min(max(o.Oversample, 0), k) // no overflow: r ≤ k
	l = min(l, k)
	q := max(o.NIter, 0)

	rng := rand.New(rand.NewPCG(o.Seed, pcgStream))
	z := make([]float32, n*l) // co-range basis, n × l; first the sketch
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	y := make([]float32, m*l) // range basis, m × l
	ws := newOrthWorkspace(max(m, n), l)
	buf := make([]float64, max(m, n)*l)

	// orth orthonormalizes the float32 basis x (rows × l) through float64.
	orth := func(x []float32, rows int, final bool) []float64 {
		x64 := buf[:rows*l]
		widenInto(x64, x)
		if final {
			ws.orthonormalize(x64, rows)
		} else {
			ws.orthonormalizeFast(x64, rows)
		}
		narrowInto(x, x64)
		return x64
	}

	gemm32(false, m, l, n, 1, w.Data, n, z, l, y, l, false) // Y = W·Ω
	if firstNonFinite(y) >= 0 {
		return triplets{}, errProductNonFinite
	}
	y64 := orth(y, m, q == 0)
	for it := range q {
		gemm32(true, n, l, m, 1, w.Data, n, y, l, z, l, false) // Z = Wᵀ·Y
		orth(z, n, false)
		gemm32(false, m, l, n, 1, w.Data, n, z, l, y, l, false) // Y = W·Z
		y64 = orth(y, m, it == q-1)
	}
	qy := make([]float64, m*l) // Q in float64, before its rounding
	copy(qy, y64)
	// Z = Wᵀ·Q = (Qᵀ·W)ᵀ, n × l. Its SVD Z = U'·Σ·V'ᵀ gives Qᵀ·W = V'·Σ·U'ᵀ,
	// so W ≈ (Q·V')·Σ·U'ᵀ.
	gemm32(true, n, l, m, 1, w.Data, n, y, l, z, l, false)
	z64 := buf[:n*l]
	widenInto(z64, z)
	left, s, right, err := smallSVD(z64, n, l, r, ws, rng)
	if err != nil {
		return triplets{}, err
	}
	t := triplets{m: m, n: n, r: r, u: make([]float64, m*r), s: s, vt: make([]float64, r*n)}
	gemm64(false, m, r, l, 1, qy, l, right, r, t.u, r, false)
	for j := 0; j < n; j++ {
		for c := 0; c < r; c++ {
			t.vt[c*n+j] = left[j*r+c]
		}
	}
	return t, nil
}
