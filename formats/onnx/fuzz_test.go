package onnx

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode and, for what decodes, to
// everything that walks a model: Validate, Targets, Encode and the tensor
// decoders. None may panic or allocate beyond what the input holds.
// Seeds: a hand-made model with every weight pattern and a sample of the
// ONNX backend corpus (when installed).
func FuzzDecode(f *testing.F) {
	if b, err := linearsModel().Encode(); err == nil {
		f.Add(b)
	}
	if exists(corpusDir) {
		var models []string
		filepath.WalkDir(corpusDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && d.Name() == "model.onnx" {
				models = append(models, p)
			}
			return nil
		})
		for i := 0; i < len(models); i += 25 {
			if b, err := os.ReadFile(models[i]); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		_ = Validate(m)
		if ts, err := Targets(m); err == nil {
			for _, tg := range ts {
				m.WeightOf(tg)
			}
		}
		eachTensor(m.Proto, func(r tensorRef) error {
			if IsFloat(r.t.GetDataType()) {
				m.Float32s(r.t)
			} else {
				m.RawBytes(r.t)
			}
			return nil
		})
		if _, err := m.Encode(); err != nil {
			t.Fatalf("Encode of a decoded model: %v", err)
		}
	})
}
