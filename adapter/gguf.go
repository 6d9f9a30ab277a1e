package adapter

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// ggufModel is a llama.cpp GGUF model. A weight with ne = [in, out] is
// stored row-major out × in, PyTorch's orientation, so no transpose is
// needed; quantized types are decoded to float32 for the SVD.
type ggufModel struct {
	path string
	in   *inputFile
	f    *gguf.File
	ts   []Tensor
}

func openGGUF(path string) (*ggufModel, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, err
	}
	f, err := gguf.NewReader(in, in.size)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &ggufModel{path: path, in: in, f: f}
	for _, ti := range f.Tensors {
		t := Tensor{Name: ti.Name, DType: ti.Type.String(), Bytes: ti.Size()}
		for _, d := range ti.Dims {
			t.Shape = append(t.Shape, int64(d))
		}
		if matrixDims(ti.Dims) {
			if ti.Type.CanDequantize() {
				t.Out, t.In = int(ti.Dims[1]), int(ti.Dims[0])
			} else {
				t.Reason = fmt.Sprintf("type %s cannot be decoded", ti.Type)
			}
		}
		m.ts = append(m.ts, t)
	}
	return m, nil
}

// matrixDims reports a 2-D tensor (trailing dimensions of 1 allowed).
func matrixDims(d []uint64) bool {
	if len(d) < 2 || d[0] < 1 || d[1] < 1 {
		return false
	}
	for _, x := range d[2:] {
		if x != 1 {
			return false
		}
	}
	return true
}

func (m *ggufModel) Format() string    { return "gguf" }
func (m *ggufModel) Path() string      { return m.path }
func (m *ggufModel) Tensors() []Tensor { return m.ts }
func (m *ggufModel) Close() error      { return m.in.Close() }

func (m *ggufModel) Raw(t Tensor) ([]byte, error) {
	b, err := m.f.ReadTensor(t.Name)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return b, nil
}

