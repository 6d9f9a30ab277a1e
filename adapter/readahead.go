package adapter

import (
	"errors"
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
// a merge without it was 7–18% slower cold.) Bounding the distance keeps
// the read-ahead from pushing out of the page cache what the workers have
// yet to use when the model is larger than memory. The reader touches each
// page through the file's mapping and drops it from the process again, so
// nothing is copied and resident memory does not grow with the distance
// (reading into a buffer instead cost 11–14 s more system time on a 7B
// merge); files that are not mapped are read into one scratch buffer.
// Errors are ignored: the workers' own reads report them.
type readAhead struct {
	done  atomic.Int64 // bytes consumed so far
	read  atomic.Int64 // bytes read so far
	stop  chan struct{}
	wg    sync.WaitGroup
	ahead int64
	sink  byte // what run read, so that its reads are not optimised away
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

// errStopped ends run's walk over a file when the reader is closed.
var errStopped = errors.New("read-ahead stopped")

// run reads the files in pieces (see inputFile.pieces): each piece waits
// until it is no more than ahead bytes in front of what is consumed, then
// is touched (touchPages; pieces then drops the pages from the process
// again).
func (ra *readAhead) run(files []*inputFile) {
	for _, f := range files {
		err := f.pieces(0, f.size, readAheadPiece, func(b []byte) error {
			for ra.read.Load()-ra.done.Load() > ra.ahead {
				select {
				case <-ra.stop:
					return errStopped
				case <-time.After(10 * time.Millisecond):
				}
			}
			select {
			case <-ra.stop:
				return errStopped
			default:
			}
			ra.sink += touchPages(b)
			ra.read.Add(int64(len(b)))
			return nil
		})
		if err != nil {
			return // stopped, or a read error the workers will report
		}
	}
}

// touchPages reads one byte of each page of b, a piece of a file's
// mapping: that waits for the disk as a read would, without copying the
// bytes out. It returns their sum, for the caller to keep so that the
// reads are not optimised away.
func touchPages(b []byte) byte {
	page := os.Getpagesize()
	var sum byte
	for i := 0; i < len(b); i += page {
		sum += b[i]
	}
	return sum
}
