package fetch

import (
	"archive/zip"
	"bufio"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// unpack applies kind to the verified file at path, writing into its directory, and
// returns the paths it produced (or found already in place).
func unpack(path string, kind Unpack, opt Options) ([]string, error) {
	switch kind {
	case UnpackZip:
		return unzip(path, opt)
	case UnpackGzip:
		out, err := gunzip(path)
		if err != nil {
			return nil, err
		}
		return []string{out}, nil
	}
	return nil, nil
}

// unzip extracts every regular file of the archive into the archive's directory,
// keeping relative paths. Members whose names are not local paths (absolute, or
// escaping with "..") are refused; macOS resource-fork entries (__MACOSX/) and
// non-regular entries are skipped. A member whose target already exists with the same
// size and CRC-32 is not rewritten. Each member is checked against its CRC-32 and
// written to a temporary file, then renamed into place.
func unzip(path string, opt Options) ([]string, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer zr.Close()
	dir := filepath.Dir(path)
	var out []string
	for _, zf := range zr.File {
		name := zf.Name
		if strings.HasPrefix(name, "__MACOSX/") {
			continue
		}
		if !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, `\`) {
			return nil, fmt.Errorf("%s: member %q would be written outside %s; refusing to unpack this archive", path, name, dir)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if zf.FileInfo().IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
			continue
		}
		if !zf.Mode().IsRegular() {
			fmt.Fprintf(opt.Log, "%s: skipping member %q (not a regular file)\n", path, name)
			continue
		}
		if sameCRC(target, int64(zf.UncompressedSize64), zf.CRC32) {
			out = append(out, target)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: member %q: %w", path, name, err)
		}
		err = writeAtomic(target, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: member %q: %w", path, name, err)
		}
		out = append(out, target)
	}
	return out, nil
}

// sameCRC reports whether the file at p exists with the given size and CRC-32.
func sameCRC(p string, size int64, sum uint32) bool {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false
	}
	fh, err := os.Open(p)
	if err != nil {
		return false
	}
	defer fh.Close()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, fh); err != nil {
		return false
	}
	return h.Sum32() == sum
}

// gunzip decompresses name.gz to name beside it (the gzip trailer's CRC-32 and size are
// checked by the reader) and returns the output path.
func gunzip(path string) (string, error) {
	target := strings.TrimSuffix(path, ".gz")
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	zr, err := gzip.NewReader(bufio.NewReader(fh))
	if err != nil {
		return "", fmt.Errorf("%s: not a gzip file: %w", path, err)
	}
	defer zr.Close()
	if err := writeAtomic(target, zr); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return target, nil
}

// writeAtomic copies r to a temporary file beside target, fsyncs it and renames it over
// target, so that target is never seen half-written.
func writeAtomic(target string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(filepath.Dir(target))
}
