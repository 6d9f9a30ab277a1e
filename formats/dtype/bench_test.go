package dtype
import "testing"
func BenchmarkDecodeF16(b *testing.B) { src := make([]byte, 2<<20); dst := make([]float32, 1<<20); b.SetBytes(2<<20); for i := 0; i < b.N; i++ { Decode(F16, dst, src) } }
func BenchmarkEncodeF16(b *testing.B) { src := make([]float64, 1<<20); for i := range src { src[i] = float64(i)*1e-3 }; dst := make([]byte, 2<<20); b.SetBytes(2<<20); for i := 0; i < b.N; i++ { Encode(F16, dst, src) } }
func BenchmarkEncodeBF16(b *testing.B) { src := make([]float64, 1<<20); for i := range src { src[i] = float64(i)*1e-3 }; dst := make([]byte, 2<<20); b.SetBytes(2<<20); for i := 0; i < b.N; i++ { Encode(BF16, dst, src) } }
