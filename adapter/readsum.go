package adapter

import (
	"cmp"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"slices"
	"sync"
)

// Merge checks the residual's CRC-32C on the bytes it reads, as it reads
// them: each piece a worker loads (a block of a weight's rows, a weight's
// stored bytes, a copied tensor) is checksummed while it is in the cache
// for the merge anyway, and the file's checksum is put together from the
// pieces at the end (crc32cCombine), with whatever the merge did not read
// (headers, padding) read then. A separate pass over the file would read
// every byte a second time, from memory or, on a cold cache, from a disk
// the merge's own reads and writes already keep busy; and it checks the
// bytes the merge used, not a copy read at another time.

// inputFiles returns m's files that are inputFiles, by the names
// modelFiles gives them.
func inputFiles(m model) map[string]*inputFile {
	out := map[string]*inputFile{}
	switch mm := m.(type) {
	case *stModel:
		for i, s := range mm.shards {
			out[s] = mm.inputs[i]
		}
	case *ggufModel:
		out[filepath.Base(mm.path)] = mm.in
	}
	return out
}

// inputList returns m's files that are inputFiles, in the order of their
// tensors (shards in index order).
func inputList(m model) []*inputFile {
	switch mm := m.(type) {
	case *stModel:
		return mm.inputs
	case *ggufModel:
		return []*inputFile{mm.in}
	}
	return nil
}

// recordReads makes m's input files record their reads and reports whether
// it has any.
func recordReads(m model) bool {
	ins := inputList(m)
	for _, in := range ins {
		in.recordReads()
	}
	return len(ins) > 0
}

// readSums records the CRC-32C of byte ranges of one file as they are read.
type readSums struct {
	mu    sync.Mutex
	spans []readSpan
}

type readSpan struct {
	off, n int64
	crc    uint32
}

// recordReads makes f remember the CRC-32C of what noteRead is told about.
func (f *inputFile) recordReads() { f.sums = &readSums{} }

// noteRead records that b holds f's bytes [off, off+len(b)), when f records
// reads.
func (f *inputFile) noteRead(off int64, b []byte) {
	if f.sums == nil || len(b) == 0 {
		return
	}
	f.noteSum(off, int64(len(b)), crc32.Checksum(b, castagnoli))
}

// noteSum records that f's bytes [off, off+n) had CRC-32C sum when read.
func (f *inputFile) noteSum(off, n int64, sum uint32) {
	f.sums.mu.Lock()
	f.sums.spans = append(f.sums.spans, readSpan{off: off, n: n, crc: sum})
	f.sums.mu.Unlock()
}

// noteReadOf records b as r's bytes [off, off+len(b)) when r is an
// inputFile or a section of one.
func noteReadOf(r io.ReaderAt, off int64, b []byte) {
	if in, base, _, ok := inputOf(r); ok {
		in.noteRead(base+off, b)
	}
}

// crc32c returns the CRC-32C of f's whole content from the ranges noted so
// far, reading the ranges no note covers (a range noted twice counts once).
func (f *inputFile) crc32c() (sum uint32, err error) {
	var spans []readSpan
	if f.sums != nil {
		f.sums.mu.Lock()
		spans = slices.Clone(f.sums.spans)
		f.sums.mu.Unlock()
	}
	slices.SortFunc(spans, func(a, b readSpan) int { return cmp.Compare(a.off, b.off) })
	var pos int64
	gap := func(end int64) error {
		if end <= pos {
			return nil
		}
		c, err := f.crcRange(pos, end-pos)
		if err != nil {
			return err
		}
		sum = crc32cCombine(sum, c, end-pos)
		pos = end
		return nil
	}
	for _, s := range spans {
		if s.off < pos || s.off+s.n > f.size {
			continue // overlaps what is counted, or outside the file: the gaps cover it
		}
		if err := gap(s.off); err != nil {
			return 0, err
		}
		sum = crc32cCombine(sum, s.crc, s.n)
		pos = s.off + s.n
	}
	if err := gap(f.size); err != nil {
		return 0, err
	}
	return sum, nil
}

// crcRange reads f's bytes [off, off+n) and returns their CRC-32C.
func (f *inputFile) crcRange(off, n int64) (sum uint32, err error) {
	err = f.pieces(off, n, 32<<20, func(b []byte) error {
		sum = crc32.Update(sum, castagnoli, b)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return sum, nil
}

// notingReader reads a section of an input file front to back, noting
// what it reads (see noteSum) in ranges of a few MiB however small the
// reads (io.CopyN reads 32 KiB at a time), the last when the section's
// end is reached.
type notingReader struct {
	sec   *io.SectionReader
	in    *inputFile
	base  int64  // the section's offset in the file
	off   int64  // next byte to read, within the section
	start int64  // first byte of the range being summed
	sum   uint32 // CRC-32C of [start, off)
}

// notedRange is how many bytes notingReader sums before noting them.
const notedRange = 4 << 20

// readNoting returns a reader of sec that notes its reads when sec's file
// records them, else sec itself.
func readNoting(sec *io.SectionReader) io.Reader {
	if in, base, _, ok := inputOf(sec); ok && in.sums != nil {
		return &notingReader{sec: sec, in: in, base: base}
	}
	return sec
}

func (r *notingReader) Read(p []byte) (int, error) {
	n, err := r.sec.ReadAt(p, r.off)
	r.sum = crc32.Update(r.sum, castagnoli, p[:n])
	r.off += int64(n)
	if r.off-r.start >= notedRange || r.off >= r.sec.Size() {
		if r.off > r.start {
			r.in.noteSum(r.base+r.start, r.off-r.start, r.sum)
		}
		r.start, r.sum = r.off, 0
	}
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// WriteTo copies the rest of the section to w in pieces of a few MiB
// (io.Copy's own buffer is 32 KiB).
func (r *notingReader) WriteTo(w io.Writer) (written int64, err error) {
	buf := make([]byte, min(notedRange, max(0, r.sec.Size()-r.off)))
	for len(buf) > 0 {
		n, rerr := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
	return written, nil
}

// crc32cPoly is the Castagnoli polynomial, reversed (bit 31 is x⁰).
const crc32cPoly = 0x82f63b78

// crc32cCombine returns the CRC-32C of A‖B from a = CRC-32C(A),
// b = CRC-32C(B) and n = len(B): appending n bytes multiplies A's
// remainder by x^(8n) modulo the polynomial, the pre- and post-inversions
// cancelling out.
func crc32cCombine(a, b uint32, n int64) uint32 {
	if n <= 0 {
		return a ^ b // only when B is empty, whose CRC is 0
	}
	return gfMul(xPow8n(n), a) ^ b
}

// gfMul multiplies two polynomials modulo the CRC-32C polynomial, in the
// reversed bit order CRC registers use.
func gfMul(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		b = b>>1 ^ crc32cPoly&-(b&1) // b·x
	}
	return p
}

// xPow8n returns x^(8n) modulo the CRC-32C polynomial (reversed order).
func xPow8n(n int64) uint32 {
	r := uint32(1) << 31  // x⁰
	sq := uint32(1) << 23 // x⁸
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			r = gfMul(r, sq)
		}
		sq = gfMul(sq, sq)
	}
	return r
}
