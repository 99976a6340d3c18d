package ckpt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

func dense[T any](shape []int, vals []T) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(vals))
}

func seqF32(n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(i)*scale - 1
	}
	return s
}

// sample returns a small model-like tensor set covering every handled dtype.
func sample() []Named {
	return []Named{
		{Name: "token_embed.weight", T: dense([]int{4, 3}, seqF32(12, 0.5))},
		{Name: "blocks.0.attn.q.weight", T: dense([]int{3, 3}, seqF32(9, -0.25))},
		{Name: "schedule.w_raw", T: dense([]int{2}, []float64{math.Pi, -math.E})},
		{Name: "bf16.copy", T: dense([]int{3}, []uint16{0x3F80, 0xBF80, 0x7F80}), DType: BF16},
		{Name: "f16.copy", T: dense([]int{1}, []uint16{0x3C00}), DType: F16},
		{Name: "data.cursor", T: dense([]int{2}, []int64{1 << 40, -7})},
		{Name: "ids", T: dense([]int{2, 2}, []int32{0, 26, 27, -1})},
		{Name: "i16", T: dense([]int{1}, []int16{-300})},
		{Name: "i8", T: dense([]int{2}, []int8{-128, 127})},
		{Name: "u64", T: dense([]int{1}, []uint64{math.MaxUint64})},
		{Name: "u32", T: dense([]int{1}, []uint32{math.MaxUint32})},
		{Name: "u16", T: dense([]int{2}, []uint16{1, 65535})},
		{Name: "u8", T: dense([]int{3}, []uint8{0, 128, 255})},
		{Name: "ema.token_embed.weight", T: dense([]int{4, 3}, seqF32(12, 0.125))},
		{Name: "adam.m.token_embed.weight", T: dense([]int{4, 3}, seqF32(12, 0))},
		{Name: "adam.v.token_embed.weight", T: dense([]int{4, 3}, seqF32(12, 2))},
	}
}

func specsOf(ts []Named) []Spec {
	var out []Spec
	for _, nt := range ts {
		dt := nt.DType
		if dt == "" {
			dt, _ = defaultDType(nt.T.Dtype())
		}
		out = append(out, Spec{Name: nt.Name, Shape: slices.Clone([]int(nt.T.Shape())), DType: dt})
	}
	return out
}

func saveSample(t *testing.T) (string, []Named) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.safetensors")
	ts := sample()
	if err := Save(p, ts, map[string]string{"step": "1200", "config": `{"layers":2}`}); err != nil {
		t.Fatal(err)
	}
	return p, ts
}

func TestSaveLoadRoundTrip(t *testing.T) {
	p, ts := saveSample(t)
	got, meta, err := Load(p, specsOf(ts))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ts) {
		t.Fatalf("loaded %d tensors, want %d", len(got), len(ts))
	}
	for _, nt := range ts {
		g := got[nt.Name]
		if g == nil {
			t.Errorf("%s not loaded", nt.Name)
			continue
		}
		if !g.Shape().Eq(nt.T.Shape()) || g.Dtype() != nt.T.Dtype() || !reflect.DeepEqual(g.Data(), nt.T.Data()) {
			t.Errorf("%s: got %v %v %v, want %v %v %v", nt.Name, g.Shape(), g.Dtype(), g.Data(), nt.T.Shape(), nt.T.Dtype(), nt.T.Data())
		}
	}
	wantMeta := map[string]string{
		"step": "1200", "config": `{"layers":2}`, "format": "pt",
		MetaFormatVersion: "1", MetaTensors: "16",
		MetaElements:   "79", // 12+9+2+3+1+2+4+1+2+1+1+2+3+12+12+12
		MetaParamCount: "43", // all but ema.* and adam.* (79 − 3·12)
	}
	for k, v := range wantMeta {
		if meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
		}
	}
	var crcs map[string]string
	if err := json.Unmarshal([]byte(meta[MetaCRC32]), &crcs); err != nil || len(crcs) != 16 {
		t.Errorf("metadata %s = %q: want a JSON object with 16 entries (%v)", MetaCRC32, meta[MetaCRC32], err)
	}
}

