package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// IndexFileName is the conventional name of a sharded checkpoint's index.
const IndexFileName = "model.safetensors.index.json"

// Index is a sharded checkpoint's index (model.safetensors.index.json): which
// shard file, relative to the index's folder, holds each tensor.
type Index struct {
	// Metadata is the index's "metadata" object, typically
	// {"total_size": <bytes>}; numbers are json.Number so large sizes stay
	// exact.
	Metadata map[string]any
	// WeightMap maps each tensor name to the shard file that holds it.
	WeightMap map[string]string
}

type indexJSON struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// ReadIndex reads and checks the index file at path. Shard names must be
// local paths (relative, without ".." escaping the index's folder).
func ReadIndex(path string) (*Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	ix, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("safetensors: index %s: %w", path, err)
	}
	return ix, nil
}

func parseIndex(data []byte) (*Index, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw indexJSON
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	if raw.WeightMap == nil {
		return nil, errors.New(`no "weight_map" object`)
	}
	ix := &Index{Metadata: raw.Metadata, WeightMap: raw.WeightMap}
	if err := ix.check(); err != nil {
		return nil, err
	}
	return ix, nil
}

func (ix *Index) check() error {
	for name, shard := range ix.WeightMap {
		if shard == "" || !filepath.IsLocal(filepath.FromSlash(shard)) {
			return fmt.Errorf("tensor %q: shard %q is not a local relative path", name, shard)
		}
	}
	return nil
}

// Shards returns the shard file names, sorted and without duplicates.
func (ix *Index) Shards() []string {
	var out []string
	for _, s := range ix.WeightMap {
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WriteIndex writes ix to path as JSON indented by two spaces with sorted
// keys, the way Hugging Face's save_pretrained does.
func WriteIndex(path string, ix *Index) error {
	if err := ix.check(); err != nil {
		return fmt.Errorf("safetensors: index %s: %w", path, err)
	}
	raw := indexJSON{Metadata: ix.Metadata, WeightMap: ix.WeightMap}
	if raw.Metadata == nil {
		raw.Metadata = map[string]any{}
	}
	if raw.WeightMap == nil {
		raw.WeightMap = map[string]string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(raw); err != nil {
		return fmt.Errorf("safetensors: index %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
