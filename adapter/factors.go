package adapter

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// factorWriter streams SORSA factors into adapter_model.safetensors (and
// the identical adapter_init.safetensors) in target order.
type factorWriter struct {
	sw *safetensors.Writer
}

func newFactorWriter(tx *outputs, dir string, targets []Tensor, rank int, initial bool) (*factorWriter, error) {
	var infos []safetensors.TensorInfo
	for _, t := range targets {
		mod := ModuleName(t.Name)
		infos = append(infos,
			safetensors.TensorInfo{Name: NameA(mod), DType: "F32", Shape: []int64{int64(rank), int64(t.In)}},
			safetensors.TensorInfo{Name: NameS(mod), DType: "F32", Shape: []int64{int64(rank)}},
			safetensors.TensorInfo{Name: NameB(mod), DType: "F32", Shape: []int64{int64(t.Out), int64(rank)}},
		)
	}
	f, err := tx.create(filepath.Join(dir, ModelName))
	if err != nil {
		return nil, err
	}
	var w io.Writer = f
	if initial {
		g, err := tx.create(filepath.Join(dir, InitialModelName))
		if err != nil {
			return nil, err
		}
		w = io.MultiWriter(f, g)
	}
	sw, err := safetensors.NewWriter(w, infos, map[string]string{"format": "pt", "method": "sorsa"})
	if err != nil {
		return nil, err
	}
	return &factorWriter{sw: sw}, nil
}

func (w *factorWriter) add(module string, f *surgery.Factors) error {
	for _, p := range []struct {
		name string
		data []float32
	}{{NameA(module), f.A.Data}, {NameS(module), f.S}, {NameB(module), f.B.Data}} {
		if err := w.sw.WriteTensor(p.name, f32Bytes(p.data)); err != nil {
			return err
		}
	}
	return nil
}

func (w *factorWriter) close() error { return w.sw.Close() }

func f32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// readF32 reads a float32 tensor of the given shape from an adapter file.
func readF32(f *safetensors.File, path, name string, shape ...int64) ([]float32, error) {
	ti, ok := f.Lookup(name)
	if !ok {
		return nil, inputErr("%s: tensor %q is missing", path, name)
	}
	if len(ti.Shape) != len(shape) {
		return nil, inputErr("%s: tensor %q has shape %v, want %v", path, name, ti.Shape, shape)
	}
	for i := range shape {
		if shape[i] >= 0 && ti.Shape[i] != shape[i] {
			return nil, inputErr("%s: tensor %q has shape %v, want %v", path, name, ti.Shape, shape)
		}
	}
	k, ok := ti.DType.Kind()
	if !ok {
		return nil, inputErr("%s: tensor %q has dtype %s, want a float type", path, name, ti.DType)
	}
	raw, err := f.ReadTensor(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]float32, len(raw)/k.Size())
	dtype.Decode(k, out, raw)
	return out, nil
}

// readFactors reads one module's factors for a weight of out × in.
func readFactors(f *safetensors.File, path, module string, rank, out, in int) (*surgery.Factors, error) {
	a, err := readF32(f, path, NameA(module), int64(rank), int64(in))
	if err != nil {
		return nil, err
	}
	s, err := readF32(f, path, NameS(module), int64(rank))
	if err != nil {
		return nil, err
	}
	b, err := readF32(f, path, NameB(module), int64(out), int64(rank))
	if err != nil {
		return nil, err
	}
	return &surgery.Factors{
		A: &surgery.Matrix{Rows: rank, Cols: in, Data: a},
		S: s,
		B: &surgery.Matrix{Rows: out, Cols: rank, Data: b},
	}, nil
}

// peftWriter writes OUT/peft/: a standard PEFT LoRA adapter holding the same
// principal subspace (lora_A = diag(√S)·A, lora_B = B·diag(√S)), so stock
// PEFT can train it on the residual model, PiSSA-style.
type peftWriter struct {
	tx          *outputs
	dir         string
	sw          *safetensors.Writer
	rank        int
	modules     []string
	fanInFanOut bool
}

// PEFTPrefix is the prefix PEFT gives module names in adapter files.
const PEFTPrefix = "base_model.model."

