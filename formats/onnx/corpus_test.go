package onnx

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// corpusInputs reads test_data_set_0/input_N.pb of a corpus model as
// ort_run.mjs inputs; ok is false when some input is not a tensor ORT's
// JavaScript API takes.
func corpusInputs(t *testing.T, m *Model, dir string) (map[string]ortTensor, bool) {
	g := m.Proto.GetGraph()
	inits := map[string]bool{}
	for _, x := range g.GetInitializer() {
		inits[x.GetName()] = true
	}
	var names []string
	for _, in := range g.GetInput() {
		tt := in.GetType().GetTensorType()
		if tt == nil {
			return nil, false // sequences, maps, optionals
		}
		if _, ok := ortDTypes[tt.GetElemType()]; !ok {
			return nil, false
		}
		if !inits[in.GetName()] {
			names = append(names, in.GetName())
		}
	}
	for _, out := range g.GetOutput() {
		tt := out.GetType().GetTensorType()
		if tt == nil {
			return nil, false
		}
		if _, ok := ortDTypes[tt.GetElemType()]; !ok {
			return nil, false
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "test_data_set_0", "input_*.pb"))
	sort.Slice(files, func(i, j int) bool { return pbIndex(files[i]) < pbIndex(files[j]) })
	inputs := map[string]ortTensor{}
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tp := &pb.TensorProto{}
		if err := proto.Unmarshal(data, tp); err != nil {
			return nil, false
		}
		name := tp.GetName()
		if name == "" && i < len(names) {
			name = names[i]
		}
		o, ok, err := toORT(tp)
		if err != nil || !ok {
			return nil, false
		}
		inputs[name] = o
	}
	return inputs, true
}

func countInitializers(m *Model) int {
	n := 0
	eachTensor(m.Proto, func(r tensorRef) error {
		if r.initializer {
			n++
		}
		return nil
	})
	return n
}

func pbIndex(path string) int {
	var n int
	fmt.Sscanf(strings.TrimSuffix(filepath.Base(path), ".pb"), "input_%d", &n)
	return n
}

// recodeFloats decodes every float tensor of m and encodes it back in place
// through the dtype codecs, as a weight rewrite does.
func recodeFloats(t *testing.T, m *Model) int {
	n := 0
	err := eachTensor(m.Proto, func(r tensorRef) error {
		if !IsFloat(r.t.GetDataType()) {
			return nil
		}
		v, err := m.Float64s(r.t)
		if err != nil {
			return err
		}
		n++
		return m.SetFloat64s(r.t, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The backend corpus through ONNX Runtime: each model as shipped, with every
// float tensor decoded and re-encoded, and with every initializer moved to
// an external data file, must give bit-identical outputs on the corpus's own
// inputs. The whole corpus takes a few seconds.
func TestCorpusORT(t *testing.T) {
	models := corpusModels(t)
	ort := newORT(t)
	tmp := t.TempDir()
	type entry struct {
		name  string
		first int // index of the original's job; recoded and external follow
	}
	var jobs []ortJob
	var entries []entry
	skipped, recodedDiffer, tried, withInit, recoded := 0, 0, 0, 0, 0
	for i := range models {
		tried++
		p := models[i]
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := Validate(m); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		inputs, ok := corpusInputs(t, m, filepath.Dir(p))
		if !ok {
			skipped++
			continue
		}
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Join(dir, "ext"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(filepath.Join(dir, "ext", "model.onnx"), m, &WriteOptions{ExternalThreshold: 1}); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if countInitializers(m) > 0 {
			withInit++
		}
		recoded += recodeFloats(t, m)
		if b, err := m.Encode(); err != nil {
			t.Fatal(err)
		} else if !bytes.Equal(b, orig) {
			recodedDiffer++
		}
		if err := WriteFile(filepath.Join(dir, "recoded.onnx"), m, nil); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		entries = append(entries, entry{strings.TrimPrefix(filepath.Dir(p), corpusDir+"/"), len(jobs)})
		jobs = append(jobs,
			ortJob{Model: p, Inputs: inputs},
			ortJob{Model: filepath.Join(dir, "recoded.onnx"), Inputs: inputs},
			ortJob{Model: filepath.Join(dir, "ext", "model.onnx"), Inputs: inputs})
	}
	res := ort.run(t, jobs)
	ran, same := 0, 0
	for _, e := range entries {
		o, rec, ext := res[e.first], res[e.first+1], res[e.first+2]
		if o.Error != "" {
			if testing.Verbose() {
				t.Logf("ORT cannot run %s: %.150s", e.name, o.Error)
			}
			continue
		}
		ran++
		ok := true
		for _, v := range []struct {
			what string
			r    ortResult
		}{{"recoded", rec}, {"external", ext}} {
			if v.r.Error != "" {
				t.Errorf("%s: %s model fails in ORT: %s", e.name, v.what, v.r.Error)
				ok = false
			} else if eq, why := sameOutputs(o.Outputs, v.r.Outputs); !eq {
				t.Errorf("%s: %s model: %s", e.name, v.what, why)
				ok = false
			}
		}
		if ok {
			same++
		}
	}
	t.Logf("corpus: %d models, %d skipped (inputs ORT's JS API cannot take), %d ran in ORT, %d bit-identical (recoded and external); "+
		"%d models with initializers (all moved to external data), %d float tensors recoded, recoded bytes differ from the file for %d",
		tried, skipped, ran, same, withInit, recoded, recodedDiffer)
}
