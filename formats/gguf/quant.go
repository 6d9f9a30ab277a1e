package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
)

// Floating-point note. The codecs reproduce ggml's reference C code
// (ggml-quants.c, quantize_row_*_ref and dequantize_row_*) operation by
// operation in float32, each operation rounded on its own: that is what
// llama.cpp's gguf-py (numpy) computes and what a C compiler produces without
// floating-point contraction. Go may fuse x*y+z into one FMA on arm64, ppc64
// and s390x (never on amd64 below GOAMD64=v3), so every product that feeds an
// addition is wrapped in an explicit float32(...) conversion, which the Go
// spec says prevents fusion. A llama.cpp built with -march=native on an FMA
// machine may contract some of these expressions and then differ from the
// reference in the last bit of rare values (gguf-py's quants.py notes the
// same for Q4_0).

// blockCodec is one row of the codec table: how to decode and encode whole
// blocks of a ggml type. Either function may be nil.
type blockCodec struct {
	dequantize func(dst []float32, src []byte)
	quantize   func(dst []byte, src []float32)
}

// codecs maps each supported type to its codec. Adding a type is adding a row.
var codecs map[Type]blockCodec

func init() {
	codecs = map[Type]blockCodec{
		F32:  {dequantF32, quantF32},
		F16:  {dequantF16, quantF16},
		BF16: {dequantBF16, quantBF16},
		Q8_0: {dequantQ8_0, quantQ8_0},
		Q4_0: {dequantQ4_0, quantQ4_0},
		Q4_1: {dequantQ4_1, quantQ4_1},
		Q5_0: {dequantQ5_0, quantQ5_0},
		Q5_1: {dequantQ5_1, quantQ5_1},
		Q2_K: {dequantQ2_K, quantQ2_K},
		Q3_K: {dequantQ3_K, quantQ3_K},
		Q4_K: {dequantQ4_K, quantQ4_K},
		Q5_K: {dequantQ5_K, quantQ5_K},
		Q6_K: {dequantQ6_K, quantQ6_K},
	}
}

// f16At decodes the binary16 at b (the quant scales are F16).
func f16At(b []byte) float32 { return dtype.F16ToFloat32(binary.LittleEndian.Uint16(b)) }

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, dtype.F16FromFloat32(f)) }

// CanDequantize reports whether Dequantize supports t.
func (t Type) CanDequantize() bool { return codecs[t].dequantize != nil }

// CanQuantize reports whether Quantize supports t.
func (t Type) CanQuantize() bool { return codecs[t].quantize != nil }

