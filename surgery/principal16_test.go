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
	sign, x := signOf(x)
	if x >= 65520 { // halfway between 65504 and 2^16 rounds to even: up
		return sign | 0x7c00
	}
	hi := sort.SearchFloat64s(halfValues, x)
	if hi == len(halfValues) { // above 65504, below the halfway point
		return sign | uint16(hi-1)
	}
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

// signOf returns x's sign bit in a 16-bit float's place, and |x|.
func signOf(x float64) (uint16, float64) {
	if math.Signbit(x) {
		return 0x8000, -x
	}
	return 0, x
}

// roundBrain rounds x to the nearest bfloat16 (8 significant bits,
// exponents down to -126, then evenly spaced down to 0), ties to even, by
// scaling x onto the grid of its binade: every step is exact in float64.
func roundBrain(x float64) uint16 {
	if math.IsNaN(x) {
		return 0x7fc0
	}
	sign, x := signOf(x)
	if math.IsInf(x, 0) {
		return sign | 0x7f80
	}
	if x == 0 {
		return sign
	}
	_, e := math.Frexp(x) // x in [2^(e-1), 2^e)
	q := math.Ldexp(1, max(e-1, -126)-7)
	n := math.Floor(x / q)
	if r := x/q - n; r > 0.5 || r == 0.5 && math.Mod(n, 2) == 1 {
		n++
	}
	v := n * q
	if v > float64(math.Float32frombits(0x7f7f0000)) {
		return sign | 0x7f80
	}
	return sign | uint16(math.Float32bits(float32(v))>>16)
}

