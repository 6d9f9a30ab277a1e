package safetensors

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// The oracle is Debian's Python with numpy, which knows nothing of this
// package: one script checks our files against the format's rules and
// rebuilds every tensor's values with numpy; the other writes files from
// the spec for our reader.

const pyCommon = `
import json, struct, sys
import numpy as np

NP = {'F32': '<f4', 'F64': '<f8', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'U8': 'u1'}

def tensor_bytes(s):
    count = int(np.prod(s['shape'], dtype=np.int64))
    vals = s['start'] + s['step'] * np.arange(count, dtype=np.float64)
    if s['dtype'] == 'BF16':
        bits = vals.astype(np.float32).view(np.uint32)
        assert np.all(bits & 0xffff == 0), 'test values must be exact in bfloat16'
        return (bits >> 16).astype('<u2').tobytes()
    return vals.astype(np.dtype(NP[s['dtype']])).tobytes()
`

const pyVerify = pyCommon + `
path, exp_path = sys.argv[1], sys.argv[2]
buf = open(path, 'rb').read()
exp = json.load(open(exp_path, encoding='utf-8'))
assert len(buf) >= 8
(n,) = struct.unpack('<Q', buf[:8])
assert (8 + n) % 8 == 0, 'data section not 8-aligned: n=%d' % n
raw = buf[8:8 + n]
body = raw.rstrip(b' ')
assert len(raw) - len(body) < 8, 'padding longer than needed'
text = body.decode('utf-8')
pairs = json.loads(text, object_pairs_hook=lambda p: p)
keys = [k for k, _ in pairs]
assert len(set(keys)) == len(keys), 'duplicate keys'
obj = json.loads(text)
canon = json.dumps(obj, separators=(',', ':'), ensure_ascii=False)
assert canon == text, 'header is not compact JSON:\n%r\n%r' % (text, canon)
md = obj.pop('__metadata__', None)
if exp['metadata'] is None:
    assert '__metadata__' not in keys
else:
    assert keys[0] == '__metadata__', keys
    assert md == exp['metadata'], (md, exp['metadata'])
assert list(obj.keys()) == [s['name'] for s in exp['tensors']], list(obj.keys())
data = buf[8 + n:]
pos = 0
for s in exp['tensors']:
    e = obj[s['name']]
    assert list(e.keys()) == ['dtype', 'shape', 'data_offsets'], e
    assert e['dtype'] == s['dtype'] and e['shape'] == s['shape'], (e, s)
    b, end = e['data_offsets']
    assert b == pos, (s['name'], b, pos)
    want = tensor_bytes(s)
    assert data[b:end] == want, (s['name'], data[b:end], want)
    pos = end
assert pos == len(data), 'trailing bytes'
print('OK')
`

const pyWrite = pyCommon + `
out, spec_path = sys.argv[1], sys.argv[2]
specs = json.load(open(spec_path, encoding='utf-8'))
header, blobs, pos = {}, [], 0
for s in specs:
    b = tensor_bytes(s)
    header[s['name']] = {'dtype': s['dtype'], 'shape': s['shape'], 'data_offsets': [pos, pos + len(b)]}
    pos += len(b)
    blobs.append(b)
# Header order unlike data order, metadata in the middle, non-ASCII escaped.
items = list(header.items())[::-1]
items.insert(len(items) // 2, ('__metadata__', {'source': 'numpy', 'pi \u03c0': '3.14'}))
enc = json.dumps(dict(items), separators=(',', ':'), ensure_ascii=True).encode()
enc += b' ' * ((8 - len(enc) % 8) % 8)
open(out, 'wb').write(struct.pack('<Q', len(enc)) + enc + b''.join(blobs))
print('OK')
`

// python returns the oracle interpreter, skipping (or failing under CI)
// when it or numpy is missing.
func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import numpy").CombinedOutput(); err != nil {
		msg := "oracle " + py + " with numpy unavailable: " + err.Error() + " " + string(out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

func runPython(t *testing.T, py, script string, args ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "oracle.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, append([]string{path}, args...)...).CombinedOutput()
	if err != nil || !bytes.HasSuffix(out, []byte("OK\n")) {
		t.Fatalf("python oracle: %v\n%s", err, out)
	}
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "expect.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// oracleSpecs adds to mixedSpecs what is easy to get wrong: a scalar, an
// empty tensor, non-ASCII and escaped names.
var oracleSpecs = append(slices.Clone(mixedSpecs),
	spec{Name: "scalar", DType: F64, Shape: []int64{}, Start: -0.1},
	spec{Name: "empty", DType: F32, Shape: []int64{2, 0, 3}},
	spec{Name: "emb.ñ\"tab\t<&>\u2028\x7f", DType: F16, Shape: []int64{2}, Start: 65504, Step: -131008},
)

func TestOracleReadsOurFiles(t *testing.T) {
	py := python(t)
	tests := []struct {
		name  string
		specs []spec
		md    map[string]string
	}{
		{name: "mixed with metadata", specs: oracleSpecs, md: map[string]string{"format": "pt", "é\n\x01\"\\": "<&>\u2028 \x1f"}},
		{name: "no metadata", specs: oracleSpecs[:3]},
		{name: "nothing"},
		{name: "metadata only", md: map[string]string{"total": "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "m.safetensors")
			if err := os.WriteFile(file, writeSpecs(t, tc.specs, tc.md), 0o644); err != nil {
				t.Fatal(err)
			}
			specs := tc.specs
			if specs == nil {
				specs = []spec{}
			}
			runPython(t, py, pyVerify, file, writeJSON(t, map[string]any{"tensors": specs, "metadata": tc.md}))
		})
	}
}

func TestReadOracleFiles(t *testing.T) {
	py := python(t)
	file := filepath.Join(t.TempDir(), "np.safetensors")
	runPython(t, py, pyWrite, file, writeJSON(t, oracleSpecs))
	f, err := Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantMD := map[string]string{"source": "numpy", "pi π": "3.14"}
	if md := f.Metadata(); len(md) != 2 || md["source"] != "numpy" || md["pi π"] != "3.14" {
		t.Errorf("metadata %q, want %q", md, wantMD)
	}
	got := f.Tensors()
	if len(got) != len(oracleSpecs) {
		t.Fatalf("%d tensors, want %d", len(got), len(oracleSpecs))
	}
	for i, s := range oracleSpecs {
		if got[i].Name != s.Name || got[i].DType != s.DType || !slices.Equal(got[i].Shape, s.Shape) {
			t.Errorf("tensor %d = %+v, want %+v", i, got[i], s)
			continue
		}
		data, err := f.ReadTensor(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if want := s.bytes(t); !bytes.Equal(data, want) {
			t.Errorf("%s: numpy wrote %x, we encode %x", s.Name, data, want)
		}
	}

	// Read-then-write keeps the data section byte for byte, and the oracle
	// accepts the rewritten file.
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	again := copyFile(t, f)
	g, err := NewReader(bytes.NewReader(again), int64(len(again)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again[g.DataOffset():], orig[f.DataOffset():]) {
		t.Error("data section changed on rewrite")
	}
	out := filepath.Join(t.TempDir(), "again.safetensors")
	if err := os.WriteFile(out, again, 0o644); err != nil {
		t.Fatal(err)
	}
	runPython(t, py, pyVerify, out, writeJSON(t, map[string]any{"tensors": oracleSpecs, "metadata": wantMD}))
}
