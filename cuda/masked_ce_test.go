package cuda

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// TestMaskedCEParity runs the opstest MaskedCE cases.
func TestMaskedCEParity(t *testing.T) { parityOp(t, ops.OpMaskedCE) }

type ceCase struct {
	r, v    int
	dt      ops.DType
	dlogits bool
	inplace bool // DLogits = Logits
	style   string
}

func (c ceCase) String() string {
	return fmt.Sprintf("r=%d,v=%d,dt=%v,dlogits=%v,inplace=%v,%s", c.r, c.v, c.dt, c.dlogits, c.inplace, c.style)
}

// ceData returns logits (bf16-representable for BF16 cases), targets and weights.
func ceData(c ceCase) (logits []float32, targets []int32, weights []float64) {
	rnd := &testRand{seed: uint64(c.r*7919 + c.v)}
	logits = make([]float32, c.r*c.v)
	for i := range logits {
		switch c.style {
		case "huge": // ±1e4: only the max survives exp(l − M) in float32
			logits[i] = float32(1e4 * (2*rnd.u64() - 1))
		case "inf": // some −Inf logits (never the target)
			logits[i] = float32(3 * rnd.normal())
			if rnd.intn(5) == 0 {
				logits[i] = float32(math.Inf(-1))
			}
		default:
			logits[i] = float32(2 * rnd.normal())
		}
		if c.dt == ops.BF16 {
			logits[i] = bf16Round(logits[i])
		}
	}
	targets = make([]int32, c.r)
	weights = make([]float64, c.r)
	for i := range targets {
		targets[i] = int32(rnd.intn(c.v))
		if c.style == "inf" {
			logits[i*c.v+int(targets[i])] = 1
		}
		weights[i] = 2 * rnd.u64()
	}
	if c.r > 0 {
		targets[0] = int32(c.v - 1)
		if c.style == "inf" {
			logits[c.v-1] = 1
		}
	}
	if c.r > 2 {
		weights[2] = 0
	}
	return logits, targets, weights
}

func uploadFloat(t testing.TB, be ops.Backend, dt ops.DType, x []float32, shape ...int) *ops.Tensor {
	t.Helper()
	if dt == ops.BF16 {
		h := make([]uint16, len(x))
		for i, v := range x {
			h[i] = opstest.BF16Bits(v)
		}
		return upload(t, be, dt, h, shape...)
	}
	return upload(t, be, dt, x, shape...)
}

func downloadFloat(t testing.TB, be ops.Backend, x *ops.Tensor) []float32 {
	t.Helper()
	if x.DType() == ops.BF16 {
		h := downloadU16(t, be, x)
		f := make([]float32, len(h))
		for i, v := range h {
			f[i] = opstest.BF16Float(v)
		}
		return f
	}
	return downloadF32(t, be, x)
}

// runCE runs MaskedCE on be (the CPU always in F32) and returns Loss and DLogits (nil without).
func runCE(t testing.TB, be ops.Backend, c ceCase, logits []float32, targets []int32, weights []float64) ([]float64, []float32, error) {
	t.Helper()
	dt := c.dt
	if _, ok := be.(*cpu.Backend); ok {
		dt = ops.F32
	}
	lt := uploadFloat(t, be, dt, logits, c.r, c.v)
	tt := upload(t, be, ops.I32, targets, c.r)
	wt := upload(t, be, ops.F64, weights, c.r)
	nan := make([]float64, c.r)
	for i := range nan {
		nan[i] = math.NaN()
	}
	loss := upload(t, be, ops.F64, nan, c.r)
	var dl *ops.Tensor
	if c.dlogits {
		dl = lt
		if !c.inplace {
			dl = uploadFloat(t, be, dt, make([]float32, c.r*c.v), c.r, c.v)
		}
	}
	err := be.MaskedCE(&ops.MaskedCEParams{Logits: lt, Targets: tt, Weights: wt, Loss: loss, DLogits: dl})
	if sb, ok := be.(*Backend); ok {
		checkGuards(t, sb)
	}
	l := downloadF64(t, be, loss)
	var d []float32
	if dl != nil {
		d = downloadFloat(t, be, dl)
	}
	for _, x := range []*ops.Tensor{lt, tt, wt, loss} {
		be.Free(x)
	}
	if dl != nil && !c.inplace {
		be.Free(dl)
	}
	return l, d, err
}

