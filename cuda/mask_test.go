package cuda

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// ---- helpers shared by the MD4 kernel tests (mask, sample, masked_ce, adamw) ----

// simConfigs are the simulator schedules every kernel test runs under: forward and reverse
// thread order (a missing barrier shows up as a difference) and two concurrent workers (no
// float atomics in these kernels, so results must not change).
var simConfigs = []struct {
	name string
	opts []SimOption
}{
	{"fwd", nil},
	{"rev", []SimOption{SimReverse(true)}},
	{"workers2", []SimOption{SimWorkers(2)}},
}

func newSimBackend(opts ...SimOption) *Backend {
	return NewBackend(NewSimDevice(opts...), WithGuardBands(256))
}

// forEachSim runs f once per simulator configuration.
func forEachSim(t *testing.T, f func(t *testing.T, b *Backend)) {
	for _, cfg := range simConfigs {
		t.Run(cfg.name, func(t *testing.T) { f(t, newSimBackend(cfg.opts...)) })
	}
}

// parityOp runs the opstest parity table of one op against the CPU reference under every
// simulator configuration (Large cases in forward order only), with guard bands; an unsupported
// case is a failure.
func parityOp(t *testing.T, op ops.Op) {
	forEachSim(t, func(t *testing.T, b *Backend) {
		// Large cases once (forward order); the other schedules run the small ones.
		fwd := !b.dev.(*SimDevice).opt.Reverse && b.dev.(*SimDevice).opt.Workers <= 1
		opstest.Run(t, cpu.New(), b, opstest.Options{
			Filter:          func(c opstest.Case) bool { return c.Op == op && (fwd || c.Size != opstest.Large) },
			Guard:           true,
			FailUnsupported: true,
		})
	})
}

