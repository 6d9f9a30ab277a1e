package adapter

import (
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// A stager reads a merge's input tensors ahead of the work, in the order
// the merge writes them, with direct I/O (O_DIRECT) into one ring of
// memory, and serves the workers' and the writer's reads of those tensors
// from it (inputFile.view and ReadAt ask it first).
//
// It replaces the read-ahead (readahead.go) when the input is not in the
// page cache. Read through the mapping, a cold 4.4 GB shard cost the
// kernel 3.5 s of CPU time in page faults, page-cache insertion and
// reclaim (about 10 s for a 7B model), taken from the two cores the
// arithmetic needs, and faulting reads ran at about 300 MB/s beside
// direct writes where direct reads of the same file ran at 457–887 MB/s
// for 0.4–0.5 s of CPU (README "Performance").
// Direct reads bypass the page cache, so a model that is already cached is
// left to the mapping.
//
// Each tensor is one unit, read whole into the ring once there is room;
// the writer releases each unit when it moves past its tensor (see reach),
// which frees its ring space. Units larger than half the ring, and units
// of files that refuse direct I/O, are not staged: their reads fall
// through to the mapping, and the reader brings them into the page cache
// ahead of the work instead, as the read-ahead would (readAheadOf). Read
// errors are not reported here either: the unit is left unstaged and the
// normal read path meets the error again.
type stager struct {
	ring  []byte
	units []*stagedUnit
	byIn  map[*inputFile][]*stagedUnit // each file's units by offset
	files map[*inputFile]*os.File      // the direct-I/O descriptors; nil where refused
	free  func()                       // frees the ring

	mu      sync.Mutex
	cond    *sync.Cond // signalled when ring space is freed or the stager stops
	tail    int64      // ring bytes handed out so far (a position that only grows)
	head    int64      // ring bytes released so far
	cursor  int        // the unit reach expects next
	stopped bool       // closed, or the writer left the units' order
	wg      sync.WaitGroup

	prefix  []int64      // prefix[i]: the bytes of units 0..i-1
	touched atomic.Int64 // bytes of unstaged units read ahead (readAheadOf)
	sink    byte         // what readAheadOf read, so that it is not optimised away
}

// stagedUnit is one tensor's stored bytes: [off, off+n) of in.
type stagedUnit struct {
	in     *inputFile
	off, n int64
	skip   bool          // not staged (too large, or its file refuses direct I/O)
	ready  chan struct{} // closed once the unit is read, skipped or given up
	data   []byte        // the bytes once read; nil when not staged
	end    int64         // ring position after the unit; 0 when never placed

	released atomic.Bool
}

// stageAlign is the alignment direct reads need in offset, length and
// memory.
const stageAlign = directAlign

// stageRingSize is the size of a merge's ring (a variable for the tests).
// Cold 7B merges took as long with 512 MiB (45.5–54.3 s against 47.0–48.8
// s, alternating), with 0.25 GiB more resident.
var stageRingSize = 256 << 20

// stageSpan is one tensor's stored bytes in an input file, for newStager.
type stageSpan struct {
	in     *inputFile
	off, n int64
}

// newStager starts reading spans, in order, into a ring of ringSize bytes,
// and attaches itself to their files. It returns nil when no span can be
// staged (no file opens for direct I/O).
func newStager(spans []stageSpan, ringSize int) *stager {
	s := &stager{byIn: map[*inputFile][]*stagedUnit{}, files: map[*inputFile]*os.File{}}
	s.cond = sync.NewCond(&s.mu)
	staged := 0
	s.prefix = make([]int64, 1, len(spans)+1)
	for _, sp := range spans {
		s.prefix = append(s.prefix, s.prefix[len(s.prefix)-1]+max(sp.n, 0))
		u := &stagedUnit{in: sp.in, off: sp.off, n: sp.n, ready: make(chan struct{})}
		s.units = append(s.units, u)
		if sp.in == nil || sp.n <= 0 {
			u.skip = true
			continue
		}
		f, ok := s.files[sp.in]
		if !ok {
			f, _ = openDirectRead(sp.in.Name()) // nil where refused
			s.files[sp.in] = f
		}
		u.skip = f == nil || alignedLen(sp.off, sp.n) > int64(ringSize/2)
		if !u.skip {
			staged++
			s.byIn[sp.in] = append(s.byIn[sp.in], u)
		}
	}
	if staged == 0 {
		s.closeFiles()
		return nil
	}
	for _, us := range s.byIn {
		sort.Slice(us, func(i, j int) bool { return us[i].off < us[j].off })
	}
	ring, free, err := mapRing(ringSize)
	if err != nil {
		s.closeFiles()
		return nil
	}
	s.ring, s.free = ring, free
	for _, sp := range spans {
		if sp.in != nil {
			sp.in.stage = s // before the reader starts: it reads through the files too
		}
	}
	s.wg.Go(s.run)
	return s
}

// alignedLen is the length of [off, off+n) widened to stageAlign.
func alignedLen(off, n int64) int64 {
	a := off &^ (stageAlign - 1)
	e := (off + n + stageAlign - 1) &^ (stageAlign - 1)
	return e - a
}

// run reads the units in order, each once the ring has room for it.
func (s *stager) run() {
	size := int64(len(s.ring))
	for i, u := range s.units {
		if u.skip {
			close(u.ready)
			s.readAheadOf(i, u)
			continue
		}
		s.mu.Lock()
		need := alignedLen(u.off, u.n)
		pos := s.tail
		if pos%size+need > size { // does not fit before the ring's end: wrap
			pos += size - pos%size
		}
		for !s.stopped && !u.released.Load() && pos+need-s.head > size {
			s.cond.Wait()
		}
		if s.stopped || u.released.Load() {
			s.mu.Unlock()
			close(u.ready)
			continue
		}
		s.tail, u.end = pos+need, pos+need
		s.mu.Unlock()

		a := u.off &^ (stageAlign - 1)
		buf := s.ring[pos%size : pos%size+need]
		k, _ := s.files[u.in].ReadAt(buf, a)
		if int64(k) >= u.off+u.n-a {
			u.data = buf[u.off-a : u.off-a+u.n : u.off-a+u.n]
		}
		close(u.ready)
	}
}

// view returns in's bytes [off, off+n) from the ring, waiting for them to
// be read, or nil when no staged unit holds them all.
func (s *stager) view(in *inputFile, off, n int64) []byte {
	us := s.byIn[in]
	i := sort.Search(len(us), func(i int) bool { return us[i].off+us[i].n > off })
	if i == len(us) || us[i].off > off || off+n > us[i].off+us[i].n || n <= 0 {
		return nil
	}
	u := us[i]
	<-u.ready
	if u.data == nil || u.released.Load() {
		return nil
	}
	return u.data[off-u.off : off-u.off+n : off-u.off+n]
}

// reach tells the stager that the writer has moved on to unit i, so that
// every unit before it is done with. The writer must go through the units
// in their order; if it does not, staging stops (the units read so far stay
// in place, nothing more is read into the ring, and reads of what is not
// staged go to the file).
func (s *stager) reach(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	defer s.cond.Broadcast()
	if i != s.cursor {
		s.stopped = true
		return
	}
	s.cursor = i + 1
	if i == 0 {
		return
	}
	u := s.units[i-1]
	u.released.Store(true) // the reader skips it if it has not got to it
	s.cond.Broadcast()
	s.mu.Unlock()
	<-u.ready // the reader is no longer writing into its space
	s.mu.Lock()
	if u.end > 0 {
		s.head = u.end
	}
}

// readAheadOf brings unit i, which the ring does not hold, into the page
// cache as the read-ahead does (touchPages, a few MiB at a time), each piece once it is no more than
// mergeReadAhead bytes past the end of the tensor being written, so that
// the unit's reads through the mapping do not each wait on the disk.
func (s *stager) readAheadOf(i int, u *stagedUnit) {
	if u.in == nil || u.n <= 0 {
		return
	}
	var done int64 // bytes of u touched so far
	_ = u.in.pieces(u.off, u.n, readAheadPiece, func(b []byte) error {
		s.mu.Lock()
		for !s.stopped && !u.released.Load() && s.prefix[i]+done-s.prefix[min(s.cursor, len(s.units))] > mergeReadAhead {
			s.cond.Wait()
		}
		stop := s.stopped || u.released.Load()
		s.mu.Unlock()
		if stop {
			return errStopped
		}
		s.sink += touchPages(b)
		done += int64(len(b))
		s.touched.Add(int64(len(b)))
		return nil
	}) // errors are met again by the unit's own reads
}

// close stops the reader, waits for it and frees the ring: nothing may
// read what the stager served after it is closed.
func (s *stager) close() {
	s.mu.Lock()
	s.stopped = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
	s.closeFiles()
	for _, u := range s.units {
		u.data = nil
	}
	s.free()
}

func (s *stager) closeFiles() {
	for _, f := range s.files {
		if f != nil {
			f.Close()
		}
	}
}

// Input I/O modes of MergeOptions.InputIO.
const (
	InputAuto   = "auto"   // direct when most of the input is not in the page cache
	InputDirect = "direct" // direct wherever the file system allows it
	InputCached = "cached" // through the page cache (the file's mapping)
)

// wantStage reports whether a merge in input mode mode stages ins.
func wantStage(ins []*inputFile, mode string) bool {
	switch mode {
	case InputDirect:
		return true
	case InputCached:
		return false
	}
	var cached, total float64
	for _, in := range ins {
		if in.data == nil {
			return false // not mapped: the files are read with pread anyway
		}
		cached += cachedFraction(in.data) * float64(in.size)
		total += float64(in.size)
	}
	return total > 0 && cached < total/2
}

// stageModel starts a stager over m's tensors, in m's order, on m's input
// files ins; nil when mode (see MergeOptions.InputIO) or
// the files say no.
func stageModel(m model, ins []*inputFile, mode string) *stager {
	if !wantStage(ins, mode) {
		return nil
	}
	sm, ok := m.(sectioner)
	if !ok {
		return nil
	}
	var spans []stageSpan
	for _, t := range m.Tensors() {
		var sp stageSpan
		if sec, err := sm.section(t); err == nil {
			if in, base, size, ok := inputOf(sec); ok {
				sp = stageSpan{in, base, size}
			}
		}
		spans = append(spans, sp)
	}
	return newStager(spans, stageRingSize)
}
