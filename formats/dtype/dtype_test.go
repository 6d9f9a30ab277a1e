package dtype

import (
	"math"
	"math/rand/v2"
	"testing"
)

// nearest checks that code is a correctly rounded (ties to even) encoding
// of x among the finite values of a 16-bit format.
func nearest(t *testing.T, name string, x float64, code uint16, dec func(uint16) float32) {
	t.Helper()
	v := float64(dec(code))
	d := math.Abs(v - x)
	for _, n := range []uint16{code - 1, code + 1} {
		if n&0x7fff >= 0x7c00 && name == "F16" || n&0x7fff >= 0x7f80 && name == "BF16" {
			continue // neighbours beyond the finite range
		}
		if (n^code)&0x8000 != 0 {
			continue
		}
		w := float64(dec(n))
		dn := math.Abs(w - x)
		if dn < d || dn == d && code&1 == 1 {
			t.Fatalf("%s(%v) = %#04x (%v), but %#04x (%v) is nearer or the even tie", name, x, code, v, n, w)
		}
	}
}

func TestSingleRounding(t *testing.T) {
	// 1 + 2^-11 + 2^-30 lies just above the midpoint between binary16's 1
	// and 1+2^-10. float32 drops the 2^-30, leaving an exact tie that a
	// float64→float32→float16 chain rounds down to 1; one rounding goes up.
	x := 1 + math.Ldexp(1, -11) + math.Ldexp(1, -30)
	if got := F16ToFloat32(F16FromFloat64(x)); float64(got) != 1+math.Ldexp(1, -10) {
		t.Errorf("F16FromFloat64(%v) = %v, want %v", x, got, 1+math.Ldexp(1, -10))
	}
	if got := F16ToFloat32(F16FromFloat32(float32(x))); got != 1 {
		t.Errorf("double rounding through float32 gave %v; the test no longer shows the hazard", got)
	}
	// The same for bfloat16 (8 significant bits).
	y := 1 + math.Ldexp(1, -8) + math.Ldexp(1, -30)
	if got := BF16ToFloat32(BF16FromFloat64(y)); float64(got) != 1+math.Ldexp(1, -7) {
		t.Errorf("BF16FromFloat64(%v) = %v, want %v", y, got, 1+math.Ldexp(1, -7))
	}
}

func TestRoundingIsNearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		x := rng.NormFloat64() * math.Pow(2, float64(rng.IntN(30)-15))
		nearest(t, "F16", x, F16FromFloat64(x), F16ToFloat32)
		nearest(t, "BF16", x, BF16FromFloat64(x), BF16ToFloat32)
	}
}

func TestSpecialValues(t *testing.T) {
	cases := []struct {
		x        float64
		f16, b16 uint16
	}{
		{0, 0x0000, 0x0000},
		{math.Copysign(0, -1), 0x8000, 0x8000},
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780},
		{1e6, 0x7c00, 0x4974},
		{math.Inf(1), 0x7c00, 0x7f80},
		{math.Inf(-1), 0xfc00, 0xff80},
		{math.Ldexp(1, -24), 0x0001, 0x3380}, // smallest binary16 subnormal
	}
	for _, c := range cases {
		if got := F16FromFloat64(c.x); got != c.f16 {
			t.Errorf("F16FromFloat64(%v) = %#04x, want %#04x", c.x, got, c.f16)
		}
		if got := BF16FromFloat64(c.x); got != c.b16 {
			t.Errorf("BF16FromFloat64(%v) = %#04x, want %#04x", c.x, got, c.b16)
		}
	}
	if h := F16FromFloat64(math.NaN()); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F16 NaN = %#04x", h)
	}
	if b := BF16FromFloat64(math.NaN()); b&0x7f80 != 0x7f80 || b&0x7f == 0 {
		t.Errorf("BF16 NaN = %#04x", b)
	}
}

func TestEncodeDecode(t *testing.T) {
	vals := []float64{0, 1, -1.5, 3.140625, 1e-3, -65504}
	for _, k := range []Kind{F32, F16, BF16, F64} {
		b := make([]byte, len(vals)*k.Size())
		Encode(k, b, vals)
		got := make([]float32, len(vals))
		Decode(k, got, b)
		for i, v := range vals {
			// Decode yields float32, so F64 is bounded by float32's ulp.
			bound := math.Max(Ulp(k, v), Ulp(F32, v))
			if d := math.Abs(float64(got[i]) - v); d > bound {
				t.Errorf("%v: %v → %v (error %g > ulp %g)", k, v, got[i], d, bound)
			}
		}
	}
}

