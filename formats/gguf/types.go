package gguf

import (
	"fmt"
	"math/bits"
)

// Type is a ggml tensor element type (enum ggml_type). The numeric values are
// the ids stored in GGUF tensor infos.
type Type uint32

// The ggml types. Ids 4, 5 and 31–33, 36–38 were removed from ggml and must
// not appear in files.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
	Q2_0    Type = 42
)

// qkK is the number of elements in a K-quant super-block (QK_K).
const qkK = 256

// typeTraits is one row of the type table: the name ggml prints, the number
// of elements in a block and the bytes one block takes.
type typeTraits struct {
	name      string
	blockSize int
	typeSize  int
}

// typeTable lists every ggml type a GGUF file may hold, keyed by id. Sizes
// follow the static_asserts of ggml-common.h. Adding a type is adding a row.
var typeTable = map[Type]typeTraits{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", 32, 18},
	Q4_1:    {"Q4_1", 32, 20},
	Q5_0:    {"Q5_0", 32, 22},
	Q5_1:    {"Q5_1", 32, 24},
	Q8_0:    {"Q8_0", 32, 34},
	Q8_1:    {"Q8_1", 32, 36},
	Q2_K:    {"Q2_K", qkK, 84},
	Q3_K:    {"Q3_K", qkK, 110},
	Q4_K:    {"Q4_K", qkK, 144},
	Q5_K:    {"Q5_K", qkK, 176},
	Q6_K:    {"Q6_K", qkK, 210},
	Q8_K:    {"Q8_K", qkK, 292},
	IQ2_XXS: {"IQ2_XXS", qkK, 66},
	IQ2_XS:  {"IQ2_XS", qkK, 74},
	IQ3_XXS: {"IQ3_XXS", qkK, 98},
	IQ1_S:   {"IQ1_S", qkK, 50},
	IQ4_NL:  {"IQ4_NL", 32, 18},
	IQ3_S:   {"IQ3_S", qkK, 110},
	IQ2_S:   {"IQ2_S", qkK, 82},
	IQ4_XS:  {"IQ4_XS", qkK, 136},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", qkK, 56},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", qkK, 54},
	TQ2_0:   {"TQ2_0", qkK, 66},
	MXFP4:   {"MXFP4", 32, 17},
	NVFP4:   {"NVFP4", 64, 36},
	Q1_0:    {"Q1_0", 128, 18},
	Q2_0:    {"Q2_0", 64, 18},
}

// Known reports whether t is a ggml type whose block size and byte size this
// package knows. A file may hold known types that the codecs cannot decode
// (the IQ and ternary types); such tensors are passed through unchanged.
func (t Type) Known() bool {
	_, ok := typeTable[t]
	return ok
}

// String returns ggml's name for t ("F32", "Q4_K", ...), or "type(N)" for an
// unknown id.
func (t Type) String() string {
	if tr, ok := typeTable[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize returns the number of elements in one block of t (1 for plain
// types, 32 or 256 for most quantized ones), or 0 if t is unknown.
func (t Type) BlockSize() int { return typeTable[t].blockSize }

// TypeSize returns the bytes one block of t takes, or 0 if t is unknown.
func (t Type) TypeSize() int { return typeTable[t].typeSize }

// RowSize returns the bytes that n consecutive elements of t take. n must be
// a non-negative multiple of the block size.
func (t Type) RowSize(n int) (int, error) {
	tr, ok := typeTable[t]
	if !ok {
		return 0, fmt.Errorf("gguf: unknown ggml type %d", uint32(t))
	}
	if n < 0 || n%tr.blockSize != 0 {
		return 0, fmt.Errorf("gguf: %d elements is not a multiple of the %s block size %d", n, t, tr.blockSize)
	}
	hi, lo := bits.Mul64(uint64(n/tr.blockSize), uint64(tr.typeSize))
	if hi != 0 || lo > uint64(maxInt) {
		return 0, fmt.Errorf("gguf: %d elements of %s overflow int", n, t)
	}
	return int(lo), nil
}

const maxInt = int(^uint(0) >> 1)

// TypeByName returns the type with the given ggml name, in ggml's spelling
// ("Q8_0", "BF16").
func TypeByName(name string) (Type, bool) {
	for t, tr := range typeTable {
		if tr.name == name {
			return t, true
		}
	}
	return 0, false
}
