package cuda

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

func isAttn(c opstest.Case) bool { return c.Op == ops.OpAttnFwd || c.Op == ops.OpAttnBwd }

// TestAttnParity runs the harness's small attention cases on the simulator in forward and reverse
// thread order (a missing barrier shows up as a difference) and with two workers (the kernels use no
// atomics, so every run must reproduce its own bits); every case runs twice and is compared with the
// CPU reference. The large ones (L = 1025, Dh 64; L = 257, Dh 128) run in both orders in
// TestParitySim (parity_test.go), so they are not repeated here.
func TestAttnParity(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []SimOption
	}{
		{"forward", nil},
		{"reverse", []SimOption{SimReverse(true)}},
		{"workers2", []SimOption{SimWorkers(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dut := NewBackend(NewSimDevice(tc.opts...), WithGuardBands(256))
			var passed []opstest.Result
			opstest.Run(t, cpu.New(), dut, opstest.Options{Guard: true, Filter: func(c opstest.Case) bool {
				return isAttn(c) && c.Size == opstest.Small
			}, Report: func(r opstest.Result) {
				if r.Status == opstest.Passed {
					passed = append(passed, r)
				}
			}})
			for _, r := range passed { // the margins, for calibration
				t.Logf("%s: %.2f of the tolerance, %v", r.Case.Name, r.Ratio, r.Elapsed.Round(time.Millisecond))
			}
		})
	}
}

// ---- helpers -------------------------------------------------------------------------------------------

// attnUpload allocates a tensor of b and uploads host data (a []float32, []uint16 or []int32).
func attnUpload(t testing.TB, b *Backend, dt ops.DType, host any, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, host); err != nil {
		t.Fatal(err)
	}
	return x
}

// attnFloats uploads f (float32 values, rounded to bf16 when dt is BF16).
func attnFloats(t testing.TB, b *Backend, dt ops.DType, f []float32, shape ...int) *ops.Tensor {
	t.Helper()
	if dt == ops.BF16 {
		h := make([]uint16, len(f))
		for i, v := range f {
			h[i] = opstest.BF16Bits(v)
		}
		return attnUpload(t, b, dt, h, shape...)
	}
	return attnUpload(t, b, dt, f, shape...)
}