func brainToFloat(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// format16s are the formats under test with plain reference codecs.
var format16s = []struct {
	f      Format16
	toF    func(uint16) float64
	round  func(float64) uint16
	halfUp int // log2 of half a unit in the last place at 1
}{
	{Float16, halfToFloat, roundHalf, -11},
	{BFloat16, brainToFloat, roundBrain, -8},
}

func codecs(toF func(uint16) float64, round func(float64) uint16) (decode func([]float64, []byte), encode func([]byte, []float64)) {
	decode = func(dst []float64, src []byte) {
		for i := range dst {
			dst[i] = toF(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
	encode = func(dst []byte, src []float64) {
		for i, x := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], round(x))
		}
	}
	return decode, encode
}

// addBoth adds P to the m×n block stored in format f two ways: got from
// AddBlock16, want from AddBlock's float64 sums (vals) rounded by encode.
func addBoth(p *Principal, f Format16, stored []byte, m, n int, decode func([]float64, []byte), encode func([]byte, []float64)) (got, want []byte, vals []float64) {
	vals = make([]float64, m*n)
	decode(vals, stored)
	p.AddBlock(vals, n, 0, m, 0, n)
	want = make([]byte, 2*m*n)
	encode(want, vals)
	got = make([]byte, 2*m*n)
	p.AddBlock16(f, got, stored, n, 0, m, 0, n, decode, encode)
	return got, want, vals
}

// firstDiff16 returns the first element where the 16-bit codes got and
// want differ, and both codes; ok is false when they are the same.
func firstDiff16(got, want []byte) (i int, g, w uint16, ok bool) {
	for i := 0; i < len(got); i += 2 {
		if g, w := binary.LittleEndian.Uint16(got[i:]), binary.LittleEndian.Uint16(want[i:]); g != w {
			return i / 2, g, w, true
		}
	}
	return 0, 0, 0, false
}

// TestAddBlock16: the sums of P and a block stored in a 16-bit format come
// out the same, bit for bit, whether a fused kernel makes them or
// AddBlock's float64 values are rounded one by one, on every microkernel,
// with ragged edges, a rank above one pass of the kernel, src and dst the
// same memory, and stored values that are subnormal, infinite or NaN, or
// sums that overflow or fall below the format's normal range.
func TestAddBlock16(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		for _, ff := range format16s {
			decode, encode := codecs(ff.toF, ff.round)
			for _, sz := range []struct{ m, n, r int }{{6, 8, 1}, {7, 9, 3}, {97, 300, 16}, {200, 520, 128}, {50, 1024, 16}, {20, 30, gemmKC + 5}} {
				t.Run(fmt.Sprintf("%v/%dx%d/r=%d", ff.f, sz.m, sz.n, sz.r), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(sz.m), uint64(sz.n)))
					f := &Factors{
						A: &Matrix{Rows: sz.r, Cols: sz.n, Data: randSlice[float32](rng, sz.r*sz.n)},
						S: randSlice[float32](rng, sz.r),
						B: &Matrix{Rows: sz.m, Cols: sz.r, Data: randSlice[float32](rng, sz.m*sz.r)},
					}
					for i := range f.S {
						f.S[i] *= 1e-3
					}
					for i := 3; i < sz.m; i += 7 { // rows whose sums are the stored values
						clear(f.B.Data[i*sz.r : (i+1)*sz.r])
					}
					for i := 5; i < sz.m; i += 7 { // rows of tiny sums (with tiny values)
						for c := range sz.r {
							f.B.Data[i*sz.r+c] *= 1e-37
						}
					}
					big := uint16(0x7bf0) // near binary16's largest
					if ff.f == BFloat16 {
						big = 0x7f70
						f.S[0] = 1e38 // sums that overflow
					}
					stored := make([]byte, 2*sz.m*sz.n)
					for i := 0; i < sz.m*sz.n; i++ {
						var h uint16
						switch c := rng.IntN(40); {
						case c == 0: // any code: NaNs, infinities, subnormals
							h = uint16(rng.Uint32())
						case c == 1, c < 8 && i/sz.n%7 == 5: // tiny
							h = uint16(rng.IntN(64))
						case c == 2: // near the top: sums that overflow
							h = big + uint16(rng.IntN(12))
						default:
							h = ff.round(rng.NormFloat64() * 0.01)
						}
						binary.LittleEndian.PutUint16(stored[2*i:], h|uint16(rng.IntN(2))<<15)
					}
					p := NewPrincipal(f, 1)
					defer p.Release()
					mb, nb := p.BlockShape()

					want := make([]byte, len(stored))
					vals := make([]float64, sz.m*sz.n)
					decode(vals, stored)
					p.AddBlock(vals, sz.n, 0, sz.m, 0, sz.n)
					encode(want, vals)

					check := func(what string, got []byte) {
						t.Helper()
						if i, g, w, ok := firstDiff16(got, want); ok {
							t.Fatalf("%s: element (%d, %d): %#04x, want %#04x", what, i/sz.n, i%sz.n, g, w)
						}
					}
					got := make([]byte, len(stored))
					p.AddBlock16(ff.f, got, stored, sz.n, 0, sz.m, 0, sz.n, decode, encode)
					check("whole", got)

					inPlace := append([]byte(nil), stored...)
					for i0 := 0; i0 < sz.m; i0 += mb {
						i1 := min(i0+mb, sz.m)
						for j0 := 0; j0 < sz.n; j0 += nb {
							b := inPlace[2*(i0*sz.n+j0):]
							p.AddBlock16(ff.f, b, b, sz.n, i0, i1, j0, min(j0+nb, sz.n), decode, encode)
						}
					}
					check("in place, by blocks", inPlace)

					saved := p.kern.fused16
					p.kern.fused16 = [2]fused16Kernel[float64]{}
					clear(got)
					p.AddBlock16(ff.f, got, stored, sz.n, 0, sz.m, 0, sz.n, decode, encode)
					p.kern.fused16 = saved
					check("unfused", got)
				})
			}
		}
	})
}

