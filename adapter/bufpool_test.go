package adapter

import "testing"

func TestBufPool(t *testing.T) {
	p := &bufPool{keep: 2}
	a, b, c := p.get(100), p.get(50), p.get(10)
	if len(a) != 100 || len(b) != 50 || len(c) != 10 {
		t.Fatalf("lengths %d %d %d", len(a), len(b), len(c))
	}
	p.put(a)
	p.put(b)
	p.put(c) // over keep: the smallest (c) goes
	if len(p.free) != 2 {
		t.Fatalf("pool holds %d buffers, keep is 2", len(p.free))
	}
	// The smallest buffer that fits is reused.
	if g := p.get(40); cap(g) != 50 || &g[0] != &b[0] {
		t.Errorf("get(40) took a buffer of %d, want b (50)", cap(g))
	}
	if g := p.get(200); cap(g) != 200 {
		t.Errorf("get(200) = cap %d, want a new buffer", cap(g))
	}
	if g := p.get(100); &g[0] != &a[0] {
		t.Error("get(100) did not reuse a")
	}
	var nilPool *bufPool
	if g := nilPool.get(7); len(g) != 7 {
		t.Error("a nil pool must allocate")
	}
	nilPool.put(a)
}
