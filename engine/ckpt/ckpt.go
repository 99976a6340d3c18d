// Package ckpt writes and reads mdm-gpu checkpoints: safetensors files (architecture.md
// §5) that the Python safetensors package and PyTorch read as they are.
//
// # Format
//
// A safetensors file is an 8-byte little-endian header length n, a JSON header of n
// bytes (padded with spaces to a multiple of 8) mapping each tensor name to
// {"dtype", "shape", "data_offsets"} plus a "__metadata__" object of string → string,
// then the raw little-endian, row-major tensor data. Serialisation uses
// github.com/nlpodyssey/safetensors (tensors ordered by decreasing alignment then name,
// so every tensor is aligned to its element size). Reading parses the header with the
// same library's Metadata type but validates the layout and reads the data itself,
// tensor by tensor with ReadAt: the library's reader needs the whole file in memory
// and reports layout errors without naming the file or the bytes involved.
//
// # Fingerprints (pitfalls B20)
//
// Save adds these metadata keys (the "mdm.ckpt." prefix is reserved):
//
//	mdm.ckpt.format_version  "1"
//	mdm.ckpt.tensors         number of tensors
//	mdm.ckpt.elements        total number of elements
//	mdm.ckpt.param_count     elements of the model parameters: every tensor except those
//	                         under the "ema." and "adam." prefixes (architecture.md §5)
//	mdm.ckpt.crc32           JSON object name → CRC-32 (IEEE, as Python's zlib.crc32) of
//	                         the tensor's little-endian bytes, 8 lower-case hex digits
//
// and "format": "pt" unless the caller sets "format" (the key Hugging Face loaders check).
// Load verifies all of them and refuses a file that lacks them.
//
// # Atomicity
//
// Save writes to a temporary file in the destination directory, fsyncs it, renames it
// over the destination and fsyncs the directory: a checkpoint never exists half-written,
// and a crash or error mid-write leaves the previous file untouched.
package ckpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nlpodyssey/safetensors"
	"gorgonia.org/tensor"
)

// FormatVersion is the value of the mdm.ckpt.format_version metadata key written by
// Save and required by Load.
const FormatVersion = "1"

// Reserved metadata keys (see the package documentation).
const (
	MetaPrefix        = "mdm.ckpt."
	MetaFormatVersion = MetaPrefix + "format_version"
	MetaTensors       = MetaPrefix + "tensors"
	MetaElements      = MetaPrefix + "elements"
	MetaParamCount    = MetaPrefix + "param_count"
	MetaCRC32         = MetaPrefix + "crc32"
)

// Named is one tensor to save.
type Named struct {
	// Name is the tensor's canonical name, e.g. "blocks.0.attn.q.weight".
	Name string
	// T is the tensor: a dense, non-empty tensor of float64, float32, int64, int32,
	// int16, int8, uint64, uint32, uint16 or uint8 elements, at least one dimension.
	// Views and transposes are materialised (copied) before writing.
	T *tensor.Dense
	// DType overrides the stored type; empty means the natural one (float32 → F32,
	// int32 → I32, …). Its only use is BF16 or F16 for a uint16 tensor of bit patterns.
	DType DType
}

// Spec is one tensor that Load expects.
type Spec struct {
	Name  string // canonical name, e.g. "head.weight"
	Shape []int  // exact dimensions, e.g. [V, D]; no zero dimensions, at least one
	DType DType  // exact stored type, e.g. F32
}

// IsParam reports whether a tensor name counts towards mdm.ckpt.param_count: every name
// except those under the "ema." and "adam." prefixes (EMA weights and optimiser moments).
func IsParam(name string) bool {
	return !strings.HasPrefix(name, "ema.") && !strings.HasPrefix(name, "adam.")
}

// Save writes tensors and meta to path as a safetensors file, atomically (see the
// package documentation), adding the mdm.ckpt.* fingerprint keys to the metadata. It
// fails, writing nothing, on an empty or duplicate tensor name or the name
// "__metadata__", a nil, zero-element or scalar tensor, an unsupported element type, a
// DType override that does not fit the tensor, a metadata key that is empty or uses the
// reserved "mdm.ckpt." prefix, or non-UTF-8 names or values.
func Save(path string, tensors []Named, meta map[string]string) error {
	return save(path, tensors, meta, nil)
}

// view is a tensor ready for serialisation; it implements safetensors.View.
type view struct {
	dtype DType
	shape []uint64
	data  []byte // little-endian bytes
}

func (v view) DType() safetensors.DType { return dtypes[v.dtype].st }
func (v view) Shape() []uint64          { return v.shape }
func (v view) Data() []byte             { return v.data }
func (v view) DataLen() uint64          { return uint64(len(v.data)) }

