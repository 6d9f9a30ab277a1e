package safetensors

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIndexRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, IndexFileName)
	// As transformers writes it: sorted keys, two-space indent.
	src := `{
  "metadata": {
    "total_size": 13476839424
  },
  "weight_map": {
    "lm_head.weight": "model-00003-of-00003.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00003.safetensors",
    "model.layers.0.mlp.down_proj.weight": "model-00001-of-00003.safetensors",
    "model.layers.31.mlp.up_proj.weight": "model-00002-of-00003.safetensors"
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}
	if got := ix.Shards(); !slices.Equal(got, want) {
		t.Errorf("Shards = %q, want %q", got, want)
	}
	if n, ok := ix.Metadata["total_size"].(json.Number); !ok || n.String() != "13476839424" {
		t.Errorf("total_size = %#v", ix.Metadata["total_size"])
	}
	out := filepath.Join(dir, "again.json")
	if err := WriteIndex(out, ix); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != src {
		t.Errorf("rewritten index:\n%s\nwant:\n%s", got, src)
	}
}

func TestIndexRejects(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"not JSON", `{"weight_map":`, "unexpected EOF"},
		{"no weight_map", `{"metadata":{}}`, "weight_map"},
		{"weight_map not strings", `{"weight_map":{"a":1}}`, "cannot unmarshal"},
		{"escaping shard", `{"weight_map":{"a":"../x.safetensors"}}`, "local"},
		{"absolute shard", `{"weight_map":{"a":"/etc/passwd"}}`, "local"},
		{"empty shard", `{"weight_map":{"a":""}}`, "local"},
		{"trailing data", `{"weight_map":{}} {}`, "trailing"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "ix.json")
			os.WriteFile(path, []byte(tc.src), 0o644)
			_, err := ReadIndex(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("ReadIndex error %v, want one naming the file and %q", err, tc.want)
			}
		})
	}
	if err := WriteIndex(filepath.Join(dir, "w.json"), &Index{WeightMap: map[string]string{"a": "../b"}}); err == nil {
		t.Error("WriteIndex accepted an escaping shard path")
	}
	if _, err := ReadIndex(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestIndexEmptyWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.json")
	if err := WriteIndex(path, &Index{}); err != nil {
		t.Fatal(err)
	}
	ix, err := ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.WeightMap) != 0 || len(ix.Shards()) != 0 {
		t.Errorf("index %+v", ix)
	}
}
