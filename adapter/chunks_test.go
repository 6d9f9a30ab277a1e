package adapter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
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

// TestMerge16SpecialValues: merging an F16 or BF16 weight into its own
// type (the fused path, surgery.Principal.AddBlock16) gives the block
// path's bytes when the stored values include NaNs with payloads,
// infinities, subnormals, signed zeros and the largest finite values, and
// sums overflow.
func TestMerge16SpecialValues(t *testing.T) {
	const rows, cols = 101, 264
	for _, c := range []struct {
		dt       string
		kind     dtype.Kind
		specials []uint16
		big      float32
	}{
		{"F16", dtype.F16, []uint16{0x7c00, 0xfc00, 0x7c01, 0x7dff, 0xfe00, 0x7e55, 0x0001, 0x83ff, 0x0000, 0x8000, 0x7bff, 0xfbff, 0x0400}, 3e4},
		{"BF16", dtype.BF16, []uint16{0x7f80, 0xff80, 0x7f81, 0x7fbf, 0xffc0, 0x7fd5, 0x0001, 0x807f, 0x0000, 0x8000, 0x7f7f, 0xff7f, 0x0080}, 1e38},
	} {
		t.Run(c.dt, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(8, 9))
			raw := make([]byte, 2*rows*cols)
			var one [2]byte
			for i := 0; i < rows*cols; i++ {
				dtype.Encode(c.kind, one[:], []float64{rng.NormFloat64()})
				h := binary.LittleEndian.Uint16(one[:])
				if rng.IntN(50) == 0 {
					h = c.specials[rng.IntN(len(c.specials))]
				}
				binary.LittleEndian.PutUint16(raw[2*i:], h)
			}
			path := filepath.Join(t.TempDir(), "m.safetensors")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := safetensors.NewWriter(f, []safetensors.TensorInfo{{Name: "w.weight", DType: safetensors.DType(c.dt), Shape: []int64{rows, cols}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteTensor("w.weight", raw); err != nil {
				t.Fatal(err)
			}
			if err := errors.Join(w.Close(), f.Close()); err != nil {
				t.Fatal(err)
			}
			m, err := openModel(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tn := m.Tensors()[0]
			const r = 9
			fs := &surgery.Factors{A: randMatrix(rng, r, cols), S: randMatrix(rng, 1, r).Data, B: randMatrix(rng, rows, r)}
			fs.S[0] = c.big // sums near the top of the type overflow
			got, err := mergedBytes(m, tn, "", fs, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := mergedBytes(blocksOnly{m}, tn, "", fs, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(got); i += 2 {
				if got[i] != want[i] || got[i+1] != want[i+1] {
					t.Fatalf("element %d: %#04x, want %#04x", i/2, binary.LittleEndian.Uint16(got[i:]), binary.LittleEndian.Uint16(want[i:]))
				}
			}
			var nan, inf int
			for i := 0; i < len(got); i += 2 {
				v := dtypeValue(c.kind, got[i:i+2])
				switch {
				case math.IsNaN(v):
					nan++
				case math.IsInf(v, 0):
					inf++
				}
			}
			if nan == 0 || inf == 0 {
				t.Fatalf("%d NaNs and %d infinities in the result: the test lost its special values", nan, inf)
			}
		})
	}
}

func dtypeValue(k dtype.Kind, b []byte) float64 {
	v := make([]float64, 1)
	dtype.DecodeFloat64(k, v, b)
	return v[0]
}
