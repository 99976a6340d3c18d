// Package fetch downloads the datasets mdm-gpu trains and evaluates on, resumably and
// verified against published sizes and checksums (`mdm-gpu data fetch NAME`).
//
// A Registry maps dataset names to Datasets, each a list of Files with a canonical URL,
// the exact byte size and a checksum, and a note of where that size and checksum were
// published. Builtin returns the built-in registry. Fetch downloads a Dataset into a
// directory: each file goes to <dir>/<name>.part (resumed with HTTP Range requests when
// the server supports them, restarted cleanly when it does not), with a progress bar on
// stderr; the size and checksum are verified, and only then is the file renamed to
// <dir>/<name>. A file that is already present and verifies is not downloaded again. A
// file with no published checksum (Verified: false) is downloaded with a warning.
package fetch

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
)

// Algo names a checksum algorithm.
type Algo string

// Supported checksum algorithms. MD5 is stored only where a publisher gives nothing
// stronger.
const (
	SHA256 Algo = "sha256"
	SHA512 Algo = "sha512"
	MD5    Algo = "md5"
)

// hexLen returns the length of a hex digest for a, 0 for an unknown algorithm.
func (a Algo) hexLen() int {
	switch a {
	case SHA256:
		return 64
	case SHA512:
		return 128
	case MD5:
		return 32
	}
	return 0
}

// Unpack says how Fetch unpacks a file after verifying it, when Options.Unpack is set.
type Unpack int

// Unpack kinds.
const (
	// NoUnpack keeps the file as downloaded (tarballs that readers consume directly,
	// plain text files).
	NoUnpack Unpack = iota
	// UnpackZip extracts every member of a .zip into the dataset directory, keeping the
	// archive's relative paths.
	UnpackZip
	// UnpackGzip decompresses name.gz to name in the dataset directory.
	UnpackGzip
)

// File is one downloadable file of a dataset.
type File struct {
	// Name is the file name inside the dataset directory (no path separators).
	Name string
	// URL is the canonical download location (http or https): the one the checksum was
	// published for.
	URL string
	// Mirrors are tried in order when URL fails (an HTTP error status, or retries
	// exhausted); they must serve the same bytes, which the checksum enforces.
	Mirrors []string
	// Size is the exact size in bytes; 0 when unknown (only for unverified files).
	Size int64
	// Algo is the checksum algorithm of Sum.
	Algo Algo
	// Sum is the lower-case hex digest, or "" when no checksum has been published.
	Sum string
	// Verified is true when Size and Sum come from a published source (Source). A file
	// with Verified false has an empty Sum and is fetched with a warning.
	Verified bool
	// Source says where Size and Sum were published.
	Source string
	// Unpack is applied after verification when Options.Unpack is set.
	Unpack Unpack
}

// Dataset is a named set of files fetched together.
type Dataset struct {
	// Name is the registry key, e.g. "text8".
	Name string
	// Description is one line for `mdm-gpu data list`.
	Description string
	// Files are fetched in order.
	Files []File
}

// Verified reports whether every file of the dataset has a published checksum.
func (d Dataset) Verified() bool {
	for _, f := range d.Files {
		if !f.Verified {
			return false
		}
	}
	return true
}

// Registry is an immutable set of datasets keyed by name.
type Registry struct {
	byName map[string]Dataset
	names  []string
}

// NewRegistry validates the datasets and returns a registry of them. It fails on a
// duplicate or empty name, a dataset without files, a file name with a path separator
// or "..", a URL that is not absolute http(s), duplicate file names within a dataset, a
// verified file without a positive Size or a well-formed hex Sum for its Algo, an
// unverified file that nevertheless carries a Sum, and an Unpack kind that does not
// match the file extension.
func NewRegistry(datasets ...Dataset) (*Registry, error) {
	r := &Registry{byName: map[string]Dataset{}}
	for _, d := range datasets {
		if err := validateDataset(d); err != nil {
			return nil, err
		}
		if _, dup := r.byName[d.Name]; dup {
			return nil, fmt.Errorf("fetch registry: dataset %q registered twice", d.Name)
		}
		d.Files = cloneFiles(d.Files)
		r.byName[d.Name] = d
		r.names = append(r.names, d.Name)
	}
	slices.Sort(r.names)
	return r, nil
}

