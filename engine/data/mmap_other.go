//go:build !unix

package data

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads the whole file into memory on platforms without mmap support here.
func mapFile(f *os.File, size int64) ([]byte, bool, error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, false, fmt.Errorf("read: %w", err)
	}
	return b, false, nil
}

func unmapFile([]byte) error { return nil }
