// Package dtype holds the element codecs every format package shares: IEEE
// binary16 (F16), bfloat16 (BF16) and float32, with conversions that round
// exactly once from float64, the precision surgery computes in.
//
// It knows nothing about files; format packages import it, never each other.
package dtype

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"
)

// F16ToFloat32 decodes an IEEE binary16 value. Every binary16 value is exact
// in float32.
func F16ToFloat32(h uint16) float32 { return f16Table[h] }

// f16Table holds every binary16 value decoded (256 KiB): decoding weights is
// a table lookup.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return &t
}()

// F16FromFloat32 rounds a float32 to the nearest binary16 (ties to even), as
// ggml's GGML_FP32_TO_FP16 does.
func F16FromFloat32(f float32) uint16 { return uint16(float16.Fromfloat32(f)) }

// F16FromFloat64 rounds a float64 to the nearest binary16 (ties to even) with
// a single rounding.
//
// The fast path goes through float32, which cannot cross a binary16
// rounding boundary (every boundary is a float32): only when float32(x)
// lands exactly on one does the direction come from comparing x with it.
func F16FromFloat64(x float64) uint16 {
	if h, ok := f16Fast(x); ok {
		return h
	}
	f := float32(x)
	b := math.Float32bits(f)
	if e := b >> 23 & 0xff; e < 113 || e > 142 { // binary16 subnormal, overflow, Inf, NaN
		return narrow(x, 5, 10, 0x7e00)
	}
	// float32 landed exactly on a rounding boundary: x decides.
	h := uint16(b>>16)&0x8000 | uint16((b>>23&0xff)-112)<<10 | uint16(b>>13&0x3ff)
	if roundAway(x, f, h) {
		h++
	}
	return h
}

// f16Fast is the common case of F16FromFloat64, small enough to inline into
// Encode's loop: a normal binary16 result from a float32 that is not on a
// rounding boundary, rounded to nearest even without a data-dependent branch
// (weights make it unpredictable): the carry out of rem + 0xfff + odd is the
// round-up bit, and a carry into the exponent is the next value (past 65504,
// Inf). ok is false for everything else.
func f16Fast(x float64) (h uint16, ok bool) {
	f := float32(x)
	b := math.Float32bits(f)
	rem := b & 0x1fff
	if (b>>23&0xff)-113 > 29 || rem == 0x1000 && float64(f) != x {
		return 0, false
	}
	// Rebias the exponent (127 → 15) in the float32's top 19 bits.
	h = uint16(b>>16)&0x8000 | uint16(b>>13&0x3ffff-112<<10)
	return h + uint16((rem+0xfff+uint32(h&1))>>13), true
}

// roundAway decides a float32 value that sits exactly halfway between two
// narrow values: away from zero when x is beyond it, toward zero when short
// of it, and to the even one (last bit of h clear) on a true tie.
func roundAway(x float64, f float32, h uint16) bool {
	switch d := math.Abs(x) - math.Abs(float64(f)); {
	case d > 0:
		return true
	case d < 0:
		return false
	}
	return h&1 == 1
}

// BF16ToFloat32 decodes a bfloat16 value: its bits are the upper half of a
// float32.
func BF16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// BF16FromFloat32 rounds a float32 to the nearest bfloat16 (ties to even).
// NaNs stay NaN (quiet), infinities stay infinite.
func BF16FromFloat32(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep sign, force a quiet payload
		return uint16(u>>16) | 0x40
	}
	// Round to nearest even on the 16 bits shifted out.
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// BF16FromFloat64 rounds a float64 to the nearest bfloat16 (ties to even)
// with a single rounding, through float32 as F16FromFloat64 does.
func BF16FromFloat64(x float64) uint16 {
	if h, ok := bf16Fast(x); ok {
		return h
	}
	f := float32(x)
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 { // Inf or NaN (also from overflow)
		return narrow(x, 8, 7, 0x7fc0)
	}
	h := uint16(b >> 16) // on a rounding boundary: x decides
	if roundAway(x, f, h) {
		h++
	}
	return h
}

// bf16Fast is BF16FromFloat64's common case, as f16Fast is F16FromFloat64's.
func bf16Fast(x float64) (h uint16, ok bool) {
	f := float32(x)
	b := math.Float32bits(f)
	rem := b & 0xffff
	if b&0x7f800000 == 0x7f800000 || rem == 0x8000 && float64(f) != x {
		return 0, false
	}
	return uint16(b>>16) + uint16((rem+0x7fff+(b>>16&1))>>16), true
}

// narrow rounds x once, to nearest with ties to even, to a 16-bit binary
// format with expBits exponent and mantBits mantissa bits (binary16: 5, 10;
// bfloat16: 8, 7), working on the float64's bits: overflow gives ±Inf,
// underflow gradual through subnormals to ±0, NaN the format's quiet NaN
// (sign kept).
func narrow(x float64, expBits, mantBits uint, qnan uint16) uint16 {
	b := math.Float64bits(x)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52) & 0x7ff
	mant := b & (1<<52 - 1)
	inf := uint16(1<<expBits-1) << mantBits
	if exp == 0x7ff {
		if mant != 0 {
			return sign | qnan
		}
		return sign | inf
	}
	bias := 1<<(expBits-1) - 1
	e := exp - 1023 + bias // biased exponent in the narrow format
	full := mant | 1<<52   // significand with its leading 1 (exp 0: x is far below any subnormal)
	if exp == 0 {
		return sign
	}
	shift := uint(52 - mantBits) // bits dropped for a normal result
	if e <= 0 {
		// Subnormal (or zero): the leading 1 moves right by 1 − e places.
		extra := uint(1 - e)
		if shift+extra > 62 {
			return sign
		}
		shift += extra
		e = 0
	} else {
		full &^= 1 << 52 // the narrow format's exponent field carries the leading 1
	}
	q := full >> shift
	rem := full & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++ // a carry into the exponent field is the correct next value
	}
	h := uint64(e)<<mantBits + q
	if h >= uint64(inf) {
		return sign | inf
	}
	return sign | uint16(h)
}

