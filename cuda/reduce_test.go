package cuda

// Tests of the elementwise, normalisation and reduction families (embedding.go, layernorm.go,
// mlp.go, reduce.go), and the helpers they share (prefix enr).

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// enrOps are the ops of these families.
var enrOps = []ops.Op{
	ops.OpEmbedFwd, ops.OpEmbedBwd, ops.OpNormFwd, ops.OpNormBwd,
	ops.OpGLUFwd, ops.OpGLUBwd, ops.OpActFwd, ops.OpActBwd, ops.OpBiasAdd, ops.OpBiasGrad,
	ops.OpGateResidualFwd, ops.OpGateResidualBwd,
	ops.OpSumSquares, ops.OpAxpy, ops.OpConvert, ops.OpCopyCols, ops.OpGatherRows, ops.OpScatterRows, ops.OpTimeEmbed,
}

// enrSimConfigs are the simulator configurations every parity test of these families runs in:
// forward and reverse thread order (a missing barrier shows up as a difference) and two
// workers (blocks really run concurrently; these kernels use no float atomics, so the results
// must still be bit-identical run to run).
var enrSimConfigs = []struct {
	name string
	opts []SimOption
}{
	{"forward", nil},
	{"reverse", []SimOption{SimReverse(true)}},
	{"workers2", []SimOption{SimWorkers(2)}},
}

// enrSupported selects the harness cases of these families that the GPU backend must support:
// all but the conversions involving F64 (a CPU-only dtype).
func enrSupported(opList []ops.Op) func(opstest.Case) bool {
	want := map[ops.Op]bool{}
	for _, o := range opList {
		want[o] = true
	}
	return func(c opstest.Case) bool { return want[c.Op] && !(c.Op == ops.OpConvert && enrHasF64(c)) }
}

// enrParity runs the harness's cases of opList on the simulator against the CPU reference in
// every enrSimConfigs configuration, with guard bands; every selected case must be supported.
// Large cases run in the forward configuration only (and not under -short).
func enrParity(t *testing.T, opList []ops.Op) {
	t.Helper()
	sel := enrSupported(opList)
	for i, cfg := range enrSimConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			filter := func(c opstest.Case) bool { return sel(c) && (i == 0 || c.Size == opstest.Small) }
			dut := NewBackend(NewSimDevice(cfg.opts...), WithGuardBands(256))
			opstest.Run(t, cpu.New(), dut, opstest.Options{Filter: filter, Guard: true, FailUnsupported: true})
		})
	}
}

// enrHasF64 reports whether a case has an F64 argument.
func enrHasF64(c opstest.Case) bool {
	for _, a := range c.Args() {
		if a.DType == ops.F64 {
			return true
		}
	}
	return false
}

// misalignedBackend allocates every tensor as a view starting one row into a larger
// allocation, so that (for most shapes) no data pointer is 16-byte aligned: it drives the
// kernels' scalar fallback paths.
type misalignedBackend struct {
	*Backend
	parent map[*ops.Tensor]*ops.Tensor
}

func newMisaligned(b *Backend) *misalignedBackend {
	return &misalignedBackend{Backend: b, parent: map[*ops.Tensor]*ops.Tensor{}}
}

func (m *misalignedBackend) Alloc(dt ops.DType, shape ...int) (*ops.Tensor, error) {
	big := append([]int(nil), shape...)
	big[0]++
	p, err := m.Backend.Alloc(dt, big...)
	if err != nil {
		return nil, err
	}
	v, err := m.Backend.View(p, 1, big[0])
	if err != nil {
		return nil, err
	}
	m.parent[v] = p
	return v, nil
}

func (m *misalignedBackend) Free(t *ops.Tensor) error {
	p, ok := m.parent[t]
	if !ok {
		return m.Backend.Free(t)
	}
	delete(m.parent, t)
	return m.Backend.Free(p)
}

// enrBits downloads a tensor as raw bit patterns, one uint64 per element.
func enrBits(t testing.TB, b ops.Backend, x *ops.Tensor) []uint64 {
	t.Helper()
	out := make([]uint64, x.Len())
	var err error
	switch x.DType() {
	case ops.F32:
		h := make([]float32, x.Len())
		err = b.Download(h, x)
		for i, v := range h {
			out[i] = uint64(math.Float32bits(v))
		}
	case ops.BF16:
		h := make([]uint16, x.Len())
		err = b.Download(h, x)
		for i, v := range h {
			out[i] = uint64(v)
		}
	case ops.F64:
		h := make([]float64, x.Len())
		err = b.Download(h, x)
		for i, v := range h {
			out[i] = math.Float64bits(v)
		}
	case ops.I32:
		h := make([]int32, x.Len())
		err = b.Download(h, x)
		for i, v := range h {
			out[i] = uint64(uint32(v))
		}
	}
	if err != nil {
		t.Fatalf("download %v: %v", x, err)
	}
	return out
}

