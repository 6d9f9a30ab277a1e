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
