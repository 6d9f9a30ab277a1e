package adapter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// File names inside an adapter folder.
const (
	ConfigName       = "adapter_config.json"
	ModelName        = "adapter_model.safetensors"
	InitialModelName = "adapter_init.safetensors"
)

// FormatName identifies our adapter_config.json among other adapter configs
// (a PEFT config has "peft_type" instead).
const FormatName = "sorsa-convert/adapter"

// Suggested training hyper-parameters from the SORSA paper (Llama-2-7B,
// r = 128): orthonormal regularizer weight γ and peak learning rate.
const (
	SuggestedGamma        = 4e-4
	SuggestedLearningRate = 3e-5
)

// Config is adapter_config.json: everything needed to merge the adapter
// back, to check it belongs to a residual, and to train it.
type Config struct {
	Format  string   `json:"format"`  // FormatName
	Version int      `json:"version"` // 1
	Method  string   `json:"method"`  // "sorsa"
	Rank    int      `json:"rank"`
	Alpha   *float64 `json:"alpha"` // nil: scale 1, as SORSA's default
	Scale   float64  `json:"scale"` // alpha/rank, or 1

	SVD SVDConfig `json:"svd"`

	// Source and Residual record the files split read and wrote, with their
	// sha256, so merge can refuse a residual the adapter was not made from.
	Source   FileSet `json:"source"`
	Residual FileSet `json:"residual"`

	Targets []Target `json:"targets"`

	Training Training `json:"training"`

	// TargetModules lists the module names, as PEFT's target_modules does.
	TargetModules []string `json:"target_modules"`
}

// SVDConfig records how the factors were computed.
type SVDConfig struct {
	Algorithm  string `json:"algorithm"` // as asked: auto, full, randomized
	NIter      int    `json:"niter"`
	Oversample int    `json:"oversample"`
	Seed       uint64 `json:"seed"`
	// Tol is exact's convergence tolerance on the top-r singular values.
	Tol float64 `json:"tol,omitempty"`
}

// FileSet names the files of one model and their checksums.
type FileSet struct {
	Format string     `json:"format"` // safetensors, gguf, onnx
	Files  []FileHash `json:"files"`
}

// FileHash is one file and its checksums, hex encoded. Path is relative to
// the model's own folder (a single-file model: its base name).
//
// SHA256 is the file's identity for people and for verify. CRC32C
// (Castagnoli, recorded for the residual's files) is what merge checks: it
// runs about three times as fast as sha256 (BenchmarkChecksum), which on a
// 13 GiB residual is seconds of a core, and an accidental mix-up of files
// still shows (a different file matches with probability about 2⁻³²).
// Adapters written before it existed are checked by sha256.
type FileHash struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	CRC32C string `json:"crc32c,omitempty"`
}

// Target records one split weight.
type Target struct {
	Module      string  `json:"module"` // adapter tensor prefix: <module>.sorsa_A …
	Tensor      string  `json:"tensor"` // source tensor name
	File        string  `json:"file,omitempty"`
	DType       string  `json:"dtype"`        // stored type in the source
	Shape       []int64 `json:"shape"`        // canonical [out, in]
	StoredShape []int64 `json:"stored_shape"` // as the format stores it
	Orientation string  `json:"orientation"`  // "out_in" (as stored) or "in_out" (stored transposed)
	// NonFinite marks a weight that held NaN/Inf and was passed through
	// untouched, with zero factors.
	NonFinite bool `json:"nonfinite,omitempty"`
}

// Training holds the suggested SORSA training settings.
type Training struct {
	Gamma        float64 `json:"gamma"`
	LearningRate float64 `json:"learning_rate"`
	Regularizer  string  `json:"regularizer"`
}

// Orientation values for Target.Orientation.
const (
	OutIn = "out_in"
	InOut = "in_out"
)

// ReadConfig reads and validates dir/adapter_config.json.
func ReadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, ConfigName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, b)
}

// ParseConfig decodes and validates an adapter config; path is only used in
// error messages.
func ParseConfig(path string, b []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: not a valid adapter config: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// ErrConfig marks an adapter config that is well-formed JSON but wrong.
var ErrConfig = errors.New("invalid adapter config")

// Validate checks the fields merge relies on.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if c.Format != FormatName {
		return bad("format is %q, want %q", c.Format, FormatName)
	}
	if c.Version != 1 {
		return bad("unsupported version %d", c.Version)
	}
	if c.Rank < 1 {
		return bad("rank %d < 1", c.Rank)
	}
	if c.Scale == 0 || math.IsNaN(c.Scale) || math.IsInf(c.Scale, 0) {
		return bad("scale %v", c.Scale)
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if t.Module == "" || t.Tensor == "" {
			return bad("target with empty module or tensor name")
		}
		if seen[t.Module] {
			return bad("module %q listed twice", t.Module)
		}
		seen[t.Module] = true
		if len(t.Shape) != 2 || t.Shape[0] < 1 || t.Shape[1] < 1 {
			return bad("module %q: shape %v is not a matrix", t.Module, t.Shape)
		}
		if int64(c.Rank) > min(t.Shape[0], t.Shape[1]) {
			return bad("module %q: rank %d exceeds min%v", t.Module, c.Rank, t.Shape)
		}
		if t.Orientation != OutIn && t.Orientation != InOut {
			return bad("module %q: orientation %q", t.Module, t.Orientation)
		}
	}
	return nil
}

// marshal encodes the config as indented JSON, as written to
// adapter_config.json.
func (c *Config) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ModuleName returns the adapter module name of a weight tensor: the name
// without a trailing ".weight".
func ModuleName(tensor string) string { return strings.TrimSuffix(tensor, ".weight") }

// Tensor names of a module's factors in adapter_model.safetensors.
func NameA(module string) string { return module + ".sorsa_A" }

// NameS returns the name of a module's singular values.
func NameS(module string) string { return module + ".sorsa_S" }

// NameB returns the name of a module's left factor.
func NameB(module string) string { return module + ".sorsa_B" }
