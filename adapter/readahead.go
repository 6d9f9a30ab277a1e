package adapter

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// readAhead reads input files front to back into the page cache, a few
// MiB at a time, at most `ahead` bytes in front of the work that consumes
// them (see consumed), so that the merge's workers find their rows read.
//
// A merge's workers read the residual where they compute, in bursts a
// block of rows long, and would otherwise each wait on the disk for what
// they touch; one sequential reader running ahead keeps the disk streaming
// as a copy does. (Before the residual's checksum was taken on the
// workers' own reads, the separate checksum pass did this by accident:
// a merge without it was 7–30% slower cold.) Bounding the distance keeps
// the read-ahead from pushing out of the page cache what the workers have
// yet to use when the model is larger than memory. The reader touches each
// page through the file's mapping and drops it from the process again, so
// nothing is copied and resident memory does not grow with the distance
// (reading into a buffer instead cost 11 s more system time on a 7B
// merge); files that are not mapped are read into one scratch buffer. Errors are ignored:
// the workers' own reads report them.
type readAhead struct {
	done  atomic.Int64 // bytes consumed so far
	read  atomic.Int64 // bytes read so far
	stop  chan struct{}
	wg    sync.WaitGroup
	ahead int64
	sink  byte // what touch read, so that its reads are not optimised away
}

// readAheadPiece is the size of each read.
const readAheadPiece = 4 << 20

// startReadAhead starts reading files, in order, at most ahead bytes in
// front of consumed.
func startReadAhead(files []*inputFile, ahead int64) *readAhead {
	ra := &readAhead{stop: make(chan struct{}), ahead: ahead}
	ra.wg.Go(func() { ra.run(files) })
	return ra
}

// consumed reports n more bytes used (in the files' order).
func (ra *readAhead) consumed(n int64) { ra.done.Add(n) }

// close stops the reader and waits for it.
func (ra *readAhead) close() {
	close(ra.stop)
	ra.wg.Wait()
}

// touch reads one byte of each page of f's bytes [off, off+n) through its
// mapping, which waits for the disk as a read would, without copying the
// bytes out, then drops the pages from the process again (see release).
// It reports false when f is not mapped.
func touch(f *inputFile, off, n int64, sink *byte) (ok bool) {
	v := f.view(off, n)
	if v == nil {
		return false
	}
	var err error
	defer catchFault(guardFaults(), &err) // truncated: the workers will say so
	page := os.Getpagesize()
	for i := 0; i < len(v); i += page {
		*sink += v[i]
	}
	f.release(off, n)
	return true
}

func (ra *readAhead) run(files []*inputFile) {
	var buf []byte
	var pos int64 // bytes read, over all files
	for _, f := range files {
		for off := int64(0); off < f.size; off += readAheadPiece {
			for pos-ra.done.Load() > ra.ahead {
				select {
				case <-ra.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			select {
			case <-ra.stop:
				return
			default:
			}
			n := min(readAheadPiece, f.size-off)
			// Queue the next piece too, so that the disk always has a
			// request in hand while this one is copied out.
			willNeed(io.NewSectionReader(f, off+n, min(readAheadPiece, f.size-off-n)))
			if !touch(f, off, n, &ra.sink) {
				if buf == nil {
					buf = make([]byte, readAheadPiece)
				}
				if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
					return
				}
			}
			pos += n
			ra.read.Store(pos)
		}
	}
}
