package adapter

import (
	"os"

	"golang.org/x/sys/unix"
)

// openDirect opens path for writing with O_DIRECT.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
}