// save is Save with a hook that wraps the file writer (tests inject I/O failures).
func save(path string, tensors []Named, meta map[string]string, wrap func(io.Writer) io.Writer) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("save checkpoint %s: %s", path, fmt.Sprintf(format, a...))
	}
	views := make(map[string]view, len(tensors))
	crcs := make(map[string]string, len(tensors))
	var elements, params int64
	for i, nt := range tensors {
		if nt.Name == "" || nt.Name == "__metadata__" || !utf8.ValidString(nt.Name) {
			return fail("tensor %d has the invalid name %q", i, nt.Name)
		}
		if _, dup := views[nt.Name]; dup {
			return fail("tensor name %q appears twice", nt.Name)
		}
		v, err := makeView(nt)
		if err != nil {
			return fail("tensor %q: %v", nt.Name, err)
		}
		views[nt.Name] = v
		crcs[nt.Name] = fmt.Sprintf("%08x", crc32.ChecksumIEEE(v.data))
		n := int64(len(v.data) / v.dtype.Size())
		elements += n
		if IsParam(nt.Name) {
			params += n
		}
	}
	full := make(map[string]string, len(meta)+6)
	for k, v := range meta {
		if k == "" || strings.HasPrefix(k, MetaPrefix) {
			return fail("metadata key %q is empty or uses the reserved prefix %q", k, MetaPrefix)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fail("metadata %q has invalid UTF-8", k)
		}
		full[k] = v
	}
	if _, ok := full["format"]; !ok {
		full["format"] = "pt"
	}
	crcJSON, err := json.Marshal(crcs)
	if err != nil {
		return fail("%v", err)
	}
	full[MetaFormatVersion] = FormatVersion
	full[MetaTensors] = strconv.Itoa(len(views))
	full[MetaElements] = strconv.FormatInt(elements, 10)
	full[MetaParamCount] = strconv.FormatInt(params, 10)
	full[MetaCRC32] = string(crcJSON)

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fail("%v", err)
	}
	cleanup := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fail("%v (the previous file, if any, is unchanged)", err)
	}
	if err := tmp.Chmod(0o644); err != nil { // CreateTemp makes 0600 files
		return cleanup(err)
	}
	var w io.Writer = tmp
	if wrap != nil {
		w = wrap(tmp)
	}
	if err := safetensors.SerializeToWriter(views, full, w); err != nil {
		return cleanup(err)
	}
	if err := tmp.Sync(); err != nil {
		return cleanup(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fail("%v (the previous file, if any, is unchanged)", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fail("%v (the previous file, if any, is unchanged)", err)
	}
	if err := syncDir(dir); err != nil {
		return fail("%v", err)
	}
	return nil
}

// makeView checks a tensor and returns its little-endian bytes.
func makeView(nt Named) (view, error) {
	t := nt.T
	if t == nil {
		return view{}, errors.New("nil tensor")
	}
	shape := t.Shape()
	if len(shape) == 0 {
		return view{}, errors.New("scalar tensors are not supported; store it with shape [1]")
	}
	n := 1
	u := make([]uint64, len(shape))
	for i, d := range shape {
		if d <= 0 {
			return view{}, fmt.Errorf("shape %v has a zero dimension; zero-element tensors are not supported", []int(shape))
		}
		n *= d
		u[i] = uint64(d)
	}
	dt, ok := defaultDType(t.Dtype())
	if !ok {
		return view{}, fmt.Errorf("element type %v is not supported (use float32/64, int8/16/32/64 or uint8/16/32/64)", t.Dtype())
	}
	if nt.DType != "" {
		if !nt.DType.valid() || dtypes[nt.DType].gorgonia != t.Dtype() {
			return view{}, fmt.Errorf("DType %q does not fit a tensor of %v elements", nt.DType, t.Dtype())
		}
		dt = nt.DType
	}
	if t.IsView() || t.IsMaterializable() || t.RequiresIterator() {
		m, ok := t.Materialize().(*tensor.Dense)
		if !ok {
			return view{}, errors.New("cannot materialise the view")
		}
		t = m
	}
	b, err := backingBytes(t.Data())
	if err != nil {
		return view{}, err
	}
	if len(b) != n*dt.Size() {
		return view{}, fmt.Errorf("backing holds %d bytes, shape %v needs %d", len(b), []int(shape), n*dt.Size())
	}
	if !hostLittleEndian {
		b = append([]byte(nil), b...)
		swapBytes(b, dt.Size())
	}
	return view{dtype: dt, shape: u, data: b}, nil
}

// syncDir fsyncs a directory so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// copyMeta returns a copy of m.
func copyMeta(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// tempPrefix is the name prefix of the temporary files a save of path writes in path's
// directory before renaming one into place.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// RemoveTemps deletes the temporary files that saves of path leave behind when the process
// is killed between creating and renaming them (".NAME.tmp-*" beside path); it returns how
// many it removed. Call it only when no save of path is in progress in another process.
func RemoveTemps(path string) (int, error) {
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPrefix(path)+"*"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !os.IsNotExist(err) {
			return n, fmt.Errorf("ckpt: removing the partial save %s: %w", m, err)
		}
		n++
	}
	return n, nil
}
