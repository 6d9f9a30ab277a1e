package onnx

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// ortTensor is a tensor as testdata/runtimes/ort_run.mjs reads and writes it.
type ortTensor struct {
	DType string   `json:"dtype"`
	Dims  []int64  `json:"dims"`
	B64   string   `json:"b64,omitempty"`
	Data  []string `json:"data,omitempty"` // strings only
}

type ortJob struct {
	Model  string               `json:"model"`
	Inputs map[string]ortTensor `json:"inputs"`
}

type ortResult struct {
	I       int                  `json:"i"`
	Outputs map[string]ortTensor `json:"outputs"`
	Error   string               `json:"error"`
}

// ortDTypes maps ONNX element types to onnxruntime-node tensor types.
var ortDTypes = map[int32]string{
	int32(pb.TensorProto_FLOAT): "float32", int32(pb.TensorProto_DOUBLE): "float64",
	int32(pb.TensorProto_FLOAT16): "float16", int32(pb.TensorProto_INT8): "int8",
	int32(pb.TensorProto_UINT8): "uint8", int32(pb.TensorProto_INT16): "int16",
	int32(pb.TensorProto_UINT16): "uint16", int32(pb.TensorProto_INT32): "int32",
	int32(pb.TensorProto_UINT32): "uint32", int32(pb.TensorProto_INT64): "int64",
	int32(pb.TensorProto_UINT64): "uint64", int32(pb.TensorProto_BOOL): "bool",
	int32(pb.TensorProto_STRING): "string",
}

// ortRunner drives ort_run.mjs with onnxruntime-node from
// <repo>/.cache/runtimes/node_modules.
type ortRunner struct {
	script, nodeModules string
}

func newORT(t testing.TB) *ortRunner {
	t.Helper()
	root := repoRoot(t)
	nm := filepath.Join(root, ".cache", "runtimes", "node_modules")
	_, err := exec.LookPath("node")
	need(t, "node", err == nil)
	need(t, "onnxruntime-node (npm i in testdata/runtimes, into .cache/runtimes)", exists(filepath.Join(nm, "onnxruntime-node")))
	return &ortRunner{script: filepath.Join(root, "testdata", "runtimes", "ort_run.mjs"), nodeModules: nm}
}

// run runs the jobs in one node process, starting a new one after the job
// that killed it if ORT crashes; a crashed job gets an error result.
func (r *ortRunner) run(t testing.TB, jobs []ortJob) []ortResult {
	t.Helper()
	res := make([]ortResult, len(jobs))
	for start := 0; start < len(jobs); {
		f := filepath.Join(t.TempDir(), "jobs.json")
		data, err := json.Marshal(jobs[start:])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("node", r.script, "--jobs", f)
		cmd.Env = append(os.Environ(), "NODE_PATH="+r.nodeModules)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		next := start
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		for sc.Scan() {
			var line ortResult
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("ort_run output: %v", err)
			}
			line.I += start
			res[line.I] = line
			next = line.I + 1
		}
		werr := cmd.Wait()
		if next == start+len(jobs[start:]) {
			break
		}
		if werr == nil {
			t.Fatalf("ort_run stopped early without an error; stderr: %s", stderr.String())
		}
		res[next] = ortResult{I: next, Error: fmt.Sprintf("node died: %v: %s", werr, lastLine(stderr.String()))}
		start = next + 1
	}
	return res
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// toORT converts a TensorProto (an input of the backend corpus) to the JSON
// form; ok is false for element types onnxruntime-node cannot take.
func toORT(t *pb.TensorProto) (ortTensor, bool, error) {
	dt, ok := ortDTypes[t.GetDataType()]
	if !ok {
		return ortTensor{}, false, nil
	}
	dims := append([]int64{}, t.GetDims()...)
	if dt == "string" {
		var s []string
		for _, b := range t.GetStringData() {
			s = append(s, string(b))
		}
		return ortTensor{DType: dt, Dims: dims, Data: s}, true, nil
	}
	b, err := (&Model{}).RawBytes(t)
	if err != nil {
		return ortTensor{}, false, err
	}
	return ortTensor{DType: dt, Dims: dims, B64: base64.StdEncoding.EncodeToString(b)}, true, nil
}

// float32Tensor builds an input of ort_run.mjs from float32 values.
func float32Tensor(dims []int64, v []float32) ortTensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return ortTensor{DType: "float32", Dims: append([]int64{}, dims...), B64: base64.StdEncoding.EncodeToString(b)}
}

func int64Tensor(dims []int64, v []int64) ortTensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return ortTensor{DType: "int64", Dims: append([]int64{}, dims...), B64: base64.StdEncoding.EncodeToString(b)}
}

// float32s decodes a float32 output.
func (o ortTensor) float32s(t testing.TB) []float32 {
	t.Helper()
	if o.DType != "float32" {
		t.Fatalf("output dtype %s, want float32", o.DType)
	}
	b, err := base64.StdEncoding.DecodeString(o.B64)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// sameOutputs reports whether two runs gave bit-identical outputs.
func sameOutputs(a, b map[string]ortTensor) (bool, string) {
	if len(a) != len(b) {
		return false, fmt.Sprintf("%d outputs vs %d", len(a), len(b))
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok {
			return false, "missing output " + k
		}
		if x.DType != y.DType || fmt.Sprint(x.Dims) != fmt.Sprint(y.Dims) || x.B64 != y.B64 || fmt.Sprint(x.Data) != fmt.Sprint(y.Data) {
			return false, "output " + k + " differs"
		}
	}
	return true, ""
}