func TestUlp(t *testing.T) {
	cases := []struct {
		k    Kind
		x    float64
		want float64
	}{
		{F32, 1, math.Ldexp(1, -23)},
		{F16, 1, math.Ldexp(1, -10)},
		{BF16, 1, math.Ldexp(1, -7)},
		{F16, 1.5, math.Ldexp(1, -10)},
		{BF16, -3, math.Ldexp(1, -6)},
		{F16, 0, math.Ldexp(1, -24)},
	}
	for _, c := range cases {
		if got := Ulp(c.k, c.x); got != c.want {
			t.Errorf("Ulp(%v, %v) = %g, want %g", c.k, c.x, got, c.want)
		}
	}
}

// TestNarrowMatchesFloat32Path: for values that are float32 already, one
// rounding from float64 must equal x448/float16's and the bit-shift bfloat16
// conversion from float32, over random bit patterns of every class
// (normals, subnormals, overflow, infinities, NaN).
func TestNarrowMatchesFloat32Path(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1_000_000; i++ {
		f := math.Float32frombits(rng.Uint32())
		x := float64(f)
		if math.IsNaN(x) {
			if h := F16FromFloat64(x); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("F16 NaN: %#04x", h)
			}
			continue
		}
		if got, want := F16FromFloat64(x), F16FromFloat32(f); got != want {
			t.Fatalf("F16FromFloat64(%g) = %#04x, float32 path %#04x", x, got, want)
		}
		if got, want := BF16FromFloat64(x), BF16FromFloat32(f); got != want {
			t.Fatalf("BF16FromFloat64(%g) = %#04x, float32 path %#04x", x, got, want)
		}
	}
}

// TestFastPathsMatchNarrow compares the float32-based fast conversions with
// the bit-level general one, on random values and on values a hair off the
// rounding boundaries, where a float32 detour would double-round.
func TestFastPathsMatchNarrow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(x float64) {
		if got, want := F16FromFloat64(x), narrow(x, 5, 10, 0x7e00); got != want && !math.IsNaN(x) {
			t.Fatalf("F16FromFloat64(%v) = %#04x, general path %#04x", x, got, want)
		}
		if got, want := BF16FromFloat64(x), narrow(x, 8, 7, 0x7fc0); got != want && !math.IsNaN(x) {
			t.Fatalf("BF16FromFloat64(%v) = %#04x, general path %#04x", x, got, want)
		}
	}
	for i := 0; i < 500000; i++ {
		check(math.Float64frombits(rng.Uint64()))
		check(rng.NormFloat64() * math.Ldexp(1, rng.IntN(40)-20))
		// A boundary of both formats (a binary16 midpoint is also a bfloat16
		// one only sometimes; both kinds are covered over the loop), moved by
		// a few float64 ulps either way.
		h := uint16(rng.IntN(0x7bff))
		mid := (float64(F16ToFloat32(h)) + float64(F16ToFloat32(h+1))) / 2
		bm := math.Float32frombits(uint32(rng.Uint32()&0x7f7fffff)&^0xffff | 0x8000)
		for _, base := range []float64{mid, float64(bm)} {
			for _, k := range []int{-2, -1, 0, 1, 2} {
				v := base
				for ; k < 0; k++ {
					v = math.Nextafter(v, 0)
				}
				for ; k > 0; k-- {
					v = math.Nextafter(v, math.Inf(1))
				}
				check(v)
				check(-v)
			}
		}
	}
}

