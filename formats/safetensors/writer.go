package safetensors

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Writer writes a safetensors file as a stream: the header first (so every
// tensor's dtype and shape must be known up front), then each tensor's
// bytes in the declared order. Memory use is independent of the tensors'
// sizes.
type Writer struct {
	bw         *bufio.Writer
	tensors    []TensorInfo
	dataOffset int64
	next       int   // index of the next tensor to open
	remaining  int64 // bytes still due for the open tensor tensors[next-1]
	err        error // sticky: once set, every call returns it
	closed     bool
}

// NewWriter validates the tensors' names, dtypes and shapes, lays them out
// contiguously in the given order (their Offset and Size fields are
// ignored and computed), and writes the header to w: compact JSON with
// "__metadata__" first (keys sorted; omitted when metadata is nil) and the
// tensors in order, padded with spaces so the data section starts at a
// multiple of 8, as the reference writer does. Writes are buffered; Close
// flushes them but does not close w.
func NewWriter(w io.Writer, tensors []TensorInfo, metadata map[string]string) (*Writer, error) {
	laid := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", t.Name)
		}
		if t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: tensor name %q is reserved", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors: tensor %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
		size, err := t.DType.ByteSize(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if off > maxInt64-size {
			return nil, fmt.Errorf("safetensors: tensor %q: data section exceeds 2^63 bytes", t.Name)
		}
		t = t.clone()
		t.Offset, t.Size = off, size
		off += size
		laid[i] = t
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: metadata %q: key or value is not valid UTF-8", k)
		}
	}
	header := encodeHeader(laid, metadata)
	if len(header) > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit readers accept", len(header), MaxHeaderSize)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := bw.Write(n[:]); err != nil {
		return nil, fmt.Errorf("safetensors: writing header: %w", err)
	}
	if _, err := bw.Write(header); err != nil {
		return nil, fmt.Errorf("safetensors: writing header: %w", err)
	}
	return &Writer{bw: bw, tensors: laid, dataOffset: 8 + int64(len(header))}, nil
}

const maxInt64 = 1<<63 - 1

// Tensors returns the tensors as laid out in the file, with their Offset
// and Size.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		out[i] = t.clone()
	}
	return out
}

// DataOffset returns the file position where the data section starts.
func (w *Writer) DataOffset() int64 { return w.dataOffset }

// Create starts the tensor called name, which must be the next one in the
// declared order, and returns a writer for exactly its Size bytes. The
// previous tensor must be complete. Like zip.Writer.Create, the returned
// writer is valid until the next call to Create, WriteTensor or Close.
func (w *Writer) Create(name string) (io.Writer, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.closed {
		return nil, errors.New("safetensors: write to closed Writer")
	}
	if err := w.finishCurrent(); err != nil {
		return nil, err
	}
	if w.next >= len(w.tensors) {
		w.err = fmt.Errorf("safetensors: tensor %q: all %d declared tensors already written", name, len(w.tensors))
		return nil, w.err
	}
	if want := w.tensors[w.next].Name; name != want {
		w.err = fmt.Errorf("safetensors: tensor %q written out of order: next is %q", name, want)
		return nil, w.err
	}
	w.remaining = w.tensors[w.next].Size
	w.next++
	return &tensorWriter{w: w, idx: w.next}, nil
}

// WriteTensor writes the whole of the next tensor, which must be called
// name and be exactly its Size bytes long.
func (w *Writer) WriteTensor(name string, data []byte) error {
	tw, err := w.Create(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != w.remaining {
		w.err = fmt.Errorf("safetensors: tensor %q: got %d bytes, want %d", name, len(data), w.remaining)
		return w.err
	}
	_, err = tw.Write(data)
	return err
}

// finishCurrent checks that the open tensor got all its bytes.
func (w *Writer) finishCurrent() error {
	if w.remaining != 0 {
		t := w.tensors[w.next-1]
		w.err = fmt.Errorf("safetensors: tensor %q: %d of %d bytes written", t.Name, t.Size-w.remaining, t.Size)
		return w.err
	}
	return nil
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("safetensors: %w", err)
	}
	return w.err
}

// Close checks that every declared tensor was written in full and flushes
// the file. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err == nil {
		if err := w.finishCurrent(); err == nil && w.next < len(w.tensors) {
			w.err = fmt.Errorf("safetensors: tensor %q (and %d after it) never written", w.tensors[w.next].Name, len(w.tensors)-w.next-1)
		}
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	return w.Flush()
}

// tensorWriter accepts one tensor's bytes.
type tensorWriter struct {
	w   *Writer
	idx int // the value of w.next when it was created
}

// Write passes p on, refusing bytes past the tensor's size.
func (tw *tensorWriter) Write(p []byte) (int, error) {
	w := tw.w
	if w.err != nil {
		return 0, w.err
	}
	t := w.tensors[tw.idx-1]
	if w.closed || w.next != tw.idx {
		return 0, fmt.Errorf("safetensors: tensor %q: write after the next tensor was started", t.Name)
	}
	if int64(len(p)) > w.remaining {
		w.err = fmt.Errorf("safetensors: tensor %q: %d bytes written past its %d-byte size", t.Name, int64(len(p))-w.remaining, t.Size)
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.remaining -= int64(n)
	if err != nil {
		w.err = fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
	}
	return n, w.err
}

// encodeHeader returns the compact JSON header, space-padded to a multiple
// of 8 bytes, the way the reference writer (serde_json) spells it.
func encodeHeader(tensors []TensorInfo, metadata map[string]string) []byte {
	b := []byte{'{'}
	first := true
	if metadata != nil {
		b = appendJSONString(b, "__metadata__")
		b = append(b, ':', '{')
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, metadata[k])
		}
		b = append(b, '}')
		first = false
	}
	for _, t := range tensors {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendJSONString(b, string(t.DType))
		b = append(b, `,"shape":[`...)
		for i, d := range t.Shape {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.Offset, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.Offset+t.Size, 10)
		b = append(b, ']', '}')
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b
}

// appendJSONString appends s as a JSON string with serde_json's escapes:
// only '"', '\\' and control characters are escaped (\b \f \n \r \t, else
// \u00xx in lower-case hex); everything else, including non-ASCII, is
// written as is. s must be valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