// TestFileLayout checks the bytes on disk against the safetensors specification,
// independently of the library that wrote them.
func TestFileLayout(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	ts := []Named{
		{Name: "a", T: dense([]int{2}, []float32{1.5, -2})},
		{Name: "b", T: dense([]int{1, 3}, []uint8{1, 2, 3})},
		{Name: "c", T: dense([]int{1}, []float64{0.25})},
		{Name: "d", T: dense([]int{2}, []int32{-1, 258})},
	}
	if err := Save(p, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	hdr := raw[8 : 8+n]
	if hdr[0] != '{' || strings.TrimRight(string(hdr), " ")[len(strings.TrimRight(string(hdr), " "))-1] != '}' {
		t.Errorf("header %q is not a JSON object padded with spaces", hdr)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatal(err)
	}
	var md map[string]string
	if err := json.Unmarshal(h["__metadata__"], &md); err != nil || md["k"] != "v" {
		t.Errorf("__metadata__ = %s, want an object of strings with k=v", h["__metadata__"])
	}
	data := raw[8+n:]
	type entry struct {
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	want := map[string]struct {
		dtype string
		shape []int
		bytes []byte
	}{
		"a": {"F32", []int{2}, []byte{0, 0, 0xC0, 0x3F, 0, 0, 0, 0xC0}},
		"b": {"U8", []int{1, 3}, []byte{1, 2, 3}},
		"c": {"F64", []int{1}, []byte{0, 0, 0, 0, 0, 0, 0xD0, 0x3F}},
		"d": {"I32", []int{2}, []byte{0xFF, 0xFF, 0xFF, 0xFF, 2, 1, 0, 0}},
	}
	for name, w := range want {
		var e entry
		if err := json.Unmarshal(h[name], &e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := data[e.DataOffsets[0]:e.DataOffsets[1]]
		if e.DType != w.dtype || !slices.Equal(e.Shape, w.shape) || !bytes.Equal(got, w.bytes) {
			t.Errorf("%s: dtype %s shape %v bytes % x; want %s %v % x", name, e.DType, e.Shape, got, w.dtype, w.shape, w.bytes)
		}
		if size := map[string]int64{"F32": 4, "U8": 1, "F64": 8, "I32": 4}[e.DType]; e.DataOffsets[0]%size != 0 {
			t.Errorf("%s: data offset %d not aligned to %d bytes", name, e.DataOffsets[0], size)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestSaveMaterializesViews(t *testing.T) {
	base := dense([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	tr := base.Clone().(*tensor.Dense)
	if err := tr.T(); err != nil {
		t.Fatal(err)
	}
	col, err := base.Slice(nil, tensor.S(1))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "v.safetensors")
	if err := Save(p, []Named{{Name: "t", T: tr}, {Name: "col", T: col.(*tensor.Dense)}}, nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := Load(p, []Spec{{"t", []int{3, 2}, F32}, {"col", []int{2}, F32}})
	if err != nil {
		t.Fatal(err)
	}
	if d := got["t"].Data().([]float32); !slices.Equal(d, []float32{1, 4, 2, 5, 3, 6}) {
		t.Errorf("transposed tensor saved as %v, want [1 4 2 5 3 6]", d)
	}
	if d := got["col"].Data().([]float32); !slices.Equal(d, []float32{2, 5}) {
		t.Errorf("column view saved as %v, want [2 5]", d)
	}
}

func TestSaveRejects(t *testing.T) {
	ok := dense([]int{2}, []float32{1, 2})
	cases := []struct {
		name    string
		tensors []Named
		meta    map[string]string
		want    string
	}{
		{"nil-tensor", []Named{{Name: "a"}}, nil, "nil tensor"},
		{"empty-name", []Named{{Name: "", T: ok}}, nil, "invalid name"},
		{"metadata-name", []Named{{Name: "__metadata__", T: ok}}, nil, "invalid name"},
		{"duplicate", []Named{{Name: "a", T: ok}, {Name: "a", T: ok}}, nil, `"a" appears twice`},
		{"scalar", []Named{{Name: "s", T: tensor.New(tensor.FromScalar(float32(1)))}}, nil, "scalar"},
		{"zero-size", []Named{{Name: "z", T: tensor.New(tensor.WithShape(0, 3), tensor.WithBacking([]float32{}))}}, nil, "zero-element"},
		{"go-int", []Named{{Name: "i", T: dense([]int{1}, []int{1})}}, nil, "not supported"},
		{"bf16-on-float", []Named{{Name: "a", T: ok, DType: BF16}}, nil, `DType "BF16" does not fit`},
		{"reserved-meta", []Named{{Name: "a", T: ok}}, map[string]string{MetaParamCount: "1"}, "reserved prefix"},
		{"empty-meta-key", []Named{{Name: "a", T: ok}}, map[string]string{"": "x"}, "reserved prefix"},
		{"bad-utf8-meta", []Named{{Name: "a", T: ok}}, map[string]string{"k": "\xff"}, "invalid UTF-8"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		p := filepath.Join(dir, "x.safetensors")
		err := Save(p, c.tensors, c.meta)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error = %v, want one containing %q and the path", c.name, err, c.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: refused save left %d files behind", c.name, len(entries))
		}
	}
}

// failingWriter passes through limit bytes, then fails.
type failingWriter struct {
	w     io.Writer
	limit int
}

var errInjected = errors.New("injected I/O error (disk full)")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.w.Write(p[:f.limit])
		f.limit = 0
		return n, errInjected
	}
	f.limit -= len(p)
	return f.w.Write(p)
}

func TestSaveFailureLeavesPreviousFileIntact(t *testing.T) {
	p, _ := saveSample(t)
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	next := sample()
	next[0].T = dense([]int{4, 3}, seqF32(12, 9)) // different content
	scratch := filepath.Join(t.TempDir(), "scratch.safetensors")
	if err := Save(scratch, next, nil); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(scratch)
	size := int(fi.Size())
	for _, limit := range []int{0, 4, 8, 100, size / 2, size - 1} {
		err := save(p, next, nil, func(w io.Writer) io.Writer { return &failingWriter{w: w, limit: limit} })
		if !errors.Is(err, errInjected) && (err == nil || !strings.Contains(err.Error(), errInjected.Error())) {
			t.Fatalf("limit %d: error = %v, want the injected error", limit, err)
		}
		after, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Fatalf("limit %d: the previous checkpoint changed after a failed save", limit)
		}
		entries, _ := os.ReadDir(filepath.Dir(p))
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("limit %d: directory holds %q, want only the checkpoint (temp file not cleaned up)", limit, names)
		}
	}
	// And a successful save replaces it.
	if err := Save(p, next, nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := Load(p, specsOf(next))
	if err != nil {
		t.Fatal(err)
	}
	if d := got["token_embed.weight"].Data().([]float32); d[1] != next[0].T.Data().([]float32)[1] {
		t.Errorf("successful save did not replace the file")
	}
}

func TestLoadStrict(t *testing.T) {
	p, ts := saveSample(t)
	base := specsOf(ts)
	mod := func(f func([]Spec) []Spec) []Spec { return f(slices.Clone(base)) }
	cases := []struct {
		name string
		want []Spec
		msgs []string
	}{
		{"missing", mod(func(s []Spec) []Spec { return append(s, Spec{"head.weight", []int{27, 3}, F32}) }),
			[]string{"missing tensors (expected, not in the file): head.weight"}},
		{"unexpected", mod(func(s []Spec) []Spec { return s[1:] }),
			[]string{"unexpected tensors (in the file, not expected): token_embed.weight"}},
		{"renamed", mod(func(s []Spec) []Spec { s[1].Name = "blocks.0.attn.query.weight"; return s }),
			[]string{"missing tensors (expected, not in the file): blocks.0.attn.query.weight", "unexpected tensors (in the file, not expected): blocks.0.attn.q.weight"}},
		{"misshapen", mod(func(s []Spec) []Spec { s[0].Shape = []int{3, 4}; return s }),
			[]string{"token_embed.weight: shape [4 3] in the file, [3 4] expected"}},
		{"dtype", mod(func(s []Spec) []Spec { s[2].DType = F32; return s }),
			[]string{"schedule.w_raw: dtype F64 in the file, F32 expected"}},
		{"several", mod(func(s []Spec) []Spec { s[0].Shape = []int{12}; s[3].DType = U16; return s[:len(s)-1] }),
			[]string{"unexpected tensors (in the file, not expected): adam.v.token_embed.weight", "shape [4 3] in the file, [12] expected", "bf16.copy: dtype BF16 in the file, U16 expected"}},
		{"zero-dim-spec", mod(func(s []Spec) []Spec { s[0].Shape = []int{0, 3}; return s }), []string{"zero-element"}},
	}
	for _, c := range cases {
		got, meta, err := Load(p, c.want)
		if err == nil {
			t.Errorf("%s: Load succeeded", c.name)
			continue
		}
		if got != nil || meta != nil {
			t.Errorf("%s: Load returned data with an error", c.name)
		}
		for _, m := range append(c.msgs, p) {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: error\n%v\ndoes not contain %q", c.name, err, m)
			}
		}
	}
}

// rewrite returns file bytes with the header transformed by edit (a JSON map) and the
// data section transformed by editData; the header is re-padded as the spec requires.
func rewrite(t *testing.T, good []byte, edit func(h map[string]any), editData func([]byte) []byte) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint64(good[:8])
	var h map[string]any
	if err := json.Unmarshal(good[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(h)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	data := slices.Clone(good[8+n:])
	if editData != nil {
		data = editData(data)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	out = append(out, hb...)
	return append(out, data...)
}

func offsets(h map[string]any, name string) []any {
	return h[name].(map[string]any)["data_offsets"].([]any)
}

func metaOf(h map[string]any) map[string]any { return h["__metadata__"].(map[string]any) }

func TestLoadRefusesCorruptFiles(t *testing.T) {
	goodPath, ts := saveSample(t)
	good, err := os.ReadFile(goodPath)
	if err != nil {
		t.Fatal(err)
	}
	// Two adjacent F32 tensors in file order, to make the header lie about them.
	info, err := Inspect(goodPath)
	if err != nil {
		t.Fatal(err)
	}
	var a, b string
	for i := 0; i+1 < len(info.Tensors); i++ {
		if info.Tensors[i].DType == F32 && info.Tensors[i+1].DType == F32 {
			a, b = info.Tensors[i].Name, info.Tensors[i+1].Name
			break
		}
	}
	hdrLen := binary.LittleEndian.Uint64(good[:8])
	flipAt := 8 + int(hdrLen) + 5
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)-4], "truncated"},
		{"truncated-to-prefix", good[:4], "too short"},
		{"truncated-in-header", good[:20], "runs past the end"},
		{"trailing-bytes", append(slices.Clone(good), 0, 0, 0, 0), "4 trailing bytes"},
		{"huge-header-length", append(binary.LittleEndian.AppendUint64(nil, 1<<40), good[8:]...), "outside [2, 100000000]"},
		{"not-json", append(binary.LittleEndian.AppendUint64(nil, 8), []byte("{nope}  ")...), "invalid header"},
		{"not-object", append(binary.LittleEndian.AppendUint64(nil, 8), []byte("[1,2]   ")...), "does not start with '{'"},
		{"flipped-data-byte", func() []byte { c := slices.Clone(good); c[flipAt] ^= 0x40; return c }(), "CRC-32 of its data is"},
		{"overlap", rewrite(t, good, func(h map[string]any) {
			o := offsets(h, b)
			o[0] = o[0].(float64) - 4
		}, nil), "overlaps tensor"},
		{"gap", rewrite(t, good, func(h map[string]any) {
			for name := range h {
				if name != "__metadata__" {
					o := offsets(h, name)
					o[0], o[1] = o[0].(float64)+4, o[1].(float64)+4
				}
			}
		}, func(d []byte) []byte { return append(make([]byte, 4), d...) }), "data bytes [0, 4) belong to no tensor"},
		{"size-vs-shape", rewrite(t, good, func(h map[string]any) {
			h[a].(map[string]any)["shape"] = []any{1}
		}, nil), "needs 4 bytes"},
		{"offsets-past-end", rewrite(t, good, nil, func(d []byte) []byte { return d[:len(d)-8] }), "truncated"},
		{"bad-dtype", rewrite(t, good, func(h map[string]any) { h[a].(map[string]any)["dtype"] = "F7" }, nil), "invalid header"},
		{"non-string-metadata", rewrite(t, good, func(h map[string]any) { metaOf(h)["step"] = 3 }, nil), "invalid header"},
		{"no-fingerprints", rewrite(t, good, func(h map[string]any) { h["__metadata__"] = map[string]any{"step": "1"} }, nil), "not an mdm-gpu checkpoint"},
		{"future-version", rewrite(t, good, func(h map[string]any) { metaOf(h)[MetaFormatVersion] = "2" }, nil), `format version "2" is not supported`},
		{"param-count-edited", rewrite(t, good, func(h map[string]any) { metaOf(h)[MetaParamCount] = "35" }, nil), "param_count records 35 but the file holds 43"},
		{"crc-entry-missing", rewrite(t, good, func(h map[string]any) {
			var c map[string]string
			json.Unmarshal([]byte(metaOf(h)[MetaCRC32].(string)), &c)
			delete(c, a)
			cb, _ := json.Marshal(c)
			metaOf(h)[MetaCRC32] = string(cb)
		}, nil), "has no entry for tensor"},
	}
	for _, c := range cases {
		p := filepath.Join(t.TempDir(), c.name+".safetensors")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, meta, err := Load(p, specsOf(ts))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error = %v, want one containing %q and the path", c.name, err, c.want)
		}
		if got != nil || meta != nil {
			t.Errorf("%s: Load returned data with an error", c.name)
		}
	}
}