func (m *ggufModel) Decode(t Tensor) (*surgery.Matrix, error) {
	ti, ok := m.f.Tensor(t.Name)
	if !ok || !t.Matrix() {
		return nil, fmt.Errorf("tensor %q is not a decodable matrix", t.Name)
	}
	sec, err := m.f.Section(t.Name)
	if err != nil {
		return nil, err
	}
	w := surgery.NewMatrix(t.Out, t.In)
	err = withStored(sec, t.Bytes, func() ([]byte, error) { return m.Raw(t) }, func(raw []byte) error {
		if err := gguf.Dequantize(ti.Type, w.Data, raw); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Encode rounds canonical values once to dt (t's own type when empty):
// float types directly from float64; quantized types through float32, the
// input llama.cpp's reference quantizers take.
func (m *ggufModel) Encode(t Tensor, dt string, canon []float64) ([]byte, error) {
	if dt == "" {
		dt = t.DType
	}
	typ, ok := parseGGMLType(dt)
	if !ok {
		return nil, fmt.Errorf("tensor %q: unknown ggml type %q", t.Name, dt)
	}
	if k, ok := ggufKind(typ); ok {
		out := make([]byte, len(canon)*k.Size())
		dtype.Encode(k, out, canon)
		return out, nil
	}
	if !typ.CanQuantize() {
		return nil, fmt.Errorf("tensor %q: cannot write type %s (supported: %s)", t.Name, typ, strings.ToUpper(ggufWritable(0)))
	}
	if t.In%typ.BlockSize() != 0 {
		return nil, fmt.Errorf("tensor %q: row length %d is not a multiple of %s's block of %d", t.Name, t.In, typ, typ.BlockSize())
	}
	f32 := make([]float32, len(canon))
	for i, x := range canon {
		f32[i] = float32(x)
	}
	info := gguf.TensorInfo{Name: t.Name, Dims: []uint64{uint64(t.In), uint64(t.Out)}, Type: typ}
	out := make([]byte, info.Size())
	if err := gguf.Quantize(typ, out, f32); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return out, nil
}

// checkBlockRows reports, before any work starts, the first target whose
// rows cannot be stored in the GGUF type dt (a quantized type's rows are
// whole blocks: 32 values, or 256 for the K-quants); flag names the option
// that asked for dt. Other formats and plain types pass.
func checkBlockRows(m model, targets []Tensor, dt, flag string) error {
	typ, ok := parseGGMLType(dt)
	if m.Format() != "gguf" || !ok || typ.BlockSize() <= 1 {
		return nil
	}
	bs := typ.BlockSize()
	for _, t := range targets {
		if t.In%bs == 0 {
			continue
		}
		return inputErr("%s: %s %s: tensor %q has rows of %d values, not a multiple of %s's block of %d (types its rows fit: %s; or keep)",
			m.Path(), flag, strings.ToLower(dt), t.Name, t.In, typ, bs, ggufWritable(t.In))
	}
	return nil
}

// ggufKind returns the element codec of a plain float ggml type.
func ggufKind(t gguf.Type) (dtype.Kind, bool) {
	switch t {
	case gguf.F32:
		return dtype.F32, true
	case gguf.F16:
		return dtype.F16, true
	case gguf.BF16:
		return dtype.BF16, true
	}
	return 0, false
}

// isPlain reports whether t is a plain float ggml type (F32, F16, BF16).
func isPlain(t gguf.Type) bool {
	_, ok := ggufKind(t)
	return ok
}

// GGUFQuantizedTypes returns the quantized ggml types that split
// (--residual-type) and merge (--dtype) can write, lower-case, in type-id
// order; f32, f16 and bf16 are writable as well.
func GGUFQuantizedTypes() []string { return quantizedFor(0) }

// quantizedFor returns GGUFQuantizedTypes' names of the types whose blocks
// rows of n values fill (every one for n = 0).
func quantizedFor(n int) []string {
	var names []string
	for _, t := range gguf.QuantizableTypes() {
		if !isPlain(t) && n%t.BlockSize() == 0 {
			names = append(names, strings.ToLower(t.String()))
		}
	}
	return names
}

// ggufWritable lists, for messages, every type a GGUF tensor with rows of
// n values can be written in (n = 0: any tensor).
func ggufWritable(n int) string {
	return strings.Join(append([]string{"f32", "f16", "bf16"}, quantizedFor(n)...), ", ")
}

// parseGGMLType maps a type name in any case (q4_k, Q4_K, f16) to its id.
func parseGGMLType(name string) (gguf.Type, bool) { return gguf.TypeByName(strings.ToUpper(name)) }

// metadata returns the summary inspect prints for a GGUF model.
func (m *ggufModel) metadata() map[string]any {
	md := map[string]any{"gguf_version": m.f.Version}
	arch := ""
	if v, ok := m.f.Get("general.architecture"); ok {
		arch, _ = v.AsString()
		md["architecture"] = arch
	}
	for _, k := range []string{"general.name", "general.type", "general.file_type"} {
		if v, ok := m.f.Get(k); ok {
			md[k] = v.String()
		}
	}
	for _, k := range []string{"block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count", "attention.head_count_kv"} {
		if v, ok := m.f.Get(arch + "." + k); ok {
			md[k] = v.String()
		}
	}
	mix := map[string]int{}
	for _, t := range m.f.Tensors {
		mix[t.Type.String()]++
	}
	md["types"] = mix
	return md
}

// rewrite writes m to w with each tensor in repl replaced (in type
// newType[name] when set); other tensors are copied byte for byte. The
// metadata is copied unchanged.
func (m *ggufModel) rewrite(w io.Writer, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) error {
	h := gguf.Header{Version: m.f.Version, KV: m.f.KV, AlignEmpty: true}
	for _, ti := range m.f.Tensors {
		ti.Offset = 0
		if nt, ok := newType[ti.Name]; ok {
			typ, ok := parseGGMLType(nt)
			if !ok {
				return fmt.Errorf("tensor %q: unknown type %q", ti.Name, nt)
			}
			ti.Type = typ
		}
		h.Tensors = append(h.Tensors, ti)
	}
	gw, err := gguf.NewWriter(w, h)
	if err != nil {
		return err
	}
	for i, ti := range m.f.Tensors {
		data, ok, err := repl(m.ts[i])
		if err != nil {
			return err
		}
		if ok {
			err = gw.WriteTensor(ti.Name, data)
		} else {
			var sec *io.SectionReader
			if sec, err = m.f.Section(ti.Name); err == nil {
				err = gw.WriteTensorFrom(ti.Name, readNoting(sec))
			}
		}
		if err != nil {
			return fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
	}
	return gw.Close()
}

// writeGGUF writes a whole GGUF model at path in the transaction.
func writeGGUF(tx *outputs, m *ggufModel, path string, newType map[string]string, repl func(Tensor) ([]byte, bool, error)) ([]FileHash, string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, "", inputErr("%s is a folder; a GGUF output is a file", path)
	}
	f, err := tx.create(path)
	if err != nil {
		return nil, "", err
	}
	if err := m.rewrite(f, newType, repl); err != nil {
		return nil, "", writeErr(path, err)
	}
	return []FileHash{f.hashSoFar()}, path, nil
}

// loraWriter writes OUT/lora.gguf, a llama.cpp LoRA adapter: general.type
// adapter, adapter.type lora, adapter.lora.alpha = r·scale (so llama.cpp's
// alpha/r is the SORSA scale), <name>.lora_a = diag(S)·A with ne [in, r]
// and <name>.lora_b = B with ne [r, out], float32.
type loraWriter struct {
	gw *gguf.Writer
}

func newLoRAWriter(w io.Writer, m *ggufModel, targets []Tensor, rank int, scale float64) (*loraWriter, error) {
	arch := "llama"
	if v, ok := m.f.Get("general.architecture"); ok {
		if s, ok := v.AsString(); ok {
			arch = s
		}
	}
	h := gguf.Header{Version: 3, KV: []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(arch)},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(float32(float64(rank) * scale))},
		{Key: "general.name", Value: gguf.String("sorsa principal part")},
	}}
	for _, t := range targets {
		for _, n := range []string{t.Name + ".lora_a", t.Name + ".lora_b"} {
			if len(n) > gguf.MaxNameLen {
				return nil, inputErr("%s: LoRA tensor name %q is longer than llama.cpp's %d bytes", m.path, n, gguf.MaxNameLen)
			}
		}
		h.Tensors = append(h.Tensors,
			gguf.TensorInfo{Name: t.Name + ".lora_a", Dims: []uint64{uint64(t.In), uint64(rank)}, Type: gguf.F32},
			gguf.TensorInfo{Name: t.Name + ".lora_b", Dims: []uint64{uint64(rank), uint64(t.Out)}, Type: gguf.F32})
	}
	gw, err := gguf.NewWriter(w, h)
	if err != nil {
		return nil, err
	}
	return &loraWriter{gw: gw}, nil
}

func (w *loraWriter) add(name string, f *surgery.Factors) error {
	r := f.Rank()
	a := make([]float32, len(f.A.Data))
	for k := 0; k < r; k++ {
		s := f.S[k]
		row := f.A.Data[k*f.A.Cols : (k+1)*f.A.Cols]
		for j, v := range row {
			a[k*f.A.Cols+j] = v * s
		}
	}
	if err := w.gw.WriteTensor(name+".lora_a", f32Bytes(a)); err != nil {
		return err
	}
	return w.gw.WriteTensor(name+".lora_b", f32Bytes(f.B.Data))
}

func (w *loraWriter) close() error { return w.gw.Close() }

// loraGGUF is a llama.cpp LoRA adapter GGUF opened for merging.
type loraGGUF struct {
	f     *gguf.File
	alpha float64
}

// openLoRAGGUF reads a llama.cpp LoRA adapter into a Loaded adapter.
func openLoRAGGUF(path string) (*Loaded, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, wrapInput(err)
	}
	fail := func(format string, a ...any) (*Loaded, error) {
		f.Close()
		return nil, inputErr("%s: %s", path, fmt.Sprintf(format, a...))
	}
	if v, ok := f.Get("general.type"); !ok || mustString(v) != "adapter" {
		return fail("general.type is not \"adapter\": not a LoRA adapter")
	}
	if v, ok := f.Get("adapter.type"); !ok || mustString(v) != "lora" {
		return fail("adapter.type is not \"lora\"")
	}
	alpha := 0.0
	if v, ok := f.Get("adapter.lora.alpha"); ok {
		a, ok := v.AsFloat32()
		if !ok {
			return fail("adapter.lora.alpha is %s, llama.cpp requires FLOAT32", v.Type)
		}
		alpha = float64(a)
	}
	l := &Loaded{Dir: path, Kind: KindLoRAGGUF, Modules: map[string]Module{}, path: path, lora: &loraGGUF{f: f, alpha: alpha}}
	as := map[string]gguf.TensorInfo{}
	bs := map[string]gguf.TensorInfo{}
	for _, ti := range f.Tensors {
		switch {
		case strings.HasSuffix(ti.Name, ".lora_a"):
			as[strings.TrimSuffix(ti.Name, ".lora_a")] = ti
		case strings.HasSuffix(ti.Name, ".lora_b"):
			bs[strings.TrimSuffix(ti.Name, ".lora_b")] = ti
		case strings.HasSuffix(ti.Name, "_norm.weight"):
		default:
			return fail("tensor %q has an unexpected suffix (want .lora_a or .lora_b)", ti.Name)
		}
	}
	for name, a := range as {
		b, ok := bs[name]
		if !ok {
			return fail("tensor %q has lora_a but no lora_b", name)
		}
		if len(a.Dims) != 2 || len(b.Dims) != 2 || a.Dims[1] != b.Dims[0] {
			return fail("tensor %q: lora_a %v and lora_b %v do not fit", name, a.Dims, b.Dims)
		}
		if strings.HasPrefix(name, "token_embd") {
			return fail("tensor %q: LoRA on embeddings is not supported", name)
		}
		if !a.Type.CanDequantize() || !b.Type.CanDequantize() {
			return fail("tensor %q: LoRA type %s/%s cannot be decoded", name, a.Type, b.Type)
		}
		r := int(b.Dims[0])
		scale := 1.0
		if alpha != 0 {
			scale = alpha / float64(r)
		}
		l.Modules[name] = Module{Name: name, Tensor: name, Rank: r, Scale: scale, Out: int(b.Dims[1]), In: int(a.Dims[0])}
	}
	for name := range bs {
		if _, ok := as[name]; !ok {
			return fail("tensor %q has lora_b but no lora_a", name)
		}
	}
	if len(l.Modules) == 0 {
		return fail("no LoRA tensors")
	}
	return l, nil
}

