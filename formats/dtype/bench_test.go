package dtype

import (
	"math/rand/v2"
	"testing"
)

// weights returns n values distributed like a layer's weights.
func weights(n int) []float64 {
	rng := rand.New(rand.NewPCG(1, 1))
	v := make([]float64, n)
	for i := range v {
		v[i] = 0.02 * rng.NormFloat64()
	}
	return v
}

func BenchmarkDecodeF16(b *testing.B) {
	src, dst := make([]byte, 2<<20), make([]float32, 1<<20)
	b.SetBytes(2 << 20)
	for b.Loop() {
		Decode(F16, dst, src)
	}
}

func benchEncode(b *testing.B, k Kind) {
	src := weights(1 << 20)
	dst := make([]byte, len(src)*k.Size())
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		Encode(k, dst, src)
	}
}

func BenchmarkEncodeF16(b *testing.B)  { benchEncode(b, F16) }
func BenchmarkEncodeBF16(b *testing.B) { benchEncode(b, BF16) }
func BenchmarkEncodeF32(b *testing.B)  { benchEncode(b, F32) }
