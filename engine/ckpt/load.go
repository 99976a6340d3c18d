package ckpt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nlpodyssey/safetensors"
	"gorgonia.org/tensor"
)

// maxHeaderLen bounds the JSON header (the safetensors reference implementation's
// limit), so that a corrupt length cannot make Load allocate gigabytes.
const maxHeaderLen = 100_000_000

// TensorInfo describes one tensor of a file without its data.
type TensorInfo struct {
	Name  string // tensor name as stored
	DType DType  // element type as stored (may be one Load does not handle, e.g. BOOL)
	Shape []int  // dimensions, outermost first
	// Offset is the tensor's first byte in the file (absolute, not relative to the data
	// section); Size is its length in bytes.
	Offset, Size int64
}

// Elements returns the number of elements (the product of Shape; 1 for a scalar).
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Info is what Inspect reads from a file: everything but the tensor data.
type Info struct {
	Path       string // the file inspected
	FileSize   int64  // bytes
	HeaderSize int64  // bytes of JSON header (excluding the 8-byte length prefix)
	// Tensors in file order (increasing offset).
	Tensors []TensorInfo
	// Metadata is the header's __metadata__ (empty if absent).
	Metadata map[string]string
}

// Inspect reads and validates the header of a safetensors file and returns the names,
// dtypes, shapes, offsets and metadata, without reading tensor data or checking
// checksums. It accepts any safetensors file whose dtypes the safetensors library knows
// (BOOL, U8–U64, I8–I64, F16, BF16, F32, F64), not only mdm-gpu checkpoints. Errors name
// the file and what is wrong: too short, a header length beyond the file, a header that
// is not a JSON object, bad entries, or data offsets that leave gaps, overlap, disagree
// with dtype × shape, or do not end exactly at the end of the file (truncation or
// trailing bytes).
func Inspect(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect checkpoint: %w", err)
	}
	defer f.Close()
	info, err := readHeader(f, path)
	if err != nil {
		return nil, fmt.Errorf("inspect checkpoint %s: %w", path, err)
	}
	return info, nil
}

// readHeader reads the length prefix and JSON header of f and validates the layout.
func readHeader(f *os.File, path string) (*Info, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length; it is truncated or not a safetensors file", size)
	}
	var prefix [8]byte
	if _, err := f.ReadAt(prefix[:], 0); err != nil {
		return nil, err
	}
	n64 := binary.LittleEndian.Uint64(prefix[:])
	if n64 < 2 || n64 > maxHeaderLen {
		return nil, fmt.Errorf("header length %d is outside [2, %d]; the file is corrupt or not a safetensors file", n64, maxHeaderLen)
	}
	n := int64(n64)
	if 8+n > size {
		return nil, fmt.Errorf("header length %d runs past the end of the %d-byte file; the file is truncated", n, size)
	}
	hdr := make([]byte, n)
	if _, err := f.ReadAt(hdr, 8); err != nil {
		return nil, err
	}
	if hdr[0] != '{' {
		return nil, fmt.Errorf("header does not start with '{' (got %q); not a safetensors file", hdr[0])
	}
	var md safetensors.Metadata
	if err := json.Unmarshal(bytes.TrimRight(hdr, " "), &md); err != nil {
		return nil, fmt.Errorf("invalid header: %w", err)
	}
	info := &Info{Path: path, FileSize: size, HeaderSize: n, Metadata: copyMeta(md.Metadata())}
	type entry struct {
		name       string
		ti         *safetensors.TensorInfo
		begin, end uint64
	}
	var entries []entry
	for name, ti := range md.Tensors() {
		entries = append(entries, entry{name, ti, ti.DataOffsets[0], ti.DataOffsets[1]})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.begin != b.begin {
			return cmpU64(a.begin, b.begin)
		}
		if a.end != b.end {
			return cmpU64(a.end, b.end)
		}
		return strings.Compare(a.name, b.name)
	})
	dataLen := uint64(size - 8 - n)
	var pos uint64
	prev := ""
	for _, e := range entries {
		if e.end < e.begin {
			return nil, fmt.Errorf("tensor %q has data_offsets [%d, %d] that end before they begin", e.name, e.begin, e.end)
		}
		switch {
		case e.begin > pos:
			return nil, fmt.Errorf("data bytes [%d, %d) belong to no tensor (gap before %q); the header lies about the offsets", pos, e.begin, e.name)
		case e.begin < pos:
			return nil, fmt.Errorf("tensor %q at data_offsets [%d, %d] overlaps tensor %q, which ends at %d; the header lies about the offsets", e.name, e.begin, e.end, prev, pos)
		}
		elems, ok := uint64(1), true
		shape := make([]int, len(e.ti.Shape))
		for i, d := range e.ti.Shape {
			var hi uint64
			hi, elems = bits.Mul64(elems, d)
			if hi != 0 || d > uint64(math.MaxInt) {
				ok = false
			}
			shape[i] = int(d)
		}
		hi, need := bits.Mul64(elems, e.ti.DType.Size())
		if !ok || hi != 0 || need != e.end-e.begin {
			return nil, fmt.Errorf("tensor %q: dtype %s shape %v needs %d bytes but its data_offsets [%d, %d] span %d", e.name, e.ti.DType, e.ti.Shape, need, e.begin, e.end, e.end-e.begin)
		}
		if e.end > dataLen {
			return nil, fmt.Errorf("tensor %q ends at data byte %d but the file has only %d data bytes; the file is truncated", e.name, e.end, dataLen)
		}
		info.Tensors = append(info.Tensors, TensorInfo{
			Name: e.name, DType: DType(e.ti.DType.String()), Shape: shape,
			Offset: 8 + n + int64(e.begin), Size: int64(e.end - e.begin),
		})
		pos, prev = e.end, e.name
	}
	if pos != dataLen {
		return nil, fmt.Errorf("the tensors end at data byte %d but the file has %d data bytes (%d trailing bytes); the file is corrupt", pos, dataLen, dataLen-pos)
	}
	return info, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ParamCount returns the number of elements in tensors that IsParam counts.