// enrOutputs runs case c once on b and returns the bits of every output.
func enrOutputs(t testing.TB, b ops.Backend, c opstest.Case) map[string][]uint64 {
	t.Helper()
	inst, err := c.Setup(b)
	if err != nil {
		t.Fatalf("%s: setup: %v", c.Name, err)
	}
	defer inst.Free()
	if err := inst.Run(); err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	res := map[string][]uint64{}
	for _, a := range c.Args() {
		if a.Output {
			res[a.Name] = enrBits(t, b, inst.Tensors()[a.Name])
		}
	}
	return res
}

// TestENRBitsIndependentOfScheduleAndAlignment: every small case of these families gives the
// same output bits in forward order, reverse order, with two workers and with every tensor
// misaligned (scalar fallback paths): the kernels' results depend on the values only (fixed
// reduction orders, pack ownership; common.cuh), not on scheduling or addresses.
func TestENRBitsIndependentOfScheduleAndAlignment(t *testing.T) {
	sel := enrSupported(enrOps)
	type variant struct {
		name string
		b    ops.Backend
	}
	variants := []variant{
		{"reverse", NewBackend(NewSimDevice(SimReverse(true)))},
		{"workers2", NewBackend(NewSimDevice(SimWorkers(2)))},
		{"misaligned", newMisaligned(NewBackend(NewSimDevice(SimReverse(true))))},
	}
	base := NewBackend(NewSimDevice())
	n := 0
	for _, c := range opstest.Cases() {
		if !sel(c) || c.Size != opstest.Small {
			continue
		}
		n++
		want := enrOutputs(t, base, c)
		for _, v := range variants {
			got := enrOutputs(t, v.b, c)
			for name, w := range want {
				for i := range w {
					if got[name][i] != w[i] {
						t.Errorf("%s: %s: output %s[%d] = %#x, forward order gave %#x", c.Name, v.name, name, i, got[name][i], w[i])
						break
					}
				}
			}
		}
	}
	t.Logf("%d cases, %d variants each", n, len(variants))
}

// TestENRMisalignedParity: the scalar fallback paths (every tensor misaligned) against the
// reference, through the harness (tolerances, run-twice determinism, untouched inputs).
func TestENRMisalignedParity(t *testing.T) {
	dut := newMisaligned(NewBackend(NewSimDevice(), WithGuardBands(256)))
	sel := enrSupported(enrOps)
	opstest.Run(t, cpu.New(), dut, opstest.Options{Filter: func(c opstest.Case) bool { return sel(c) && c.Size == opstest.Small },
		Guard: true, FailUnsupported: true})
}

// floorGridDevice injects the classic launch bug of pitfalls B14: grids computed with floor
// instead of ceiling division, i.e. one block too few whenever the grid has more than one.
type floorGridDevice struct{ *SimDevice }

func (d floorGridDevice) Launch(name string, grid, block Dim3, smem int, args ...uint64) error {
	if grid.X > 1 {
		grid.X--
	}
	return d.SimDevice.Launch(name, grid, block, smem, args...)
}

// TestENRFloorDivisionGridIsCaught: with one block missing from every multi-block launch, the
// parity cases of every row- or chunk-structured op fail (the harness's odd sizes catch it),
// while the grid-stride kernels (flat elementwise ops) still pass, as they must.
func TestENRFloorDivisionGridIsCaught(t *testing.T) {
	dut := NewBackend(floorGridDevice{NewSimDevice()})
	sel := enrSupported(enrOps)
	failed := map[ops.Op]int{}
	passed := map[ops.Op]int{}
	opstest.Check(cpu.New(), dut, func(c opstest.Case) bool { return sel(c) && c.Size == opstest.Small }, opstest.Options{
		Report: func(r opstest.Result) {
			switch r.Status {
			case opstest.Failed:
				failed[r.Case.Op]++
			case opstest.Passed:
				passed[r.Case.Op]++
			}
		}})
	for _, o := range []ops.Op{ops.OpEmbedFwd, ops.OpEmbedBwd, ops.OpNormFwd, ops.OpNormBwd, ops.OpBiasAdd, ops.OpBiasGrad,
		ops.OpGateResidualFwd, ops.OpGateResidualBwd, ops.OpGatherRows, ops.OpScatterRows} {
		if failed[o] == 0 {
			t.Errorf("%v: no case failed with a floor-division grid", o)
		}
	}
	for _, o := range []ops.Op{ops.OpGLUFwd, ops.OpGLUBwd, ops.OpActFwd, ops.OpActBwd, ops.OpAxpy, ops.OpConvert, ops.OpTimeEmbed} {
		if failed[o] != 0 {
			t.Errorf("%v: %d case(s) failed with one block fewer: a grid-stride kernel must not depend on the grid size", o, failed[o])
		}
	}
}

