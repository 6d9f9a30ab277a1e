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

// mapRing is not needed here: no file opens for direct reads, so nothing
// is staged.
func mapRing(n int) ([]byte, func(), error) {
	return nil, nil, errors.New("direct I/O is not supported here")
}