func mustString(v gguf.Value) string {
	s, _ := v.AsString()
	return s
}

// factors reads a LoRA GGUF module as B·diag(1)·A.
func (lg *loraGGUF) factors(m Module) (*surgery.Factors, error) {
	read := func(name string, n int) ([]float32, error) {
		out, err := lg.f.ReadFloat32(name)
		if err == nil && len(out) != n {
			err = fmt.Errorf("tensor %q has %d elements, want %d", name, len(out), n)
		}
		return out, err
	}
	a, err := read(m.Tensor+".lora_a", m.Rank*m.In)
	if err != nil {
		return nil, err
	}
	b, err := read(m.Tensor+".lora_b", m.Out*m.Rank)
	if err != nil {
		return nil, err
	}
	return loraFactors(m, a, b), nil
}

// quantError returns ‖deq(q) − x‖_F / ‖ref‖_F for a weight x stored as q.
func quantError(x []float64, deq []float32, ref []float32) float64 {
	var num, den float64
	for i := range x {
		d := float64(deq[i]) - x[i]
		num += d * d
		den += float64(ref[i]) * float64(ref[i])
	}
	if den == 0 {
		return 0
	}
	return math.Sqrt(num / den)
}

func (m *ggufModel) elementKinds(t Tensor, dt string) (in, out dtype.Kind, ok bool) {
	if dt == "" {
		dt = t.DType
	}
	ti, ok0 := m.f.Tensor(t.Name)
	typ, ok1 := parseGGMLType(dt)
	if !ok0 || !ok1 || !t.Matrix() {
		return 0, 0, false
	}
	in, ok2 := ggufKind(ti.Type)
	out, ok3 := ggufKind(typ)
	return in, out, ok2 && ok3
}

func (m *ggufModel) section(t Tensor) (io.ReaderAt, error) {
	return m.f.Section(t.Name)
}

// decodeRows dequantizes canonical rows i0..i1 (blocks run along a row).
func (m *ggufModel) decodeRows(t Tensor, raw []byte, i0, i1 int, dst []float64) error {
	ti, ok := m.f.Tensor(t.Name)
	if !ok {
		return fmt.Errorf("tensor %q not found", t.Name)
	}
	rs, err := ti.Type.RowSize(t.In)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	tmp := make([]float32, len(dst))
	if err := gguf.Dequantize(ti.Type, tmp, raw[i0*rs:i1*rs]); err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	widen(dst, tmp)
	return nil
}
