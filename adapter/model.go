// Package adapter owns the SORSA adapter artefact — factors plus config, in
// an adapter folder — and the operations that produce and consume it: split
// a model into residual + adapter, merge them back, verify a split, export a
// PEFT LoRA adapter.
//
// It wires the format packages (formats/...) to the linear algebra
// (surgery); neither of those imports it.
package adapter

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// Tensor describes one stored tensor of a model, whatever its format.
type Tensor struct {
	Name  string
	File  string // file of a multi-file model holding it (relative); "" for a single file
	DType string // the format's own type name: F32, BF16, Q4_0, FLOAT16 …
	Shape []int64
	Bytes int64

	// Out and In are the canonical matrix dimensions (PyTorch's
	// nn.Linear.weight, out × in) of a weight split can decode; both 0
	// otherwise.
	Out, In int
	// Transposed reports a weight stored [in, out] (GPT-2 Conv1D, ONNX MatMul).
	Transposed bool
	// Reason says why a 2-D tensor cannot be targeted ("" when it can).
	Reason string
	// Readers names the nodes that read a weight, where the format has a
	// graph (ONNX): "Gemm If_0_then/Gemm_3", "MatMul /mlp/MatMul via Transpose".
	Readers []string
}

// Matrix reports whether split can decode t as a weight matrix.
func (t Tensor) Matrix() bool { return t.Out > 0 && t.In > 0 && t.Reason == "" }

// model is what split, merge and verify need from a format: the tensor
// list, decoding a weight to its canonical matrix and encoding one back in
// the stored type and orientation. Writing a whole model is format-specific
// (see rewrite).
type model interface {
	Format() string
	Path() string
	Tensors() []Tensor
	// Decode reads t as a canonical out × in float32 matrix.
	Decode(t Tensor) (*surgery.Matrix, error)
	// Raw reads t's stored bytes.
	Raw(t Tensor) ([]byte, error)
	// Encode rounds canonical out × in values once to dtype (t.DType when
	// empty) in t's stored orientation.
	Encode(t Tensor, dtype string, canon []float64) ([]byte, error)
	Close() error
}

// Presets are named target patterns for -t.
var Presets = map[string]string{
	// The seven projections of Llama-family models, in Hugging Face and in
	// llama.cpp naming.
	"llama": `(^|\.)(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$`,
	// Attention projections only.
	"attention": `(^|\.)(q_proj|k_proj|v_proj|o_proj|attn_q|attn_k|attn_v|attn_output)\.weight$`,
	// MLP projections only.
	"mlp": `(^|\.)(gate_proj|up_proj|down_proj|ffn_gate|ffn_up|ffn_down)\.weight$`,
}

// excluded matches weights left out by default: embeddings, output heads, norms.
var excluded = regexp.MustCompile(`(?i)(embed|wte|wpe|token_embd|lm_head|(^|\.)output\.weight$|norm|(^|\.)ln_)`)

// CompilePatterns turns -t values (presets or regular expressions) into
// matchers.
func CompilePatterns(pats []string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, p := range pats {
		if s, ok := Presets[p]; ok {
			p = s
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("bad target pattern %q: %w", p, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// SelectTargets returns the tensors split will decompose: those matching any
// pattern, or by default every decodable weight matrix whose name ends in
// ".weight" except embeddings, output heads and norms. A tensor a pattern
// names that cannot be decoded is an error, so a user's -t is never silently
// ignored.
func SelectTargets(ts []Tensor, pats []*regexp.Regexp) ([]Tensor, error) {
	var out []Tensor
	for _, t := range ts {
		if len(pats) == 0 {
			if t.Matrix() && strings.HasSuffix(t.Name, ".weight") && !excluded.MatchString(t.Name) {
				out = append(out, t)
			}
			continue
		}
		for _, re := range pats {
			if !re.MatchString(t.Name) {
				continue
			}
			if !t.Matrix() {
				if t.Reason != "" {
					return nil, fmt.Errorf("tensor %q matches %q but cannot be targeted: %s", t.Name, re, t.Reason)
				}
				break // a 1-D tensor such as a bias under the same prefix: not a weight
			}
			out = append(out, t)
			break
		}
	}
	return out, nil
}