// attnDownload returns x's contents as float32 (bf16 widened exactly).
func attnDownload(t testing.TB, b *Backend, x *ops.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if x.DType() == ops.BF16 {
		h := make([]uint16, x.Len())
		if err := b.Download(h, x); err != nil {
			t.Fatal(err)
		}
		for i, v := range h {
			out[i] = opstest.BF16Float(v)
		}
		return out
	}
	if err := b.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

func attnAlloc(t testing.TB, b *Backend, dt ops.DType, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// attnCountingDevice counts kernel launches (to prove that refused calls launch nothing).
type attnCountingDevice struct {
	Device
	launches int
}

func (d *attnCountingDevice) Launch(name string, grid, block Dim3, smem int, args ...uint64) error {
	d.launches++
	return d.Device.Launch(name, grid, block, smem, args...)
}

// ---- exact results on constructed inputs -----------------------------------------------------------

// oneHot builds attention inputs whose softmax is exactly one-hot: with Scale = 1, query (b, i, h) is
// 16·e_a and key j < 64 is 16·e_j, so key a scores 256 and every other key 0 (e^-256 underflows to 0
// in f32, 2^-369 in the exp2 form). Keys 64 ≤ j < n are zero, keys j ≥ n are NaN (padding that must
// not leak). Out, dO and V hold small integers, so every product and sum is exact: Out = V[a],
// LSE = 256, dV[j] = Σ_{i: a(i) = j} dO[i], and dS = P ⊙ (dP − Δ) = 0 exactly, so dQ = dK = 0.
type oneHot struct {
	b, l, h, dh                 int
	lens                        []int32
	q, k, v, dout, out, lse, dv []float32
	dq, dk                      []float32 // zeros
}

func newOneHot(b, l, h, dh int, lens []int32) *oneHot {
	n := b * l * h * dh
	o := &oneHot{b: b, l: l, h: h, dh: dh, lens: lens,
		q: make([]float32, n), k: make([]float32, n), v: make([]float32, n), dout: make([]float32, n),
		out: make([]float32, n), lse: make([]float32, b*h*l), dv: make([]float32, n), dq: make([]float32, n), dk: make([]float32, n)}
	idx := func(bi, i, hi int) int { return ((bi*l+i)*h + hi) * dh }
	for bi := 0; bi < b; bi++ {
		nk := int(lens[bi])
		for hi := 0; hi < h; hi++ {
			for j := 0; j < l; j++ {
				kr, vr, dr := o.k[idx(bi, j, hi):][:dh], o.v[idx(bi, j, hi):][:dh], o.dout[idx(bi, j, hi):][:dh]
				for c := range vr {
					vr[c] = float32((j*5+c*3+hi+bi)%17 - 8)
					dr[c] = float32((j*3+c*7+hi)%9 - 4)
				}
				switch {
				case j >= nk:
					for c := range kr {
						kr[c], vr[c] = float32(math.NaN()), float32(math.NaN())
					}
				case j < 64:
					kr[j] = 16
				}
			}
			for i := 0; i < l; i++ {
				a := (7*i + 3*hi + bi) % 64
				o.q[idx(bi, i, hi)+a] = 16
				o.lse[(bi*h+hi)*l+i] = 256
				copy(o.out[idx(bi, i, hi):][:dh], o.v[idx(bi, a, hi):][:dh])
				for c := 0; c < dh; c++ {
					o.dv[idx(bi, a, hi)+c] += o.dout[idx(bi, i, hi)+c]
				}
			}
		}
	}
	return o
}

func TestAttnExactOneHot(t *testing.T) {
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		for _, dh := range []int{64, 128} {
			t.Run(dt.String()+"/dh="+strconv.Itoa(dh), func(t *testing.T) {
				oh := newOneHot(2, 97, 2, dh, []int32{97, 64})
				b := NewBackend(NewSimDevice(SimReverse(true)), WithGuardBands(256))
				shape := []int{oh.b, oh.l, oh.h, oh.dh}
				q, k, v := attnFloats(t, b, dt, oh.q, shape...), attnFloats(t, b, dt, oh.k, shape...), attnFloats(t, b, dt, oh.v, shape...)
				lens := attnUpload(t, b, ops.I32, oh.lens, oh.b)
				out, lse := attnAlloc(t, b, dt, shape...), attnAlloc(t, b, ops.F32, oh.b, oh.h, oh.l)
				if err := b.AttnFwd(&ops.AttnParams{Out: out, LSE: lse, Q: q, K: k, V: v, SeqLens: lens, Scale: 1}); err != nil {
					t.Fatal(err)
				}
				attnExact(t, "Out", attnDownload(t, b, out), oh.out)
				attnExact(t, "LSE", attnDownload(t, b, lse), oh.lse)

				dout := attnFloats(t, b, dt, oh.dout, shape...)
				o := attnFloats(t, b, dt, oh.out, shape...)
				lsein := attnFloats(t, b, ops.F32, oh.lse, oh.b, oh.h, oh.l)
				dq, dk, dv := attnAlloc(t, b, dt, shape...), attnAlloc(t, b, dt, shape...), attnAlloc(t, b, dt, shape...)
				if err := b.AttnBwd(&ops.AttnBwdParams{DQ: dq, DK: dk, DV: dv, DOut: dout, Q: q, K: k, V: v, Out: o, LSE: lsein,
					SeqLens: lens, Scale: 1}); err != nil {
					t.Fatal(err)
				}
				attnExact(t, "DQ", attnDownload(t, b, dq), oh.dq)
				attnExact(t, "DK", attnDownload(t, b, dk), oh.dk)
				attnExact(t, "DV", attnDownload(t, b, dv), oh.dv)
				if err := b.CheckGuards(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestAttnExactUniform: Q = 0 makes every score 0, so P = 1 for each of the n = 256 real keys (4 bf16
// key tiles, 16 f32 ones: the online rescaling runs with factor 1), and V[j][c] = a_c ± 1 (alternating
// over j) averages to a_c exactly; the 44 padded keys are NaN. LSE = log 256 (to f32 rounding).
func TestAttnExactUniform(t *testing.T) {
	const bs, l, h, nk = 1, 300, 3, 256
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		for _, dh := range []int{64, 128} {
			t.Run(dt.String()+"/dh="+strconv.Itoa(dh), func(t *testing.T) {
				n := bs * l * h * dh
				q, k, v, want := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
				for j := 0; j < l; j++ {
					for hi := 0; hi < h; hi++ {
						for c := 0; c < dh; c++ {
							at := (j*h+hi)*dh + c
							k[at] = float32((j+c)%5 - 2)
							v[at] = float32((c*7+hi)%11-5) + float32(1-2*(j%2))
							want[at] = float32((c*7+hi)%11 - 5)
							if j >= nk {
								k[at], v[at] = float32(math.NaN()), float32(math.NaN())
							}
						}
					}
				}
				b := NewBackend(NewSimDevice(), WithGuardBands(256))
				shape := []int{bs, l, h, dh}
				out, lse := attnAlloc(t, b, dt, shape...), attnAlloc(t, b, ops.F32, bs, h, l)
				if err := b.AttnFwd(&ops.AttnParams{Out: out, LSE: lse, Q: attnFloats(t, b, dt, q, shape...), K: attnFloats(t, b, dt, k, shape...),
					V: attnFloats(t, b, dt, v, shape...), SeqLens: attnUpload(t, b, ops.I32, []int32{nk}, bs), Scale: 0.125}); err != nil {
					t.Fatal(err)
				}
				attnExact(t, "Out", attnDownload(t, b, out), want)
				for i, x := range attnDownload(t, b, lse) {
					if math.Abs(float64(x)-math.Log(nk)) > 1e-6 {
						t.Fatalf("LSE[%d] = %v, want log %d = %v", i, x, nk, math.Log(nk))
					}
				}
			})
		}
	}
}

func attnExact(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s[%d] = %v, want exactly %v", name, i, got[i], want[i])
		}
	}
}

// TestAttnSeqLensClamped: SeqLens outside [1, L] cannot be reported by a kernel; the kernels clamp
// them to [0, L]: 0 gives Out = 0, LSE = -inf and zero gradients, L + 5 the same as L.
func TestAttnSeqLensClamped(t *testing.T) {
	const bs, l, h = 3, 37, 2
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		for _, dh := range []int{64, 128} {
			b := NewBackend(NewSimDevice())
			shape := []int{bs, l, h, dh}
			n := bs * l * h * dh
			r := make([]float32, n)
			for i := range r {
				r[i] = float32(math.Sin(float64(i) * 0.731))
			}
			q, k, v, dout := attnFloats(t, b, dt, r, shape...), attnFloats(t, b, dt, attnRotate(r, 1), shape...),
				attnFloats(t, b, dt, attnRotate(r, 2), shape...), attnFloats(t, b, dt, attnRotate(r, 3), shape...)
			run := func(lens []int32) (o, lse, dq, dk, dv []float32) {
				sl := attnUpload(t, b, ops.I32, lens, bs)
				out, ls := attnAlloc(t, b, dt, shape...), attnAlloc(t, b, ops.F32, bs, h, l)
				if err := b.AttnFwd(&ops.AttnParams{Out: out, LSE: ls, Q: q, K: k, V: v, SeqLens: sl, Scale: 0.125}); err != nil {
					t.Fatal(err)
				}
				g := []*ops.Tensor{attnAlloc(t, b, dt, shape...), attnAlloc(t, b, dt, shape...), attnAlloc(t, b, dt, shape...)}
				if err := b.AttnBwd(&ops.AttnBwdParams{DQ: g[0], DK: g[1], DV: g[2], DOut: dout, Q: q, K: k, V: v, Out: out, LSE: ls,
					SeqLens: sl, Scale: 0.125}); err != nil {
					t.Fatal(err)
				}
				return attnDownload(t, b, out), attnDownload(t, b, ls), attnDownload(t, b, g[0]), attnDownload(t, b, g[1]), attnDownload(t, b, g[2])
			}
			o1, lse1, dq1, dk1, dv1 := run([]int32{0, l + 5, -3})
			o2, lse2, dq2, dk2, dv2 := run([]int32{1, l, 1})
			per := l * h * dh
			for i := 0; i < n; i++ {
				bi := i / per
				switch bi {
				case 0, 2: // length 0 (and -3 clamped to 0)
					if o1[i] != 0 || dq1[i] != 0 || dk1[i] != 0 || dv1[i] != 0 {
						t.Fatalf("%v dh=%d: length 0: element %d: Out %v, dQ %v, dK %v, dV %v, want 0", dt, dh, i, o1[i], dq1[i], dk1[i], dv1[i])
					}
				case 1: // L + 5 is L
					if o1[i] != o2[i] || dq1[i] != dq2[i] || dk1[i] != dk2[i] || dv1[i] != dv2[i] {
						t.Fatalf("%v dh=%d: length L+5 differs from L at element %d", dt, dh, i)
					}
				}
			}
			for i := range lse1 {
				bi := i / (h * l)
				if (bi != 1 && !math.IsInf(float64(lse1[i]), -1)) || (bi == 1 && lse1[i] != lse2[i]) {
					t.Fatalf("%v dh=%d: LSE[%d] = %v (length %d)", dt, dh, i, lse1[i], []int32{0, l + 5, 0}[bi])
				}
			}
		}
	}
}

func attnRotate(x []float32, k int) []float32 {
	return append(append([]float32(nil), x[k:]...), x[:k]...)
}

// ---- the tile helpers in isolation (kernels/sim/testdata/attention_tiles.cu) ------------------------

// TestAttnTileGEMM runs the test kernels selftest_attn_tiles_d{64,128} on small-integer data: the
// swizzled cp.async loads, the ldmatrix addressing of Q (A), K (B from [n][k]) and V (B from [k][n])
// and the accumulator -> A-fragment packing (plain and hi/lo split) must give exactly the integer
// products S = Q Kᵀ (with the last 5 K rows zero-filled), O = P V and O = (hi + lo)(P) V.
func TestAttnTileGEMM(t *testing.T) {
	const n = 64
	for _, d := range []int{64, 128} {
		for _, rev := range []bool{false, true} {
			dev := NewSimDevice(SimReverse(rev))
			q, k, v := make([]float32, 16*d), make([]float32, n*d), make([]float32, n*d)
			p := make([]float32, 16*n)
			for i := range q {
				q[i] = float32((i*7)%9 - 4)
			}
			for i := range k {
				k[i] = float32((i*5)%11 - 5)
				v[i] = float32((i*3)%7 - 3)
			}
			for i := range p {
				p[i] = float32((i*37)%4000 - 2000) // up to 11 bits: not a bf16 value; hi + lo is exact
			}
			bufs := []Ptr{}
			up := func(f []float32, bf bool) Ptr {
				var raw []byte
				if bf {
					raw = make([]byte, 2*len(f))
					for i, x := range f {
						h := opstest.BF16Bits(x)
						raw[2*i], raw[2*i+1] = byte(h), byte(h>>8)
					}
				} else {
					raw = make([]byte, 4*len(f))
					for i, x := range f {
						u := math.Float32bits(x)
						raw[4*i], raw[4*i+1], raw[4*i+2], raw[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
					}
				}
				ptr, err := dev.Alloc(len(raw))
				if err != nil {
					t.Fatal(err)
				}
				if err := dev.CopyHtoD(ptr, raw); err != nil {
					t.Fatal(err)
				}
				bufs = append(bufs, ptr)
				return ptr
			}
			pq, pk, pv, pp := up(q, true), up(k, true), up(v, true), up(p, false)
			ps, po, po2 := up(make([]float32, 16*n), false), up(make([]float32, 16*d), false), up(make([]float32, 16*d), false)
			if err := dev.Launch("selftest_attn_tiles_d"+strconv.Itoa(d), D1(1), D1(32), 0, Args(pq, pk, pv, pp, ps, po, po2)...); err != nil {
				t.Fatal(err)
			}
			get := func(ptr Ptr, m int) []float32 {
				raw := make([]byte, 4*m)
				if err := dev.CopyDtoH(raw, ptr); err != nil {
					t.Fatal(err)
				}
				out := make([]float32, m)
				for i := range out {
					out[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
				}
				return out
			}
			ws, wo, wo2 := make([]float32, 16*n), make([]float32, 16*d), make([]float32, 16*d)
			for i := 0; i < 16; i++ {
				for j := 0; j < n-5; j++ {
					var s float64
					for c := 0; c < d; c++ {
						s += float64(q[i*d+c]) * float64(k[j*d+c])
					}
					ws[i*n+j] = float32(s)
				}
				for c := 0; c < d; c++ {
					var o, o2 float64
					for j := 0; j < n; j++ {
						pb := float64(opstest.BF16Float(opstest.BF16Bits(p[i*n+j])))
						o += pb * float64(v[j*d+c])
						o2 += float64(p[i*n+j]) * float64(v[j*d+c])
					}
					wo[i*d+c], wo2[i*d+c] = float32(o), float32(o2)
				}
			}
			attnExact(t, "S", get(ps, 16*n), ws)
			attnExact(t, "O", get(po, 16*d), wo)
			attnExact(t, "O(split)", get(po2, 16*d), wo2)
			for _, ptr := range bufs {
				dev.Free(ptr)
			}
		}
	}
}

// ---- refusals before launch ------------------------------------------------------------------------

func TestAttnRefusals(t *testing.T) {
	dev := &attnCountingDevice{Device: NewSimDevice()}
	b := NewBackend(dev)
	fwd := func(dt ops.DType, dh int) *ops.AttnParams {
		s := []int{2, 9, 3, dh}
		return &ops.AttnParams{Out: attnAlloc(t, b, dt, s...), LSE: attnAlloc(t, b, ops.F32, 2, 3, 9), Q: attnAlloc(t, b, dt, s...),
			K: attnAlloc(t, b, dt, s...), V: attnAlloc(t, b, dt, s...), Scale: 0.1}
	}
	// Unsupported: bf16 head dims other than 64 and 128, f32 beyond 128, f64, f64 LSE.
	for _, p := range []*ops.AttnParams{fwd(ops.BF16, 96), fwd(ops.BF16, 32), fwd(ops.F32, 130), fwd(ops.F64, 64)} {
		if err := b.AttnFwd(p); !errors.Is(err, ops.ErrUnsupported) {
			t.Errorf("AttnFwd %v dh=%d: got %v, want ops.ErrUnsupported", p.Q.DType(), p.Q.Dim(3), err)
		}
		g := &ops.AttnBwdParams{DQ: p.Q, DK: p.K, DV: p.V, DOut: p.Out, Q: p.Q, K: p.K, V: p.V, Out: p.Out, LSE: p.LSE, Scale: 0.1}
		g.DQ, g.DK, g.DV = attnAlloc(t, b, p.Q.DType(), p.Q.Shape()...), attnAlloc(t, b, p.Q.DType(), p.Q.Shape()...), attnAlloc(t, b, p.Q.DType(), p.Q.Shape()...)
		if err := b.AttnBwd(g); !errors.Is(err, ops.ErrUnsupported) {
			t.Errorf("AttnBwd %v dh=%d: got %v, want ops.ErrUnsupported", p.Q.DType(), p.Q.Dim(3), err)
		}
	}
	if err := b.AttnFwd(fwd(ops.BF16, 96)); err == nil || !strings.Contains(err.Error(), "bf16 with head dim 96") {
		t.Errorf("got %v, want the head dim named", err)
	}
	p := fwd(ops.BF16, 64)
	p.LSE = attnAlloc(t, b, ops.F64, 2, 3, 9)
	if err := b.AttnFwd(p); !errors.Is(err, ops.ErrUnsupported) {
		t.Errorf("f64 LSE: got %v, want ops.ErrUnsupported", err)
	}
	// Mixed dtypes.
	p = fwd(ops.BF16, 64)
	p.V = attnAlloc(t, b, ops.F32, p.Q.Shape()...)
	if err := b.AttnFwd(p); !errors.Is(err, ops.ErrDType) {
		t.Errorf("mixed dtypes: got %v, want ops.ErrDType", err)
	}
	// Out aliasing an input.
	p = fwd(ops.F32, 64)
	p.Out = p.Q
	if err := b.AttnFwd(p); !errors.Is(err, ops.ErrValue) || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("Out = Q: got %v, want an overlap error", err)
	}
	// Misaligned pointers: a 2-byte offset view of a bf16 tensor (cp.async needs 16 bytes), and a K
	// 8 bytes off (aligned for bf16 pairs but not for cp.async).
	for _, off := range []int{2, 8} {
		p = fwd(ops.BF16, 64)
		p.K = attnOffsetView(t, b, p.K, off)
		if err := b.AttnFwd(p); !errors.Is(err, ops.ErrValue) || !strings.Contains(err.Error(), "16-byte aligned") {
			t.Errorf("K offset by %d bytes: got %v, want a 16-byte alignment error", off, err)
		}
	}
	if dev.launches != 0 {
		t.Errorf("refused calls launched %d kernels", dev.launches)
	}
	// And a valid call launches exactly one kernel (forward) / two (backward).
	p = fwd(ops.BF16, 64)
	if err := b.AttnFwd(p); err != nil || dev.launches != 1 {
		t.Errorf("valid AttnFwd: err %v, %d launches", err, dev.launches)
	}
	// Empty shapes launch nothing.
	dev.launches = 0
	z := []int{2, 0, 3, 64}
	if err := b.AttnFwd(&ops.AttnParams{Out: attnAlloc(t, b, ops.F32, z...), LSE: attnAlloc(t, b, ops.F32, 2, 3, 0), Q: attnAlloc(t, b, ops.F32, z...),
		K: attnAlloc(t, b, ops.F32, z...), V: attnAlloc(t, b, ops.F32, z...), Scale: 1}); err != nil || dev.launches != 0 {
		t.Errorf("L = 0: err %v, %d launches", err, dev.launches)
	}
}

// attnOffsetView returns a tensor of x's shape whose data starts off bytes into x's buffer (only possible
// inside the package: the public API makes whole-row views, which keep the alignment).
func attnOffsetView(t *testing.T, b *Backend, x *ops.Tensor, off int) *ops.Tensor {
	t.Helper()
	big := attnAlloc(t, b, x.DType(), x.Len()+16)
	buf, err := b.buf(big, "test")
	if err != nil {
		t.Fatal(err)
	}
	v := &buffer{base: buf.base, ptr: buf.ptr + Ptr(off), bytes: x.Bytes(), view: true}
	nt, err := ops.NewTensor(b, x.DType(), x.Shape(), v)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// ---- the harness catches injected bugs -------------------------------------------------------------

// TestAttnInjectedBugsCaught: the parity cases must notice a launcher that drops the key padding mask,
// or uses a slightly wrong scale: the harness fails them.
func TestAttnInjectedBugsCaught(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook opstest.Hook
		want string
	}{
		{"no padding mask", func(op ops.Op, p any, call func() error) error {
			switch q := p.(type) {
			case *ops.AttnParams:
				q.SeqLens = nil
			case *ops.AttnBwdParams:
				q.SeqLens = nil
			}
			return call()
		}, "pad=yes"},
		{"scale off by 1e-3", func(op ops.Op, p any, call func() error) error {
			switch q := p.(type) {
			case *ops.AttnParams:
				q.Scale *= 1.001
			case *ops.AttnBwdParams:
				q.Scale *= 1.001
			}
			return call()
		}, "max error vs the float64 oracle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dut := opstest.Intercept(NewBackend(NewSimDevice()), tc.hook)
			small := func(c opstest.Case) bool {
				return isAttn(c) && c.Size == opstest.Small && strings.Contains(c.Name, "l=97")
			}
			err := opstest.Check(cpu.New(), dut, small, opstest.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a failure mentioning %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "4 of 4 cases failed") {
				t.Errorf("want all four l=97 cases (fwd, bwd × f32, bf16) to fail, got %v", err)
			}
		})
	}
}

// ---- simulator speed -------------------------------------------------------------------------------

// TestAttnSimSpeed logs the CPU time of one forward and one backward at L = 1025, Dh = 64 on the
// simulator (skipped with -short) and fails on a gross regression (the design target is seconds).
func TestAttnSimSpeed(t *testing.T) {
	if testing.Short() {
		t.Skip("large; skipped with -short")
	}
	b := NewBackend(NewSimDevice())
	s := []int{1, 1025, 2, 64}
	for _, dt := range []ops.DType{ops.BF16, ops.F32} {
		q, k, v, o, do := attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...)
		dq, dk, dv, lse := attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...), attnAlloc(t, b, dt, s...), attnAlloc(t, b, ops.F32, 1, 2, 1025)
		c0 := attnCPUTime()
		if err := b.AttnFwd(&ops.AttnParams{Out: o, LSE: lse, Q: q, K: k, V: v, Scale: 0.125}); err != nil {
			t.Fatal(err)
		}
		c1 := attnCPUTime()
		if err := b.AttnBwd(&ops.AttnBwdParams{DQ: dq, DK: dk, DV: dv, DOut: do, Q: q, K: k, V: v, Out: o, LSE: lse, Scale: 0.125}); err != nil {
			t.Fatal(err)
		}
		c2 := attnCPUTime()
		t.Logf("%v, L = 1025, H = 2, Dh = 64: forward %v, backward %v of CPU time", dt, (c1 - c0).Round(time.Millisecond), (c2 - c1).Round(time.Millisecond))
		if c2-c0 > 60*time.Second {
			t.Errorf("%v forward + backward took %v of CPU time on the simulator", dt, c2-c0)
		}
	}
}

// attnCPUTime returns the process's user + system CPU time (wall time is unreliable on a busy machine).
func attnCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAttnSharedMemory pins the shared memory of every attention kernel (the numbers in the .cu
// headers): all fit the default 48 KiB per block, so no opt-in (cuFuncSetAttribute) is needed.
func TestAttnSharedMemory(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"attn_fwd_bf16_d64", attnFwdSmem(ops.BF16, 64), 24 << 10},
		{"attn_fwd_bf16_d128", attnFwdSmem(ops.BF16, 128), 48 << 10},
		{"attn_bwd_bf16_d64_dq", attnDqSmem(ops.BF16, 64), 32 << 10},
		{"attn_bwd_bf16_d128_dq", attnDqSmem(ops.BF16, 128), 48 << 10},
		{"attn_bwd_bf16_d64_dkdv", attnDkdvSmem(ops.BF16, 64), 32 << 10},
		{"attn_bwd_bf16_d128_dkdv", attnDkdvSmem(ops.BF16, 128), 40 << 10},
		{"attn_fwd_f32 (dh 128)", attnFwdSmem(ops.F32, 128), 35136},
		{"attn_bwd_f32_* (dh 128)", attnBwdSmem(ops.F32, 128), 43584},
	} {
		if tc.got != tc.want || tc.got > 48<<10 {
			t.Errorf("%s: %d bytes of shared memory, want %d (<= 48 KiB)", tc.name, tc.got, tc.want)
		}
	}
	for dh := 1; dh <= attnF32MaxD; dh++ {
		if n := max(attnFwdSmem(ops.F32, dh), attnBwdSmem(ops.F32, dh)); n > 48<<10 {
			t.Errorf("f32 dh=%d needs %d bytes of shared memory", dh, n)
		}
	}
}