// QuantizableTypes returns the types Quantize supports, in type-id order.
func QuantizableTypes() []Type {
	var ts []Type
	for t, c := range codecs {
		if c.quantize != nil {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// checkLens validates a dst/src pair of n elements and the matching bytes.
func checkLens(t Type, n, nbytes int) error {
	tr := typeTable[t]
	if n%tr.blockSize != 0 {
		return fmt.Errorf("gguf: %s: %d elements is not a multiple of the block size %d", t, n, tr.blockSize)
	}
	if want := n / tr.blockSize * tr.typeSize; nbytes != want {
		return fmt.Errorf("gguf: %s: %d elements take %d bytes, got %d", t, n, want, nbytes)
	}
	return nil
}

// Dequantize decodes src, whole blocks of type t, into dst. len(dst) must be
// a multiple of t's block size and len(src) the matching number of bytes.
func Dequantize(t Type, dst []float32, src []byte) error {
	c := codecs[t].dequantize
	if c == nil {
		return fmt.Errorf("gguf: no decoder for type %s", t)
	}
	if err := checkLens(t, len(dst), len(src)); err != nil {
		return err
	}
	tr := typeTable[t]
	parallel(len(dst)/tr.blockSize, 1<<20/tr.blockSize, func(lo, hi int) {
		c(dst[lo*tr.blockSize:hi*tr.blockSize], src[lo*tr.typeSize:hi*tr.typeSize])
	})
	return nil
}

// Quantize encodes src into dst as type t with llama.cpp's reference
// quantizer (quantize_row_*_ref, no importance matrix). len(src) must be a
// multiple of t's block size and len(dst) the matching number of bytes.
func Quantize(t Type, dst []byte, src []float32) error {
	c := codecs[t].quantize
	if c == nil {
		return fmt.Errorf("gguf: no encoder for type %s", t)
	}
	if err := checkLens(t, len(src), len(dst)); err != nil {
		return err
	}
	tr := typeTable[t]
	parallel(len(src)/tr.blockSize, 1<<15/tr.blockSize, func(lo, hi int) {
		c(dst[lo*tr.typeSize:hi*tr.typeSize], src[lo*tr.blockSize:hi*tr.blockSize])
	})
	return nil
}

// parallel splits n blocks into contiguous chunks of at least minChunk
// blocks and runs f on them concurrently, one goroutine per CPU at most.
// Blocks are independent, so the result does not depend on the split.
func parallel(n, minChunk int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
	if workers <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// ---- plain types

func dequantF32(dst []float32, src []byte) { dtype.Decode(dtype.F32, dst, src) }

func quantF32(dst []byte, src []float32) {
	for i, x := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
	}
}

func dequantF16(dst []float32, src []byte) { dtype.Decode(dtype.F16, dst, src) }

func quantF16(dst []byte, src []float32) {
	for i, x := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], dtype.F16FromFloat32(x))
	}
}

func dequantBF16(dst []float32, src []byte) { dtype.Decode(dtype.BF16, dst, src) }

func quantBF16(dst []byte, src []float32) {
	for i, x := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], dtype.BF16FromFloat32(x))
	}
}

// ---- 32-element blocks

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// absMax returns the element of largest magnitude (the first one on ties)
// and its magnitude, as the reference quantizers pick it.
func absMax(x []float32) (maxv, amax float32) {
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, maxv = a, v
		}
	}
	return maxv, amax
}

// minMax returns the smallest and largest elements, as the reference
// quantizers find them (starting from ±FLT_MAX).
func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func inv(d float32) float32 {
	if d != 0 {
		return 1 / d
	}
	return 0
}

// Q8_0: d:f16, qs[32] int8; y = q·d.
func dequantQ8_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := src[34*i : 34*i+34]
		d := f16At(b)
		y := dst[32*i : 32*i+32]
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

func quantQ8_0(dst []byte, src []float32) {
	for i := 0; i < len(src)/32; i++ {
		x := src[32*i : 32*i+32]
		b := dst[34*i : 34*i+34]
		var amax float32
		for _, v := range x {
			// MAX(amax, fabsf(v)) as the C macro evaluates it.
			if a := abs32(v); !(amax > a) {
				amax = a
			}
		}
		d := amax / 127
		id := inv(d)
		putF16(b, d)
		for j, v := range x {
			// roundf: half away from zero; exact on a float32 input.
			b[2+j] = uint8(int8(math.Round(float64(v * id))))
		}
	}
}

// Q4_0: d:f16, qs[16]; element j is the low nibble of qs[j], element j+16
// the high nibble; y = (nib − 8)·d.
func dequantQ4_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := src[18*i : 18*i+18]
		d := f16At(b)
		y := dst[32*i : 32*i+32]
		for j := 0; j < 16; j++ {
			q := b[2+j]
			y[j] = float32(int(q&0xF)-8) * d
			y[j+16] = float32(int(q>>4)-8) * d
		}
	}
}

