// Package safetensors reads and writes Hugging Face safetensors files one
// tensor at a time over io.ReaderAt / io.Writer, and their sharded-checkpoint
// index (model.safetensors.index.json).
//
// It owns the container only: it may import formats/dtype for element
// codecs, never another format package nor surgery.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
// describing every tensor (dtype, shape, data_offsets relative to the data
// section at 8+N) plus an optional "__metadata__" string map, then the data.
// The reader enforces the reference implementation's rules: the tensors
// cover the data section exactly, without holes, overlaps or trailing bytes,
// and each tensor's byte range matches its shape and dtype. A tensor whose
// dtype is unknown (not in the reference's list) makes the whole file a
// FormatError wrapping ErrUnknownDType, since its extent cannot be checked.
// Memory use is bounded by the header (at most MaxHeaderSize) and whatever
// tensor the caller reads.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	// Shape is the tensor's dimensions, outermost first (C order); empty
	// for a scalar.
	Shape []int64
	// Offset is where the tensor's bytes start, relative to the start of
	// the data section (File.DataOffset); Size is their count.
	Offset, Size int64
}

// NumElements returns the product of the shape (1 for a scalar). It is
// only meaningful for a validated TensorInfo, whose product cannot overflow.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

func (t TensorInfo) clone() TensorInfo {
	t.Shape = slices.Clone(t.Shape)
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t
}

// File is a parsed safetensors file: its header in memory, its tensor data
// read on demand from the underlying io.ReaderAt.
type File struct {
	r          io.ReaderAt
	size       int64
	dataOffset int64
	tensors    []TensorInfo // in data-offset order
	byName     map[string]int
	metadata   map[string]string
	closer     io.Closer
}

// Open opens and parses the safetensors file at path. Close the File when
// done.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	sf, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sf.closer = f
	return sf, nil
}

// Close closes the file opened by Open; for a File made by NewReader it
// does nothing.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// NewReader parses the safetensors file of the given size read through r.
// It reads only the header; invalid files give a *FormatError.
func NewReader(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, &FormatError{Offset: 0, Msg: fmt.Sprintf("file is %d bytes, too short for the 8-byte header length", size)}
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, &FormatError{Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)}
	}
	if n > uint64(size-8) {
		return nil, &FormatError{Offset: 0, Msg: fmt.Sprintf("header length %d runs past the end of the %d-byte file", n, size)}
	}
	header := make([]byte, n)
	if err := readFull(r, header, 8); err != nil {
		return nil, fmt.Errorf("safetensors: reading %d-byte header: %w", n, err)
	}
	f := &File{r: r, size: size, dataOffset: 8 + int64(n)}
	if err := f.parseHeader(header); err != nil {
		return nil, err
	}
	return f, nil
}

// Tensors returns the tensors in data-offset order, the file's physical
// order (tensors of size zero sharing an offset keep their header order).
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t.clone()
	}
	return out
}

// Lookup returns the tensor called name.
func (f *File) Lookup(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i].clone(), true
}

// Metadata returns a copy of the "__metadata__" map, or nil if the header
// has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.metadata) }

// DataOffset returns the file position of the data section (8 + header
// length); tensor offsets are relative to it.
func (f *File) DataOffset() int64 { return f.dataOffset }

// Size returns the file's size in bytes.
func (f *File) Size() int64 { return f.size }

// Section returns a reader of the raw little-endian bytes of the tensor
// called name.
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %q: %w", name, ErrTensorNotFound)
	}
	ti := f.tensors[t]
	return io.NewSectionReader(f.r, f.dataOffset+ti.Offset, ti.Size), nil
}