var ceCases = []ceCase{
	{1, 1, ops.F32, true, false, "normal"},
	{5, 2, ops.F32, true, false, "normal"},
	{9, 27, ops.F32, true, false, "normal"},
	{9, 27, ops.BF16, true, true, "normal"},
	{33, 256, ops.F32, true, true, "normal"},
	{17, 257, ops.BF16, true, false, "inf"},
	{17, 1000, ops.F32, false, false, "huge"},
	{17, 1000, ops.F32, true, false, "huge"},
	{7, 4099, ops.BF16, true, false, "normal"},
	{11, 4099, ops.F32, true, true, "inf"},
	{3, 50257, ops.F32, true, false, "normal"},
	{3, 50257, ops.BF16, true, true, "huge"},
}

// TestMaskedCEMatchesCPU compares with the CPU reference (float64 throughout) on odd vocabularies,
// ±1e4 and −Inf logits, zero weights and in-place DLogits, within the documented accuracy: Loss to
// 2e-7 relative (1e-9 absolute), DLogits to 1e-6·|d| + 1e-6·w·max|p|. In bf16 calls the gradient is
// compared with the reference's rounded to bf16 (one bf16 ulp allowed).
func TestMaskedCEMatchesCPU(t *testing.T) {
	forEachSim(t, func(t *testing.T, b *Backend) {
		for _, c := range ceCases {
			logits, targets, weights := ceData(c)
			wl, wd, err := runCE(t, cpu.New(), c, logits, targets, weights)
			if err != nil {
				t.Fatal(err)
			}
			gl, gd, err := runCE(t, b, c, logits, targets, weights)
			if err != nil {
				t.Fatalf("%v: %v", c, err)
			}
			for i := range wl {
				if math.IsNaN(gl[i]) || math.IsInf(gl[i], 0) {
					t.Fatalf("%v: Loss[%d] = %v is not finite", c, i, gl[i])
				}
				if d := math.Abs(gl[i] - wl[i]); d > 1e-9+2e-7*math.Abs(wl[i]) {
					t.Fatalf("%v: Loss[%d] = %v, want %v (diff %.3g)", c, i, gl[i], wl[i], d)
				}
			}
			for k := range wd {
				row := k / c.v
				want := float64(wd[k])
				tol := 1e-6*math.Abs(want) + 1e-6*weights[row]
				if c.dt == ops.BF16 {
					want = float64(bf16Round(wd[k]))
					tol = math.Abs(want)/128 + 1e-6*weights[row]
				}
				if d := math.Abs(float64(gd[k]) - want); !(d <= tol) {
					t.Fatalf("%v: DLogits[%d, %d] = %v, want %v (diff %.3g)", c, row, k%c.v, gd[k], want, d)
				}
			}
		}
	})
}

// TestMaskedCEAddressIndependent: the same rows give the same bits wherever they live (the work split
// follows indices, not addresses), and a row followed by NaN memory reads nothing past V.
func TestMaskedCEAddressIndependent(t *testing.T) {
	b := newSimBackend()
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		for _, v := range []int{27, 1001, 4099} {
			c := ceCase{r: 5, v: v, dt: dt, dlogits: true, style: "normal"}
			logits, targets, weights := ceData(c)
			l0, d0, err := runCE(t, b, c, logits, targets, weights)
			if err != nil {
				t.Fatal(err)
			}
			// The same rows shifted by one (odd V: every row start moves by a non-multiple of 16
			// bytes), in a buffer whose first and last rows are NaN; computed through a view.
			big := make([]float32, (c.r+2)*v)
			for i := range big {
				big[i] = float32(math.NaN())
			}
			copy(big[v:], logits)
			all := uploadFloat(t, b, dt, big, c.r+2, v)
			view, err := b.View(all, 1, 1+c.r)
			if err != nil {
				t.Fatal(err)
			}
			tt := upload(t, b, ops.I32, targets, c.r)
			wt := upload(t, b, ops.F64, weights, c.r)
			loss := upload(t, b, ops.F64, nil, c.r)
			dl := uploadFloat(t, b, dt, make([]float32, c.r*v), c.r, v)
			if err := b.MaskedCE(&ops.MaskedCEParams{Logits: view, Targets: tt, Weights: wt, Loss: loss, DLogits: dl}); err != nil {
				t.Fatal(err)
			}
			l1, d1 := downloadF64(t, b, loss), downloadFloat(t, b, dl)
			for i := range l0 {
				if math.Float64bits(l0[i]) != math.Float64bits(l1[i]) {
					t.Fatalf("v=%d %v: Loss[%d] = %v at another address, %v before", v, dt, i, l1[i], l0[i])
				}
			}
			for k := range d0 {
				if math.Float32bits(d0[k]) != math.Float32bits(d1[k]) {
					t.Fatalf("v=%d %v: DLogits[%d] = %v at another address, %v before", v, dt, k, d1[k], d0[k])
				}
			}
			checkGuards(t, b)
			for _, x := range []*ops.Tensor{all, tt, wt, loss, dl} {
				b.Free(x)
			}
		}
	}
}