// TestEncodeMatchesScalar: Encode's loops (vector code where the CPU has
// it) give the same bits as the scalar conversions, on random values, on
// values a hair off rounding boundaries and on every special case.
func TestEncodeMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var xs []float64
	for i := 0; i < 200000; i++ {
		xs = append(xs, math.Float64frombits(rng.Uint64()), 0.02*rng.NormFloat64())
		h := uint16(rng.IntN(0x7bff))
		mid := (float64(F16ToFloat32(h)) + float64(F16ToFloat32(h+1))) / 2
		bm := float64(math.Float32frombits(rng.Uint32()&0x7f7f0000 | 0x8000))
		for _, v := range []float64{mid, bm} {
			xs = append(xs, v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1)), -v)
		}
	}
	// The edges of the vector path's round-to-odd: binary16 subnormal
	// midpoints, the overflow threshold, float32 subnormals and overflow,
	// values below every subnormal, NaNs with every kind of payload.
	for h := uint16(0); h < 0x400; h++ {
		mid := (float64(F16ToFloat32(h)) + float64(F16ToFloat32(h+1))) / 2
		xs = append(xs, mid, math.Nextafter(mid, 0), math.Nextafter(mid, 1), -mid)
	}
	for _, v := range []float64{65504, 65519.99, 65520, 65520.01, 1e5, math.MaxFloat32, 3.5e38, 1e300,
		0x1p-24, 0x1p-25, 0x1p-26, 0x1.8p-25, 0x1p-126, 0x1p-130, 0x1p-149, 0x1p-150, 0x1p-160, 0x1p-1074,
		0x1.0101p-133, math.Inf(1), math.NaN(), math.Float64frombits(0x7ff4000000000000), math.Float64frombits(0xfff8000000000123)} {
		xs = append(xs, v, -v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1)))
	}
	for len(xs)%8 != 3 { // a tail the vector loop leaves to the scalar one
		xs = append(xs, 1)
	}
	for _, k := range []Kind{F16, BF16} {
		b := make([]byte, 2*len(xs))
		Encode(k, b, xs)
		for i, x := range xs {
			want := F16FromFloat64(x)
			if k == BF16 {
				want = BF16FromFloat64(x)
			}
			if got := uint16(b[2*i]) | uint16(b[2*i+1])<<8; got != want {
				t.Fatalf("%v: Encode(%v) = %#04x, scalar %#04x", k, x, got, want)
			}
		}
	}
}

func TestDecodeFloat64(t *testing.T) {
	vals := []float64{0, 1, -1.5, 3.140625, 1e-3, -65504, 0.1}
	for _, k := range []Kind{F32, F16, BF16, F64} {
		b := make([]byte, len(vals)*k.Size())
		Encode(k, b, vals)
		f32 := make([]float32, len(vals))
		Decode(k, f32, b)
		f64 := make([]float64, len(vals))
		DecodeFloat64(k, f64, b)
		for i := range vals {
			if k != F64 && f64[i] != float64(f32[i]) || k == F64 && f64[i] != vals[i] {
				t.Errorf("%v: DecodeFloat64 %v, Decode %v (value %v)", k, f64[i], f32[i], vals[i])
			}
		}
	}
}

// TestDecodeEveryCode: the decoders (vector code where the CPU has it) give
// the scalar conversion's bits for every 16-bit code, NaNs included.
func TestDecodeEveryCode(t *testing.T) {
	src := make([]byte, 2*0x10000+6) // a tail of 3 for the scalar loop
	for h := 0; h < 0x10000; h++ {
		src[2*h], src[2*h+1] = byte(h), byte(h>>8)
	}
	n := len(src) / 2
	for _, k := range []Kind{F16, BF16} {
		scalar := F16ToFloat32
		if k == BF16 {
			scalar = BF16ToFloat32
		}
		d64 := make([]float64, n)
		d32 := make([]float32, n)
		DecodeFloat64(k, d64, src)
		Decode(k, d32, src)
		for i := range n {
			h := uint16(src[2*i]) | uint16(src[2*i+1])<<8
			want := scalar(h)
			if math.Float64bits(d64[i]) != math.Float64bits(float64(want)) {
				t.Fatalf("%v: DecodeFloat64(%#04x) = %#x, want %#x", k, h, math.Float64bits(d64[i]), math.Float64bits(float64(want)))
			}
			if math.Float32bits(d32[i]) != math.Float32bits(want) {
				t.Fatalf("%v: Decode(%#04x) = %#x, want %#x", k, h, math.Float32bits(d32[i]), math.Float32bits(want))
			}
		}
	}
}

// TestDecodeShortSource: a source shorter than the destination needs is
// never read past its end (the vector code included): decoding panics as
// the scalar code does.
func TestDecodeShortSource(t *testing.T) {
	for _, k := range []Kind{F16, BF16} {
		for _, f64 := range []bool{false, true} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%v (float64 %v): decoding 16 elements from 16 bytes did not panic", k, f64)
					}
				}()
				src := make([]byte, 16)
				if f64 {
					DecodeFloat64(k, make([]float64, 16), src)
				} else {
					Decode(k, make([]float32, 16), src)
				}
			}()
		}
	}
}
