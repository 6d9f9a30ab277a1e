package adapter

import "sync"

// bufPool recycles the large result buffers a merge hands from its workers
// to its writer: a 7B model's 224 weights would otherwise each take a fresh
// 32–90 MiB that the operating system must map and zero. It keeps at most
// keep buffers, so what it holds is bounded like the pipeline's window.
type bufPool struct {
	mu   sync.Mutex
	keep int
	free [][]byte
}

// get returns a buffer of n bytes with unspecified contents: the smallest
// free one that is large enough, or a new one.
func (p *bufPool) get(n int) []byte {
	if p == nil {
		return make([]byte, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best < 0 {
		return make([]byte, n)
	}
	b := p.free[best]
	p.free = append(p.free[:best], p.free[best+1:]...)
	return b[:n]
}

// put hands b back. When the pool is full the smallest buffer goes.
func (p *bufPool) put(b []byte) {
	if p == nil || cap(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, b)
	if len(p.free) > p.keep {
		small := 0
		for i, f := range p.free {
			if cap(f) < cap(p.free[small]) {
				small = i
			}
		}
		p.free = append(p.free[:small], p.free[small+1:]...)
	}
}