func (info *Info) ParamCount() int64 {
	var n int64
	for _, t := range info.Tensors {
		if IsParam(t.Name) {
			n += t.Elements()
		}
	}
	return n
}

// Load reads the tensors of an mdm-gpu checkpoint strictly: the file must hold exactly
// the tensors in want, each with the wanted dtype and shape. It refuses, returning no
// tensors:
//
//   - a file without the mdm.ckpt.* fingerprint metadata, or another format version;
//   - missing tensors (in want, not in the file) and unexpected ones (in the file, not in
//     want), listed by name (a renamed tensor shows up as one of each);
//   - a tensor whose dtype or shape differs (the error gives the name and both);
//   - any layout problem Inspect refuses (truncation, lying offsets, …);
//   - a tensor whose CRC-32 differs from the stored one, and tensor, element or parameter
//     counts that differ from the stored ones.
//
// All problems of one kind are reported together. The returned metadata includes the
// mdm.ckpt.* keys. Float tensors come back as float32/float64 Dense, BF16/F16 as uint16
// bit patterns, integers as the matching Go integer type.
func Load(path string, want []Spec) (map[string]*tensor.Dense, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	defer f.Close()
	fail := func(err error) (map[string]*tensor.Dense, map[string]string, error) {
		return nil, nil, fmt.Errorf("load checkpoint %s: %w", path, err)
	}
	info, err := readHeader(f, path)
	if err != nil {
		return fail(err)
	}
	crcs, err := checkFingerprintMeta(info)
	if err != nil {
		return fail(err)
	}
	if err := matchSpecs(info, want); err != nil {
		return fail(err)
	}
	out := make(map[string]*tensor.Dense, len(info.Tensors))
	for _, ti := range info.Tensors {
		backing, raw := newBacking(ti.DType, int(ti.Elements()))
		if _, err := f.ReadAt(raw, ti.Offset); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fail(fmt.Errorf("reading tensor %q: %w", ti.Name, err))
		}
		if got := fmt.Sprintf("%08x", crc32.ChecksumIEEE(raw)); got != crcs[ti.Name] {
			return fail(fmt.Errorf("tensor %q: CRC-32 of its data is %s but the checkpoint recorded %s; the file is corrupt (restore it from a backup or an earlier checkpoint)", ti.Name, got, crcs[ti.Name]))
		}
		if !hostLittleEndian {
			swapBytes(raw, ti.DType.Size())
		}
		out[ti.Name] = tensor.New(tensor.WithShape(ti.Shape...), tensor.WithBacking(backing))
	}
	return out, info.Metadata, nil
}

// Verify reads every tensor of an mdm-gpu checkpoint and checks the fingerprint metadata
// (CRC-32 of each tensor, tensor, element and parameter counts) without a list of
// expected tensors. It returns the header information on success.
func Verify(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify checkpoint: %w", err)
	}
	defer f.Close()
	info, err := readHeader(f, path)
	if err != nil {
		return nil, fmt.Errorf("verify checkpoint %s: %w", path, err)
	}
	crcs, err := checkFingerprintMeta(info)
	if err != nil {
		return nil, fmt.Errorf("verify checkpoint %s: %w", path, err)
	}
	buf := make([]byte, 1<<20)
	for _, ti := range info.Tensors {
		h := crc32.NewIEEE()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, ti.Offset, ti.Size), buf); err != nil {
			return nil, fmt.Errorf("verify checkpoint %s: reading tensor %q: %w", path, ti.Name, err)
		}
		if got := fmt.Sprintf("%08x", h.Sum32()); got != crcs[ti.Name] {
			return nil, fmt.Errorf("verify checkpoint %s: tensor %q: CRC-32 of its data is %s but the checkpoint recorded %s; the file is corrupt", path, ti.Name, got, crcs[ti.Name])
		}
	}
	return info, nil
}