// F32FromFloat64 rounds a float64 to the nearest float32 (ties to even).
func F32FromFloat64(x float64) float32 { return float32(x) }

// Kind names the element types the codecs in this package decode and encode.
type Kind int

// The element kinds shared by safetensors, GGUF and ONNX.
const (
	F32 Kind = iota
	F16
	BF16
	F64
)

// Size returns the bytes one element of k takes.
func (k Kind) Size() int {
	switch k {
	case F16, BF16:
		return 2
	case F64:
		return 8
	default:
		return 4
	}
}

// String returns the conventional upper-case name of k.
func (k Kind) String() string {
	switch k {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	case F64:
		return "F64"
	}
	return "?"
}

// Decode converts little-endian elements of kind k in src into dst. len(src)
// must be len(dst)*k.Size().
func Decode(k Kind, dst []float32, src []byte) {
	switch k {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := 0; i < len(dst); {
			i += vector(decF16F32, dst[i:], src[2*i:])
			for end := min(i+8, len(dst)); i < end; i++ {
				dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
			}
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}
}

// DecodeFloat64 converts little-endian elements of kind k in src into
// float64 values in dst (exactly: every F16, BF16 and F32 value is a
// float64). len(src) must be len(dst)*k.Size().
func DecodeFloat64(k Kind, dst []float64, src []byte) {
	switch k {
	case F32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case F16:
		for i := 0; i < len(dst); {
			i += vector(decF16, dst[i:], src[2*i:])
			for end := min(i+8, len(dst)); i < end; i++ {
				dst[i] = float64(f16Table[binary.LittleEndian.Uint16(src[2*i:])])
			}
		}
	case BF16:
		for i := 0; i < len(dst); {
			i += vector(decBF16, dst[i:], src[2*i:])
			for end := min(i+8, len(dst)); i < end; i++ {
				dst[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16))
			}
		}
	case F64:
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
		}
	}
}

// Encode rounds each float64 in src once to kind k and stores it
// little-endian in dst. len(dst) must be len(src)*k.Size().
func Encode(k Kind, dst []byte, src []float64) {
	switch k {
	case F32:
		for i, x := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(float32(x)))
		}
	case F16:
		dst = dst[:2*len(src)]
		for i := 0; i < len(src); {
			// The vector code does whole groups of 8 up to a NaN; the scalar
			// loop does the next 8 (or the tail) and hands back.
			i += vector(encF16, dst[2*i:], src[i:])
			for end := min(i+8, len(src)); i < end; i++ {
				h, ok := f16Fast(src[i]) // inlined
				if !ok {
					h = F16FromFloat64(src[i])
				}
				binary.LittleEndian.PutUint16(dst[2*i:], h)
			}
		}
	case BF16:
		dst = dst[:2*len(src)]
		for i := 0; i < len(src); {
			i += vector(encBF16, dst[2*i:], src[i:])
			for end := min(i+8, len(src)); i < end; i++ {
				h, ok := bf16Fast(src[i])
				if !ok {
					h = BF16FromFloat64(src[i])
				}
				binary.LittleEndian.PutUint16(dst[2*i:], h)
			}
		}
	case F64:
		for i, x := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(x))
		}
	}
}

// vector runs one of the vector codecs (simd_amd64.s) on the whole groups
// of 8 that dst and src both hold, when the CPU has them, and returns how
// many elements it converted (0 without them).
func vector[D, S any](fn func(dst *D, src *S, n int) int, dst []D, src []S) int {
	n := min(elems(dst), elems(src)) &^ 7
	if !haveSIMD || n == 0 {
		return 0
	}
	return fn(&dst[0], &src[0], n)
}

// elems is the number of elements s holds for the vector codecs: a []byte
// holds 16-bit codes, two bytes each.
func elems[T any](s []T) int {
	if _, ok := any(s).([]byte); ok {
		return len(s) / 2
	}
	return len(s)
}

// Ulp returns the spacing of kind k's representable values at |x|: the
// distance from |x| to the next larger magnitude value of that kind. Tests
// use it to state rounding bounds.
func Ulp(k Kind, x float64) float64 {
	x = math.Abs(x)
	switch k {
	case F64:
		return math.Nextafter(x, math.Inf(1)) - x
	case F32:
		f := float32(x)
		if float64(f) > x {
			f = math.Nextafter32(f, 0)
		}
		return float64(math.Nextafter32(f, float32(math.Inf(1)))) - float64(f)
	case F16:
		h := F16FromFloat64(x)
		v := float64(F16ToFloat32(h))
		if v > x && h&0x7fff > 0 {
			h--
			v = float64(F16ToFloat32(h))
		}
		return float64(F16ToFloat32(h+1)) - v
	case BF16:
		b := BF16FromFloat64(x)
		v := float64(BF16ToFloat32(b))
		if v > x && b&0x7fff > 0 {
			b--
			v = float64(BF16ToFloat32(b))
		}
		return float64(BF16ToFloat32(b+1)) - v
	}
	return 0
}
