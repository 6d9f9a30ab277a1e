package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// Element types, as TensorProto.data_type values.
const (
	typeFloat    = int32(pb.TensorProto_FLOAT)
	typeFloat16  = int32(pb.TensorProto_FLOAT16)
	typeBFloat16 = int32(pb.TensorProto_BFLOAT16)
	typeDouble   = int32(pb.TensorProto_DOUBLE)
)

// maxElements bounds the element count a tensor may claim, so that byte
// sizes computed from it never overflow.
const maxElements = 1 << 56

// Place is where a tensor keeps its elements.
type Place int

const (
	// Raw: little-endian bytes in raw_data.
	Raw Place = iota
	// Typed: one of the typed repeated fields (float_data, int32_data, ...).
	Typed
	// External: a byte range of a file next to the model.
	External
)

// String names the place.
func (p Place) String() string {
	switch p {
	case Raw:
		return "raw_data"
	case Typed:
		return "typed"
	case External:
		return "external"
	}
	return "?"
}

// PlaceOf returns where t keeps its elements.
func PlaceOf(t *pb.TensorProto) Place {
	if t.GetDataLocation() == pb.TensorProto_EXTERNAL {
		return External
	}
	if t.RawData != nil {
		return Raw
	}
	return Typed
}

// TypeName returns the ONNX name of a TensorProto data_type value
// ("FLOAT16"), or "TYPE(n)" for a value this package does not know.
func TypeName(dt int32) string {
	if s, ok := pb.TensorProto_DataType_name[dt]; ok {
		return s
	}
	return fmt.Sprintf("TYPE(%d)", dt)
}

// floatKind maps the float element types to the shared codecs.
func floatKind(dt int32) (dtype.Kind, bool) {
	switch dt {
	case typeFloat:
		return dtype.F32, true
	case typeFloat16:
		return dtype.F16, true
	case typeBFloat16:
		return dtype.BF16, true
	case typeDouble:
		return dtype.F64, true
	}
	return 0, false
}

// IsFloat reports whether elements of type dt decode to float (FLOAT,
// FLOAT16, BFLOAT16, DOUBLE).
func IsFloat(dt int32) bool { _, ok := floatKind(dt); return ok }

// elemBits returns the bits one element of type dt takes in raw_data, or 0
// for STRING and unknown types.
func elemBits(dt int32) int {
	switch pb.TensorProto_DataType(dt) {
	case pb.TensorProto_UINT8, pb.TensorProto_INT8, pb.TensorProto_BOOL,
		pb.TensorProto_FLOAT8E4M3FN, pb.TensorProto_FLOAT8E4M3FNUZ,
		pb.TensorProto_FLOAT8E5M2, pb.TensorProto_FLOAT8E5M2FNUZ, pb.TensorProto_FLOAT8E8M0:
		return 8
	case pb.TensorProto_UINT16, pb.TensorProto_INT16, pb.TensorProto_FLOAT16, pb.TensorProto_BFLOAT16:
		return 16
	case pb.TensorProto_FLOAT, pb.TensorProto_INT32, pb.TensorProto_UINT32:
		return 32
	case pb.TensorProto_INT64, pb.TensorProto_UINT64, pb.TensorProto_DOUBLE, pb.TensorProto_COMPLEX64:
		return 64
	case pb.TensorProto_COMPLEX128:
		return 128
	case pb.TensorProto_UINT4, pb.TensorProto_INT4, pb.TensorProto_FLOAT4E2M1:
		return 4
	case pb.TensorProto_UINT2, pb.TensorProto_INT2:
		return 2
	}
	return 0
}

// numElements returns the product of t's dims, refusing negative dims and
// counts beyond maxElements.
func numElements(t *pb.TensorProto) (int64, error) {
	n := uint64(1)
	for _, d := range t.GetDims() {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > maxElements {
			return 0, fmt.Errorf("shape %v has too many elements", t.GetDims())
		}
		n = lo
	}
	return int64(n), nil
}

// rawSize returns the bytes t's elements take in raw_data encoding, or
// ok = false for types without a fixed-width encoding.
func rawSize(t *pb.TensorProto) (size int64, ok bool, err error) {
	n, err := numElements(t)
	if err != nil {
		return 0, false, err
	}
	b := elemBits(t.GetDataType())
	if b == 0 {
		return 0, false, nil
	}
	return (n*int64(b) + 7) / 8, true, nil
}

