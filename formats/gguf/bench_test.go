package gguf

import (
	"math/rand/v2"
	"testing"
)

const benchN = 1 << 20 // elements: a 1024 × 1024 matrix

func benchInput() []float32 {
	return gaussian(rand.New(rand.NewPCG(21, 22)), benchN, false)
}

func benchDequantize(b *testing.B, ty Type) {
	x := benchInput()
	n, _ := ty.RowSize(benchN)
	q := make([]byte, n)
	if err := Quantize(ty, q, x); err != nil {
		b.Fatal(err)
	}
	y := make([]float32, benchN)
	b.SetBytes(4 * benchN) // throughput in float32 output bytes
	b.ResetTimer()
	for b.Loop() {
		if err := Dequantize(ty, y, q); err != nil {
			b.Fatal(err)
		}
	}
}

func benchQuantize(b *testing.B, ty Type) {
	x := benchInput()
	n, _ := ty.RowSize(benchN)
	q := make([]byte, n)
	b.SetBytes(4 * benchN) // throughput in float32 input bytes
	b.ResetTimer()
	for b.Loop() {
		if err := Quantize(ty, q, x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDequantizeQ4_0(b *testing.B) { benchDequantize(b, Q4_0) }
func BenchmarkDequantizeQ8_0(b *testing.B) { benchDequantize(b, Q8_0) }
func BenchmarkDequantizeQ2_K(b *testing.B) { benchDequantize(b, Q2_K) }
func BenchmarkDequantizeQ3_K(b *testing.B) { benchDequantize(b, Q3_K) }
func BenchmarkDequantizeQ4_K(b *testing.B) { benchDequantize(b, Q4_K) }
func BenchmarkDequantizeQ5_K(b *testing.B) { benchDequantize(b, Q5_K) }
func BenchmarkDequantizeQ6_K(b *testing.B) { benchDequantize(b, Q6_K) }
func BenchmarkDequantizeF16(b *testing.B)  { benchDequantize(b, F16) }
func BenchmarkQuantizeQ4_0(b *testing.B)   { benchQuantize(b, Q4_0) }
func BenchmarkQuantizeQ8_0(b *testing.B)   { benchQuantize(b, Q8_0) }
func BenchmarkQuantizeQ2_K(b *testing.B)   { benchQuantize(b, Q2_K) }
func BenchmarkQuantizeQ3_K(b *testing.B)   { benchQuantize(b, Q3_K) }
func BenchmarkQuantizeQ4_K(b *testing.B)   { benchQuantize(b, Q4_K) }
func BenchmarkQuantizeQ5_K(b *testing.B)   { benchQuantize(b, Q5_K) }
func BenchmarkQuantizeQ6_K(b *testing.B)   { benchQuantize(b, Q6_K) }
func BenchmarkQuantizeF16(b *testing.B)    { benchQuantize(b, F16) }
