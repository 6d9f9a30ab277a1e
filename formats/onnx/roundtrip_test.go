package onnx

import (
	"bytes"
	"os"
	"testing"
)

// Every corpus model decodes and re-encodes to the very same bytes: the
// schema covers every field they use and packs repeated numbers exactly as
// the C++ writer does.
func TestCorpusByteIdentical(t *testing.T) {
	models := corpusModels(t)
	diff := 0
	for _, p := range models {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(data)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		out, err := m.Encode()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if !bytes.Equal(out, data) {
			diff++
			t.Errorf("%s: re-encoded bytes differ (%d vs %d bytes)", p, len(out), len(data))
		}
	}
	t.Logf("%d corpus models, %d not byte-identical", len(models), diff)
}
