//go:build !unix

package adapter

import "os"

// mapFile does not map files on this system: reads use ReadAt.
func mapFile(f *os.File, size int64) []byte { return nil }

func unmapFile(b []byte) {}

func dropPages(b []byte) {}
