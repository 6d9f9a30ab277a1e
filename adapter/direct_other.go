//go:build !linux

package adapter

import (
	"errors"
	"os"
)

// openDirect reports that direct I/O is not used on this system.
func openDirect(path string) (*os.File, error) {
	return nil, errors.New("direct I/O is not supported here")
}

// openDirectRead reports that direct I/O is not used on this system.
func openDirectRead(path string) (*os.File, error) {
	return nil, errors.New("direct I/O is not supported here")
}

// cachedFraction reports every page cached: nothing is read directly.
func cachedFraction(b []byte) float64 { return 1 }

// mapRing returns n bytes of aligned memory from the Go heap.
func mapRing(n int) ([]byte, func(), error) { return alignedBuf(n)[:n], func() {}, nil }