// TestENRDTypeRefusals: F64 data (except in Axpy) and mixed data dtypes are refused before any
// launch with an error wrapping ops.ErrUnsupported (or ops.ErrDType from Validate) that names
// the offending tensor.
func TestENRDTypeRefusals(t *testing.T) {
	b := NewBackend(NewSimDevice())
	mk := func(dt ops.DType, shape ...int) *ops.Tensor {
		x, err := b.Alloc(dt, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	f32, bf, f64 := mk(ops.F32, 4, 8), mk(ops.BF16, 4, 8), mk(ops.F64, 4, 8)
	rstd, rstd64 := mk(ops.F32, 4), mk(ops.F64, 4)
	cases := []struct {
		name, want string
		call       func() error
	}{
		{"NormFwd f64", "f64", func() error {
			return b.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: 1e-5, Out: f64, X: f64, Rstd: rstd64})
		}},
		{"NormFwd bf16 X, f32 Out", "Out", func() error {
			return b.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: 1e-5, Out: f32, X: bf, Rstd: rstd})
		}},
		{"NormFwd bf16 Rstd", "Rstd", func() error {
			return b.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: 1e-5, Out: bf, X: bf, Rstd: rstd64})
		}},
		{"GLUFwd mixed", "B", func() error { return b.GLUFwd(&ops.GLUParams{Act: ops.Swish, Out: f32, A: f32, B: bf}) }},
		{"Axpy f64 Y, f32 X", "dtype", func() error { return b.Axpy(&ops.AxpyParams{Y: f64, X: f32, Alpha: 1, Beta: 1}) }},
		{"Convert to f64", "CPU-only", func() error { return b.Convert(&ops.ConvertParams{Out: f64, In: f32}) }},
		{"SumSquares f64", "f64", func() error { return b.SumSquares(&ops.SumSquaresParams{Out: mk(ops.F64, 1), X: f64}) }},
	}
	for _, c := range cases {
		err := c.call()
		if !(errors.Is(err, ops.ErrUnsupported) || errors.Is(err, ops.ErrDType)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an ErrUnsupported or ErrDType mentioning %q", c.name, err, c.want)
		}
	}
	for _, o := range enrOps {
		if b.Supports(o, ops.F64) != (o == ops.OpAxpy) {
			t.Errorf("Supports(%v, f64) = %v; F64 is CPU-only except for Axpy (device-side f64 accumulators)", o, b.Supports(o, ops.F64))
		}
		if !b.Supports(o, ops.F32) || !b.Supports(o, ops.BF16) {
			t.Errorf("Supports(%v, f32/bf16) = false", o)
		}
	}
}

// enrUpload allocates a tensor on b and uploads host data ([]float32, []uint16, []float64 or
// []int32).
func enrUpload(t testing.TB, b ops.Backend, dt ops.DType, data any, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, data); err != nil {
		t.Fatal(err)
	}
	return x
}

// enrSameError requires the CPU reference and the device to fail with the same message.
func enrSameError(t *testing.T, what string, ref, got error) {
	t.Helper()
	if ref == nil {
		t.Fatalf("%s: the reference accepted the call", what)
	}
	if got == nil || got.Error() != ref.Error() || !errors.Is(got, ops.ErrValue) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, ref)
	}
}

func TestReduceParity(t *testing.T) {
	enrParity(t, []ops.Op{ops.OpSumSquares, ops.OpAxpy, ops.OpConvert, ops.OpCopyCols, ops.OpGatherRows,
		ops.OpScatterRows, ops.OpTimeEmbed})
}

