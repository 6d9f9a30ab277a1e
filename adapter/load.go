package adapter

import (
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/sorsa-convert/sorsa-convert/formats/gguf"
	"github.com/sorsa-convert/sorsa-convert/formats/safetensors"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// Kind values of a loaded adapter.
const (
	KindSORSA    = "sorsa"
	KindPEFT     = "peft-lora"
	KindLoRAGGUF = "llama.cpp-lora"
)

// Loaded is an adapter folder opened for merging: ours (SORSA factors) or a
// PEFT LoRA adapter (lora_A, lora_B and lora_alpha/r).
type Loaded struct {
	Dir    string
	Kind   string
	Config *Config     // ours only
	PEFT   *PEFTConfig // PEFT only
	// Modules maps each adapted weight tensor's name to its module.
	Modules map[string]Module
	file    *safetensors.File
	lora    *loraGGUF
	path    string
}

// Module is one adapted weight in a loaded adapter.
type Module struct {
	Name   string
	Tensor string
	Rank   int
	Scale  float64
	Out    int
	In     int
	// NonFinite: the weight was passed through at split (zero factors).
	NonFinite bool
}

// Open opens an adapter folder: our adapter_config.json +
// adapter_model.safetensors, or a PEFT LoRA folder.
func Open(dir string) (*Loaded, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		if isGGUF(dir) {
			return openLoRAGGUF(dir)
		}
		return nil, inputErr("%s: not an adapter (want an adapter folder or a llama.cpp LoRA .gguf)", dir)
	}
	cfgPath := filepath.Join(dir, ConfigName)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, inputErr("%s: not an adapter folder: %v", dir, err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, inputErr("%s: not valid JSON: %v", cfgPath, err)
	}
	l := &Loaded{Dir: dir, Modules: map[string]Module{}, path: filepath.Join(dir, ModelName)}
	if _, ok := probe["peft_type"]; ok {
		l.Kind = KindPEFT
	} else {
		l.Kind = KindSORSA
	}
	l.file, err = safetensors.Open(l.path)
	if err != nil {
		return nil, wrapInput(err)
	}
	if l.Kind == KindSORSA {
		cfg, err := ParseConfig(cfgPath, b)
		if err != nil {
			l.Close()
			return nil, wrapInput(err)
		}
		l.Config = cfg
		for _, t := range cfg.Targets {
			l.Modules[t.Tensor] = Module{Name: t.Module, Tensor: t.Tensor, Rank: cfg.Rank, Scale: cfg.Scale,
				Out: int(t.Shape[0]), In: int(t.Shape[1]), NonFinite: t.NonFinite}
		}
		return l, nil
	}
	var pc PEFTConfig
	if err := json.Unmarshal(b, &pc); err != nil {
		l.Close()
		return nil, inputErr("%s: %v", cfgPath, err)
	}
	if pc.PEFTType != "LORA" {
		l.Close()
		return nil, inputErr("%s: peft_type %q is not supported (want LORA)", cfgPath, pc.PEFTType)
	}
	if pc.UseDoRA {
		l.Close()
		return nil, inputErr("%s: DoRA adapters cannot be merged as a low-rank sum", cfgPath)
	}
	l.PEFT = &pc
	shapes := map[string][2][]int64{}
	for _, ti := range l.file.Tensors() {
		mod, part, ok := peftModule(ti.Name)
		if !ok {
			continue
		}
		s := shapes[mod]
		if part == "A" {
			s[0] = ti.Shape
		} else {
			s[1] = ti.Shape
		}
		shapes[mod] = s
	}
	mods := make([]string, 0, len(shapes))
	for m := range shapes {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	for _, mod := range mods {
		s := shapes[mod]
		if s[0] == nil || s[1] == nil {
			l.Close()
			return nil, inputErr("%s: module %q has only one of lora_A and lora_B", l.path, mod)
		}
		if len(s[0]) != 2 || len(s[1]) != 2 || s[0][0] != s[1][1] {
			l.Close()
			return nil, inputErr("%s: module %q: lora_A %v and lora_B %v do not fit", l.path, mod, s[0], s[1])
		}
		r := int(s[0][0])
		alpha := pc.LoraAlpha
		if a, ok := pc.AlphaPattern[mod]; ok {
			if f, ok := a.(float64); ok {
				alpha = f
			}
		}
		scale := alpha / float64(r)
		if pc.UseRSLoRA {
			scale = alpha / math.Sqrt(float64(r))
		}
		l.Modules[mod+".weight"] = Module{Name: mod, Tensor: mod + ".weight", Rank: r, Scale: scale,
			Out: int(s[1][0]), In: int(s[0][1])}
	}
	if len(l.Modules) == 0 {
		l.Close()
		return nil, inputErr("%s: no lora_A/lora_B tensors", l.path)
	}
	return l, nil
}

// Close releases the adapter file.
func (l *Loaded) Close() error {
	if l.lora != nil {
		return l.lora.f.Close()
	}
	if l.file != nil {
		return l.file.Close()
	}
	return nil
}

// Factors reads a module's factors. A PEFT module is returned as
// B·diag(1)·A, its scale in Module.Scale.
func (l *Loaded) Factors(m Module) (*surgery.Factors, error) {
	if l.Kind == KindSORSA {
		return readFactors(l.file, l.path, m.Name, m.Rank, m.Out, m.In)
	}
	if l.lora != nil {
		return l.lora.factors(m)
	}
	var a, b []float32
	var err error
	for _, suffix := range []string{"", ".default"} {
		an := PEFTPrefix + m.Name + ".lora_A" + suffix + ".weight"
		if _, ok := l.file.Lookup(an); !ok {
			continue
		}
		if a, err = readF32(l.file, l.path, an, int64(m.Rank), int64(m.In)); err != nil {
			return nil, err
		}
		if b, err = readF32(l.file, l.path, PEFTPrefix+m.Name+".lora_B"+suffix+".weight", int64(m.Out), int64(m.Rank)); err != nil {
			return nil, err
		}
	}
	if a == nil {
		return nil, inputErr("%s: module %q has no lora_A", l.path, m.Name)
	}
	return loraFactors(m, a, b), nil
}

// loraFactors is a plain LoRA's pair B·A as factors B·diag(1)·A.
func loraFactors(m Module, a, b []float32) *surgery.Factors {
	s := make([]float32, m.Rank)
	for i := range s {
		s[i] = 1
	}
	return &surgery.Factors{A: &surgery.Matrix{Rows: m.Rank, Cols: m.In, Data: a}, S: s,
		B: &surgery.Matrix{Rows: m.Out, Cols: m.Rank, Data: b}}
}

// checkResidual compares the residual's files with the checksums recorded
// at split time: by CRC-32C when want asks for it and the adapter recorded
// it for every file (see FileHash), by sha256 otherwise.
func (l *Loaded) checkResidual(m model, want digest) error {
	if l.Config == nil {
		return nil
	}
	rec := l.Config.Residual.Files
	want = l.residualDigest(want)
	name := "sha256"
	if want == digestCRC32C {
		name = "crc32c"
	}
	got, w, diff, err := fileDiff(m, rec, want)
	switch {
	case err != nil:
		return err
	case !diff:
		return nil
	case len(rec) == 1 && len(modelFiles(m)) == 1: // compared whatever its name
		return inputErr("%s: residual %s has %s %s but the adapter was split with %s (%s %s); use --force to merge anyway", l.Dir, m.Path(), name, got.sum(want), w.Path, name, w.sum(want))
	case w.Path == "":
		return l.unknownFile(got.Path)
	}
	return inputErr("%s: residual %s has %s %s but the adapter was split with %s %s; use --force to merge anyway", l.Dir, got.Path, name, got.sum(want), name, w.sum(want))
}

// unknownFile is the error for a residual file the adapter has no record of.
func (l *Loaded) unknownFile(path string) error {
	return inputErr("%s: residual file %s is not one this adapter was split with (it records %s); use --force to merge anyway", l.Dir, path, fileList(l.Config.Residual.Files))
}

// checkResidualNames refuses a residual whose files the adapter has no
// record of (a single file may have been renamed): what checkResidual
// would find first, known before any byte is read. Merge checks this
// before it starts, since its checksums are complete only at its end.
func (l *Loaded) checkResidualNames(m model) error {
	if l.Config == nil {
		return nil
	}
	rec := l.Config.Residual.Files
	files := modelFiles(m)
	if len(rec) == 1 && len(files) == 1 {
		return nil
	}
	known := map[string]bool{}
	for _, f := range rec {
		known[f.Path] = true
	}
	for _, f := range files {
		if !known[f] {
			return l.unknownFile(f)
		}
	}
	return nil
}

// residualDigest returns the checksum checkResidual compares when asked
// for want: CRC-32C only when the adapter recorded it for every file.
func (l *Loaded) residualDigest(want digest) digest {
	if l.Config == nil {
		return want
	}
	for _, f := range l.Config.Residual.Files {
		if f.CRC32C == "" {
			return digestSHA256
		}
	}
	return want
}

// fileDiff hashes m's files (the checksum want selects) and compares them
// with the records rec: it returns the first file that differs (got), what
// was recorded for it (w; zero when nothing was) and diff. A single-file
// model may have been renamed, so one file is compared with the one record
// whatever their names.
func fileDiff(m model, rec []FileHash, want digest) (got, w FileHash, diff bool, err error) {
	hashed := hashFiles(m, want)
	if hashed.err != nil {
		return got, w, false, hashed.err
	}
	same := func(a, b FileHash) bool { return a.sum(want) == b.sum(want) }
	if len(hashed.files) == 1 && len(rec) == 1 {
		return hashed.files[0], rec[0], !same(hashed.files[0], rec[0]), nil
	}
	byPath := map[string]FileHash{}
	for _, f := range rec {
		byPath[f.Path] = f
	}
	for _, f := range hashed.files {
		if r, ok := byPath[f.Path]; !ok || !same(f, r) {
			return f, r, true, nil
		}
	}
	return got, w, false, nil
}

// sum returns f's checksum of kind d (sha256 unless d is digestCRC32C).
func (f FileHash) sum(d digest) string {
	if d == digestCRC32C {
		return f.CRC32C
	}
	return f.SHA256
}

func fileList(fs []FileHash) string {
	s := ""
	for i, f := range fs {
		if i > 0 {
			s += ", "
		}
		s += f.Path
	}
	return s
}

// matchModel pairs each adapter module with a tensor of m, checking shapes.
func (l *Loaded) matchModel(m model) (map[string]Module, error) {
	byName := map[string]Tensor{}
	for _, t := range m.Tensors() {
		byName[t.Name] = t
	}
	out := map[string]Module{}
	for name, mod := range l.Modules {
		t, ok := byName[name]
		if !ok {
			return nil, inputErr("%s: adapter module %q needs tensor %q, which %s does not have", l.Dir, mod.Name, name, m.Path())
		}
		if !t.Matrix() {
			return nil, inputErr("%s: tensor %q (%s %v) cannot take an adapter: %s", m.Path(), name, t.DType, t.Shape, nonEmpty(t.Reason, "not a weight matrix"))
		}
		if t.Out != mod.Out || t.In != mod.In {
			return nil, inputErr("%s: tensor %q is %d×%d but the adapter's module %q is %d×%d", m.Path(), name, t.Out, t.In, mod.Name, mod.Out, mod.In)
		}
		out[name] = mod
	}
	return out, nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// isGGUF reports whether the file starts with the GGUF magic.
func isGGUF(path string) bool {
	magic, n, err := fileStart(path)
	return err == nil && n >= 4 && string(magic[:4]) == gguf.Magic
}

// fileStart returns the first (up to) 8 bytes of a file and how many it has.
func fileStart(path string) (magic [8]byte, n int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return magic, 0, err
	}
	defer f.Close()
	n, _ = io.ReadFull(f, magic[:])
	return magic, n, nil
}
