package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// DataAlign is the alignment of each tensor's offset in a data file
// WriteFile writes: a page, so that runtimes can map tensors directly.
const DataAlign = 4096

// WriteOptions control WriteFile. The zero value keeps every tensor where
// it is, moving initializers to external data only when the model would
// not fit in MaxProtoSize.
type WriteOptions struct {
	// ExternalThreshold, when positive, moves every initializer whose data
	// takes at least this many bytes to the data file.
	ExternalThreshold int64
	// MaxSize is the largest .onnx file to write (MaxProtoSize when 0). A
	// model that would be larger has its biggest initializers moved to the
	// data file until it fits.
	MaxSize int64
}

// DataFileName returns the name of the external data file WriteFile uses
// for a model written to path: the model's file name plus ".data".
func DataFileName(path string) string { return filepath.Base(path) + ".data" }

// moved is a tensor WriteFile stores in the new data file.
type moved struct {
	t    *pb.TensorProto
	size int64
	at   int64 // offset in the data file
}

// WriteFile writes m to path. Tensors that were external stay external and
// inline tensors stay inline, unless opts move initializers out (see
// WriteOptions); all external tensors then go, page-aligned, to one data
// file next to the model, named by DataFileName. The data file never
// replaces a file the model still reads its external data from. m itself is
// left as it was. Files are written under temporary names and renamed into
// place, so a failed write leaves no half-written model.
func WriteFile(path string, m *Model, opts *WriteOptions) error {
	if opts == nil {
		opts = &WriteOptions{}
	}
	maxSize := opts.MaxSize
	if maxSize <= 0 || maxSize > MaxProtoSize {
		maxSize = MaxProtoSize
	}
	var ext, candidates []*moved
	err := eachTensor(m.Proto, func(r tensorRef) error {
		t := r.t
		size, ok, err := rawSize(t)
		if PlaceOf(t) == External {
			if err != nil {
				return m.tensorError(t, "bad shape", err)
			}
			if !ok {
				size = -1 // a type this package cannot size: copy what the reference names
			}
			ext = append(ext, &moved{t: t, size: size})
			return nil
		}
		if err != nil || !r.initializer || !ok || size == 0 || (PlaceOf(t) == Typed && !typedConvertible(t)) {
			return nil
		}
		mv := &moved{t: t, size: size}
		if opts.ExternalThreshold > 0 && size >= opts.ExternalThreshold {
			ext = append(ext, mv)
		} else {
			candidates = append(candidates, mv)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Move the biggest remaining initializers out until the model fits. The
	// estimate charges each moved tensor ~128 bytes of external_data entries.
	total := int64(proto.Size(m.Proto))
	for _, mv := range ext {
		total -= inlineSize(mv.t)
		if PlaceOf(mv.t) != External {
			total += 128
		}
	}
	sort.SliceStable(candidates, func(i, j int) bool { return candidates[i].size > candidates[j].size })
	for _, mv := range candidates {
		if total <= maxSize {
			break
		}
		ext = append(ext, mv)
		total -= inlineSize(mv.t) - 128
	}
	if total > maxSize {
		return fmt.Errorf("onnx: %s: model takes about %d bytes even with its initializers external, over the %d limit", path, total, maxSize)
	}

	dir := filepath.Dir(path)
	var dataTmp string
	if len(ext) > 0 {
		dataPath := filepath.Join(dir, DataFileName(path))
		if err := m.checkNotSource(dataPath, ext); err != nil {
			return err
		}
		if dataTmp, err = m.writeData(dataPath, ext); err != nil {
			return err
		}
		defer func() {
			if dataTmp != "" {
				os.Remove(dataTmp)
			}
		}()
	}

	restore := pointAtData(ext, DataFileName(path))
	data, err := proto.Marshal(m.Proto)
	restore()
	if err != nil {
		return fmt.Errorf("onnx: %s: %w", path, err)
	}
	if int64(len(data)) > maxSize {
		return fmt.Errorf("onnx: %s: model takes %d bytes, over the %d limit", path, len(data), maxSize)
	}
	if err := writeAtomic(path, data); err != nil {
		return err
	}
	if dataTmp != "" {
		if err := os.Rename(dataTmp, filepath.Join(dir, DataFileName(path))); err != nil {
			return fmt.Errorf("onnx: %w", err)
		}
		dataTmp = ""
	}
	return nil
}

// typedConvertible reports whether an inline typed tensor can be turned
// into raw bytes (to move it to a data file).
func typedConvertible(t *pb.TensorProto) bool {
	_, _, ok := typedCount(t)
	return ok
}

// inlineSize is how many bytes t's elements take in the model as stored now.
func inlineSize(t *pb.TensorProto) int64 {
	if PlaceOf(t) == External {
		return 0
	}
	n := int64(len(t.GetRawData()))
	n += 4*int64(len(t.GetFloatData())) + 8*int64(len(t.GetDoubleData()))
	n += 5*int64(len(t.GetInt32Data())) + 10*int64(len(t.GetInt64Data())) + 10*int64(len(t.GetUint64Data()))
	return n
}

// checkNotSource refuses to write the data file over a file some external
// tensor of m still reads from.
func (m *Model) checkNotSource(dataPath string, ext []*moved) error {
	st, err := os.Stat(dataPath)
	if err != nil {
		return nil // does not exist yet: cannot be a source
	}
	for _, mv := range ext {
		if _, staged := m.staged[mv.t]; staged || PlaceOf(mv.t) != External {
			continue
		}
		r, err := parseExternal(mv.t)
		if err != nil || m.Dir == "" {
			continue // reported when the data is read
		}
		if st2, err := os.Stat(m.externalPath(r)); err == nil && os.SameFile(st, st2) {
			return fmt.Errorf("onnx: %s holds external data the model reads (tensor %q); write the model elsewhere", dataPath, mv.t.GetName())
		}
	}
	return nil
}

// writeData writes the elements of every tensor in ext to a temporary file
// beside dataPath, each at a DataAlign-aligned offset it records in mv.at,
// and returns the temporary file's name.
func (m *Model) writeData(dataPath string, ext []*moved) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(dataPath), "."+filepath.Base(dataPath)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("onnx: %w", err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(fmt.Errorf("onnx: %w", err))
	}
	var off int64
	for _, mv := range ext {
		off = (off + DataAlign - 1) / DataAlign * DataAlign
		mv.at = off
		if err := m.copyElements(f, off, mv); err != nil {
			return fail(err)
		}
		off += mv.size
	}
	if err := f.Truncate(off); err != nil { // covers a trailing empty tensor
		return fail(fmt.Errorf("onnx: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("onnx: %w", err)
	}
	return f.Name(), nil
}

// copyElements writes mv's elements at off in f, streaming external data
// from its file rather than loading it.
func (m *Model) copyElements(f *os.File, off int64, mv *moved) error {
	t := mv.t
	var src io.Reader
	if s, ok := m.staged[t]; ok {
		src = io.NewSectionReader(m.scratch, s.off, s.n)
	} else if PlaceOf(t) == External {
		in, s, err := m.externalSection(t, mv.size)
		if err != nil {
			return err
		}
		defer in.Close()
		mv.size = s.n
		src = io.NewSectionReader(in, s.off, s.n)
	} else {
		b, err := m.RawBytes(t)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
		}
		return nil
	}
	n, err := io.Copy(io.NewOffsetWriter(f, off), src)
	if err == nil && n != mv.size {
		err = errors.New("short copy")
	}
	if err != nil {
		return fmt.Errorf("onnx: tensor %q: copying external data: %w", t.GetName(), err)
	}
	return nil
}

// pointAtData makes every tensor in ext refer to its place in the data file
// named loc, and returns a function that puts the tensors back as they were.
func pointAtData(ext []*moved, loc string) (restore func()) {
	type saved struct {
		raw     []byte
		f32     []float32
		i32     []int32
		i64     []int64
		f64     []float64
		u64     []uint64
		strs    [][]byte
		extData []*pb.StringStringEntryProto
		loc     *pb.TensorProto_DataLocation
	}
	old := make([]saved, len(ext))
	for i, mv := range ext {
		t := mv.t
		old[i] = saved{t.RawData, t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data, t.StringData, t.ExternalData, t.DataLocation}
		clearData(t)
		t.ExternalData = []*pb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(loc)},
			{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(mv.at, 10))},
			{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(mv.size, 10))},
		}
		t.DataLocation = pb.TensorProto_EXTERNAL.Enum()
	}
	return func() {
		for i, mv := range ext {
			t, s := mv.t, old[i]
			t.RawData, t.FloatData, t.Int32Data, t.Int64Data = s.raw, s.f32, s.i32, s.i64
			t.DoubleData, t.Uint64Data, t.StringData, t.ExternalData, t.DataLocation = s.f64, s.u64, s.strs, s.extData, s.loc
		}
	}
}

// writeAtomic writes data to a temporary file beside path and renames it
// over path.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("onnx: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("onnx: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("onnx: %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("onnx: %w", err)
	}
	return nil
}
