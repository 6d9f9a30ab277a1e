package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The oracle tests compare the codecs with llama.cpp's own gguf-py (numpy),
// installed offline by testdata/setup-ggufpy.sh. SORSA_GGUF_PY names its
// gguf-py folder; without it the tests skip (and fail when CI=true).

func ggufPyDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SORSA_GGUF_PY")
	if dir == "" {
		missing(t, "SORSA_GGUF_PY is not set (run formats/gguf/testdata/setup-ggufpy.sh)")
	}
	if _, err := os.Stat(filepath.Join(dir, "gguf", "quants.py")); err != nil {
		missing(t, "SORSA_GGUF_PY="+dir+" holds no gguf/quants.py")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		missing(t, "/usr/bin/python3 is missing")
	}
	return dir
}

// runOracle runs testdata/ggufpy_oracle.py once over all jobs.
func runOracle(t *testing.T, pyDir, workDir string, jobs []string) {
	t.Helper()
	manifest := filepath.Join(workDir, "jobs.txt")
	if err := os.WriteFile(manifest, []byte(strings.Join(jobs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs(filepath.Join("testdata", "ggufpy_oracle.py"))
	cmd := exec.Command("/usr/bin/python3", script, manifest)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pyDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gguf-py oracle: %v\n%s", err, out)
	}
}

func readFloats(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func writeFloats(t *testing.T, path string, v []float32) {
	t.Helper()
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameBits compares two float32 slices bit for bit and reports the first
// differences.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, gguf-py has %d", what, len(got), len(want))
		return
	}
	bad := 0
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g (%08x), gguf-py %g (%08x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(got))
	}
}

// f16Fields lists the byte offsets of the F16 scales in one block of each
// quantized type; random blocks get finite values there.
var f16Fields = map[Type][]int{
	Q4_0: {0}, Q4_1: {0, 2}, Q5_0: {0}, Q5_1: {0, 2}, Q8_0: {0},
	Q2_K: {80, 82}, Q3_K: {108}, Q4_K: {0, 2}, Q5_K: {0, 2}, Q6_K: {208},
}

func finiteF16(rng *rand.Rand) uint16 {
	for {
		if h := uint16(rng.Uint32()); h&0x7C00 != 0x7C00 {
			return h
		}
	}
}

// randomBlocks returns nb random blocks of t with finite F16 scales.
func randomBlocks(rng *rand.Rand, t Type, nb int) []byte {
	ts := t.TypeSize()
	b := make([]byte, nb*ts)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	for i := 0; i < nb; i++ {
		for _, off := range f16Fields[t] {
			binary.LittleEndian.PutUint16(b[i*ts+off:], finiteF16(rng))
		}
	}
	if t == F16 {
		for i := 0; i < len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], finiteF16(rng))
		}
	}
	return b
}

// quantInputs returns float32 data, in blocks of 256, that exercises the
// quantizers: Gaussian and uniform data at several scales, outliers, exact
// ties for the rounding rules, zero and constant blocks, subnormals.
func quantInputs(rng *rand.Rand) []float32 {
	var x []float32
	block := func(f func(i int) float32) {
		for i := range 256 {
			x = append(x, f(i))
		}
	}
	for _, s := range []float64{1e-3, 0.02, 1, 300} {
		for range 8 {
			block(func(int) float32 { return float32(rng.NormFloat64() * s) })
		}
		block(func(int) float32 { return float32((rng.Float64()*2 - 1) * s) })
		block(func(int) float32 { return float32(rng.Float64() * s) })  // all positive
		block(func(int) float32 { return float32(-rng.Float64() * s) }) // all negative
	}
	block(func(i int) float32 { // outliers
		if i%37 == 0 {
			return float32(rng.NormFloat64() * 50)
		}
		return float32(rng.NormFloat64())
	})
	block(func(int) float32 { return 0 })
	block(func(int) float32 { return 0.75 })
	block(func(i int) float32 { return float32(i%32) - 15.5 }) // halves
	block(func(i int) float32 {                                // Q8_0 with d = id = 1: exact halves, roundf ties
		if i%32 == 0 {
			return 127
		}
		return float32(i%32) - 16.5
	})
	block(func(i int) float32 { return float32(int(rng.Uint32()%255)-127) / 2 }) // many .5 after scaling
	block(func(i int) float32 { return float32(rng.NormFloat64() * 1e-40) })     // subnormal
	block(func(i int) float32 {                                                  // one sign-flipped extreme per 32
		if i%32 == 5 {
			return -8
		}
		return float32(rng.Float64() * 8)
	})
	return x
}