func newPEFTWriter(tx *outputs, dir string, targets []Tensor, rank int) (*peftWriter, error) {
	pw := &peftWriter{tx: tx, dir: dir, rank: rank}
	var infos []safetensors.TensorInfo
	for _, t := range targets {
		mod := ModuleName(t.Name)
		pw.modules = append(pw.modules, mod)
		pw.fanInFanOut = pw.fanInFanOut || t.Transposed
		infos = append(infos,
			safetensors.TensorInfo{Name: PEFTPrefix + mod + ".lora_A.weight", DType: "F32", Shape: []int64{int64(rank), int64(t.In)}},
			safetensors.TensorInfo{Name: PEFTPrefix + mod + ".lora_B.weight", DType: "F32", Shape: []int64{int64(t.Out), int64(rank)}},
		)
	}
	f, err := tx.create(filepath.Join(dir, ModelName))
	if err != nil {
		return nil, err
	}
	if pw.sw, err = safetensors.NewWriter(f, infos, map[string]string{"format": "pt"}); err != nil {
		return nil, err
	}
	return pw, nil
}

func (w *peftWriter) add(module string, f *surgery.Factors) error {
	r := f.Rank()
	a := make([]float32, len(f.A.Data))
	b := make([]float32, len(f.B.Data))
	for k := 0; k < r; k++ {
		sq := float32(math.Sqrt(math.Max(0, float64(f.S[k]))))
		for j := 0; j < f.A.Cols; j++ {
			a[k*f.A.Cols+j] = f.A.Data[k*f.A.Cols+j] * sq
		}
		for i := 0; i < f.B.Rows; i++ {
			b[i*r+k] = f.B.Data[i*r+k] * sq
		}
	}
	if err := w.sw.WriteTensor(PEFTPrefix+module+".lora_A.weight", f32Bytes(a)); err != nil {
		return err
	}
	return w.sw.WriteTensor(PEFTPrefix+module+".lora_B.weight", f32Bytes(b))
}

// PEFTConfig is the subset of PEFT's LoraConfig we write and read.
type PEFTConfig struct {
	PEFTType            string         `json:"peft_type"`
	TaskType            *string        `json:"task_type"`
	R                   int            `json:"r"`
	LoraAlpha           float64        `json:"lora_alpha"`
	LoraDropout         float64        `json:"lora_dropout"`
	TargetModules       []string       `json:"target_modules"`
	Bias                string         `json:"bias"`
	FanInFanOut         bool           `json:"fan_in_fan_out"`
	UseRSLoRA           bool           `json:"use_rslora"`
	UseDoRA             bool           `json:"use_dora"`
	InitLoraWeights     any            `json:"init_lora_weights"`
	InferenceMode       bool           `json:"inference_mode"`
	BaseModelNameOrPath *string        `json:"base_model_name_or_path"`
	RankPattern         map[string]int `json:"rank_pattern"`
	AlphaPattern        map[string]any `json:"alpha_pattern"`
}

func (w *peftWriter) close(scale float64) error {
	if err := w.sw.Close(); err != nil {
		return err
	}
	r := w.rank
	mods := append([]string(nil), w.modules...)
	sort.Strings(mods)
	cfg := PEFTConfig{
		PEFTType: "LORA", R: r, LoraAlpha: scale * float64(r), TargetModules: mods, Bias: "none",
		FanInFanOut: w.fanInFanOut, InitLoraWeights: true, InferenceMode: false,
		RankPattern: map[string]int{}, AlphaPattern: map[string]any{},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.tx.writeFile(filepath.Join(w.dir, ConfigName), append(b, '\n'))
	return err
}

// peftModule returns the module of a PEFT adapter tensor name and which
// factor it is ("A" or "B"), accepting names with or without an adapter
// name (lora_A.default.weight).
func peftModule(name string) (module, part string, ok bool) {
	n := strings.TrimPrefix(name, PEFTPrefix)
	for _, p := range []string{"A", "B"} {
		for _, suf := range []string{".lora_" + p + ".weight", ".lora_" + p + ".default.weight"} {
			if strings.HasSuffix(n, suf) {
				return strings.TrimSuffix(n, suf), p, true
			}
		}
	}
	return "", "", false
}
