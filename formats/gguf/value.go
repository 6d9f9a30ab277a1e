package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// ValueType is the type tag of a metadata value (enum gguf_type).
type ValueType uint32

// The metadata value types, with the ids GGUF stores.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"}

// String returns the gguf-py name of the value type ("UINT32", "STRING", ...).
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// valid reports whether t is one of the 13 defined value types.
func (t ValueType) valid() bool { return t <= ValueFloat64 }

// size returns the encoded size of a fixed-size value type, 0 for STRING and
// ARRAY.
func (t ValueType) size() int {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value: a scalar of any of the 13 types, or an array
// of scalars, of strings, or (readable, though ggml rejects them) of arrays.
// Numeric values keep their little-endian encoding, so a value read from a
// file is written back bit for bit (NaN payloads included). The zero Value is
// a UINT8 zero.
type Value struct {
	// Type is the value's type tag; ValueArray for arrays.
	Type ValueType

	elem ValueType // element type of an array
	n    int       // element count of an array
	raw  []byte    // little-endian bytes of a fixed-size scalar or array
	str  string    // a STRING scalar
	strs []string  // an array of STRING
	arrs []Value   // an array of ARRAY
}

func scalar(t ValueType, bits uint64) Value {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, bits)
	return Value{Type: t, raw: b[:t.size()]}
}

// Uint8 returns a UINT8 value.
func Uint8(v uint8) Value { return scalar(ValueUint8, uint64(v)) }

// Int8 returns an INT8 value.
func Int8(v int8) Value { return scalar(ValueInt8, uint64(uint8(v))) }

// Uint16 returns a UINT16 value.
func Uint16(v uint16) Value { return scalar(ValueUint16, uint64(v)) }

// Int16 returns an INT16 value.
func Int16(v int16) Value { return scalar(ValueInt16, uint64(uint16(v))) }

// Uint32 returns a UINT32 value.
func Uint32(v uint32) Value { return scalar(ValueUint32, uint64(v)) }

// Int32 returns an INT32 value.
func Int32(v int32) Value { return scalar(ValueInt32, uint64(uint32(v))) }

// Uint64 returns a UINT64 value.
func Uint64(v uint64) Value { return scalar(ValueUint64, v) }

// Int64 returns an INT64 value.
func Int64(v int64) Value { return scalar(ValueInt64, uint64(v)) }

// Float32 returns a FLOAT32 value.
func Float32(v float32) Value { return scalar(ValueFloat32, uint64(math.Float32bits(v))) }

// Float64 returns a FLOAT64 value.
func Float64(v float64) Value { return scalar(ValueFloat64, math.Float64bits(v)) }

// Bool returns a BOOL value (stored as one byte, 0 or 1).
func Bool(v bool) Value {
	if v {
		return scalar(ValueBool, 1)
	}
	return scalar(ValueBool, 0)
}

// String returns a STRING value.
func String(s string) Value { return Value{Type: ValueString, str: s} }

// Element is the set of Go types that map to GGUF array element types.
type Element interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | bool | uint64 | int64 | float64 | string
}

// elemType returns the GGUF value type of a Go element type.
func elemType[T Element]() ValueType {
	var z T
	switch any(z).(type) {
	case uint8:
		return ValueUint8
	case int8:
		return ValueInt8
	case uint16:
		return ValueUint16
	case int16:
		return ValueInt16
	case uint32:
		return ValueUint32
	case int32:
		return ValueInt32
	case float32:
		return ValueFloat32
	case bool:
		return ValueBool
	case uint64:
		return ValueUint64
	case int64:
		return ValueInt64
	case float64:
		return ValueFloat64
	}
	return ValueString
}

// Array returns an ARRAY value holding a copy of elems; the element type
// follows T (uint32 → UINT32, string → STRING, ...).
func Array[T Element](elems []T) Value {
	et := elemType[T]()
	v := Value{Type: ValueArray, elem: et, n: len(elems)}
	if et == ValueString {
		v.strs = make([]string, len(elems))
		for i, e := range elems {
			v.strs[i] = any(e).(string)
		}
		return v
	}
	sz := et.size()
	v.raw = make([]byte, sz*len(elems))
	for i, e := range elems {
		putElem(v.raw[i*sz:], e)
	}
	return v
}

