package adapter

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// inputFile is a model file opened for reading: ReadAt reads it with
// pread, and where the system allows the file is also mapped into memory
// (read-only), so that the paths that read every byte of a large model
// once (merge's tiles, the residual's checksum) read the page cache in
// place instead of copying it first. On a cold 7B merge the copies cost
// the kernel about 12 s of CPU time.
type inputFile struct {
	*os.File
	size int64
	data []byte // the mapping; nil when the file is not mapped
	// sums collects the checksums of what is read (see recordReads); nil
	// when it does not.
	sums *readSums
	// stage serves reads of the tensors it holds (see stager); nil when
	// none.
	stage *stager
}

// openInput opens path for reading and maps it when it can.
func openInput(path string) (*inputFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	in := &inputFile{File: f, size: st.Size()}
	in.data = mapFile(f, in.size) // nil where mapping fails: reads use pread
	return in, nil
}

// Close unmaps and closes the file.
func (f *inputFile) Close() error {
	if f.data != nil {
		unmapFile(f.data)
		f.data = nil
	}
	return f.File.Close()
}

// view returns the n bytes at off in place, or nil when the file is not
// mapped or the range is outside it. Reading the bytes may fault if the
// file shrinks meanwhile: callers run under catchFault.
func (f *inputFile) view(off, n int64) []byte {
	if f.stage != nil {
		if b := f.stage.view(f, off, n); b != nil {
			return b
		}
	}
	if f.data == nil || off < 0 || n < 0 || off > int64(len(f.data))-n {
		return nil
	}
	return f.data[off : off+n : off+n]
}

// ReadAt implements io.ReaderAt, from the stager's ring for what it holds.
func (f *inputFile) ReadAt(p []byte, off int64) (int, error) {
	if f.stage != nil {
		if b := f.stage.view(f, off, int64(len(p))); b != nil {
			return copy(p, b), nil
		}
	}
	return f.File.ReadAt(p, off)
}

// release drops the mapping's pages for [off, off+n) from this process
// (the data stays in the page cache): done with each weight, so that the
// resident size stays that of the work in progress, not of the model.
func (f *inputFile) release(off, n int64) {
	if f.data == nil || n <= 0 {
		return
	}
	page := int64(os.Getpagesize())
	lo := max(0, off/page*page)
	hi := min(int64(len(f.data)), (off+n+page-1)/page*page)
	if lo < hi {
		dropPages(f.data[lo:hi])
	}
}

// pieces calls fn with f's bytes [off, off+n), in order, at most piece
// bytes at a time: in place from the mapping when f is mapped (asking the
// kernel to read the next piece meanwhile, dropping each piece from the
// process once fn returns, and turning a memory fault into an error), else
// read into one buffer. fn must not keep b; its first error ends the walk.
func (f *inputFile) pieces(off, n, piece int64, fn func(b []byte) error) (err error) {
	end := off + n
	if f.view(off, n) == nil {
		buf := make([]byte, min(piece, n))
		for ; off < end; off += piece {
			b := buf[:min(piece, end-off)]
			if _, err := f.ReadAt(b, off); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			if err := fn(b); err != nil {
				return err
			}
		}
		return nil
	}
	defer catchFault(guardFaults(), &err)
	for ; off < end; off += piece {
		k := min(piece, end-off)
		willNeed(io.NewSectionReader(f, off+k, min(piece, end-off-k)))
		if err := fn(f.view(off, k)); err != nil {
			return err
		}
		f.release(off, k)
	}
	return nil
}

// inputOf returns the inputFile r reads (r itself, or the file under a
// section of it), the offset of r's first byte in it and r's size.
func inputOf(r io.ReaderAt) (in *inputFile, base, size int64, ok bool) {
	if sr, isSec := r.(*io.SectionReader); isSec {
		var outer io.ReaderAt
		outer, base, size = sr.Outer()
		in, ok = outer.(*inputFile)
		return in, base, size, ok
	}
	if in, ok = r.(*inputFile); ok {
		return in, 0, in.size, true
	}
	return nil, 0, 0, false
}

// releaseOf releases r's bytes [off, off+n) when r is a mapped inputFile
// or a section of one.
func releaseOf(r io.ReaderAt, off, n int64) {
	if in, base, _, ok := inputOf(r); ok {
		in.release(base+off, n)
	}
}

// viewOf returns r's bytes [off, off+n) in place when r is an inputFile
// or a section of one that is mapped, else nil.
func viewOf(r io.ReaderAt, off, n int64) []byte {
	in, base, size, ok := inputOf(r)
	if !ok || off < 0 || n < 0 || off > size-n {
		return nil
	}
	return in.view(base+off, n)
}

// withStored calls fn with the size stored bytes of sec (a tensor's
// section): in place when its file is mapped (its pages released
// afterwards, a memory fault turned into an error), else as read by read.
// fn must not keep the bytes.
func withStored(sec io.ReaderAt, size int64, read func() ([]byte, error), fn func([]byte) error) (err error) {
	if v := viewOf(sec, 0, size); v != nil {
		defer releaseOf(sec, 0, size)
		defer catchFault(guardFaults(), &err)
		noteReadOf(sec, 0, v)
		return fn(v)
	}
	b, err := read()
	if err != nil {
		return err
	}
	noteReadOf(sec, 0, b)
	return fn(b)
}

// catchFault, deferred by a function that reads mapped input after
// guardFaults, turns a memory fault (the input file was truncated while
// mapped) into an error in *err instead of a crash. Other panics go on.
func catchFault(old bool, err *error) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		if _, ok := r.(interface{ Addr() uintptr }); ok {
			*err = fmt.Errorf("%w: the input file changed while it was being read (%v)", ErrInput, r)
			return
		}
		panic(r)
	}
}

// guardFaults makes memory faults on this goroutine panic (for catchFault)
// and returns the previous setting, for
//
//	defer catchFault(guardFaults(), &err)
func guardFaults() bool { return debug.SetPanicOnFault(true) }
