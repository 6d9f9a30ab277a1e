package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// repoRoot returns the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// modelPaths returns the real GGUF models in <repo root>/../shared/models.
func modelPaths(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "models")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if len(paths) == 0 {
		missing(t, "no GGUF models in "+dir)
	}
	return paths
}

// missing skips a test whose external input is absent, or fails it in CI.
func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (required when CI=true)")
	}
	t.Skip(why)
}

// raw builds GGUF bytes field by field, independently of Writer, so tests can
// describe valid and deliberately broken files.
type raw struct{ bytes.Buffer }

func (r *raw) u8(v uint8)   { r.WriteByte(v) }
func (r *raw) u16(v uint16) { binary.Write(&r.Buffer, binary.LittleEndian, v) }
func (r *raw) u32(v uint32) { binary.Write(&r.Buffer, binary.LittleEndian, v) }
func (r *raw) u64(v uint64) { binary.Write(&r.Buffer, binary.LittleEndian, v) }
func (r *raw) f32(v float32) {
	r.u32(math.Float32bits(v))
}
func (r *raw) str(s string) { r.u64(uint64(len(s))); r.WriteString(s) }
func (r *raw) pad(a int) {
	for r.Len()%a != 0 {
		r.WriteByte(0)
	}
}

// header writes magic, version and the two counts.
func (r *raw) header(version uint32, nTensors, nKV uint64) {
	r.WriteString("GGUF")
	r.u32(version)
	r.u64(nTensors)
	r.u64(nKV)
}

// tensorInfo writes one tensor info.
func (r *raw) tensorInfo(name string, dims []uint64, typ Type, off uint64) {
	r.str(name)
	r.u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	r.u32(uint32(typ))
	r.u64(off)
}

// open parses b with NewReader.
func open(b []byte) (*File, error) { return NewReader(bytes.NewReader(b), int64(len(b))) }
