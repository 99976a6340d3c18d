//go:build unix

package data

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the whole file read-only and shared; the mapping outlives f.
func mapFile(f *os.File, size int64) ([]byte, bool, error) {
	if size != int64(int(size)) {
		return nil, false, fmt.Errorf("file of %d bytes is too large to map on this platform", size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, false, fmt.Errorf("mmap: %w", err)
	}
	return b, true, nil
}

// unmapFile releases a mapping made by mapFile.
func unmapFile(b []byte) error { return syscall.Munmap(b) }