// ReadTensor reads the raw bytes of the tensor called name into a new
// slice (its size was checked against the file's when it was opened).
func (f *File) ReadTensor(name string) ([]byte, error) {
	sr, err := f.Section(name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, sr.Size())
	if err := readFull(sr, buf, 0); err != nil {
		return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	return buf, nil
}

// readFull fills p from r at off. io.ReaderAt may report io.EOF along with
// a full read at the end of the input; that is success.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// headerParser walks the JSON header with a token decoder, so that the
// tensors' order is kept and duplicate keys are seen.
type headerParser struct {
	dec *json.Decoder
}

// pos returns the file offset of the decoder's current position.
func (p *headerParser) pos() int64 { return 8 + p.dec.InputOffset() }

func (p *headerParser) fail(tensor, format string, args ...any) error {
	return &FormatError{Offset: p.pos(), Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

func (p *headerParser) jsonErr(tensor string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &FormatError{Offset: p.pos(), Tensor: tensor, Msg: "invalid JSON header: " + err.Error(), Err: err}
}

// parsedTensor is a header entry before layout validation.
type parsedTensor struct {
	TensorInfo
	begin, end uint64
	at         int64 // file offset of the entry, for errors
}

func (f *File) parseHeader(header []byte) error {
	if !utf8.Valid(header) {
		i := 0
		for i < len(header) {
			r, w := utf8.DecodeRune(header[i:])
			if r == utf8.RuneError && w <= 1 {
				break
			}
			i += w
		}
		return &FormatError{Offset: 8 + int64(i), Msg: "header is not valid UTF-8"}
	}
	if len(header) == 0 || header[0] != '{' {
		return &FormatError{Offset: 8, Msg: "header does not start with '{'"}
	}
	p := &headerParser{dec: json.NewDecoder(bytes.NewReader(header))}
	p.dec.UseNumber()
	if _, err := p.dec.Token(); err != nil { // the '{' checked above
		return p.jsonErr("", err)
	}
	var entries []parsedTensor
	seen := map[string]bool{}
	sawMetadata := false
	for p.dec.More() {
		at := p.pos()
		tok, err := p.dec.Token()
		if err != nil {
			return p.jsonErr("", err)
		}
		key, ok := tok.(string)
		if !ok {
			return p.fail("", "header key is %v, not a string", tok)
		}
		if key == "__metadata__" {
			if sawMetadata {
				return &FormatError{Offset: at, Msg: "duplicate __metadata__"}
			}
			sawMetadata = true
			if f.metadata, err = p.parseMetadata(); err != nil {
				return err
			}
			continue
		}
		if seen[key] {
			return &FormatError{Offset: at, Tensor: key, Msg: "duplicate tensor name"}
		}
		seen[key] = true
		e, err := p.parseEntry(key)
		if err != nil {
			return err
		}
		e.at = at
		entries = append(entries, e)
	}
	if _, err := p.dec.Token(); err != nil { // the closing '}'
		return p.jsonErr("", err)
	}
	if tok, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return p.jsonErr("", err)
		}
		return p.fail("", "unexpected %v after the header object", tok)
	}
	return f.layout(entries)
}

// parseMetadata reads the "__metadata__" value: a string→string object, or
// null (no metadata).
func (p *headerParser) parseMetadata() (map[string]string, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.jsonErr("", err)
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, p.fail("", "__metadata__ is %v, not an object", tok)
	}
	md := map[string]string{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, p.jsonErr("", err)
		}
		k, ok := tok.(string)
		if !ok {
			return nil, p.fail("", "__metadata__ key %v is not a string", tok)
		}
		if tok, err = p.dec.Token(); err != nil {
			return nil, p.jsonErr("", err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, p.fail("", "__metadata__ value for %q is not a string", k)
		}
		if _, dup := md[k]; dup {
			return nil, p.fail("", "duplicate __metadata__ key %q", k)
		}
		md[k] = v
	}
	if _, err := p.dec.Token(); err != nil {
		return nil, p.jsonErr("", err)
	}
	return md, nil
}

// parseEntry reads one tensor's {"dtype", "shape", "data_offsets"} object.
// Unknown fields are skipped, as the reference does.
func (p *headerParser) parseEntry(name string) (parsedTensor, error) {
	e := parsedTensor{TensorInfo: TensorInfo{Name: name}}
	tok, err := p.dec.Token()
	if err != nil {
		return e, p.jsonErr(name, err)
	}
	if tok != json.Delim('{') {
		return e, p.fail(name, "entry is %v, not an object", tok)
	}
	var haveDType, haveShape, haveOffsets bool
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return e, p.jsonErr(name, err)
		}
		field, _ := tok.(string)
		switch field {
		case "dtype":
			if haveDType {
				return e, p.fail(name, "duplicate field dtype")
			}
			haveDType = true
			if tok, err = p.dec.Token(); err != nil {
				return e, p.jsonErr(name, err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, p.fail(name, "dtype is %v, not a string", tok)
			}
			e.DType = DType(s)
		case "shape":
			if haveShape {
				return e, p.fail(name, "duplicate field shape")
			}
			haveShape = true
			nums, err := p.numbers(name, "shape")
			if err != nil {
				return e, err
			}
			e.Shape = make([]int64, len(nums))
			for i, s := range nums {
				d, err := strconv.ParseInt(string(s), 10, 64)
				if err != nil {
					if len(s) > 0 && s[0] == '-' {
						return e, p.fail(name, "dimension %d is negative (%s)", i, s)
					}
					return e, p.fail(name, "dimension %d (%s) is not an integer in range", i, s)
				}
				if d < 0 {
					return e, p.fail(name, "dimension %d is negative (%d)", i, d)
				}
				e.Shape[i] = d
			}
		case "data_offsets":
			if haveOffsets {
				return e, p.fail(name, "duplicate field data_offsets")
			}
			haveOffsets = true
			nums, err := p.numbers(name, "data_offsets")
			if err != nil {
				return e, err
			}
			if len(nums) != 2 {
				return e, p.fail(name, "data_offsets has %d values, want 2", len(nums))
			}
			var v [2]uint64
			for i, s := range nums {
				if v[i], err = strconv.ParseUint(string(s), 10, 64); err != nil {
					return e, p.fail(name, "data_offsets value %s is not a non-negative 64-bit integer", s)
				}
			}
			e.begin, e.end = v[0], v[1]
		default:
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return e, p.jsonErr(name, err)
			}
		}
	}
	if _, err := p.dec.Token(); err != nil {
		return e, p.jsonErr(name, err)
	}
	switch {
	case !haveDType:
		return e, p.fail(name, "missing dtype")
	case !haveShape:
		return e, p.fail(name, "missing shape")
	case !haveOffsets:
		return e, p.fail(name, "missing data_offsets")
	}
	return e, nil
}