func validateDataset(d Dataset) error {
	if d.Name == "" || strings.ContainsAny(d.Name, "/\\ ") {
		return fmt.Errorf("fetch registry: dataset name %q must be non-empty, without spaces or slashes", d.Name)
	}
	if len(d.Files) == 0 {
		return fmt.Errorf("fetch registry: dataset %q has no files", d.Name)
	}
	seen := map[string]bool{}
	for _, f := range d.Files {
		where := fmt.Sprintf("fetch registry: dataset %q file %q", d.Name, f.Name)
		if f.Name == "" || f.Name != path.Base(f.Name) || strings.ContainsAny(f.Name, "/\\") || f.Name == "." || f.Name == ".." || strings.HasSuffix(f.Name, ".part") {
			return fmt.Errorf("%s: the name must be a plain file name (no separators, not . or .., not ending in .part)", where)
		}
		if seen[f.Name] {
			return fmt.Errorf("%s: listed twice", where)
		}
		seen[f.Name] = true
		for _, raw := range append([]string{f.URL}, f.Mirrors...) {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s: URL %q is not an absolute http(s) URL", where, raw)
			}
		}
		if f.Verified {
			if f.Size <= 0 {
				return fmt.Errorf("%s: verified file needs its exact size, got %d", where, f.Size)
			}
			if n := f.Algo.hexLen(); n == 0 {
				return fmt.Errorf("%s: unknown checksum algorithm %q (want sha256, sha512 or md5)", where, f.Algo)
			} else if _, err := hex.DecodeString(f.Sum); err != nil || len(f.Sum) != n || strings.ToLower(f.Sum) != f.Sum {
				return fmt.Errorf("%s: %s checksum %q is not %d lower-case hex digits", where, f.Algo, f.Sum, n)
			}
			if f.Source == "" {
				return fmt.Errorf("%s: verified file must say where its checksum was published (Source)", where)
			}
		} else if f.Sum != "" {
			return fmt.Errorf("%s: has a checksum but Verified is false; set Verified only when the checksum is published, and leave Sum empty otherwise", where)
		}
		if f.Size < 0 {
			return fmt.Errorf("%s: negative size %d", where, f.Size)
		}
		switch f.Unpack {
		case NoUnpack:
		case UnpackZip:
			if !strings.HasSuffix(f.Name, ".zip") {
				return fmt.Errorf("%s: UnpackZip needs a .zip file", where)
			}
		case UnpackGzip:
			if !strings.HasSuffix(f.Name, ".gz") || strings.HasSuffix(f.Name, ".tar.gz") {
				return fmt.Errorf("%s: UnpackGzip needs a single-file .gz (not .tar.gz)", where)
			}
		default:
			return fmt.Errorf("%s: unknown Unpack kind %d", where, f.Unpack)
		}
	}
	return nil
}

// Names returns the dataset names in sorted order.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Lookup returns the dataset called name, or an error listing the known names.
func (r *Registry) Lookup(name string) (Dataset, error) {
	d, ok := r.byName[name]
	if !ok {
		return Dataset{}, fmt.Errorf("unknown dataset %q; known datasets: %s", name, strings.Join(r.names, ", "))
	}
	d.Files = cloneFiles(d.Files)
	return d, nil
}

// cloneFiles deep-copies files so callers cannot modify a registry.
func cloneFiles(files []File) []File {
	out := slices.Clone(files)
	for i := range out {
		out[i].Mirrors = slices.Clone(out[i].Mirrors)
	}
	return out
}
