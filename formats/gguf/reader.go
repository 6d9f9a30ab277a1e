package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// DefaultAlignment is the alignment used when general.alignment is absent.
const DefaultAlignment = 32

// AlignmentKey is the metadata key that sets the data alignment (UINT32, a
// power of two).
const AlignmentKey = "general.alignment"

// MaxDims is the largest number of dimensions a ggml tensor has.
const MaxDims = 4

// MaxNameLen is the longest tensor name (in bytes) ggml accepts
// (GGML_MAX_NAME − 1).
const MaxNameLen = 63

// maxNesting bounds how deep arrays of arrays may nest.
const maxNesting = 16

// Errors a FormatError may wrap, for errors.Is.
var (
	// ErrBigEndian reports a byte-swapped (big-endian) file.
	ErrBigEndian = errors.New("unsupported big-endian GGUF file")
	// ErrVersion reports a GGUF version other than 2 or 3.
	ErrVersion = errors.New("unsupported GGUF version")
	// ErrTruncated reports a file that ends before its header or data does.
	ErrTruncated = errors.New("file is truncated")
)

// FormatError reports a file that is not a valid GGUF file. Offset is the
// byte offset in the file where the problem was found; Key or Tensor names
// the metadata key or tensor being read, when there is one.
type FormatError struct {
	Offset int64
	Key    string
	Tensor string
	Msg    string
	Err    error // an underlying cause (ErrTruncated, ErrVersion, ...), or nil
}

// Error formats the error with its offset, key or tensor, and cause.
func (e *FormatError) Error() string {
	s := fmt.Sprintf("gguf: offset %d", e.Offset)
	if e.Key != "" {
		s += fmt.Sprintf(": key %q", e.Key)
	}
	if e.Tensor != "" {
		s += fmt.Sprintf(": tensor %q", e.Tensor)
	}
	s += ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *FormatError) Unwrap() error { return e.Err }

// TensorInfo describes one tensor: its name, dimensions in ggml's ne order
// (ne[0], the fastest-varying, first), element type and data offset
// relative to the start of the data section.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   Type
	Offset uint64
}

// NumElements returns the product of the dimensions, or -1 if it overflows
// int64.
func (t TensorInfo) NumElements() int64 {
	n := uint64(1)
	for _, d := range t.Dims {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 {
			return -1
		}
		n = lo
	}
	return int64(n)
}

// Size returns the bytes the tensor's data takes, or -1 if it cannot be
// computed (unknown type, ne[0] not a multiple of the block size, overflow).
func (t TensorInfo) Size() int64 {
	n := t.NumElements()
	tr, ok := typeTable[t.Type]
	if n < 0 || !ok {
		return -1
	}
	if t.ne0()%uint64(tr.blockSize) != 0 {
		return -1
	}
	hi, lo := bits.Mul64(uint64(n/int64(tr.blockSize)), uint64(tr.typeSize))
	if hi != 0 || lo > math.MaxInt64 {
		return -1
	}
	return int64(lo)
}

// ne0 returns ne[0], 1 for a tensor without dimensions.
func (t TensorInfo) ne0() uint64 {
	if len(t.Dims) == 0 {
		return 1
	}
	return t.Dims[0]
}

// Rows returns the number of rows (the product of ne[1:]) and the row length
// ne[0], the shape a row-major out × in matrix has for a 2-D weight.
func (t TensorInfo) Rows() (rows, cols int64) {
	if len(t.Dims) == 0 {
		return 1, 1
	}
	n := t.NumElements()
	if n < 0 || t.Dims[0] == 0 {
		return 0, int64(t.Dims[0])
	}
	return n / int64(t.Dims[0]), int64(t.Dims[0])
}

// Header is what precedes the tensor data: everything a Writer needs to
// write a file.
type Header struct {
	Version uint32       // 2 or 3
	KV      []KV         // metadata, in file order
	Tensors []TensorInfo // tensor infos, in file order
	// AlignEmpty pads the header of a file without tensors to the alignment,
	// as ggml's writer does; gguf-py's writer leaves such a file unpadded.
	// Files with tensors are always padded.
	AlignEmpty bool
}

