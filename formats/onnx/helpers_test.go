package onnx

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// need skips the test when an external resource is missing, unless CI=true,
// where its absence is a failure.
func need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (required when CI=true)", what)
	}
	t.Skipf("%s is missing", what)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// corpusDir holds Debian libonnx-testdata's backend test models.
const corpusDir = "/usr/share/libonnx-testdata/data"

// corpusModels lists every model.onnx of the backend corpus, sorted.
func corpusModels(t testing.TB) []string {
	t.Helper()
	need(t, "Debian libonnx-testdata ("+corpusDir+")", exists(corpusDir))
	var out []string
	err := filepath.WalkDir(corpusDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "model.onnx" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
