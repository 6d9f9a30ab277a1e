package adapter

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openDirect opens path for writing with O_DIRECT.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
}

// openDirectRead opens path for reading with O_DIRECT.
func openDirectRead(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
}

// cachedFraction returns the fraction of b's pages (b a file mapping) that
// are in the page cache, without reading any.
func cachedFraction(b []byte) float64 {
	page := os.Getpagesize()
	n := (len(b) + page - 1) / page
	if n == 0 {
		return 1
	}
	vec := make([]byte, n)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return 1
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return float64(in) / float64(n)
}

// mapRing returns n bytes of page-aligned anonymous memory outside the Go
// heap (so that it does not raise the garbage collector's target), and the
// function that frees it.
func mapRing(n int) ([]byte, func(), error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = unix.Munmap(b) }, nil
}