// TestAddBlock16Rounding: sums that fall exactly halfway between two
// values of the format, or a little either side by less than float32
// keeps, in binades across the range, round as the reference does: the
// fused rounding is one rounding, not a rounding to float32 and another.
func TestAddBlock16Rounding(t *testing.T) {
	const m, n = 6, 8
	for _, ff := range format16s {
		decode, encode := codecs(ff.toF, ff.round)
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
		fused := 0
		for trial := range 500 {
			// Row i adds b = 2^(e+halfUp)·(1+d) to values 2^e·(1 + k·ulp):
			// halfway to the next value when d = 0, past or short of it
			// when d ≠ 0.
			for i := range m {
				e := rng.IntN(29) - 14
				d := []float64{0, 0x1p-19, -0x1p-19, 0x1p-13, -0x1p-13}[rng.IntN(5)]
				f.B.Data[i] = float32(math.Ldexp(1+d, e+ff.halfUp))
				for j := range n {
					k := float64(rng.IntN(1 << (-ff.halfUp - 1)))
					w := math.Ldexp(1+math.Ldexp(k, ff.halfUp+1), e)
					binary.LittleEndian.PutUint16(stored[2*(i*n+j):], ff.round(w))
				}
			}
			p := NewPrincipal(f, 1)
			if p.Fuses16(ff.f) {
				fused++
			}
			got, want, vals := addBoth(p, ff.f, stored, m, n, decode, encode)
			p.Release()
			if i, g, w, ok := firstDiff16(got, want); ok {
				t.Fatalf("%v, trial %d, element %d: %#04x, want %#04x (sum %v)", ff.f, trial, i, g, w, vals[i])
			}
		}
		t.Logf("%v: %d of 500 trials fused", ff.f, fused)
	}
}

// TestRoundBrain: the bfloat16 reference agrees with float32's own
// rounding where that is one rounding (x a float32), and with the
// binary16 table's method on a few hand cases.
func TestRoundBrain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		u := rng.Uint32()
		x := math.Float32frombits(u)
		if x != x {
			continue
		}
		// Round float32 bits to their upper half, ties to even.
		want := uint16((u + 0x7fff + (u >> 16 & 1)) >> 16)
		if got := roundBrain(float64(x)); got != want {
			t.Fatalf("%#08x (%v): %#04x, want %#04x", u, x, got, want)
		}
	}
	for _, c := range []struct {
		x    float64
		want uint16
	}{{1, 0x3f80}, {1 + 0x1p-8, 0x3f80}, {1 + 0x1p-8 + 0x1p-40, 0x3f81}, {1 + 3*0x1p-8, 0x3f82}, {-0x1p-140, 0x8000}, {3.4e38, 0x7f80}} {
		if got := roundBrain(c.x); got != c.want {
			t.Errorf("%v: %#04x, want %#04x", c.x, got, c.want)
		}
	}
}

// TestAddBlock16RoundingTiny: bfloat16 sums halfway between two of its
// subnormals, or a little either side by less than float32's subnormals
// keep, round as the reference does. (Converting such a sum to float32
// first would round it twice; the fused kernel must leave these tiles to
// the caller's encode.)
func TestAddBlock16RoundingTiny(t *testing.T) {
	const m, n = 6, 8
	decode, encode := codecs(brainToFloat, roundBrain)
	f := &Factors{
		A: &Matrix{Rows: 1, Cols: n, Data: make([]float32, n)},
		S: []float32{0x1p-34},
		B: &Matrix{Rows: m, Cols: 1, Data: make([]float32, m)},
	}
	for j := range f.A.Data {
		f.A.Data[j] = 1
	}
	rng := rand.New(rand.NewPCG(5, 6))
	stored := make([]byte, 2*m*n)
	for trial := range 200 {
		// Row i adds 2^-134·(1+d) (coefficient 2^-34 · 2^-100·(1+d), exact
		// in float64) to k·2^-133, a bfloat16 subnormal.
		for i := range m {
			d := []float64{0, 0x1p-19, -0x1p-19}[rng.IntN(3)]
			f.B.Data[i] = float32(math.Ldexp(1+d, -100))
			for j := range n {
				binary.LittleEndian.PutUint16(stored[2*(i*n+j):], uint16(rng.IntN(127)))
			}
		}
		p := NewPrincipal(f, 1)
		got, want, vals := addBoth(p, BFloat16, stored, m, n, decode, encode)
		p.Release()
		if i, g, w, ok := firstDiff16(got, want); ok {
			t.Fatalf("trial %d, element %d: %#04x, want %#04x (sum %v)", trial, i, g, w, vals[i])
		}
	}
}