// File is an open GGUF file: its header, read eagerly, and access to the
// tensor data, read lazily. Get, Tensor and Section look names up in the
// header as read; edit a copy of KV or Tensors, not the File's own.
type File struct {
	Header

	// Alignment is the data alignment (general.alignment, default 32).
	Alignment uint64
	// DataOffset is the file offset of the data section; TensorInfo offsets
	// are relative to it.
	DataOffset int64
	// Size is the size of the file in bytes.
	Size int64

	r       io.ReaderAt
	closer  io.Closer
	keys    map[string]int
	tensors map[string]int
}

// Open opens the named GGUF file and reads its header. Close releases it.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	f, err := NewReader(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.closer = fh
	return f, nil
}

// Close closes the file if it was opened by Open; otherwise it does nothing.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Section returns a reader over the named tensor's data (without padding).
func (f *File) Section(name string) (*io.SectionReader, error) {
	i, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	t := f.Tensors[i]
	return io.NewSectionReader(f.r, f.DataOffset+int64(t.Offset), t.Size()), nil
}

// ReadTensor returns the named tensor's raw data.
func (f *File) ReadTensor(name string) ([]byte, error) {
	sr, err := f.Section(name)
	if err != nil {
		return nil, err
	}
	b := make([]byte, sr.Size())
	if _, err := io.ReadFull(sr, b); err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	return b, nil
}

// ReadFloat32 reads the named tensor and decodes it to float32 in file order
// (row-major with ne[0] fastest). The type must have a codec.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	if !t.Type.CanDequantize() {
		return nil, fmt.Errorf("gguf: tensor %q: no decoder for type %s", name, t.Type)
	}
	raw, err := f.ReadTensor(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := Dequantize(t.Type, out, raw); err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	return out, nil
}

// decoder reads the header sequentially, tracking the file offset and
// refusing any length larger than the bytes that remain.
type decoder struct {
	br   *bufio.Reader
	off  int64
	size int64
	buf  [8]byte
	key  string // key being read, for errors
	name string // tensor being read, for errors
}

func (d *decoder) remaining() int64 { return d.size - d.off }

func (d *decoder) errorf(off int64, cause error, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Key: d.key, Tensor: d.name, Msg: fmt.Sprintf(format, args...), Err: cause}
}

