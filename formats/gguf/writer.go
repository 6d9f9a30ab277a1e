package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Writer writes a GGUF file: NewWriter writes the header, then WriteTensor
// (or WriteTensorFrom) writes each tensor's data in header order, each padded
// with zeros to the alignment, and Close checks that every tensor was written
// and flushes. A file read with NewReader and written back with its Header
// and unchanged tensor data is reproduced byte for byte.
type Writer struct {
	w         *bufio.Writer
	n         int64 // bytes written so far
	align     uint64
	tensors   []TensorInfo
	next      int // index of the next tensor to write
	dataStart int64
	err       error // sticky write error
	closed    bool
}

// NewWriter validates h and writes its header to w. Tensor offsets are
// computed (h.Tensors' Offset fields are ignored): each tensor starts at the
// previous one's end padded to the alignment, which comes from the
// general.alignment key (UINT32, a power of two; 32 when absent). Tensor
// names must be unique and at most MaxNameLen bytes, dimensions at most
// MaxDims, types known, and ne[0] a multiple of the type's block size.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if h.Version != 2 && h.Version != 3 {
		return nil, fmt.Errorf("gguf: cannot write version %d (want 2 or 3)", h.Version)
	}
	gw := &Writer{w: bufio.NewWriterSize(w, 1<<16), align: DefaultAlignment}
	seen := make(map[string]bool, len(h.KV))
	for _, kv := range h.KV {
		if kv.Key == "" {
			return nil, errors.New("gguf: empty metadata key")
		}
		if seen[kv.Key] {
			return nil, fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if err := checkValue(kv.Value, 0); err != nil {
			return nil, fmt.Errorf("gguf: key %q: %w", kv.Key, err)
		}
		if kv.Key == AlignmentKey {
			a, ok := kv.Value.AsUint32()
			if !ok {
				return nil, fmt.Errorf("gguf: key %q has type %s, want UINT32", kv.Key, kv.Value.Type)
			}
			if a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("gguf: alignment %d is not a power of two", a)
			}
			gw.align = uint64(a)
		}
	}

	gw.tensors = make([]TensorInfo, len(h.Tensors))
	names := make(map[string]bool, len(h.Tensors))
	var off uint64
	for i, t := range h.Tensors {
		if names[t.Name] {
			return nil, fmt.Errorf("gguf: duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Name) > MaxNameLen {
			return nil, fmt.Errorf("gguf: tensor %q: name is %d bytes, ggml accepts at most %d", t.Name, len(t.Name), MaxNameLen)
		}
		if len(t.Dims) > MaxDims {
			return nil, fmt.Errorf("gguf: tensor %q: %d dimensions (at most %d)", t.Name, len(t.Dims), MaxDims)
		}
		if !t.Type.Known() {
			return nil, fmt.Errorf("gguf: tensor %q: unknown ggml type %d", t.Name, uint32(t.Type))
		}
		for _, d := range t.Dims {
			if d > math.MaxInt64 {
				return nil, fmt.Errorf("gguf: tensor %q: dimension %d out of range", t.Name, d)
			}
		}
		sz := t.Size()
		if sz < 0 {
			return nil, fmt.Errorf("gguf: tensor %q: shape %v cannot hold %s (ne[0] must be a multiple of %d, size must fit int64)", t.Name, t.Dims, t.Type, t.Type.BlockSize())
		}
		t.Dims = append([]uint64(nil), t.Dims...)
		t.Offset = off
		gw.tensors[i] = t
		end, ok := alignUp(off+uint64(sz), gw.align)
		if !ok || off+uint64(sz) < off {
			return nil, fmt.Errorf("gguf: tensor %q: data section size overflows", t.Name)
		}
		off = end
	}

	// Header.
	b := make([]byte, 0, 1<<12)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, h.Version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(gw.tensors)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(h.KV)))
	for _, kv := range h.KV {
		b = appendString(b, kv.Key)
		b = binary.LittleEndian.AppendUint32(b, uint32(kv.Value.Type))
		b = kv.Value.appendPayload(b)
		if len(b) >= 1<<16 {
			gw.write(b)
			b = b[:0]
		}
	}
	for _, t := range gw.tensors {
		b = appendString(b, t.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.Type))
		b = binary.LittleEndian.AppendUint64(b, t.Offset)
		if len(b) >= 1<<16 {
			gw.write(b)
			b = b[:0]
		}
	}
	gw.write(b)
	if len(gw.tensors) > 0 || h.AlignEmpty {
		gw.pad()
	}
	gw.dataStart = gw.n
	if gw.err != nil {
		return nil, gw.err
	}
	return gw, nil
}