func TestGGUFPyOracle(t *testing.T) {
	pyDir := ggufPyDir(t)
	work := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var jobs []string

	// 1. Every tensor of two real quantized models.
	modelsDir := filepath.Join(repoRoot(t), "..", "shared", "models")
	models := []string{"stories260K-q8_0.gguf", "stories260K-q4_0.gguf"}
	for _, m := range models {
		path := filepath.Join(modelsDir, m)
		if _, err := os.Stat(path); err != nil {
			missing(t, err.Error())
		}
		jobs = append(jobs, fmt.Sprintf("dequant-file %s %s", path, filepath.Join(work, m+".f32")))
	}

	// 2. Random blocks of every decodable type.
	decTypes := []Type{F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K}
	blocks := map[Type][]byte{}
	for _, ty := range decTypes {
		nb := 4096 / ty.BlockSize() * 8
		blocks[ty] = randomBlocks(rng, ty, nb)
		in := filepath.Join(work, ty.String()+".blocks")
		if err := os.WriteFile(in, blocks[ty], 0o644); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, fmt.Sprintf("dequant %s %s %s.f32", ty, in, in))
	}

	// 3. Quantization of the same inputs.
	quantTypes := []Type{F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1}
	x := quantInputs(rng)
	xin := filepath.Join(work, "x.f32")
	writeFloats(t, xin, x)
	for _, ty := range quantTypes {
		jobs = append(jobs, fmt.Sprintf("quant %s %s %s", ty, xin, filepath.Join(work, ty.String()+".q")))
	}

	// 4. GGUFReader's view of the headers: every model and a few vocab files.
	headerFiles := modelPaths(t)
	for _, v := range []string{"ggml-vocab-aquila.gguf", "ggml-vocab-bert-bge.gguf", "ggml-vocab-phi-3.gguf"} {
		headerFiles = append(headerFiles, filepath.Join(vocabDir(t), v))
	}
	for i, p := range headerFiles {
		jobs = append(jobs, fmt.Sprintf("header %s %s", p, filepath.Join(work, fmt.Sprintf("header%d.json", i))))
	}

	runOracle(t, pyDir, work, jobs)

	for i, p := range headerFiles {
		t.Run("header/"+filepath.Base(p), func(t *testing.T) {
			compareHeader(t, p, filepath.Join(work, fmt.Sprintf("header%d.json", i)))
		})
	}

	for _, m := range models {
		t.Run("file/"+m, func(t *testing.T) {
			f, err := Open(filepath.Join(modelsDir, m))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			all := readFloats(t, filepath.Join(work, m+".f32"))
			names, err := os.ReadFile(filepath.Join(work, m+".f32.names"))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(names))
			i, pos := 0, 0
			for ; sc.Scan(); i++ {
				var name string
				var n int
				fmt.Sscan(sc.Text(), &name, &n)
				if i >= len(f.Tensors) || f.Tensors[i].Name != name {
					t.Fatalf("gguf-py tensor %d is %q", i, name)
				}
				got, err := f.ReadFloat32(name)
				if err != nil {
					t.Fatal(err)
				}
				sameBits(t, name, got, all[pos:pos+n])
				pos += n
			}
			if i != len(f.Tensors) || pos != len(all) {
				t.Errorf("gguf-py saw %d tensors, %d values; we have %d tensors", i, pos, len(f.Tensors))
			}
		})
	}
	for _, ty := range decTypes {
		t.Run("dequant/"+ty.String(), func(t *testing.T) {
			want := readFloats(t, filepath.Join(work, ty.String()+".blocks.f32"))
			got := make([]float32, len(blocks[ty])/ty.TypeSize()*ty.BlockSize())
			if err := Dequantize(ty, got, blocks[ty]); err != nil {
				t.Fatal(err)
			}
			sameBits(t, ty.String(), got, want)
		})
	}
	for _, ty := range quantTypes {
		t.Run("quant/"+ty.String(), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(work, ty.String()+".q"))
			if err != nil {
				t.Fatal(err)
			}
			n, _ := ty.RowSize(len(x))
			got := make([]byte, n)
			if err := Quantize(ty, got, x); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				bs, ts := ty.BlockSize(), ty.TypeSize()
				bad := 0
				for i := 0; i < len(got); i += ts {
					if !bytes.Equal(got[i:i+ts], want[i:i+ts]) {
						if bad < 3 {
							t.Errorf("block %d (input %v...): got %x, gguf-py %x", i/ts, x[i/ts*bs:i/ts*bs+min(bs, 4)], got[i:i+ts], want[i:i+ts])
						}
						bad++
					}
				}
				t.Errorf("%d of %d blocks differ", bad, len(got)/ts)
			}
		})
	}
}

// vocabDir returns the vocab-only GGUF files of the llama.cpp source tree
// that setup-ggufpy.sh unpacks beside gguf-py.
func vocabDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(ggufPyDir(t), "..", "models")
	if _, err := os.Stat(filepath.Join(dir, "ggml-vocab-aquila.gguf")); err != nil {
		missing(t, "no vocab files in "+dir)
	}
	return dir
}