// upload allocates a tensor of dtype dt and shape on be and uploads host data (nil: zeros).
func upload(t testing.TB, be ops.Backend, dt ops.DType, data any, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := be.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if data != nil {
		if err := be.Upload(x, data); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

func downloadI32(t testing.TB, be ops.Backend, x *ops.Tensor) []int32 {
	t.Helper()
	out := make([]int32, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

func downloadF32(t testing.TB, be ops.Backend, x *ops.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

func downloadF64(t testing.TB, be ops.Backend, x *ops.Tensor) []float64 {
	t.Helper()
	out := make([]float64, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

func downloadU16(t testing.TB, be ops.Backend, x *ops.Tensor) []uint16 {
	t.Helper()
	out := make([]uint16, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// testRand is a tiny deterministic generator for test data (Philox-addressed, so data does not
// depend on call order across tests).
type testRand struct {
	seed uint64
	n    uint64
}

func (r *testRand) u64() float64 {
	r.n++
	return rng.Uniform64(r.seed, 1, rng.PurposeInit, r.n)
}
func (r *testRand) intn(n int) int { return int(r.u64() * float64(n)) }
func (r *testRand) normal() float64 {
	r.n++
	return rng.Normal64(r.seed, 1, rng.PurposeInit, r.n)
}

func checkGuards(t testing.TB, b *Backend) {
	t.Helper()
	if err := b.CheckGuards(); err != nil {
		t.Fatal(err)
	}
}

// ---- Philox ----

// TestPhiloxMatchesRNG checks kernels/philox.cuh word for word against engine/rng, through the
// test kernel philox_check_u32: the Random123 known-answer vectors (reached through the
// addressing), both 32-bit halves of seed, step and index, every purpose bit, and indices that
// cross a 2^32 boundary.
func TestPhiloxMatchesRNG(t *testing.T) {
	type addr struct {
		seed, step uint64
		purpose    uint8
		index0     uint64
		n          int
	}
	addrs := []addr{
		{0, 0, 0, 0, 1}, // KAT: ctr 0, key 0
		{^uint64(0), 1<<56 - 1, 0xFF, ^uint64(0), 1},                     // KAT: all ones
		{0x299f31d0a4093822, 0x70734413198a2e, 3, 0x85a308d3243f6a88, 1}, // KAT: pi digits
		{0x9E3779B97F4A7C15, 0x0000_0123_4567_89AB, uint8(rng.PurposeMask), 0, 1000},
		{1, 7, uint8(rng.PurposeSampleToken), 1<<32 - 500, 1000}, // index crosses 2^32
		{0xFFFFFFFF00000000, 0x00FF_FFFF_0000_0001, 0x80, 1 << 40, 333},
	}
	kat := map[int][4]uint32{
		0: {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
		1: {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
		2: {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
	}
	forEachSim(t, func(t *testing.T, b *Backend) {
		for ai, a := range addrs {
			words, err := b.dev.Alloc(16 * a.n)
			if err != nil {
				t.Fatal(err)
			}
			pair, _ := b.dev.Alloc(16 * a.n)
			jax, _ := b.dev.Alloc(4 * a.n)
			if err := b.dev.Launch("philox_check_u32", gridFor(a.n, maskThreads, maskMaxBlocks), D1(maskThreads), 0,
				Args(words, pair, jax, a.seed, a.step, uint32(a.purpose), a.index0, a.n)...); err != nil {
				t.Fatal(err)
			}
			wraw := make([]byte, 16*a.n)
			praw := make([]byte, 16*a.n)
			jraw := make([]byte, 4*a.n)
			for _, c := range []struct {
				dst []byte
				p   Ptr
			}{{wraw, words}, {praw, pair}, {jraw, jax}} {
				if err := b.dev.CopyDtoH(c.dst, c.p); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []Ptr{words, pair, jax} {
				b.dev.Free(p)
			}
			u32 := func(raw []byte, i int) uint32 {
				return uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24
			}
			u64 := func(raw []byte, i int) uint64 { return uint64(u32(raw, 2*i)) | uint64(u32(raw, 2*i+1))<<32 }
			for k := 0; k < a.n; k++ {
				idx := a.index0 + uint64(k)
				want := rng.Words(a.seed, a.step, rng.Purpose(a.purpose), idx)
				got := [4]uint32{u32(wraw, 4*k), u32(wraw, 4*k+1), u32(wraw, 4*k+2), u32(wraw, 4*k+3)}
				if got != want {
					t.Fatalf("addr %d index %#x: words %08x, want %08x", ai, idx, got, want)
				}
				if w, ok := kat[ai]; ok && got != w {
					t.Fatalf("known-answer vector %d: got %08x, want %08x", ai, got, w)
				}
				w0, w1 := rng.Uniform64Pair(a.seed, a.step, rng.Purpose(a.purpose), idx)
				g0, g1 := math.Float64frombits(u64(praw, 2*k)), math.Float64frombits(u64(praw, 2*k+1))
				if g0 != w0 || g1 != w1 || g0 != rng.Uniform64(a.seed, a.step, rng.Purpose(a.purpose), idx) {
					t.Fatalf("addr %d index %#x: Uniform64Pair %v %v, want %v %v", ai, idx, g0, g1, w0, w1)
				}
				gj := math.Float32frombits(u32(jraw, k))
				if wj := rng.Uniform32JAX(a.seed, a.step, rng.Purpose(a.purpose), idx); gj != wj {
					t.Fatalf("addr %d index %#x: Uniform32JAX %v, want %v", ai, idx, gj, wj)
				}
			}
		}
	})
}

// ---- MaskTokens ----

type maskSpec struct {
	b, l, v  int
	perToken bool
	pad      bool
	purpose  rng.Purpose
	offset   uint64
}

func (s maskSpec) String() string {
	return fmt.Sprintf("b=%d,l=%d,v=%d,pertoken=%v,pad=%v,purpose=%d,offset=%d", s.b, s.l, s.v, s.perToken, s.pad, s.purpose, s.offset)
}

// maskInputs builds X0, MaskProb and SeqLens for s. Probabilities include 0 and 1 and, at chosen
// positions, exactly the uniform drawn there (u < p is false: kept) and the next float64 above it
// (masked), so the float64 comparison itself is tested at its boundary.
func maskInputs(s maskSpec, seed, step uint64) (x0 []int32, prob []float64, seqLens []int32) {
	r := &testRand{seed: uint64(s.b*1000003 + s.l*101 + s.v)}
	x0 = make([]int32, s.b*s.l)
	for i := range x0 {
		x0[i] = int32(r.intn(s.v))
	}
	if s.pad {
		seqLens = make([]int32, s.b)
		for i := range seqLens {
			seqLens[i] = int32(1 + r.intn(s.l))
		}
		seqLens[0] = int32(s.l)
		if s.b > 1 {
			seqLens[1] = 1
		}
	}
	uAt := func(i int) float64 { return rng.Uniform64(seed, step, s.purpose, s.offset+uint64(i)) }
	if s.perToken {
		prob = make([]float64, s.b*s.v)
		for i := range prob {
			prob[i] = r.u64()
		}
		for bi := 0; bi < s.b; bi++ {
			// Boundary probabilities for the tokens of this row's first and last positions.
			i0, i1 := bi*s.l, bi*s.l+s.l-1
			prob[bi*s.v+int(x0[i0])] = uAt(i0)
			prob[bi*s.v+int(x0[i1])] = math.Nextafter(uAt(i1), 2)
		}
		if s.b > 2 {
			for j := 0; j < s.v; j++ {
				prob[2*s.v+j] = float64(j % 2) // 0 and 1
			}
		}
	} else {
		prob = make([]float64, s.b)
		for bi := range prob {
			switch bi % 4 {
			case 0:
				prob[bi] = uAt(bi * s.l) // exactly the uniform at (bi, 0): that position stays
			case 1:
				prob[bi] = math.Nextafter(uAt(bi*s.l), 2) // just above: masked (if l < SeqLens)
			case 2:
				prob[bi] = float64((bi / 4) % 2) // 0 or 1
			default:
				prob[bi] = r.u64()
			}
		}
	}
	return x0, prob, seqLens
}

func runMask(t *testing.T, be ops.Backend, s maskSpec, x0 []int32, prob []float64, seqLens []int32, seed, step uint64) ([]int32, error) {
	t.Helper()
	x0t := upload(t, be, ops.I32, x0, s.b, s.l)
	xtFill := make([]int32, s.b*s.l)
	for i := range xtFill {
		xtFill[i] = -12345
	}
	xt := upload(t, be, ops.I32, xtFill, s.b, s.l)
	var pt *ops.Tensor
	if s.perToken {
		pt = upload(t, be, ops.F64, prob, s.b, s.v)
	} else {
		pt = upload(t, be, ops.F64, prob, s.b)
	}
	var sl *ops.Tensor
	if seqLens != nil {
		sl = upload(t, be, ops.I32, seqLens, s.b)
	}
	err := be.MaskTokens(&ops.MaskParams{XT: xt, X0: x0t, MaskProb: pt, SeqLens: sl, MaskID: int32(s.v),
		Seed: seed, Step: step, Purpose: uint8(s.purpose), IndexOffset: s.offset})
	out := downloadI32(t, be, xt)
	for _, x := range []*ops.Tensor{x0t, xt, pt, sl} {
		if x != nil {
			be.Free(x)
		}
	}
	return out, err
}

var maskSpecs = []maskSpec{
	{b: 1, l: 1, v: 1, purpose: rng.PurposeMask},
	{b: 3, l: 7, v: 5, purpose: rng.PurposeMask},
	{b: 9, l: 97, v: 27, pad: true, purpose: rng.PurposeMask, offset: 12345},
	{b: 5, l: 33, v: 27, perToken: true, purpose: rng.PurposeMask2},
	{b: 4, l: 63, v: 256, perToken: true, pad: true, purpose: rng.PurposeMask, offset: 1<<32 - 100},
	{b: 2, l: 1025, v: 50257, pad: true, purpose: rng.PurposeMask},
	{b: 3, l: 257, v: 50257, perToken: true, purpose: rng.PurposeMask2, offset: 7},
}

// TestMaskMatchesCPU compares the mask bit for bit with the CPU backend (and, at offset 0, with
// diffusion.MaskRef) on odd shapes, both probability layouts, padding, offsets across 2^32 and
// probabilities set exactly at the drawn uniform and one ulp above it.
func TestMaskMatchesCPU(t *testing.T) {
	const seed, step = 0x9E3779B97F4A7C15, 0x0000_0123_4567_89AB
	forEachSim(t, func(t *testing.T, b *Backend) {
		ref := cpu.New()
		for _, s := range maskSpecs {
			x0, prob, seqLens := maskInputs(s, seed, step)
			want, err := runMask(t, ref, s, x0, prob, seqLens, seed, step)
			if err != nil {
				t.Fatalf("%v: cpu: %v", s, err)
			}
			got, err := runMask(t, b, s, x0, prob, seqLens, seed, step)
			if err != nil {
				t.Fatalf("%v: sim: %v", s, err)
			}
			checkGuards(t, b)
			masked := 0
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%v: XT[%d, %d] = %d, want %d", s, i/s.l, i%s.l, got[i], want[i])
				}
				if want[i] == int32(s.v) {
					masked++
				}
			}
			if s.offset == 0 {
				ref2 := make([]int32, len(x0))
				if err := diffusion.MaskRef(ref2, x0, s.b, s.l, seqLens, prob, int32(s.v), seed, step, s.purpose); err != nil {
					t.Fatal(err)
				}
				for i := range ref2 {
					if got[i] != ref2[i] {
						t.Fatalf("%v: XT[%d] = %d, MaskRef %d", s, i, got[i], ref2[i])
					}
				}
			}
			if len(want) > 50 && (masked == 0 || masked == len(want)) {
				t.Errorf("%v: degenerate test data (%d of %d masked)", s, masked, len(want))
			}
		}
	})
}

// TestMaskErrors checks that invalid data is refused with the CPU backend's *ops.OpError
// message and that XT is left untouched, as on the CPU.
func TestMaskErrors(t *testing.T) {
	const seed, step = 5, 6
	base := maskSpec{b: 3, l: 40, v: 27, pad: true, purpose: rng.PurposeMask}
	perTok := maskSpec{b: 3, l: 40, v: 27, perToken: true, purpose: rng.PurposeMask}
	cases := []struct {
		name   string
		s      maskSpec
		break_ func(x0 []int32, prob []float64, sl []int32)
	}{
		{"mask id in X0", base, func(x0 []int32, _ []float64, _ []int32) { x0[77] = 27; x0[90] = -1 }},
		{"negative token", base, func(x0 []int32, _ []float64, _ []int32) { x0[50] = -3; x0[51] = 27 }},
		{"token above V", base, func(x0 []int32, _ []float64, _ []int32) { x0[119] = 28 }},
		{"length 0", base, func(_ []int32, _ []float64, sl []int32) { sl[2] = 0 }},
		{"length L+1", base, func(_ []int32, _ []float64, sl []int32) { sl[1] = 41; sl[2] = -1 }},
		{"NaN probability", base, func(_ []int32, p []float64, _ []int32) { p[1] = math.NaN() }},
		{"probability above 1", perTok, func(_ []int32, p []float64, _ []int32) { p[60] = 1.5; p[70] = -0.25 }},
		{"negative probability", perTok, func(_ []int32, p []float64, _ []int32) { p[3] = -1e-300 }},
		{"token and probability", base, func(x0 []int32, p []float64, _ []int32) { x0[5] = 99; p[0] = 2 }},
	}
	forEachSim(t, func(t *testing.T, b *Backend) {
		for _, c := range cases {
			x0, prob, sl := maskInputs(c.s, seed, step)
			c.break_(x0, prob, sl)
			_, werr := runMask(t, cpu.New(), c.s, x0, prob, sl, seed, step)
			got, err := runMask(t, b, c.s, x0, prob, sl, seed, step)
			var oe *ops.OpError
			if !errors.As(err, &oe) || !errors.Is(err, ops.ErrValue) {
				t.Fatalf("%s: got error %v, want an *ops.OpError with ErrValue", c.name, err)
			}
			if werr == nil || err.Error() != werr.Error() {
				t.Fatalf("%s: error\n  %v\nwant (CPU)\n  %v", c.name, err, werr)
			}
			for i, x := range got {
				if x != -12345 {
					t.Fatalf("%s: XT[%d] was written (%d) although the call failed", c.name, i, x)
				}
			}
			checkGuards(t, b)
		}
	})
}

// TestMaskParity runs the opstest MaskTokens cases.
func TestMaskParity(t *testing.T) { parityOp(t, ops.OpMaskTokens) }