// checkValue rejects values a file cannot hold or the reader would refuse:
// invalid type tags, malformed arrays and arrays nested deeper than the
// reader accepts.
func checkValue(v Value, depth int) error {
	if !v.Type.valid() {
		return fmt.Errorf("invalid value type %d", uint32(v.Type))
	}
	if v.Type != ValueArray {
		return nil
	}
	if depth >= maxNesting {
		return fmt.Errorf("arrays nested deeper than %d", maxNesting)
	}
	if !v.elem.valid() {
		return fmt.Errorf("array of invalid value type %d", uint32(v.elem))
	}
	if v.elem == ValueArray {
		for _, a := range v.arrs {
			if a.Type != ValueArray {
				return fmt.Errorf("array of arrays holds a %s", a.Type)
			}
			if err := checkValue(a, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	w.err = err
}

var zeroPad [256]byte

// pad writes zeros up to the next multiple of the alignment.
func (w *Writer) pad() {
	p, _ := alignUp(uint64(w.n), w.align)
	for rest := int64(p) - w.n; rest > 0 && w.err == nil; rest = int64(p) - w.n {
		w.write(zeroPad[:min(rest, int64(len(zeroPad)))])
	}
}

// Tensors returns the tensor infos as written, with their computed offsets.
func (w *Writer) Tensors() []TensorInfo { return append([]TensorInfo(nil), w.tensors...) }

// DataOffset returns the file offset of the data section.
func (w *Writer) DataOffset() int64 { return w.dataStart }

// Alignment returns the data alignment in use.
func (w *Writer) Alignment() uint64 { return w.align }

// nextTensor checks that name is the next tensor to write.
func (w *Writer) nextTensor(name string) (TensorInfo, error) {
	if w.closed {
		return TensorInfo{}, errors.New("gguf: writer is closed")
	}
	if w.err != nil {
		return TensorInfo{}, w.err
	}
	if w.next >= len(w.tensors) {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: all %d tensors already written", name, len(w.tensors))
	}
	t := w.tensors[w.next]
	if t.Name != name {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q written out of order: expected %q", name, t.Name)
	}
	return t, nil
}

// WriteTensor writes the data of the named tensor, which must be the next one
// in header order, and pads it. len(data) must equal the tensor's Size.
func (w *Writer) WriteTensor(name string, data []byte) error {
	t, err := w.nextTensor(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != t.Size() {
		return fmt.Errorf("gguf: tensor %q: %d bytes of data, %s %v takes %d", name, len(data), t.Type, t.Dims, t.Size())
	}
	w.write(data)
	return w.finishTensor(name)
}

// WriteTensorFrom copies the named tensor's data, exactly its Size in bytes,
// from r, so large tensors need not be held in memory.
func (w *Writer) WriteTensorFrom(name string, r io.Reader) error {
	t, err := w.nextTensor(name)
	if err != nil {
		return err
	}
	start := w.n
	n, err := io.CopyN(writerFunc(func(b []byte) (int, error) {
		w.write(b)
		if w.err != nil {
			return 0, w.err
		}
		return len(b), nil
	}), r, t.Size())
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("gguf: tensor %q: copied %d of %d bytes: %w", name, n, t.Size(), err)
		}
		return w.err
	}
	if w.n-start != t.Size() {
		return fmt.Errorf("gguf: tensor %q: wrote %d of %d bytes", name, w.n-start, t.Size())
	}
	return w.finishTensor(name)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (w *Writer) finishTensor(name string) error {
	w.pad()
	w.next++
	if w.err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, w.err)
	}
	return nil
}

// Close checks that every tensor was written and flushes buffered data. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.next < len(w.tensors) {
		return fmt.Errorf("gguf: %d of %d tensors not written (next: %q)", len(w.tensors)-w.next, len(w.tensors), w.tensors[w.next].Name)
	}
	return w.w.Flush()
}
