package adapter

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// willNeed asks the kernel to start reading r's bytes into the page cache
// now, in the background (posix_fadvise WILLNEED), when r is a section of a
// file: a merge then finds the next weight's rows already read when it
// gets to them, instead of waiting on the disk. Advisory; errors are
// ignored.
func willNeed(r io.ReaderAt) {
	sr, ok := r.(*io.SectionReader)
	if !ok {
		return
	}
	outer, off, n := sr.Outer()
	sc, ok := outer.(syscall.Conn)
	if !ok {
		return
	}
	if c, err := sc.SyscallConn(); err == nil {
		c.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, n, unix.FADV_WILLNEED) })
	}
}