func (d *decoder) read(n int, what string) ([]byte, error) {
	if int64(n) > d.remaining() {
		return nil, d.errorf(d.off, ErrTruncated, "reading %s (%d bytes, %d left)", what, n, d.remaining())
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.br, b); err != nil {
		return nil, d.errorf(d.off, ErrTruncated, "reading %s: %v", what, err)
	}
	d.off += int64(n)
	return b, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.read(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.read(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// bytes reads n bytes into a new slice after checking n against what is left.
func (d *decoder) bytes(n uint64, what string) ([]byte, error) {
	if n > uint64(d.remaining()) {
		return nil, d.errorf(d.off, ErrTruncated, "%s of %d bytes exceeds the %d bytes left", what, n, d.remaining())
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.br, b); err != nil {
		return nil, d.errorf(d.off, ErrTruncated, "reading %s: %v", what, err)
	}
	d.off += int64(n)
	return b, nil
}

func (d *decoder) str(what string) (string, error) {
	start := d.off
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", d.errorf(start, ErrTruncated, "%s length %d exceeds the %d bytes left", what, n, d.remaining())
	}
	b, err := d.bytes(n, what)
	return string(b), err
}

// count reads an element count and checks that count elements of at least
// minSize bytes each fit in what is left.
func (d *decoder) count(what string, minSize int64) (int, error) {
	start := d.off
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if n > uint64(d.remaining()/minSize) {
		return 0, d.errorf(start, ErrTruncated, "%s %d cannot fit in the %d bytes left", what, n, d.remaining())
	}
	return int(n), nil
}

// value reads a value payload of type t.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	start := d.off
	switch {
	case t == ValueString:
		s, err := d.str("string")
		return Value{Type: ValueString, str: s}, err
	case t == ValueArray:
		if depth >= maxNesting {
			return Value{}, d.errorf(start, nil, "arrays nested deeper than %d", maxNesting)
		}
		et32, err := d.u32("array element type")
		if err != nil {
			return Value{}, err
		}
		et := ValueType(et32)
		if !et.valid() {
			return Value{}, d.errorf(start, nil, "array of invalid value type %d", et32)
		}
		minSize := int64(et.size())
		switch et {
		case ValueString:
			minSize = 8
		case ValueArray:
			minSize = 12
		}
		n, err := d.count("array length", minSize)
		if err != nil {
			return Value{}, err
		}
		v := Value{Type: ValueArray, elem: et, n: n}
		switch et {
		case ValueString:
			v.strs = make([]string, n)
			for i := range v.strs {
				if v.strs[i], err = d.str("string"); err != nil {
					return Value{}, err
				}
			}
		case ValueArray:
			v.arrs = make([]Value, n)
			for i := range v.arrs {
				if v.arrs[i], err = d.value(ValueArray, depth+1); err != nil {
					return Value{}, err
				}
			}
		default:
			if v.raw, err = d.bytes(uint64(n)*uint64(minSize), "array data"); err != nil {
				return Value{}, err
			}
		}
		return v, nil
	case t.valid():
		b, err := d.read(t.size(), t.String())
		if err != nil {
			return Value{}, err
		}
		return Value{Type: t, raw: append([]byte(nil), b...)}, nil
	}
	return Value{}, d.errorf(start, nil, "invalid value type %d", uint32(t))
}

// NewReader reads the header of a GGUF file of the given size from r and
// validates it as ggml does: magic and version, metadata, tensor infos,
// alignment, contiguous aligned offsets and data within the file. Tensor data
// is read later, on demand, through r.
func NewReader(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, &FormatError{Msg: "negative file size"}
	}
	d := &decoder{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	f := &File{r: r, Size: size, keys: map[string]int{}, tensors: map[string]int{}}

	magic, err := d.read(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		if string(magic) == "FUGG" {
			return nil, d.errorf(0, ErrBigEndian, "byte-swapped magic")
		}
		return nil, d.errorf(0, nil, "not a GGUF file (magic %q)", magic)
	}
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version != 0 && version&0xFFFF == 0:
		return nil, d.errorf(4, ErrBigEndian, "version field 0x%08x is byte-swapped", version)
	case version == 1:
		return nil, d.errorf(4, ErrVersion, "GGUF v1 is no longer supported")
	case version < 2 || version > 3:
		return nil, d.errorf(4, ErrVersion, "version %d (want 2 or 3)", version)
	}
	f.Version = version

	// A tensor info takes at least 24 bytes (empty name, no dims), a KV pair
	// at least 13 (empty key, a one-byte value).
	nTensors, err := d.count("tensor count", 24)
	if err != nil {
		return nil, err
	}
	nKV, err := d.count("metadata count", 13)
	if err != nil {
		return nil, err
	}

	f.KV = make([]KV, 0, nKV)
	alignOff := int64(0)
	for i := 0; i < nKV; i++ {
		start := d.off
		d.key = ""
		key, err := d.str("key")
		if err != nil {
			return nil, err
		}
		d.key = key
		if key == "" {
			return nil, d.errorf(start, nil, "empty key")
		}
		if _, dup := f.keys[key]; dup {
			return nil, d.errorf(start, nil, "duplicate key")
		}
		t, err := d.u32("value type")
		if err != nil {
			return nil, err
		}
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return nil, err
		}
		if key == AlignmentKey {
			alignOff = start
		}
		f.keys[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	d.key = ""

	f.Alignment = DefaultAlignment
	if v, ok := f.Get(AlignmentKey); ok {
		a, ok := v.AsUint32()
		if !ok {
			return nil, &FormatError{Offset: alignOff, Key: AlignmentKey, Msg: fmt.Sprintf("type %s, want UINT32", v.Type)}
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, &FormatError{Offset: alignOff, Key: AlignmentKey, Msg: fmt.Sprintf("alignment %d is not a power of two", a)}
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	infoOff := make([]int64, 0, nTensors) // file offset of each info's offset field
	for i := 0; i < nTensors; i++ {
		start := d.off
		d.name = ""
		name, err := d.str("tensor name")
		if err != nil {
			return nil, err
		}
		d.name = name
		if _, dup := f.tensors[name]; dup {
			return nil, d.errorf(start, nil, "duplicate tensor name")
		}
		nd, err := d.u32("n_dims")
		if err != nil {
			return nil, err
		}
		if nd > MaxDims {
			return nil, d.errorf(d.off-4, nil, "%d dimensions (at most %d)", nd, MaxDims)
		}
		ti := TensorInfo{Name: name, Dims: make([]uint64, nd)}
		for j := range ti.Dims {
			if ti.Dims[j], err = d.u64("dimension"); err != nil {
				return nil, err
			}
			if ti.Dims[j] > math.MaxInt64 {
				return nil, d.errorf(d.off-8, nil, "dimension %d is negative as int64", j)
			}
		}
		if ti.NumElements() < 0 {
			return nil, d.errorf(start, nil, "dimensions %v overflow int64", ti.Dims)
		}
		typ, err := d.u32("type")
		if err != nil {
			return nil, err
		}
		ti.Type = Type(typ)
		if !ti.Type.Known() {
			return nil, d.errorf(d.off-4, nil, "unknown ggml type %d: its size cannot be computed", typ)
		}
		if ti.ne0()%uint64(ti.Type.BlockSize()) != 0 {
			return nil, d.errorf(start, nil, "ne[0] = %d is not a multiple of the %s block size %d", ti.ne0(), ti.Type, ti.Type.BlockSize())
		}
		if ti.Size() < 0 {
			return nil, d.errorf(start, nil, "size of %s %v overflows int64", ti.Type, ti.Dims)
		}
		infoOff = append(infoOff, d.off)
		if ti.Offset, err = d.u64("offset"); err != nil {
			return nil, err
		}
		f.tensors[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	d.name = ""
	headerEnd := d.off

	f.DataOffset = headerEnd
	if nTensors > 0 {
		p, ok := alignUp(uint64(headerEnd), f.Alignment)
		if !ok || p > uint64(size) {
			return nil, d.errorf(headerEnd, ErrTruncated, "data section (aligned to %d) starts past the end of the file", f.Alignment)
		}
		f.DataOffset = int64(p)
	} else if p, ok := alignUp(uint64(headerEnd), f.Alignment); ok && p != uint64(headerEnd) && p == uint64(size) {
		f.AlignEmpty = zeros(r, headerEnd, int64(p)-headerEnd)
	}

	// Offsets must be the running sum of padded sizes, in info order.
	var want uint64
	for i, ti := range f.Tensors {
		off := infoOff[i]
		if ti.Offset != want {
			return nil, &FormatError{Offset: off, Tensor: ti.Name, Msg: fmt.Sprintf("data offset %d, expected %d (tensors must be contiguous and aligned to %d)", ti.Offset, want, f.Alignment)}
		}
		sz := uint64(ti.Size())
		end := want + sz
		if end < want || end > uint64(size-f.DataOffset) {
			return nil, &FormatError{Offset: f.DataOffset + int64(want), Tensor: ti.Name, Err: ErrTruncated,
				Msg: fmt.Sprintf("data of %d bytes runs past the end of the file (%d bytes)", sz, size)}
		}
		next, ok := alignUp(end, f.Alignment)
		if !ok {
			return nil, &FormatError{Offset: off, Tensor: ti.Name, Msg: "padded data size overflows"}
		}
		want = next
	}
	return f, nil
}

// alignUp rounds x up to a multiple of the power of two a.
func alignUp(x, a uint64) (uint64, bool) {
	p := (x + a - 1) &^ (a - 1)
	return p, p >= x
}

// zeros reports whether the n bytes at off in r are all zero.
func zeros(r io.ReaderAt, off, n int64) bool {
	b := make([]byte, n)
	if k, _ := r.ReadAt(b, off); int64(k) != n {
		return false
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