// numbers reads a JSON array of numbers.
func (p *headerParser) numbers(name, field string) ([]json.Number, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.jsonErr(name, err)
	}
	if tok != json.Delim('[') {
		return nil, p.fail(name, "%s is %v, not an array", field, tok)
	}
	var out []json.Number
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, p.jsonErr(name, err)
		}
		n, ok := tok.(json.Number)
		if !ok {
			return nil, p.fail(name, "%s holds %v, not a number", field, tok)
		}
		out = append(out, n)
	}
	if _, err := p.dec.Token(); err != nil {
		return nil, p.jsonErr(name, err)
	}
	return out, nil
}

// layout checks each tensor's size against its dtype and shape, and that
// the tensors, sorted by offset, tile the data section exactly.
func (f *File) layout(entries []parsedTensor) error {
	dataLen := uint64(f.size - f.dataOffset)
	for i := range entries {
		e := &entries[i]
		size, err := e.DType.ByteSize(e.Shape)
		if err != nil {
			var cause error
			if errors.Is(err, ErrUnknownDType) {
				cause = ErrUnknownDType
			}
			return &FormatError{Offset: e.at, Tensor: e.Name, Msg: err.Error(), Err: cause}
		}
		if e.begin > e.end {
			return &FormatError{Offset: e.at, Tensor: e.Name, Msg: fmt.Sprintf("data_offsets [%d, %d] end before they begin", e.begin, e.end)}
		}
		if e.end > dataLen {
			return &FormatError{Offset: e.at, Tensor: e.Name, Msg: fmt.Sprintf("data_offsets [%d, %d] run past the end of the %d-byte data section", e.begin, e.end, dataLen)}
		}
		if e.end-e.begin != uint64(size) {
			return &FormatError{Offset: e.at, Tensor: e.Name, Msg: fmt.Sprintf("data_offsets [%d, %d] hold %d bytes, but %s %s needs %d", e.begin, e.end, e.end-e.begin, e.DType, shapeString(e.Shape), size)}
		}
		e.Offset, e.Size = int64(e.begin), size
	}
	slices.SortStableFunc(entries, func(a, b parsedTensor) int {
		if a.begin != b.begin {
			if a.begin < b.begin {
				return -1
			}
			return 1
		}
		if a.end != b.end {
			if a.end < b.end {
				return -1
			}
			return 1
		}
		return 0
	})
	f.tensors = make([]TensorInfo, len(entries))
	f.byName = make(map[string]int, len(entries))
	var end uint64
	prev := ""
	for i, e := range entries {
		switch {
		case e.begin > end:
			return &FormatError{Offset: f.dataOffset + int64(end), Tensor: e.Name, Msg: fmt.Sprintf("hole in the data section: bytes [%d, %d) belong to no tensor", end, e.begin)}
		case e.begin < end:
			return &FormatError{Offset: f.dataOffset + int64(e.begin), Tensor: e.Name, Msg: fmt.Sprintf("data_offsets [%d, %d] overlap tensor %q, which ends at %d", e.begin, e.end, prev, end)}
		}
		end, prev = e.end, e.Name
		f.tensors[i] = e.TensorInfo
		f.byName[e.Name] = i
	}
	if end != dataLen {
		return &FormatError{Offset: f.dataOffset + int64(end), Msg: fmt.Sprintf("%d trailing bytes after the last tensor belong to no tensor", dataLen-end)}
	}
	return nil
}