// typedCount returns the number of values in t's typed field for its type
// (each complex element counts as two), and the field's element size in
// bytes for the raw encoding; ok = false when the typed form has no plain
// one-value-per-element layout this package converts (strings, 4- and
// 2-bit types).
func typedCount(t *pb.TensorProto) (count int, width int, ok bool) {
	switch pb.TensorProto_DataType(t.GetDataType()) {
	case pb.TensorProto_FLOAT, pb.TensorProto_COMPLEX64:
		return len(t.GetFloatData()), 4, true
	case pb.TensorProto_DOUBLE, pb.TensorProto_COMPLEX128:
		return len(t.GetDoubleData()), 8, true
	case pb.TensorProto_INT32:
		return len(t.GetInt32Data()), 4, true
	case pb.TensorProto_INT16, pb.TensorProto_UINT16, pb.TensorProto_FLOAT16, pb.TensorProto_BFLOAT16:
		return len(t.GetInt32Data()), 2, true
	case pb.TensorProto_INT8, pb.TensorProto_UINT8, pb.TensorProto_BOOL,
		pb.TensorProto_FLOAT8E4M3FN, pb.TensorProto_FLOAT8E4M3FNUZ,
		pb.TensorProto_FLOAT8E5M2, pb.TensorProto_FLOAT8E5M2FNUZ, pb.TensorProto_FLOAT8E8M0:
		return len(t.GetInt32Data()), 1, true
	case pb.TensorProto_INT64:
		return len(t.GetInt64Data()), 8, true
	case pb.TensorProto_UINT32:
		return len(t.GetUint64Data()), 4, true
	case pb.TensorProto_UINT64:
		return len(t.GetUint64Data()), 8, true
	}
	return 0, 0, false
}