// pyHeader is what the oracle's header job writes.
type pyHeader struct {
	KV []struct {
		Key   string
		Types []string
		Value any
	}
	Tensors []struct {
		Name       string
		Type       string
		Shape      []uint64
		DataOffset int64 `json:"data_offset"`
		NBytes     int64 `json:"n_bytes"`
	}
	Alignment uint64
}

func compareHeader(t *testing.T, path, jsonPath string) {
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var py pyHeader
	if err := dec.Decode(&py); err != nil {
		t.Fatal(err)
	}
	if len(py.KV) != len(f.KV) || len(py.Tensors) != len(f.Tensors) || py.Alignment != f.Alignment {
		t.Fatalf("gguf-py: %d kv, %d tensors, alignment %d; we: %d, %d, %d", len(py.KV), len(py.Tensors), py.Alignment, len(f.KV), len(f.Tensors), f.Alignment)
	}
	for i, kv := range f.KV {
		p := py.KV[i]
		if p.Key != kv.Key {
			t.Fatalf("kv %d: key %q, gguf-py %q", i, kv.Key, p.Key)
		}
		types := []string{kv.Value.Type.String()}
		if kv.Value.Type == ValueArray {
			types = append(types, kv.Value.ElemType().String())
		}
		if !reflect.DeepEqual(types, p.Types) {
			t.Errorf("%s: types %v, gguf-py %v", kv.Key, types, p.Types)
			continue
		}
		if err := sameValue(kv.Value, p.Value); err != nil {
			t.Errorf("%s: %v", kv.Key, err)
		}
	}
	for i, ti := range f.Tensors {
		p := py.Tensors[i]
		if p.Name != ti.Name || p.Type != ti.Type.String() || !reflect.DeepEqual(p.Shape, ti.Dims) ||
			p.DataOffset != f.DataOffset+int64(ti.Offset) || p.NBytes != ti.Size() {
			t.Errorf("tensor %d: %+v at %d, gguf-py %+v", i, ti, f.DataOffset+int64(ti.Offset), p)
		}
	}
}

// sameValue compares one of our values with gguf-py's contents() as decoded
// from JSON (numbers as json.Number).
func sameValue(v Value, p any) error {
	if v.Type == ValueArray {
		list, ok := p.([]any)
		if !ok || len(list) != v.Len() {
			return fmt.Errorf("array of %d, gguf-py %T", v.Len(), p)
		}
		for i, e := range list {
			ev, _ := v.Index(i)
			if err := sameValue(ev, e); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	}
	var ours string
	switch v.Type {
	case ValueString:
		s, _ := v.AsString()
		if p != s {
			return fmt.Errorf("%q, gguf-py %q", s, p)
		}
		return nil
	case ValueBool:
		x, _ := v.AsBool()
		if p != x {
			return fmt.Errorf("%v, gguf-py %v", x, p)
		}
		return nil
	case ValueFloat32, ValueFloat64:
		x, _ := v.AsFloat()
		n, ok := p.(json.Number)
		if !ok {
			return fmt.Errorf("%g, gguf-py %v", x, p)
		}
		if y, err := strconv.ParseFloat(n.String(), 64); err != nil || y != x {
			return fmt.Errorf("%g, gguf-py %v", x, p)
		}
		return nil
	case ValueUint64:
		u, _ := v.AsUint64()
		ours = strconv.FormatUint(u, 10)
	default:
		i, _ := v.AsInt()
		ours = strconv.FormatInt(i, 10)
	}
	if n, ok := p.(json.Number); !ok || n.String() != ours {
		return fmt.Errorf("%s, gguf-py %v", ours, p)
	}
	return nil
}

// TestVocabFiles parses the vocab-only GGUF files shipped in llama.cpp's
// source tree (one of them GGUF v2) and writes each back byte for byte.
func TestVocabFiles(t *testing.T) {
	dir := vocabDir(t)
	paths, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	versions := map[uint32]int{}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := open(orig)
			if err != nil {
				t.Fatal(err)
			}
			versions[f.Version]++
			tokens, _ := f.Get("tokenizer.ggml.tokens")
			if tokens.ElemType() != ValueString || tokens.Len() < 100 {
				t.Errorf("tokenizer.ggml.tokens = %v", tokens)
			}
			if got := roundTrip(t, f); !bytes.Equal(got, orig) {
				t.Errorf("round trip differs at %d (%d vs %d bytes)", firstDiff(got, orig), len(got), len(orig))
			}
		})
	}
	if len(paths) < 10 || versions[2] == 0 || versions[3] == 0 {
		t.Errorf("%d vocab files, versions %v: expected a v2 file among many v3", len(paths), versions)
	}
}
