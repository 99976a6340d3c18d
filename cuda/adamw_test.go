package cuda

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestAdamWParity runs the opstest AdamW cases.
func TestAdamWParity(t *testing.T) { parityOp(t, ops.OpAdamW) }

type adamwState struct {
	param, grad, m, v, ema []float32
}

func newAdamwState(n int, seed uint64) adamwState {
	r := &testRand{seed: seed}
	s := adamwState{make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)}
	for i := 0; i < n; i++ {
		s.param[i] = float32(0.1 * r.normal())
		s.grad[i] = float32(r.normal() * math.Pow(10, float64(r.intn(7)-3))) // 1e-3 .. 1e3
		s.m[i] = float32(0.1 * r.normal())
		s.v[i] = float32(0.01 * r.u64())
		s.ema[i] = float32(0.1 * r.normal())
	}
	// Specials: zero gradient and moments, a denormal, a signed zero, a NaN gradient (NaN stays
	// NaN with the CPU's bf16 encoding), a huge gradient.
	if n > 8 {
		s.grad[0], s.m[0], s.v[0] = 0, 0, 0
		s.param[1] = 1e-40
		s.param[2] = float32(math.Copysign(0, -1))
		s.grad[3] = float32(math.NaN())
		s.grad[4] = 3e38
		s.param[5] = -float32(math.NaN())
	}
	return s
}

// runAdamW applies steps updates on be to a copy of s placed at element offset off of larger
// buffers (views), and returns the final state and shadow.
func runAdamW(t testing.TB, be ops.Backend, s adamwState, off int, withEMA, withShadow bool, hp ops.AdamWParams, steps int) (adamwState, []uint16) {
	t.Helper()
	n := len(s.param)
	mk := func(x []float32) (*ops.Tensor, *ops.Tensor) {
		buf := make([]float32, n+off)
		copy(buf[off:], x)
		all := upload(t, be, ops.F32, buf, n+off, 1)
		if off == 0 {
			return all, all
		}
		v, err := be.View(all, off, off+n)
		if err != nil {
			t.Fatal(err)
		}
		return all, v
	}
	pa, pv := mk(s.param)
	ga, gv := mk(s.grad)
	ma, mv := mk(s.m)
	va, vv := mk(s.v)
	var ea, ev, sh *ops.Tensor
	if withEMA {
		ea, ev = mk(s.ema)
	}
	if withShadow {
		sh = upload(t, be, ops.BF16, nil, n, 1)
	}
	for k := 1; k <= steps; k++ {
		p := hp
		p.Param, p.Grad, p.M, p.V, p.EMA, p.Shadow, p.Step = pv, gv, mv, vv, ev, sh, hp.Step+k-1
		if err := be.AdamW(&p); err != nil {
			t.Fatal(err)
		}
	}
	if sb, ok := be.(*Backend); ok {
		checkGuards(t, sb)
	}
	down := func(v *ops.Tensor) []float32 {
		if v == nil {
			return nil
		}
		return downloadF32(t, be, v)
	}
	out := adamwState{param: down(pv), grad: down(gv), m: down(mv), v: down(vv), ema: down(ev)}
	var shadow []uint16
	if sh != nil {
		shadow = downloadU16(t, be, sh)
	}
	for _, x := range []*ops.Tensor{pa, ga, ma, va, ea, sh} {
		if x != nil {
			be.Free(x)
		}
	}
	return out, shadow
}

var adamwHP = ops.AdamWParams{LR: 3e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.03, EMADecay: 0.9999, GradScale: 0.37, Step: 1}

func sameBits32(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestAdamWBitIdentical: the update is bit-identical to the CPU backend (every fp32 operation
// rounded once, in the same order), for odd lengths, the vectorised and the element-wise paths
// (views at offsets that break 16-byte alignment), with and without EMA and shadow, over several
// steps (bias corrections change every step).
func TestAdamWBitIdentical(t *testing.T) {
	forEachSim(t, func(t *testing.T, b *Backend) {
		for _, n := range []int{1, 3, 4, 5, 97, 1031, 4096 + 3} {
			for _, off := range []int{0, 1, 2} {
				for _, opt := range [][2]bool{{true, true}, {false, false}, {true, false}} {
					s := newAdamwState(n, uint64(n*10+off))
					hp := adamwHP
					hp.Step = 1 + 97*off
					want, wsh := runAdamW(t, cpu.New(), s, off, opt[0], opt[1], hp, 3)
					got, gsh := runAdamW(t, b, s, off, opt[0], opt[1], hp, 3)
					for name, pair := range map[string][2][]float32{"Param": {got.param, want.param}, "M": {got.m, want.m}, "V": {got.v, want.v}, "EMA": {got.ema, want.ema}, "Grad": {got.grad, s.grad}} {
						if i := sameBits32(pair[0], pair[1]); i >= 0 {
							t.Fatalf("n=%d off=%d ema=%v shadow=%v: %s[%d] = %v (%#08x), want %v (%#08x)", n, off, opt[0], opt[1], name, i,
								pair[0][i], math.Float32bits(pair[0][i]), pair[1][i], math.Float32bits(pair[1][i]))
						}
					}
					for i := range wsh {
						if gsh[i] != wsh[i] {
							t.Fatalf("n=%d off=%d: Shadow[%d] = %#04x, want %#04x (Param %v)", n, off, i, gsh[i], wsh[i], got.param[i])
						}
					}
				}
			}
		}
	})
}

// TestAdamWDecoupledDecay (pitfalls B13): with zero gradient and moments the update is pure
// decoupled weight decay in fp32, p ← p − lr·wd·p, and it moves the master weights even when the
// change is far below bf16 resolution (the bf16 shadow stays put).
func TestAdamWDecoupledDecay(t *testing.T) {
	b := newSimBackend()
	const n = 37
	s := adamwState{param: make([]float32, n), grad: make([]float32, n), m: make([]float32, n), v: make([]float32, n), ema: make([]float32, n)}
	for i := range s.param {
		s.param[i] = 1 + float32(i)/64
	}
	hp := adamwHP
	hp.LR, hp.WeightDecay = 1e-3, 0.01 // lr·wd = 1e-5: a relative change 400× below a bf16 ulp
	got, sh := runAdamW(t, b, s, 0, false, true, hp, 1)
	for i, p0 := range s.param {
		upd := float32(hp.LR) * (0/(float32(math.Sqrt(0))+float32(hp.Eps)) + float32(hp.WeightDecay)*p0)
		want := p0 - upd
		if got.param[i] != want || got.param[i] == p0 {
			t.Fatalf("Param[%d] = %v after pure decay, want %v (from %v)", i, got.param[i], want, p0)
		}
		if sh[i] != cpu.BF16FromF32(p0) {
			t.Fatalf("Shadow[%d] = %#04x, want bf16(%v) = %#04x unchanged", i, sh[i], p0, cpu.BF16FromF32(p0))
		}
	}
}

// TestAdamWUnsupported: F64 master weights are a CPU-only dtype.
func TestAdamWUnsupported(t *testing.T) {
	b := newSimBackend()
	if b.Supports(ops.OpAdamW, ops.F64) || !b.Supports(ops.OpAdamW, ops.F32) {
		t.Fatal("Supports(AdamW) must be F32 only")
	}
	x := upload(t, b, ops.F64, nil, 3)
	p := adamwHP
	p.Param, p.Grad, p.M, p.V = x, x, x, x
	if err := b.AdamW(&p); !errors.Is(err, ops.ErrUnsupported) {
		t.Fatalf("F64 AdamW: got %v, want ErrUnsupported", err)
	}
}
