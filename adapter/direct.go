package adapter

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Large outputs bypass the page cache: a buffered write of a 13 GiB model
// costs the kernel about as much CPU time as the merge's arithmetic (page
// allocation, copying, writeback and reclaim; `make bench` shows it as
// system time), and it evicts the input the merge is still reading. A
// directWriter writes the first directStart bytes of a file normally (small
// files never leave that path), then the rest in aligned chunks through a
// second descriptor opened for direct I/O, from a background goroutine so
// that the device stays busy while the producer fills the next chunk. The
// unaligned tail goes through the normal descriptor at the end. Where direct
// I/O is not available (another OS, a file system that refuses it) the file
// is written normally.
const (
	directStart = 8 << 20 // bytes written normally before switching
	directChunk = 8 << 20 // bytes per direct write
	directIOs   = 2       // direct writes in flight at once
	directDepth = 4       // chunks in flight, queued or being filled
	directAlign = 4096    // offset, length and memory alignment
)

type directWriter struct {
	file     *os.File // the normal descriptor: head, tail, fallback
	direct   *os.File // opened at directStart; nil before, or when refused
	disabled bool     // everything goes through file
	off      int64    // file offset of buf[0] (or of the next normal write)
	buf      []byte   // the chunk being filled
	free     chan []byte
	queue    chan chunk // nil until direct writes start
	done     chan struct{}

	mu  sync.Mutex
	err error // first write error from the background goroutine
}

type chunk struct {
	b   []byte
	off int64
}

// newDirectWriter writes f from its start; with direct false, every byte
// goes through f.
func newDirectWriter(f *os.File, direct bool) *directWriter {
	return &directWriter{file: f, disabled: !direct}
}

// Write implements io.Writer.
func (w *directWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.queue == nil {
			if !w.disabled && w.off >= directStart {
				w.disabled = !w.start()
				continue
			}
			k := len(p)
			if !w.disabled {
				k = min(k, int(directStart-w.off))
			}
			m, err := w.file.WriteAt(p[:k], w.off)
			w.off += int64(m)
			n += m
			if err != nil {
				return n, err
			}
			p = p[k:]
			continue
		}
		if err := w.failed(); err != nil {
			return n, err
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		n += k
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			w.send(len(w.buf))
		}
	}
	return n, nil
}

// start opens the direct descriptor and the background writer; false when
// direct I/O is refused (the file is then written normally).
func (w *directWriter) start() bool {
	d, err := openDirect(w.file.Name())
	if err != nil {
		return false
	}
	w.startWith(d)
	return true
}

// startWith starts the background writer on the direct descriptor d.
func (w *directWriter) startWith(d *os.File) {
	w.direct = d
	w.free = make(chan []byte, directDepth)
	for range directDepth - 1 {
		w.free <- alignedBuf(directChunk)
	}
	w.buf = alignedBuf(directChunk)
	w.queue = make(chan chunk, directDepth)
	w.done = make(chan struct{})
	var wg sync.WaitGroup
	for range directIOs {
		wg.Go(w.loop)
	}
	go func() {
		wg.Wait()
		close(w.done)
	}()
}

// loop writes queued chunks; directIOs of them run at once.
func (w *directWriter) loop() {
	refused := false
	for c := range w.queue {
		if w.failed() == nil {
			var err error
			if !refused {
				_, err = w.direct.WriteAt(c.b, c.off)
				// A file system that takes direct I/O only with other
				// alignments: this chunk and every later one are written
				// normally.
				refused = errors.Is(err, syscall.EINVAL)
			}
			if refused {
				_, err = w.file.WriteAt(c.b, c.off)
			}
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.free <- c.b[:0]
	}
}

func (w *directWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// send queues the first n bytes (a multiple of directAlign) of the chunk
// being filled and takes a free one; the rest of the chunk moves to it.
func (w *directWriter) send(n int) {
	full := w.buf
	next := <-w.free
	next = next[:copy(next[:cap(next)], full[n:])]
	w.queue <- chunk{b: full[:n], off: w.off}
	w.off += int64(n)
	w.buf = next
}

// Close writes what is buffered, waits for the background writes and
// closes the direct descriptor (not the normal one). It returns the first
// write error. The writer must not be used afterwards.
func (w *directWriter) Close() error {
	if w.queue == nil {
		return nil
	}
	if n := len(w.buf) &^ (directAlign - 1); n > 0 {
		w.send(n)
	}
	tail := w.buf
	close(w.queue)
	<-w.done
	w.queue = nil
	err := w.failed()
	if err == nil && len(tail) > 0 {
		_, err = w.file.WriteAt(tail, w.off)
		w.off += int64(len(tail))
	}
	if cerr := w.direct.Close(); err == nil {
		err = cerr
	}
	w.disabled = true
	return err
}

// abort stops the writer without writing what is still queued.
func (w *directWriter) abort() {
	if w.queue == nil {
		return
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = errAborted
	}
	w.mu.Unlock()
	w.Close()
}

var errAborted = errors.New("aborted")

// alignedBuf returns an empty slice of capacity n whose first byte is
// directAlign-aligned in memory.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[skip : skip : skip+n]
}
