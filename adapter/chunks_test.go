package adapter

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// blocksOnly hides a model's tile codec and row decoder, so that merge and
// residual take the block-of-rows path from the decoded weight.
type blocksOnly struct{ model }

// TestTiledMatchesBlocks: the tiled merge and residual (decode, add and
// encode tile by tile, on all cores) give the same bytes as the plain path
// (decode the weight, add the product in blocks of rows, encode), for every
// pair of element types and for shapes with partial tiles and strips.
func TestTiledMatchesBlocks(t *testing.T) {
	shapes := [][2]int64{{101, 300}, {7, 5}, {50, 513}, {96, 512}, {1, 1}}
	for _, in := range []string{"F32", "F16", "BF16"} {
		var ts []fixTensor
		for i, s := range shapes {
			ts = append(ts, fixTensor{name: fmt.Sprintf("w%d.weight", i), shape: s[:], dtype: in})
		}
		path := filepath.Join(t.TempDir(), "m.safetensors")
		writeFixture(t, path, ts, 1, 3)
		m, err := openModel(path)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		rng := rand.New(rand.NewPCG(4, 5))
		for _, tn := range m.Tensors() {
			r := min(tn.Out, tn.In, 17)
			f := &surgery.Factors{A: randMatrix(rng, r, tn.In), S: randMatrix(rng, 1, r).Data, B: randMatrix(rng, tn.Out, r)}
			for _, out := range []string{"", "F32", "F16", "BF16"} {
				got, err := mergedBytes(m, tn, out, f, 0.5, nil)
				if err != nil {
					t.Fatal(err)
				}
				want, err := mergedBytes(blocksOnly{m}, tn, out, f, 0.5, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) || len(got) == 0 {
					t.Errorf("%s %s → %q: tiled merge differs from the block path", in, tn.Name, out)
				}
				w, err := m.Decode(tn)
				if err != nil {
					t.Fatal(err)
				}
				got, err = residualBytes(m, tn, out, w, f, 0.5)
				if err != nil {
					t.Fatal(err)
				}
				want, err = residualBytes(blocksOnly{m}, tn, out, w, f, 0.5)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) || len(got) == 0 {
					t.Errorf("%s %s → %q: tiled residual differs from the block path", in, tn.Name, out)
				}
			}
		}
	}
}

func randMatrix(rng *rand.Rand, rows, cols int) *surgery.Matrix {
	m := surgery.NewMatrix(rows, cols)
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64())
	}
	return m
}