// TestGatherScatterErrors: bad and repeated rows are found on the device and reported with
// the reference's message; a failed ScatterRows leaves Out untouched.
func TestGatherScatterErrors(t *testing.T) {
	ref := cpu.New()
	for _, cfg := range enrSimConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			dut := NewBackend(NewSimDevice(cfg.opts...), WithGuardBands(256))
			const n, d = 40, 9
			in := make([]float32, n*d)
			for i := range in {
				in[i] = float32(i)
			}
			for _, rows := range [][]int32{
				{3, 5, 40, 7, -1},              // out of range: first bad index 2
				{1, 2, 3, 4, 5, 6, 7, 8, 9, 1}, // GatherRows allows repeats
			} {
				r := len(rows)
				run := func(b ops.Backend) error {
					return b.GatherRows(&ops.GatherRowsParams{Out: enrUpload(t, b, ops.F32, make([]float32, r*d), r, d),
						In: enrUpload(t, b, ops.F32, in, n, d), Rows: enrUpload(t, b, ops.I32, rows, r)})
				}
				refErr, gotErr := run(ref), run(dut)
				if refErr == nil {
					if gotErr != nil {
						t.Errorf("GatherRows(%v): %v", rows, gotErr)
					}
					continue
				}
				enrSameError(t, fmt.Sprintf("GatherRows(%v)", rows), refErr, gotErr)
			}
			for _, rows := range [][]int32{
				{3, 5, 39, 5, 3, 0},  // 5 repeated at 1 and 3 (3 also repeats, later)
				{3, 5, 41, 5},        // out of range wins over the duplicate
				{0, 1, 2, 39, 38, 0}, // 0 repeated at 0 and 5
			} {
				r := len(rows)
				src := make([]float32, r*d)
				for i := range src {
					src[i] = -1
				}
				run := func(b ops.Backend) (*ops.Tensor, error) {
					out := enrUpload(t, b, ops.F32, in, n, d)
					return out, b.ScatterRows(&ops.ScatterRowsParams{Out: out, In: enrUpload(t, b, ops.F32, src, r, d),
						Rows: enrUpload(t, b, ops.I32, rows, r), Accumulate: true})
				}
				_, refErr := run(ref)
				out, gotErr := run(dut)
				enrSameError(t, fmt.Sprintf("ScatterRows(%v)", rows), refErr, gotErr)
				h := make([]float32, n*d)
				if err := dut.Download(h, out); err != nil {
					t.Fatal(err)
				}
				for i := range h {
					if h[i] != in[i] {
						t.Errorf("ScatterRows(%v) failed but changed Out[%d] from %v to %v", rows, i, in[i], h[i])
						break
					}
				}
			}
			if err := dut.CheckGuards(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestTimeEmbedError: a time outside [0, 1] is reported with the reference's message.
func TestTimeEmbedError(t *testing.T) {
	dut := NewBackend(NewSimDevice())
	for _, ts := range [][]float64{{0, 0.5, 1.5, -1}, {0.25, math.NaN()}} {
		run := func(b ops.Backend) error {
			return b.TimeEmbed(&ops.TimeEmbedParams{Out: enrUpload(t, b, ops.F32, make([]float32, len(ts)*8), len(ts), 8),
				T: enrUpload(t, b, ops.F64, ts, len(ts)), Scale: 1000})
		}
		enrSameError(t, fmt.Sprintf("TimeEmbed(%v)", ts), run(cpu.New()), run(dut))
	}
}

// TestAxpyF64: Axpy on F64 tensors (the trainer's device-side f64 accumulators) in all four
// modes, against the reference; Beta = 0 must not read Y (it holds NaN).
func TestAxpyF64(t *testing.T) {
	x := []float64{1, -2.5, 3e300, 1e-300, 0.1, 7}
	y := []float64{0.5, 4, -1e300, 2, 0.2, -3}
	nan := []float64{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	n := len(x)
	for _, c := range []struct {
		alpha, beta float32
		withX       bool
	}{{1.5, -0.25, true}, {-2, 0, true}, {0, 0.75, false}, {0, 0, false}} {
		run := func(b ops.Backend) []float64 {
			y0 := y
			if c.beta == 0 {
				y0 = nan
			}
			yt := enrUpload(t, b, ops.F64, y0, n)
			var xt *ops.Tensor
			if c.withX {
				xt = enrUpload(t, b, ops.F64, x, n)
			}
			if err := b.Axpy(&ops.AxpyParams{Y: yt, X: xt, Alpha: c.alpha, Beta: c.beta}); err != nil {
				t.Fatal(err)
			}
			h := make([]float64, n)
			if err := b.Download(h, yt); err != nil {
				t.Fatal(err)
			}
			return h
		}
		want, got := run(cpu.New()), run(NewBackend(NewSimDevice()))
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-15*math.Abs(want[i]) || math.IsNaN(got[i]) {
				t.Errorf("alpha=%v beta=%v x=%v: Y[%d] = %v, want %v", c.alpha, c.beta, c.withX, i, got[i], want[i])
			}
		}
	}
}
