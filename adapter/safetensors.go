package adapter

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// IndexName is the index of a sharded Hugging Face checkpoint.
const IndexName = safetensors.IndexFileName

// stModel is a safetensors checkpoint: one file, or a folder of shards with
// model.safetensors.index.json.
type stModel struct {
	path   string // the file, or the checkpoint folder
	dir    string // folder holding the shards
	index  *safetensors.Index
	shards []string // shard file names, in index order; one entry for a single file
	files  map[string]*safetensors.File
	inputs []*inputFile // the shards' files, closed by Close
	ts     []Tensor
	// conv1d lists tensors stored [in, out] (GPT-2 style Conv1D).
	conv1d map[string]bool
}

// openSafetensors opens a .safetensors file or a checkpoint folder.
func openSafetensors(path string) (*stModel, error) {
	m := &stModel{path: path, files: map[string]*safetensors.File{}}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		m.dir = path
		idx := filepath.Join(path, IndexName)
		if _, err := os.Stat(idx); err == nil {
			ix, err := safetensors.ReadIndex(idx)
			if err != nil {
				return nil, err
			}
			m.index = ix
			m.shards = ix.Shards()
		} else if _, err := os.Stat(filepath.Join(path, "model.safetensors")); err == nil {
			m.shards = []string{"model.safetensors"}
		} else {
			return nil, fmt.Errorf("%s: no %s or model.safetensors in this folder", path, IndexName)
		}
	} else {
		m.dir = filepath.Dir(path)
		m.shards = []string{filepath.Base(path)}
	}
	m.conv1d = conv1dWeights(m.dir)
	for _, s := range m.shards {
		p := filepath.Join(m.dir, s)
		in, err := openInput(p)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("safetensors: %w", err)
		}
		m.inputs = append(m.inputs, in)
		f, err := safetensors.NewReader(in, in.size)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		m.files[s] = f
		for _, ti := range f.Tensors() {
			if m.index != nil {
				if want, ok := m.index.WeightMap[ti.Name]; !ok || want != s {
					m.Close()
					return nil, fmt.Errorf("%s: tensor %q is in %s but the index maps it to %q", m.path, ti.Name, s, want)
				}
			}
			m.ts = append(m.ts, m.describe(s, ti))
		}
	}
	if m.index != nil {
		have := map[string]bool{}
		for _, t := range m.ts {
			have[t.Name] = true
		}
		var missing []string
		for name := range m.index.WeightMap {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			m.Close()
			return nil, fmt.Errorf("%s: index lists tensor %q but no shard holds it", m.path, missing[0])
		}
	}
	return m, nil
}

// conv1dWeights reads config.json beside a checkpoint: GPT-2 family models
// store their attention and MLP weights as Conv1D, [in, out].
func conv1dWeights(dir string) map[string]bool {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil
	}
	s := string(b)
	if strings.Contains(s, `"gpt2"`) || strings.Contains(s, `"GPT2LMHeadModel"`) {
		return map[string]bool{"c_attn": true, "c_proj": true, "c_fc": true}
	}
	return nil
}

func (m *stModel) describe(shard string, ti safetensors.TensorInfo) Tensor {
	t := Tensor{Name: ti.Name, DType: string(ti.DType), Shape: ti.Shape, Bytes: ti.Size}
	if len(m.shards) > 1 || m.index != nil {
		t.File = shard
	}
	if len(ti.Shape) != 2 {
		return t
	}
	if _, ok := ti.DType.Kind(); !ok {
		t.Reason = fmt.Sprintf("dtype %s is not a float type", ti.DType)
		return t
	}
	t.Out, t.In = int(ti.Shape[0]), int(ti.Shape[1])
	if m.conv1d != nil {
		parts := strings.Split(ti.Name, ".")
		if len(parts) >= 2 && m.conv1d[parts[len(parts)-2]] {
			t.Transposed = true
			t.Out, t.In = t.In, t.Out
		}
	}
	return t
}

func (m *stModel) Format() string    { return "safetensors" }
func (m *stModel) Path() string      { return m.path }
func (m *stModel) Tensors() []Tensor { return m.ts }
func (m *stModel) file(t Tensor) *safetensors.File {
	if t.File == "" {
		return m.files[m.shards[0]]
	}
	return m.files[t.File]
}