// checkFingerprintMeta checks the mdm.ckpt.* metadata against the header and returns
// the recorded CRC-32 of each tensor.
func checkFingerprintMeta(info *Info) (map[string]string, error) {
	m := info.Metadata
	v, ok := m[MetaFormatVersion]
	if !ok {
		return nil, fmt.Errorf("no %s metadata: this is not an mdm-gpu checkpoint (or it was rewritten without its fingerprints); use ckpt.Inspect to look at it", MetaFormatVersion)
	}
	if v != FormatVersion {
		return nil, fmt.Errorf("checkpoint format version %q is not supported (this build reads %q); use a matching mdm-gpu build", v, FormatVersion)
	}
	var crcs map[string]string
	if err := json.Unmarshal([]byte(m[MetaCRC32]), &crcs); err != nil {
		return nil, fmt.Errorf("metadata %s is not a JSON object of tensor name → CRC-32: %v", MetaCRC32, err)
	}
	var names []string
	for _, t := range info.Tensors {
		names = append(names, t.Name)
		if _, ok := crcs[t.Name]; !ok {
			return nil, fmt.Errorf("metadata %s has no entry for tensor %q; the file was modified after it was written", MetaCRC32, t.Name)
		}
	}
	if len(crcs) != len(info.Tensors) {
		var extra []string
		for k := range crcs {
			if !slices.Contains(names, k) {
				extra = append(extra, k)
			}
		}
		slices.Sort(extra)
		return nil, fmt.Errorf("metadata %s lists tensors the file does not hold: %s; the file was modified after it was written", MetaCRC32, strings.Join(extra, ", "))
	}
	var elements int64
	for _, t := range info.Tensors {
		elements += t.Elements()
	}
	for _, c := range []struct {
		key string
		got int64
	}{
		{MetaTensors, int64(len(info.Tensors))},
		{MetaElements, elements},
		{MetaParamCount, info.ParamCount()},
	} {
		want, err := strconv.ParseInt(m[c.key], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("metadata %s = %q is not an integer", c.key, m[c.key])
		}
		if want != c.got {
			return nil, fmt.Errorf("metadata %s records %d but the file holds %d; the file was modified after it was written", c.key, want, c.got)
		}
	}
	return crcs, nil
}

// matchSpecs compares the file's tensors with want and reports every difference.
func matchSpecs(info *Info, want []Spec) error {
	have := make(map[string]TensorInfo, len(info.Tensors))
	for _, t := range info.Tensors {
		have[t.Name] = t
	}
	wanted := make(map[string]bool, len(want))
	var problems, missing, unexpected []string
	for _, s := range want {
		if wanted[s.Name] {
			return fmt.Errorf("the expected tensor list names %q twice (a bug in the caller)", s.Name)
		}
		wanted[s.Name] = true
		if !s.DType.valid() {
			return fmt.Errorf("expected tensor %q has unsupported dtype %q", s.Name, s.DType)
		}
		if len(s.Shape) == 0 || slices.ContainsFunc(s.Shape, func(d int) bool { return d <= 0 }) {
			return fmt.Errorf("expected tensor %q has shape %v: scalars and zero-element tensors are not supported", s.Name, s.Shape)
		}
		t, ok := have[s.Name]
		if !ok {
			missing = append(missing, s.Name)
			continue
		}
		if !slices.Equal(t.Shape, s.Shape) {
			problems = append(problems, fmt.Sprintf("%s: shape %v in the file, %v expected", s.Name, t.Shape, s.Shape))
		}
		if t.DType != s.DType {
			problems = append(problems, fmt.Sprintf("%s: dtype %s in the file, %s expected", s.Name, t.DType, s.DType))
		}
	}
	for _, t := range info.Tensors {
		if !wanted[t.Name] {
			unexpected = append(unexpected, t.Name)
		}
	}
	slices.Sort(missing)
	slices.Sort(unexpected)
	var lines []string
	if len(missing) > 0 {
		lines = append(lines, fmt.Sprintf("missing tensors (expected, not in the file): %s", strings.Join(missing, ", ")))
	}
	if len(unexpected) > 0 {
		lines = append(lines, fmt.Sprintf("unexpected tensors (in the file, not expected): %s", strings.Join(unexpected, ", ")))
	}
	lines = append(lines, problems...)
	if len(lines) > 0 {
		return fmt.Errorf("the checkpoint does not match the expected tensors (was it written for another model configuration?):\n  %s", strings.Join(lines, "\n  "))
	}
	return nil
}
