package adapter

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// BenchmarkMergeMatrix measures merging one Llama-2-7B-shaped F16 or BF16 weight at
// rank 128, from its stored bytes to the merged bytes (reading from the
// page cache, no output file): the tiled path the merge command takes, and
// the block-of-rows path it falls back to for packed types, for
// comparison. MB/s counts the stored bytes.
func BenchmarkMergeMatrix(b *testing.B) {
	for _, dt := range []string{"F16", "BF16"} {
		for _, sz := range [][2]int64{{4096, 4096}, {11008, 4096}} {
			path := filepath.Join(b.TempDir(), "m.safetensors")
			writeFixture(b, path, []fixTensor{{name: "w.weight", shape: sz[:], dtype: dt}}, 1, 1)
			m, err := openModel(path)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			tn := m.Tensors()[0]
			rng := rand.New(rand.NewPCG(1, 2))
			const r = 128
			f := &surgery.Factors{A: randMatrix(rng, r, tn.In), S: randMatrix(rng, 1, r).Data, B: randMatrix(rng, tn.Out, r)}
			paths := []struct {
				name string
				m    model
			}{{"tiled", m}}
			if dt == "F16" {
				paths = append(paths, struct {
					name string
					m    model
				}{"blocks", blocksOnly{m}})
			}
			for _, c := range paths {
				b.Run(fmt.Sprintf("%s/%dx%d/r=%d/%s", dt, tn.Out, tn.In, r, c.name), func(b *testing.B) {
					b.SetBytes(tn.Bytes)
					for b.Loop() {
						if _, err := mergedBytes(c.m, tn, "", f, 1, nil); err != nil {
							b.Fatal(err)
						}
					}
					flops := 2 * float64(tn.Out) * float64(tn.In) * r
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkChecksum compares the two residual checks over 64 MiB: sha256
// (what verify checks) and CRC-32C (what merge checks).
func BenchmarkChecksum(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, c := range []struct {
		name string
		h    func() hash.Hash
	}{{"sha256", sha256.New}, {"crc32c", func() hash.Hash { return crc32.New(castagnoli) }}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				h := c.h()
				h.Write(data)
				h.Sum(nil)
			}
		})
	}
}