func (m *stModel) Close() error {
	for _, in := range m.inputs {
		in.Close()
	}
	m.inputs = nil
	return nil
}

func (m *stModel) Raw(t Tensor) ([]byte, error) {
	return m.file(t).ReadTensor(t.Name)
}

// copyRaw streams t's stored bytes unchanged into sw.
func (m *stModel) copyRaw(sw *safetensors.Writer, t Tensor) error {
	sec, err := m.file(t).Section(t.Name)
	if err != nil {
		return err
	}
	w, err := sw.Create(t.Name)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, readNoting(sec))
	return err
}

func (m *stModel) Decode(t Tensor) (*surgery.Matrix, error) {
	k, ok := safetensors.DType(t.DType).Kind()
	if !ok || len(t.Shape) != 2 {
		return nil, fmt.Errorf("tensor %q: %s %v is not a float matrix", t.Name, t.DType, t.Shape)
	}
	sec, err := m.file(t).Section(t.Name)
	if err != nil {
		return nil, err
	}
	w := surgery.NewMatrix(t.Out, t.In)
	err = withStored(sec, t.Bytes, func() ([]byte, error) { return m.Raw(t) }, func(raw []byte) error {
		if !t.Transposed {
			dtype.Decode(k, w.Data, raw)
			return nil
		}
		stored := make([]float32, len(w.Data))
		dtype.Decode(k, stored, raw)
		transposeInto(w.Data, stored, t.In, t.Out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (m *stModel) Encode(t Tensor, dt string, canon []float64) ([]byte, error) {
	if dt == "" {
		dt = t.DType
	}
	k, ok := safetensors.DType(dt).Kind()
	if !ok {
		return nil, fmt.Errorf("tensor %q: cannot encode as %s", t.Name, dt)
	}
	vals := canon
	if t.Transposed {
		vals = make([]float64, len(canon))
		transposeInto(vals, canon, t.Out, t.In)
	}
	out := make([]byte, len(vals)*k.Size())
	dtype.Encode(k, out, vals)
	return out, nil
}

// transposeInto writes the transpose of src (rows × cols) into dst (cols × rows).
func transposeInto[T any](dst, src []T, rows, cols int) {
	const bs = 64
	for i0 := 0; i0 < rows; i0 += bs {
		for j0 := 0; j0 < cols; j0 += bs {
			for i := i0; i < min(i0+bs, rows); i++ {
				for j := j0; j < min(j0+bs, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}

// rewriteShard writes one shard of m to w with each tensor in repl replaced
// by the bytes the function returns (in dtype newType[name] when set).
// Tensors not replaced are copied byte for byte.
func (m *stModel) rewriteShard(w io.Writer, shard string, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) error {
	f := m.files[shard]
	infos := f.Tensors()
	out := make([]safetensors.TensorInfo, len(infos))
	for i, ti := range infos {
		out[i] = safetensors.TensorInfo{Name: ti.Name, DType: ti.DType, Shape: ti.Shape}
		if nt, ok := newType[ti.Name]; ok {
			out[i].DType = safetensors.DType(nt)
		}
	}
	sw, err := safetensors.NewWriter(w, out, f.Metadata())
	if err != nil {
		return err
	}
	byName := map[string]Tensor{}
	for _, t := range m.ts {
		if t.File == "" || t.File == shard {
			byName[t.Name] = t
		}
	}
	for _, ti := range infos {
		t := byName[ti.Name]
		data, ok, err := repl(t)
		if err != nil {
			return err
		}
		if ok {
			err = sw.WriteTensor(ti.Name, data)
		} else {
			err = m.copyRaw(sw, t)
		}
		if err != nil {
			return fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
	}
	return sw.Close()
}

func (m *stModel) elementKinds(t Tensor, dt string) (in, out dtype.Kind, ok bool) {
	if dt == "" {
		dt = t.DType
	}
	in, ok1 := safetensors.DType(t.DType).Kind()
	out, ok2 := safetensors.DType(dt).Kind()
	return in, out, ok1 && ok2 && !t.Transposed && len(t.Shape) == 2
}

func (m *stModel) section(t Tensor) (io.ReaderAt, error) {
	return m.file(t).Section(t.Name)
}