func quantQ4_0(dst []byte, src []float32) {
	for i := 0; i < len(src)/32; i++ {
		x := src[32*i : 32*i+32]
		b := dst[18*i : 18*i+18]
		maxv, _ := absMax(x)
		d := maxv / -8
		id := inv(d)
		putF16(b, d)
		for j := 0; j < 16; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			xi0 := min(15, int8(x0+8.5))
			xi1 := min(15, int8(x1+8.5))
			b[2+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

// Q4_1: d:f16, m:f16, qs[16]; y = nib·d + m.
func dequantQ4_1(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := src[20*i : 20*i+20]
		d, m := f16At(b), f16At(b[2:])
		y := dst[32*i : 32*i+32]
		for j := 0; j < 16; j++ {
			q := b[4+j]
			y[j] = float32(float32(q&0xF)*d) + m
			y[j+16] = float32(float32(q>>4)*d) + m
		}
	}
}

func quantQ4_1(dst []byte, src []float32) {
	for i := 0; i < len(src)/32; i++ {
		x := src[32*i : 32*i+32]
		b := dst[20*i : 20*i+20]
		lo, hi := minMax(x)
		d := (hi - lo) / 15
		id := inv(d)
		putF16(b, d)
		putF16(b[2:], lo)
		for j := 0; j < 16; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+16] - lo) * id)
			xi0 := min(15, int8(x0+0.5))
			xi1 := min(15, int8(x1+0.5))
			b[4+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

// Q5_0: d:f16, qh (uint32 LE: bit j is the 5th bit of element j), qs[16];
// y = ((nib | hbit<<4) − 16)·d.
func dequantQ5_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := src[22*i : 22*i+22]
		d := f16At(b)
		qh := binary.LittleEndian.Uint32(b[2:])
		y := dst[32*i : 32*i+32]
		for j := 0; j < 16; j++ {
			q := b[6+j]
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			y[j] = float32(int(q&0xF|h0)-16) * d
			y[j+16] = float32(int(q>>4|h1)-16) * d
		}
	}
}

func quantQ5_0(dst []byte, src []float32) {
	for i := 0; i < len(src)/32; i++ {
		x := src[32*i : 32*i+32]
		b := dst[22*i : 22*i+22]
		maxv, _ := absMax(x)
		d := maxv / -16
		id := inv(d)
		putF16(b, d)
		var qh uint32
		for j := 0; j < 16; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			xi0 := uint8(min(31, int8(x0+16.5)))
			xi1 := uint8(min(31, int8(x1+16.5)))
			b[6+j] = xi0&0xF | (xi1&0xF)<<4
			qh |= uint32(xi0&0x10) >> 4 << j
			qh |= uint32(xi1&0x10) >> 4 << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
	}
}

// Q5_1: d:f16, m:f16, qh, qs[16]; y = (nib | hbit<<4)·d + m.
func dequantQ5_1(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := src[24*i : 24*i+24]
		d, m := f16At(b), f16At(b[2:])
		qh := binary.LittleEndian.Uint32(b[4:])
		y := dst[32*i : 32*i+32]
		for j := 0; j < 16; j++ {
			q := b[8+j]
			h0 := uint8(qh>>j<<4) & 0x10
			h1 := uint8(qh>>(j+12)) & 0x10
			y[j] = float32(float32(q&0xF|h0)*d) + m
			y[j+16] = float32(float32(q>>4|h1)*d) + m
		}
	}
}

func quantQ5_1(dst []byte, src []float32) {
	for i := 0; i < len(src)/32; i++ {
		x := src[32*i : 32*i+32]
		b := dst[24*i : 24*i+24]
		lo, hi := minMax(x)
		d := (hi - lo) / 31
		id := inv(d)
		putF16(b, d)
		putF16(b[2:], lo)
		var qh uint32
		for j := 0; j < 16; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+16] - lo) * id)
			xi0 := uint8(x0 + 0.5)
			xi1 := uint8(x1 + 0.5)
			b[8+j] = xi0&0xF | (xi1&0xF)<<4
			qh |= uint32(xi0&0x10) >> 4 << j
			qh |= uint32(xi1&0x10) >> 4 << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[4:], qh)
	}
}
