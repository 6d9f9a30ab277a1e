package surgery

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfValues[c] is the value of the binary16 code c for the finite
// non-negative codes 0 … 0x7bff, which ascend with their values.
var halfValues = func() []float64 {
	v := make([]float64, 0x7c00)
	for c := range v {
		v[c] = halfToFloat(uint16(c))
	}
	return v
}()

// halfToFloat is the textbook binary16 decoding (NaNs keep no payload).
func halfToFloat(h uint16) float64 {
	e, f := int(h>>10&31), float64(h&1023)
	var v float64
	switch e {
	case 0:
		v = math.Ldexp(f, -24)
	case 31:
		v = math.Inf(1)
		if f != 0 {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(1024+f, e-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// roundHalf rounds x to the nearest binary16, ties to the even code,
// by searching the table of every value: slow, and plainly right.
func roundHalf(x float64) uint16 {
	if math.IsNaN(x) {
		return 0x7e00
	}
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	if x >= 65520 { // halfway between 65504 and 2^16 rounds to even: up
		return sign | 0x7c00
	}
	hi := sort.SearchFloat64s(halfValues, x)
	if halfValues[hi] == x {
		return sign | uint16(hi)
	}
	lo := hi - 1
	switch d := (x - halfValues[lo]) - (halfValues[hi] - x); {
	case d < 0, d == 0 && lo%2 == 0:
		return sign | uint16(lo)
	}
	return sign | uint16(hi)
}

func decodeHalf(dst []float64, src []byte) {
	for i := range dst {
		dst[i] = halfToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func encodeHalf(dst []byte, src []float64) {
	for i, x := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], roundHalf(x))
	}
}

// TestAddHalfBlock: the sums of P and a block stored as binary16 come out
// the same, bit for bit, whether a fused kernel makes them or AddBlock's
// float64 values are rounded one by one, on every microkernel, with ragged
// edges, a rank above one pass of the kernel, src and dst the same memory,
// and stored values that are subnormal, infinite or NaN, or sums that
// overflow, fall below binary16's range or land exactly halfway.
func TestAddHalfBlock(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		for _, sz := range []struct{ m, n, r int }{{6, 8, 1}, {7, 9, 3}, {97, 300, 16}, {200, 520, 128}, {20, 30, gemmKC + 5}} {
			t.Run(fmt.Sprintf("%dx%d/r=%d", sz.m, sz.n, sz.r), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(sz.m), uint64(sz.n)))
				f := &Factors{
					A: &Matrix{Rows: sz.r, Cols: sz.n, Data: randSlice[float32](rng, sz.r*sz.n)},
					S: randSlice[float32](rng, sz.r),
					B: &Matrix{Rows: sz.m, Cols: sz.r, Data: randSlice[float32](rng, sz.m*sz.r)},
				}
				for i := range f.S {
					f.S[i] *= 1e-3
				}
				stored := make([]byte, 2*sz.m*sz.n)
				for i := 0; i < sz.m*sz.n; i++ {
					var h uint16
					switch rng.IntN(40) {
					case 0: // any code: NaNs, infinities, subnormals
						h = uint16(rng.Uint32())
					case 1: // tiny: sums in binary16's subnormals or below
						h = uint16(rng.IntN(64)) | uint16(rng.IntN(2))<<15
					case 2: // near the top: sums that overflow
						h = 0x7bf0 + uint16(rng.IntN(12)) | uint16(rng.IntN(2))<<15
					default:
						h = roundHalf(rng.NormFloat64() * 0.01)
					}
					binary.LittleEndian.PutUint16(stored[2*i:], h)
				}
				p := NewPrincipal(f, 1)
				defer p.Release()
				mb, nb := p.BlockShape()

				want := make([]byte, len(stored))
				vals := make([]float64, sz.m*sz.n)
				decodeHalf(vals, stored)
				p.AddBlock(vals, sz.n, 0, sz.m, 0, sz.n)
				encodeHalf(want, vals)

				check := func(what string, got []byte) {
					t.Helper()
					for i := 0; i < len(got); i += 2 {
						if g, w := binary.LittleEndian.Uint16(got[i:]), binary.LittleEndian.Uint16(want[i:]); g != w {
							t.Fatalf("%s: element (%d, %d): %#04x, want %#04x", what, i/2/sz.n, i/2%sz.n, g, w)
						}
					}
				}
				got := make([]byte, len(stored))
				p.AddHalfBlock(got, stored, sz.n, 0, sz.m, 0, sz.n, decodeHalf, encodeHalf)
				check("whole", got)

				inPlace := append([]byte(nil), stored...)
				for i0 := 0; i0 < sz.m; i0 += mb {
					i1 := min(i0+mb, sz.m)
					for j0 := 0; j0 < sz.n; j0 += nb {
						b := inPlace[2*(i0*sz.n+j0):]
						p.AddHalfBlock(b, b, sz.n, i0, i1, j0, min(j0+nb, sz.n), decodeHalf, encodeHalf)
					}
				}
				check("in place, by blocks", inPlace)

				saved := p.kern.half
				p.kern.half = nil
				clear(got)
				p.AddHalfBlock(got, stored, sz.n, 0, sz.m, 0, sz.n, decodeHalf, encodeHalf)
				p.kern.half = saved
				check("unfused", got)
			})
		}
	})
}

// TestAddHalfBlockRounding: sums that fall exactly halfway between two
// binary16 values, or a little either side by less than float32 keeps, in
// binades across binary16's normal range, round as the reference does: the
// fused rounding is one rounding, not a rounding to float32 and another.
func TestAddHalfBlockRounding(t *testing.T) {
	const m, n = 6, 8
	f := &Factors{
		A: &Matrix{Rows: 1, Cols: n, Data: make([]float32, n)},
		S: []float32{1},
		B: &Matrix{Rows: m, Cols: 1, Data: make([]float32, m)},
	}
	for j := range f.A.Data {
		f.A.Data[j] = 1
	}
	rng := rand.New(rand.NewPCG(1, 2))
	stored := make([]byte, 2*m*n)
	for trial := range 500 {
		// Row i adds b = 2^(e−11)·(1+d) to values 2^e·(1 + k·2^-10): halfway
		// to the next binary16 when d = 0, past or short of it when d ≠ 0.
		for i := range m {
			e := rng.IntN(29) - 14
			d := []float64{0, 0x1p-19, -0x1p-19, 0x1p-13, -0x1p-13}[rng.IntN(5)]
			f.B.Data[i] = float32(math.Ldexp(1+d, e-11))
			for j := range n {
				w := math.Ldexp(1+float64(rng.IntN(1023))/1024, e)
				binary.LittleEndian.PutUint16(stored[2*(i*n+j):], roundHalf(w))
			}
		}
		p := NewPrincipal(f, 1)
		vals := make([]float64, m*n)
		decodeHalf(vals, stored)
		p.AddBlock(vals, n, 0, m, 0, n)
		want := make([]byte, 2*m*n)
		encodeHalf(want, vals)
		got := make([]byte, 2*m*n)
		p.AddHalfBlock(got, stored, n, 0, m, 0, n, decodeHalf, encodeHalf)
		p.Release()
		for i := 0; i < len(got); i += 2 {
			if g, w := binary.LittleEndian.Uint16(got[i:]), binary.LittleEndian.Uint16(want[i:]); g != w {
				t.Fatalf("trial %d, element %d: %#04x, want %#04x (sum %v)", trial, i/2, g, w, vals[i/2])
			}
		}
	}
}