// TestMaskedCEInPlace: DLogits = Logits gives the same bits as a separate DLogits tensor.
func TestMaskedCEInPlace(t *testing.T) {
	b := newSimBackend(SimReverse(true))
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		c := ceCase{r: 13, v: 1003, dt: dt, dlogits: true, style: "normal"}
		logits, targets, weights := ceData(c)
		l0, d0, err := runCE(t, b, c, logits, targets, weights)
		if err != nil {
			t.Fatal(err)
		}
		c.inplace = true
		l1, d1, err := runCE(t, b, c, logits, targets, weights)
		if err != nil {
			t.Fatal(err)
		}
		for i := range l0 {
			if l0[i] != l1[i] {
				t.Fatalf("%v: Loss[%d] in place %v, separate %v", dt, i, l1[i], l0[i])
			}
		}
		for k := range d0 {
			if math.Float32bits(d0[k]) != math.Float32bits(d1[k]) {
				t.Fatalf("%v: DLogits[%d] in place %v, separate %v", dt, k, d1[k], d0[k])
			}
		}
	}
}

// TestMaskedCEErrors: targets outside [0, V) are refused with the CPU's message; Loss and DLogits
// are untouched. R = 0 launches nothing.
func TestMaskedCEErrors(t *testing.T) {
	forEachSim(t, func(t *testing.T, b *Backend) {
		for _, bad := range []struct {
			row    int
			target int32
		}{{3, -1}, {7, 27}, {0, 1 << 30}} {
			c := ceCase{r: 9, v: 27, dt: ops.F32, dlogits: true, style: "normal"}
			logits, targets, weights := ceData(c)
			targets[bad.row] = bad.target
			targets[8] = -5 // a later bad row: the first one is reported
			_, _, werr := runCE(t, cpu.New(), c, logits, targets, weights)
			gl, gd, err := runCE(t, b, c, logits, targets, weights)
			if !errors.Is(err, ops.ErrValue) || werr == nil || err.Error() != werr.Error() {
				t.Fatalf("target %d: error\n  %v\nwant (CPU)\n  %v", bad.target, err, werr)
			}
			for i, x := range gl {
				if !math.IsNaN(x) {
					t.Fatalf("Loss[%d] = %v was written by a failed call", i, x)
				}
			}
			for k, x := range gd {
				if x != 0 {
					t.Fatalf("DLogits[%d] = %v was written by a failed call", k, x)
				}
			}
		}
		// R = 0: nothing to do and nothing launched (a fresh device: Recent keeps only 8 names).
		b = newSimBackend()
		dev := b.dev.(*SimDevice)
		lt := upload(t, b, ops.F32, nil, 0, 27)
		tt := upload(t, b, ops.I32, nil, 0)
		wt := upload(t, b, ops.F64, nil, 0)
		loss := upload(t, b, ops.F64, nil, 0)
		if err := b.MaskedCE(&ops.MaskedCEParams{Logits: lt, Targets: tt, Weights: wt, Loss: loss, DLogits: lt}); err != nil {
			t.Fatal(err)
		}
		if len(dev.recent) != 0 {
			t.Fatalf("R = 0 launched %s", dev.Recent())
		}
	})
}
