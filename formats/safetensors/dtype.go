package safetensors

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
)

// DType is a safetensors element type as it is spelled in the header
// ("F32", "BF16", "F8_E4M3", ...).
type DType string

// The element types of the safetensors format. The list and the order are
// the reference implementation's: the reference writer lays tensors out in
// descending order of this list (see SortLikeReference).
const (
	Bool       DType = "BOOL"
	F4         DType = "F4" // 4-bit float, two elements per byte
	F6E2M3     DType = "F6_E2M3"
	F6E3M2     DType = "F6_E3M2"
	U8         DType = "U8"
	I8         DType = "I8"
	F8E5M2     DType = "F8_E5M2"
	F8E4M3     DType = "F8_E4M3"
	F8E8M0     DType = "F8_E8M0"
	F8E4M3FNUZ DType = "F8_E4M3FNUZ"
	F8E5M2FNUZ DType = "F8_E5M2FNUZ"
	I16        DType = "I16"
	U16        DType = "U16"
	F16        DType = "F16"
	BF16       DType = "BF16"
	I32        DType = "I32"
	U32        DType = "U32"
	F32        DType = "F32"
	C64        DType = "C64" // complex64: two float32
	F64        DType = "F64"
	I64        DType = "I64"
	U64        DType = "U64"
)

// dtypeOrder lists the known dtypes in the reference's enum order, with the
// size of one element in bits.
var dtypeOrder = []struct {
	d    DType
	bits int
}{
	{Bool, 8}, {F4, 4}, {F6E2M3, 6}, {F6E3M2, 6}, {U8, 8}, {I8, 8},
	{F8E5M2, 8}, {F8E4M3, 8}, {F8E8M0, 8}, {F8E4M3FNUZ, 8}, {F8E5M2FNUZ, 8},
	{I16, 16}, {U16, 16}, {F16, 16}, {BF16, 16}, {I32, 32}, {U32, 32},
	{F32, 32}, {C64, 64}, {F64, 64}, {I64, 64}, {U64, 64},
}

// rank returns d's position in the reference enum, or -1 if d is unknown.
func (d DType) rank() int {
	for i, e := range dtypeOrder {
		if e.d == d {
			return i
		}
	}
	return -1
}

// Bits returns the size of one element in bits; ok is false for a dtype
// this package does not know.
func (d DType) Bits() (n int, ok bool) {
	if r := d.rank(); r >= 0 {
		return dtypeOrder[r].bits, true
	}
	return 0, false
}

// Size returns the bytes one element takes; ok is false for an unknown
// dtype and for the sub-byte types (F4, F6_*), whose tensors are sized in
// bits (see ByteSize).
func (d DType) Size() (n int, ok bool) {
	b, ok := d.Bits()
	if !ok || b%8 != 0 {
		return 0, false
	}
	return b / 8, true
}

// Kind returns the formats/dtype codec for d when there is one (F32, F16,
// BF16, F64), so a caller can decode a tensor with dtype.Decode.
func (d DType) Kind() (dtype.Kind, bool) {
	switch d {
	case F32:
		return dtype.F32, true
	case F16:
		return dtype.F16, true
	case BF16:
		return dtype.BF16, true
	case F64:
		return dtype.F64, true
	}
	return 0, false
}

// FromKind returns the safetensors dtype that stores elements of kind k.
func FromKind(k dtype.Kind) (DType, bool) {
	switch k {
	case dtype.F32:
		return F32, true
	case dtype.F16:
		return F16, true
	case dtype.BF16:
		return BF16, true
	case dtype.F64:
		return F64, true
	}
	return "", false
}

// ByteSize returns the number of data bytes a tensor of dtype d and the
// given shape occupies, with the reference's rules: every dimension is
// non-negative, the element count times the element size in bits neither
// overflows 64 bits nor leaves a partial byte. An empty shape is a scalar
// (one element).
func (d DType) ByteSize(shape []int64) (int64, error) {
	nbits, ok := d.Bits()
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownDType, string(d))
	}
	var n uint64 = 1
	for i, dim := range shape {
		if dim < 0 {
			return 0, fmt.Errorf("dimension %d of shape %s is negative", i, shapeString(shape))
		}
		hi, lo := bits.Mul64(n, uint64(dim))
		if hi != 0 {
			return 0, fmt.Errorf("shape %s: element count overflows 64 bits", shapeString(shape))
		}
		n = lo
	}
	hi, total := bits.Mul64(n, uint64(nbits))
	if hi != 0 {
		return 0, fmt.Errorf("shape %s of %s: size in bits overflows 64 bits", shapeString(shape), d)
	}
	if total%8 != 0 {
		return 0, fmt.Errorf("shape %s of %s: %d bits is not a whole number of bytes", shapeString(shape), d, total)
	}
	if total/8 > math.MaxInt64 {
		return 0, fmt.Errorf("shape %s of %s: size overflows int64", shapeString(shape), d)
	}
	return int64(total / 8), nil
}

// SortLikeReference orders tensors the way the reference writer lays them
// out: by descending dtype (in the reference's enum order, so the widest
// types come first and stay aligned), then by name. Unknown dtypes go last.
// NewWriter keeps the order it is given; call this first to match files the
// reference writes.
func SortLikeReference(tensors []TensorInfo) {
	slices.SortStableFunc(tensors, func(a, b TensorInfo) int {
		if ra, rb := a.DType.rank(), b.DType.rank(); ra != rb {
			return rb - ra
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func shapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}
