//go:build !linux

package adapter

import "io"

// willNeed is a no-op where the kernel has no posix_fadvise.
func willNeed(r io.ReaderAt) {}