func TestInspectAndVerify(t *testing.T) {
	p, ts := saveSample(t)
	info, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tensors) != len(ts) || info.ParamCount() != 43 || info.Metadata["step"] != "1200" {
		t.Fatalf("Inspect: %d tensors, %d params, step %q; want %d, 43, 1200", len(info.Tensors), info.ParamCount(), info.Metadata["step"], len(ts))
	}
	byName := map[string]TensorInfo{}
	for i, ti := range info.Tensors {
		byName[ti.Name] = ti
		if i > 0 && ti.Offset != info.Tensors[i-1].Offset+info.Tensors[i-1].Size {
			t.Errorf("tensors not contiguous in file order at %s", ti.Name)
		}
	}
	if ti := byName["bf16.copy"]; ti.DType != BF16 || !slices.Equal(ti.Shape, []int{3}) || ti.Size != 6 {
		t.Errorf("bf16.copy: %+v, want BF16 [3] 6 bytes", ti)
	}
	last := info.Tensors[len(info.Tensors)-1]
	if last.Offset+last.Size != info.FileSize || info.Tensors[0].Offset != 8+info.HeaderSize {
		t.Errorf("offsets do not span the data section: first %d, last ends %d, file %d", info.Tensors[0].Offset, last.Offset+last.Size, info.FileSize)
	}
	if _, err := Verify(p); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
	raw, _ := os.ReadFile(p)
	raw[len(raw)-1] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, raw, 0o644)
	if _, err := Verify(bad); err == nil || !strings.Contains(err.Error(), "CRC-32") {
		t.Errorf("Verify(corrupt) = %v, want a CRC-32 error", err)
	}
	if _, err := Inspect(bad); err != nil {
		t.Errorf("Inspect(corrupt data) = %v; Inspect does not read data, so it should succeed", err)
	}
}

// TestRemoveTemps: the partial saves of a path (".NAME.tmp-*" beside it) are removed, and
// nothing else: not the checkpoint, not another checkpoint's temporaries.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.safetensors")
	files := map[string]bool{ // name → should survive
		"checkpoint.safetensors":                 true,
		".checkpoint.safetensors.tmp-123":        false,
		".checkpoint.safetensors.tmp-abc":        false,
		".other.safetensors.tmp-1":               true,
		"checkpoint.safetensors.tmp-not-ours":    true,
		".checkpoint.safetensors.tmpx-not-saves": true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := RemoveTemps(path)
	if err != nil || n != 2 {
		t.Fatalf("RemoveTemps = %d, %v; want 2, nil", n, err)
	}
	for name, keep := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != keep {
			t.Errorf("%s: exists %v, want %v", name, exists, keep)
		}
	}
	if n, err := RemoveTemps(path); err != nil || n != 0 {
		t.Errorf("second RemoveTemps = %d, %v; want 0, nil", n, err)
	}
}
