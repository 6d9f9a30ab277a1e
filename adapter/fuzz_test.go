package adapter

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the adapter config parser: it
// must return a config that passes Validate or an error, never panic.
func FuzzParseConfig(f *testing.F) {
	dir := f.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(f, src, llamaTensors("F16", 1, 32, 48), 1, 1)
	if _, err := Split(context.Background(), src, filepath.Join(dir, "out"), SplitOptions{Rank: 4, PEFT: true}); err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{"out/adapter/" + ConfigName, "out/peft/" + ConfigName} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"format":"sorsa-convert/adapter","version":1,"rank":4,"scale":1,"targets":[{"module":"m","tensor":"m.weight","shape":[2,2],"orientation":"out_in"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig("fuzz.json", b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config Validate rejects: %v", err)
		}
	})
}