// typedToRaw converts the typed field of an inline tensor into the raw_data
// encoding (little-endian, fixed width).
func typedToRaw(t *pb.TensorProto) ([]byte, error) {
	size, ok, err := rawSize(t)
	if err != nil {
		return nil, err
	}
	count, width, tok := typedCount(t)
	if !ok || !tok {
		return nil, fmt.Errorf("%w: %s in typed fields", ErrUnsupportedType, TypeName(t.GetDataType()))
	}
	if int64(count)*int64(width) != size {
		return nil, fmt.Errorf("typed field holds %d values, shape %v of %s needs %d bytes",
			count, t.GetDims(), TypeName(t.GetDataType()), size)
	}
	out := make([]byte, size)
	switch pb.TensorProto_DataType(t.GetDataType()) {
	case pb.TensorProto_FLOAT, pb.TensorProto_COMPLEX64:
		for i, v := range t.GetFloatData() {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case pb.TensorProto_DOUBLE, pb.TensorProto_COMPLEX128:
		for i, v := range t.GetDoubleData() {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
		}
	case pb.TensorProto_INT64:
		for i, v := range t.GetInt64Data() {
			binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
		}
	case pb.TensorProto_UINT32:
		for i, v := range t.GetUint64Data() {
			binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
		}
	case pb.TensorProto_UINT64:
		for i, v := range t.GetUint64Data() {
			binary.LittleEndian.PutUint64(out[8*i:], v)
		}
	default: // int32_data with 4-, 2- or 1-byte elements: keep the low bytes
		for i, v := range t.GetInt32Data() {
			switch width {
			case 4:
				binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
			case 2:
				binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
			default:
				out[i] = byte(v)
			}
		}
	}
	return out, nil
}

// clearData removes every place t could keep elements in.
func clearData(t *pb.TensorProto) {
	t.RawData = nil
	t.FloatData = nil
	t.Int32Data = nil
	t.Int64Data = nil
	t.DoubleData = nil
	t.Uint64Data = nil
	t.StringData = nil
	t.ExternalData = nil
	t.DataLocation = nil
}

// RawBytes returns t's elements in the raw_data encoding (little-endian,
// fixed width) wherever they are stored: raw_data (returned as is, not
// copied), a typed field, or an external file.
func (m *Model) RawBytes(t *pb.TensorProto) ([]byte, error) {
	size, ok, err := rawSize(t)
	if err != nil {
		return nil, m.tensorError(t, "bad shape", err)
	}
	if !ok {
		return nil, m.tensorError(t, "", fmt.Errorf("%w: %s has no raw encoding", ErrUnsupportedType, TypeName(t.GetDataType())))
	}
	switch PlaceOf(t) {
	case External:
		return m.readExternal(t, size)
	case Raw:
		if int64(len(t.GetRawData())) != size {
			return nil, m.tensorError(t, fmt.Sprintf("raw_data has %d bytes, shape %v of %s needs %d",
				len(t.GetRawData()), t.GetDims(), TypeName(t.GetDataType()), size), nil)
		}
		return t.GetRawData(), nil
	}
	b, err := typedToRaw(t)
	if err != nil {
		return nil, m.tensorError(t, "", err)
	}
	return b, nil
}

// Float32s decodes a FLOAT, FLOAT16, BFLOAT16 or DOUBLE tensor, in its
// stored shape and order, to float32 (DOUBLE rounds to nearest).
func (m *Model) Float32s(t *pb.TensorProto) ([]float32, error) {
	k, ok := floatKind(t.GetDataType())
	if !ok {
		return nil, m.tensorError(t, "", fmt.Errorf("%w: %s", ErrUnsupportedType, TypeName(t.GetDataType())))
	}
	n, err := numElements(t)
	if err != nil {
		return nil, m.tensorError(t, "bad shape", err)
	}
	if PlaceOf(t) == Typed {
		return m.typedFloats(t, k, n)
	}
	b, err := m.RawBytes(t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	dtype.Decode(k, out, b)
	return out, nil
}

// Float64s decodes a FLOAT, FLOAT16, BFLOAT16 or DOUBLE tensor, in its
// stored shape and order, to float64 (exact for every type).
func (m *Model) Float64s(t *pb.TensorProto) ([]float64, error) {
	if t.GetDataType() != typeDouble {
		f, err := m.Float32s(t)
		if err != nil {
			return nil, err
		}
		return widen(f), nil
	}
	n, err := numElements(t)
	if err != nil {
		return nil, m.tensorError(t, "bad shape", err)
	}
	if PlaceOf(t) == Typed {
		if int64(len(t.GetDoubleData())) != n {
			return nil, m.tensorError(t, fmt.Sprintf("typed field holds %d values, shape %v needs %d", len(t.GetDoubleData()), t.GetDims(), n), nil)
		}
		return append([]float64(nil), t.GetDoubleData()...), nil
	}
	b, err := m.RawBytes(t)
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	dtype.DecodeFloat64(dtype.F64, out, b)
	return out, nil
}

func (m *Model) typedFloats(t *pb.TensorProto, k dtype.Kind, n int64) ([]float32, error) {
	count, _, _ := typedCount(t)
	if int64(count) != n {
		return nil, m.tensorError(t, fmt.Sprintf("typed field holds %d values, shape %v needs %d", count, t.GetDims(), n), nil)
	}
	out := make([]float32, n)
	switch k {
	case dtype.F32:
		copy(out, t.GetFloatData())
	case dtype.F64:
		for i, v := range t.GetDoubleData() {
			out[i] = float32(v)
		}
	case dtype.F16:
		for i, v := range t.GetInt32Data() {
			out[i] = dtype.F16ToFloat32(uint16(v))
		}
	case dtype.BF16:
		for i, v := range t.GetInt32Data() {
			out[i] = dtype.BF16ToFloat32(uint16(v))
		}
	}
	return out, nil
}

// SetFloat64s replaces the elements of a FLOAT, FLOAT16, BFLOAT16 or DOUBLE
// tensor with vals (stored shape and order), rounding each value once to the
// tensor's type and keeping it where it was: raw_data, the typed field, or
// external data (held in a scratch file until the model is written).
func (m *Model) SetFloat64s(t *pb.TensorProto, vals []float64) error {
	k, ok := floatKind(t.GetDataType())
	if !ok {
		return m.tensorError(t, "", fmt.Errorf("%w: %s", ErrUnsupportedType, TypeName(t.GetDataType())))
	}
	n, err := numElements(t)
	if err != nil {
		return m.tensorError(t, "bad shape", err)
	}
	if int64(len(vals)) != n {
		return m.tensorError(t, fmt.Sprintf("got %d values for shape %v", len(vals), t.GetDims()), nil)
	}
	switch PlaceOf(t) {
	case Typed:
		clearData(t)
		switch k {
		case dtype.F32:
			t.FloatData = make([]float32, n)
			for i, v := range vals {
				t.FloatData[i] = dtype.F32FromFloat64(v)
			}
		case dtype.F64:
			t.DoubleData = append([]float64(nil), vals...)
		case dtype.F16:
			t.Int32Data = make([]int32, n)
			for i, v := range vals {
				t.Int32Data[i] = int32(dtype.F16FromFloat64(v))
			}
		case dtype.BF16:
			t.Int32Data = make([]int32, n)
			for i, v := range vals {
				t.Int32Data[i] = int32(dtype.BF16FromFloat64(v))
			}
		}
		return nil
	case Raw:
		b := make([]byte, n*int64(k.Size()))
		dtype.Encode(k, b, vals)
		t.RawData = b
		return nil
	}
	b := make([]byte, n*int64(k.Size()))
	dtype.Encode(k, b, vals)
	return m.stageExternal(t, b)
}

func (m *Model) tensorError(t *pb.TensorProto, msg string, err error) *FormatError {
	return tensorErr(m.File, t.GetName(), msg, err)
}