func putElem(b []byte, e any) {
	switch x := e.(type) {
	case uint8:
		b[0] = x
	case int8:
		b[0] = uint8(x)
	case bool:
		if x {
			b[0] = 1
		} else {
			b[0] = 0
		}
	case uint16:
		binary.LittleEndian.PutUint16(b, x)
	case int16:
		binary.LittleEndian.PutUint16(b, uint16(x))
	case uint32:
		binary.LittleEndian.PutUint32(b, x)
	case int32:
		binary.LittleEndian.PutUint32(b, uint32(x))
	case float32:
		binary.LittleEndian.PutUint32(b, math.Float32bits(x))
	case uint64:
		binary.LittleEndian.PutUint64(b, x)
	case int64:
		binary.LittleEndian.PutUint64(b, uint64(x))
	case float64:
		binary.LittleEndian.PutUint64(b, math.Float64bits(x))
	}
}

// ArrayOfArrays returns an ARRAY whose elements are the given arrays. GGUF's
// spec allows nesting, but ggml's reader rejects it: llama.cpp cannot load a
// file holding such a value. It returns false if an element is not an array.
func ArrayOfArrays(elems []Value) (Value, bool) {
	for _, e := range elems {
		if e.Type != ValueArray {
			return Value{}, false
		}
	}
	return Value{Type: ValueArray, elem: ValueArray, n: len(elems), arrs: append([]Value(nil), elems...)}, true
}

// ElemType returns the element type of an array value (meaningless for a
// scalar).
func (v Value) ElemType() ValueType { return v.elem }

// Len returns the number of elements of an array value, 0 for a scalar.
func (v Value) Len() int {
	if v.Type != ValueArray {
		return 0
	}
	return v.n
}

// Index returns element i of an array as a scalar (or array) value.
// It returns false if v is not an array or i is out of range.
func (v Value) Index(i int) (Value, bool) {
	if v.Type != ValueArray || i < 0 || i >= v.n {
		return Value{}, false
	}
	switch v.elem {
	case ValueString:
		return String(v.strs[i]), true
	case ValueArray:
		return v.arrs[i], true
	}
	sz := v.elem.size()
	return Value{Type: v.elem, raw: append([]byte(nil), v.raw[i*sz:(i+1)*sz]...)}, true
}

// bits returns the scalar's raw bits zero-extended to 64 bits.
func (v Value) bits() uint64 {
	var b [8]byte
	copy(b[:], v.raw)
	return binary.LittleEndian.Uint64(b[:])
}

// AsString returns a STRING value's text.
func (v Value) AsString() (string, bool) {
	if v.Type != ValueString {
		return "", false
	}
	return v.str, true
}

// AsUint32 returns a UINT32 value. Like ggml's typed getters it accepts no
// other type: llama.cpp aborts on a key stored with the wrong type.
func (v Value) AsUint32() (uint32, bool) {
	if v.Type != ValueUint32 {
		return 0, false
	}
	return uint32(v.bits()), true
}

// AsInt32 returns an INT32 value (that type only).
func (v Value) AsInt32() (int32, bool) {
	if v.Type != ValueInt32 {
		return 0, false
	}
	return int32(uint32(v.bits())), true
}

// AsFloat32 returns a FLOAT32 value (that type only).
func (v Value) AsFloat32() (float32, bool) {
	if v.Type != ValueFloat32 {
		return 0, false
	}
	return math.Float32frombits(uint32(v.bits())), true
}

// AsFloat64 returns a FLOAT64 value (that type only).
func (v Value) AsFloat64() (float64, bool) {
	if v.Type != ValueFloat64 {
		return 0, false
	}
	return math.Float64frombits(v.bits()), true
}

// AsUint64 returns a UINT64 value (that type only).
func (v Value) AsUint64() (uint64, bool) {
	if v.Type != ValueUint64 {
		return 0, false
	}
	return v.bits(), true
}

// AsInt64 returns an INT64 value (that type only).
func (v Value) AsInt64() (int64, bool) {
	if v.Type != ValueInt64 {
		return 0, false
	}
	return int64(v.bits()), true
}

// AsBool returns a BOOL value (any non-zero byte is true, as in ggml).
func (v Value) AsBool() (bool, bool) {
	if v.Type != ValueBool {
		return false, false
	}
	return v.bits() != 0, true
}

