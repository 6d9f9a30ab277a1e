//go:build unix

package adapter

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only, or returns nil.
func mapFile(f *os.File, size int64) []byte {
	if size <= 0 || size != int64(int(size)) {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return b
}

func unmapFile(b []byte) { _ = unix.Munmap(b) }

// dropPages unmaps b's pages from the process; reading b again faults them
// back in from the page cache.
func dropPages(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
