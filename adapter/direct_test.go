package adapter

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDirectWriter writes files of sizes around every boundary of the
// direct writer (the switch to direct I/O, a chunk, the alignment) in
// pieces of random sizes, with direct I/O on and off, on the test's file
// system and on tmpfs (where direct I/O may be refused), and reads them
// back.
func TestDirectWriter(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sorsa-direct-*")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	sizes := []int{0, 1, directAlign - 1, directAlign, directStart - 1, directStart, directStart + 1,
		directStart + directAlign, directStart + directChunk - 1, directStart + 3*directChunk + 12345}
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, sizes[len(sizes)-1])
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, dir := range dirs {
		for _, on := range []bool{true, false} {
			for _, size := range sizes {
				path := filepath.Join(dir, "f")
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				w := newDirectWriter(f, on)
				for p := data[:size]; len(p) > 0; {
					n := min(len(p), 1+rng.IntN(3<<20))
					if k, err := w.Write(p[:n]); k != n || err != nil {
						t.Fatalf("%s, direct %v, size %d: Write = %d, %v", dir, on, size, k, err)
					}
					p = p[n:]
				}
				used := w.direct != nil
				if err := w.Close(); err != nil {
					t.Fatalf("%s, direct %v, size %d: Close: %v", dir, on, size, err)
				}
				if used && (!on || size <= directStart) {
					t.Fatalf("%s, direct %v, size %d: direct I/O used", dir, on, size)
				}
				if size == sizes[len(sizes)-1] {
					t.Logf("%s, direct %v: %d bytes, direct I/O used: %v", dir, on, size, used)
				}
				f.Close()
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data[:size]) {
					t.Fatalf("%s, direct %v, size %d: read back %d bytes, not what was written", dir, on, size, len(got))
				}
			}
		}
	}
}

// TestDirectWriterErrors: a failing write surfaces from Write or Close,
// and abort stops the background writer without writing what is queued.
func TestDirectWriterErrors(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, directStart+4*directChunk)

	// The normal descriptor is closed under the writer: the first write
	// fails.
	f, err := os.Create(filepath.Join(dir, "closed"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	w := newDirectWriter(f, true)
	if _, err := w.Write(data[:10]); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write to a closed file: %v", err)
	}

	// Direct writes that fail (the direct descriptor is read-only) report
	// the error from a later Write or from Close.
	path := filepath.Join(dir, "ro")
	f, err = os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w = newDirectWriter(f, true)
	if _, err := w.Write(data[:directStart]); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.startWith(ro)
	_, werr := w.Write(data[directStart:])
	cerr := w.Close()
	if werr == nil && cerr == nil {
		t.Fatal("failed direct writes: no error from Write or Close")
	}

	// abort: the queued chunks are dropped and the goroutine ends.
	f2, err := os.Create(filepath.Join(dir, "abort"))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	w = newDirectWriter(f2, true)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	done := w.done
	w.abort()
	if done != nil {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("background writer still running after abort")
		}
	}
}

// TestDirectSplitMerge: a model large enough for direct I/O splits and
// merges to the same bytes as with --buffered-io.
func TestDirectSplitMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~50 MiB")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	writeFixture(t, src, []fixTensor{
		{name: "a.weight", shape: []int64{2048, 1536}, dtype: "F16"},
		{name: "b.weight", shape: []int64{1536, 2048}, dtype: "F16"},
		{name: "c.weight", shape: []int64{1000, 1000}, dtype: "BF16", decayed: true},
	}, 1, 5)
	var outs [2][]string
	for i, buffered := range []bool{false, true} {
		out := filepath.Join(dir, map[bool]string{false: "direct", true: "buffered"}[buffered])
		if _, err := Split(context.Background(), src, out, SplitOptions{Rank: 8, BufferedIO: buffered}); err != nil {
			t.Fatal(err)
		}
		merged := filepath.Join(out, "merged.safetensors")
		if _, err := Merge(context.Background(), filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter"), merged, MergeOptions{BufferedIO: buffered}); err != nil {
			t.Fatal(err)
		}
		outs[i] = []string{filepath.Join(out, "residual.safetensors"), filepath.Join(out, "adapter", "adapter_model.safetensors"), merged}
	}
	for k := range outs[0] {
		a, err := os.ReadFile(outs[0][k])
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(outs[1][k])
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 && len(a) <= directStart {
			t.Fatalf("%s: %d bytes, too small to be written with direct I/O", outs[0][k], len(a))
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ", outs[0][k], outs[1][k])
		}
	}
}
