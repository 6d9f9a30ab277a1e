package adapter

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// repoRoot is the folder holding go.mod.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// need reports a missing external dependency: a skip locally, a failure
// in CI, where .ci/run installs everything.
func need(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI: %s is missing (.ci/run should have installed it)", what)
	}
	t.Skipf("%s is missing; run `make runtimes`", what)
}

// sharedModel returns a real model from ../shared/models.
func sharedModel(t testing.TB, name string) string {
	p := filepath.Join(repoRoot(t), "..", "shared", "models", name)
	if _, err := os.Stat(p); err != nil {
		need(t, p)
	}
	return p
}

// nodeModules returns the node_modules holding node-llama-cpp and onnxruntime-node.
func nodeModules(t testing.TB) string {
	p := os.Getenv("SORSA_RUNTIMES")
	if p == "" {
		p = filepath.Join(repoRoot(t), ".cache", "runtimes", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(p, "node-llama-cpp")); err != nil {
		need(t, "node-llama-cpp in "+p)
	}
	if _, err := exec.LookPath("node"); err != nil {
		need(t, "node")
	}
	return p
}

// llamaJob asks llama.cpp to evaluate a model (optionally with LoRA
// adapters) on a prompt for a number of greedy steps or, with Forced set,
// along the prompt followed by the forced tokens (teacher forcing): then
// the result has a greedy pick and distribution after the prompt and after
// each forced token, and Steps is unused.
type llamaJob struct {
	Model  string   `json:"model"`
	LoRA   []string `json:"lora,omitempty"`
	Prompt []int    `json:"prompt"`
	Steps  int      `json:"steps,omitempty"`
	Forced []int    `json:"forced,omitempty"`
}

// llamaResult is llama.cpp's greedy tokens and next-token distributions.
type llamaResult struct {
	Tokens []int       `json:"tokens"`
	Probs  [][]float64 `json:"probs"`
}

// runLlama evaluates jobs in one node process (testdata/runtimes/llama_eval.mjs).
func runLlama(t *testing.T, jobs []llamaJob) []llamaResult {
	t.Helper()
	nm := nodeModules(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "jobs.json"), filepath.Join(dir, "out.json")
	b, _ := json.Marshal(jobs)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(repoRoot(t), "testdata", "runtimes", "llama_eval.mjs"), in, out)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama.cpp: %v\n%s", err, msg)
	}
	var res []llamaResult
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != len(jobs) {
		t.Fatalf("llama.cpp returned %d results for %d jobs", len(res), len(jobs))
	}
	return res
}

// maxProbDiff is the largest difference between two runs' next-token
// probabilities over all steps and tokens.
func maxProbDiff(a, b llamaResult) float64 {
	d := 0.0
	for s := range a.Probs {
		if s >= len(b.Probs) {
			break
		}
		for i := range a.Probs[s] {
			d = max(d, math.Abs(a.Probs[s][i]-b.Probs[s][i]))
		}
	}
	return d
}

// agreeGreedy compares a run with the original's, step by step, until the
// first step whose greedy tokens differ. A difference is accepted only where
// the original itself has a tie within tol between its two most likely
// tokens (stories260K's placeholder vocabulary has exact ties, so llama.cpp's
// pick among them is arbitrary); the runs are not compared past it. It
// returns the steps compared, the largest probability difference over them
// and an error text ("" when they agree).
func agreeGreedy(orig, got llamaResult, tol float64) (steps int, diff float64, problem string) {
	for s := range orig.Tokens {
		if s >= len(got.Tokens) {
			return s, diff, "run stopped early"
		}
		for i := range orig.Probs[s] {
			diff = max(diff, math.Abs(orig.Probs[s][i]-got.Probs[s][i]))
		}
		if orig.Tokens[s] != got.Tokens[s] {
			return s + 1, diff, greedyMismatch(orig, got, s, tol)
		}
	}
	return len(orig.Tokens), diff, ""
}

// agreeForced compares two teacher-forced runs (llamaJob.Forced) along the
// same tokens: at every step, the greedy picks must agree unless the
// original has a tie within tol (as in agreeGreedy), and since the context
// does not depend on the picks, a tie does not end the comparison. It
// returns the number of such ties, the largest probability difference over
// all steps and an error text for the first disagreement ("" when none).
func agreeForced(orig, got llamaResult, tol float64) (ties int, diff float64, problem string) {
	if len(got.Tokens) != len(orig.Tokens) {
		return 0, math.Inf(1), fmt.Sprintf("%d steps, original %d", len(got.Tokens), len(orig.Tokens))
	}
	for s := range orig.Tokens {
		if orig.Tokens[s] == got.Tokens[s] {
			continue
		}
		if p := greedyMismatch(orig, got, s, tol); p == "" {
			ties++
		} else if problem == "" {
			problem = p
		}
	}
	return ties, maxProbDiff(orig, got), problem
}

// greedyMismatch explains step s's differing greedy picks, or returns ""
// when the original has a tie within tol there.
func greedyMismatch(orig, got llamaResult, s int, tol float64) string {
	p := append([]float64(nil), orig.Probs[s]...)
	sort.Sort(sort.Reverse(sort.Float64Slice(p)))
	if p[0]-p[1] > tol {
		return fmt.Sprintf("step %d: token %d, original %d (margin %.3g)", s, got.Tokens[s], orig.Tokens[s], p[0]-p[1])
	}
	return ""
}
