package ckpt

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// interopScript reads a checkpoint written by Go with PyTorch, checks its CRC-32
// fingerprints with zlib.crc32, reports what it read, and writes a transformed copy
// (floats ×2, integers +1) for Go to read back. It uses safetensors.torch.load_file /
// save_file when the safetensors package is installed; otherwise it reads and writes the
// format itself (json + struct + torch.frombuffer), following the specification
// independently of the Go code, and with a different tensor order and no alignment.
const interopScript = `
import json, struct, sys, zlib
import torch, numpy
print("imports-ok", file=sys.stderr)
src, dst = sys.argv[1], sys.argv[2]
try:
    import safetensors, safetensors.torch as st
except ImportError:
    st = None
DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}
NAME = {v: k for k, v in DT.items()}
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
assert n % 8 == 0, "header length %d is not a multiple of 8" % n
assert raw[8:9] == b"{", "header does not start with {"
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = header.pop("__metadata__")
crcs = json.loads(meta["mdm.ckpt.crc32"])
for name, info in header.items():
    a, b = info["data_offsets"]
    got = "%08x" % zlib.crc32(data[a:b])
    assert got == crcs[name], "crc32 of %s: python %s, go %s" % (name, got, crcs[name])
if st is not None:
    tensors = st.load_file(src)
    reader = "safetensors.torch.load_file " + safetensors.__version__
else:
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[a:b]), dtype=DT[info["dtype"]]).reshape(info["shape"])
    reader = "spec reader (json + torch.frombuffer)"
report = {"reader": reader, "torch": torch.__version__, "meta": meta,
          "values": {k: v.double().flatten().tolist() for k, v in tensors.items()},
          "dtypes": {k: NAME[v.dtype] for k, v in tensors.items()},
          "shapes": {k: list(v.shape) for k, v in tensors.items()}}
out = {k: (v * 2 if v.is_floating_point() else v + 1).contiguous() for k, v in tensors.items()}
def raw_bytes(t):
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()
newmeta = dict(meta)
newmeta["mdm.ckpt.crc32"] = json.dumps({k: "%08x" % zlib.crc32(raw_bytes(v)) for k, v in out.items()})
if st is not None:
    st.save_file(out, dst, metadata=newmeta)
else:
    hdr, body, off = {"__metadata__": newmeta}, b"", 0
    for k in sorted(out, reverse=True):
        b = raw_bytes(out[k])
        hdr[k] = {"dtype": NAME[out[k].dtype], "shape": list(out[k].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        body += b
    hj = json.dumps(hdr).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(hj)) + hj + body)
print(json.dumps(report))
`

// runPython runs the interop script with the first python3 that has torch and numpy
// (python3 on PATH, then /usr/bin/python3) and returns its stdout; it skips the test when
// none has them. Each candidate is tried directly, so torch is imported only once.
func runPython(t *testing.T, args ...string) []byte {
	t.Helper()
	var tried []string
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		p, err := exec.LookPath(c)
		if err != nil || slices.Contains(tried, p) {
			continue
		}
		tried = append(tried, p)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, p, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err == nil {
			return out
		}
		if !strings.Contains(stderr.String(), "imports-ok") {
			continue // no torch/numpy, or not a working interpreter: try the next one
		}
		t.Fatalf("%s %s failed: %v\n%s", p, strings.Join(args, " "), err, stderr.String())
	}
	t.Skipf("skipping: no python3 that imports torch and numpy (tried %q); install python3-torch to run the PyTorch interoperability test", tried)
	return nil
}

func TestPyTorchInterop(t *testing.T) {
	dir := t.TempDir()
	src, dst, script := filepath.Join(dir, "go.safetensors"), filepath.Join(dir, "py.safetensors"), filepath.Join(dir, "interop.py")
	if err := os.WriteFile(script, []byte(interopScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := []Named{
		{Name: "w", T: dense([]int{2, 3}, []float32{0.5, -1.25, 3, 1e-8, -0, 65504})},
		{Name: "ema.w", T: dense([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6})},
		{Name: "d", T: dense([]int{2}, []float64{1.0 / 3, -2.5e100})},
		{Name: "ids", T: dense([]int{4}, []int32{0, 26, 27, -5})},
		{Name: "cursor", T: dense([]int{1}, []int64{1 << 40})},
		{Name: "px", T: dense([]int{3}, []uint8{0, 7, 200})},
		{Name: "bf", T: dense([]int{2}, []uint16{0x3F80, 0xBF80}), DType: BF16}, // 1.0, -1.0
	}
	if err := Save(src, ts, map[string]string{"step": "42"}); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, script, src, dst)
	var rep struct {
		Reader, Torch string
		Meta          map[string]string
		Values        map[string][]float64
		Dtypes        map[string]string
		Shapes        map[string][]int
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	t.Logf("PyTorch %s read the Go file with %s", rep.Torch, rep.Reader)
	if rep.Meta["step"] != "42" || rep.Meta[MetaFormatVersion] != "1" {
		t.Errorf("python saw metadata %v", rep.Meta)
	}
	wantVals := map[string][]float64{
		"w":      {0.5, -1.25, 3, float64(float32(1e-8)), 0, 65504},
		"ema.w":  {1, 2, 3, 4, 5, 6},
		"d":      {1.0 / 3, -2.5e100},
		"ids":    {0, 26, 27, -5},
		"cursor": {1 << 40},
		"px":     {0, 7, 200},
		"bf":     {1, -1},
	}
	for _, nt := range ts {
		wantDT := string(nt.DType)
		if wantDT == "" {
			d, _ := defaultDType(nt.T.Dtype())
			wantDT = string(d)
		}
		if !slices.Equal(rep.Values[nt.Name], wantVals[nt.Name]) || rep.Dtypes[nt.Name] != wantDT || !slices.Equal(rep.Shapes[nt.Name], []int(nt.T.Shape())) {
			t.Errorf("python read %s as %s %v %v; want %s %v %v", nt.Name, rep.Dtypes[nt.Name], rep.Shapes[nt.Name], rep.Values[nt.Name], wantDT, nt.T.Shape(), wantVals[nt.Name])
		}
	}
	// Read Python's file back: floats doubled, integers incremented.
	got, meta, err := Load(dst, specsOf(ts))
	if err != nil {
		t.Fatalf("Load of the PyTorch-written file: %v", err)
	}
	if meta["step"] != "42" {
		t.Errorf("metadata step = %q after the round trip, want 42", meta["step"])
	}
	checks := map[string]any{
		"w":      []float32{1, -2.5, 6, 2 * float32(1e-8), 0, 131008},
		"ema.w":  []float32{2, 4, 6, 8, 10, 12},
		"d":      []float64{2.0 / 3, -5e100},
		"ids":    []int32{1, 27, 28, -4},
		"cursor": []int64{1<<40 + 1},
		"px":     []uint8{1, 8, 201},
		"bf":     []uint16{0x4000, 0xC000}, // 2.0, -2.0
	}
	for name, want := range checks {
		if g := got[name].Data(); !equalAny(g, want) {
			t.Errorf("%s after the PyTorch round trip = %v, want %v", name, g, want)
		}
	}
}

func equalAny(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