// AsInt returns any integer scalar (UINT8 … INT64) as an int64. It returns
// false for other types and for a UINT64 above the int64 range.
func (v Value) AsInt() (int64, bool) {
	b := v.bits()
	switch v.Type {
	case ValueUint8, ValueUint16, ValueUint32:
		return int64(b), true
	case ValueInt8:
		return int64(int8(b)), true
	case ValueInt16:
		return int64(int16(b)), true
	case ValueInt32:
		return int64(int32(b)), true
	case ValueInt64:
		return int64(b), true
	case ValueUint64:
		if b > math.MaxInt64 {
			return 0, false
		}
		return int64(b), true
	}
	return 0, false
}

// AsFloat returns a FLOAT32 or FLOAT64 scalar as a float64.
func (v Value) AsFloat() (float64, bool) {
	switch v.Type {
	case ValueFloat32:
		return float64(math.Float32frombits(uint32(v.bits()))), true
	case ValueFloat64:
		return math.Float64frombits(v.bits()), true
	}
	return 0, false
}

// Elems returns the elements of an array value whose element type matches T
// exactly (a UINT32 array as []uint32, a STRING array as []string, ...).
func Elems[T Element](v Value) ([]T, bool) {
	et := elemType[T]()
	if v.Type != ValueArray || v.elem != et {
		return nil, false
	}
	out := make([]T, v.n)
	if et == ValueString {
		for i, s := range v.strs {
			out[i] = any(s).(T)
		}
		return out, true
	}
	sz := et.size()
	for i := range out {
		b := v.raw[i*sz:]
		var x any
		switch et {
		case ValueUint8:
			x = b[0]
		case ValueInt8:
			x = int8(b[0])
		case ValueBool:
			x = b[0] != 0
		case ValueUint16:
			x = binary.LittleEndian.Uint16(b)
		case ValueInt16:
			x = int16(binary.LittleEndian.Uint16(b))
		case ValueUint32:
			x = binary.LittleEndian.Uint32(b)
		case ValueInt32:
			x = int32(binary.LittleEndian.Uint32(b))
		case ValueFloat32:
			x = math.Float32frombits(binary.LittleEndian.Uint32(b))
		case ValueUint64:
			x = binary.LittleEndian.Uint64(b)
		case ValueInt64:
			x = int64(binary.LittleEndian.Uint64(b))
		case ValueFloat64:
			x = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
		out[i] = x.(T)
	}
	return out, true
}

// String formats the value for people: scalars as Go literals, arrays as
// their type and length with the first few elements.
func (v Value) String() string {
	switch v.Type {
	case ValueString:
		return fmt.Sprintf("%q", v.str)
	case ValueArray:
		var sb strings.Builder
		fmt.Fprintf(&sb, "[%s × %d]", v.elem, v.n)
		for i := 0; i < v.n && i < 4; i++ {
			e, _ := v.Index(i)
			sb.WriteString(" ")
			sb.WriteString(e.String())
		}
		if v.n > 4 {
			sb.WriteString(" …")
		}
		return sb.String()
	case ValueBool:
		b, _ := v.AsBool()
		return fmt.Sprint(b)
	case ValueFloat32, ValueFloat64:
		f, _ := v.AsFloat()
		return fmt.Sprint(f)
	}
	if i, ok := v.AsInt(); ok {
		return fmt.Sprint(i)
	}
	if u, ok := v.AsUint64(); ok {
		return fmt.Sprint(u)
	}
	return fmt.Sprintf("<%s>", v.Type)
}

// appendPayload appends the value's encoding without its type tag.
func (v Value) appendPayload(b []byte) []byte {
	switch v.Type {
	case ValueString:
		return appendString(b, v.str)
	case ValueArray:
		b = binary.LittleEndian.AppendUint32(b, uint32(v.elem))
		b = binary.LittleEndian.AppendUint64(b, uint64(v.n))
		switch v.elem {
		case ValueString:
			for _, s := range v.strs {
				b = appendString(b, s)
			}
		case ValueArray:
			// Elements of an array carry no type tag of their own.
			for _, a := range v.arrs {
				b = a.appendPayload(b)
			}
		default:
			b = append(b, v.raw...)
		}
		return b
	}
	out := append(b, v.raw...)
	// A Value built by hand with a short raw slice still encodes its full width.
	for i := len(v.raw); i < v.Type.size(); i++ {
		out = append(out, 0)
	}
	return out
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}
