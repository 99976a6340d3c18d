package cpu

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func TestMaskedCEEmpty(t *testing.T) {
	for _, dc := range fwdTypes {
		b := testBackend(2)
		p := &ops.MaskedCEParams{Logits: zeros(t, b, dc.dt, 0, tV), Targets: zeros(t, b, ops.I32, 0),
			Weights: zeros(t, b, ops.F64, 0), Loss: zeros(t, b, ops.F64, 0), DLogits: zeros(t, b, dc.dt, 0, tV)}
		if err := b.MaskedCE(p); err != nil {
			t.Errorf("%v: R = 0: got error %v, want nil", dc.dt, err)
		}
		// And through a View of zero rows of a larger buffer, which must stay untouched.
		full := mk(t, b, dc.dt, fill(3*tV, 7), 3, tV)
		v, err := b.View(full, 0, 0)
		must(t, err)
		p.Logits, p.DLogits = v, v
		must(t, b.MaskedCE(p))
		closeTo(t, "untouched buffer", get(t, b, full), fill(3*tV, 7), tol{})
	}
}

func TestMaskedCEHugeLogits(t *testing.T) {
	for _, dc := range fwdTypes {
		b := testBackend(2)
		logits := []float64{1e4, -1e4, 0, 1e4 - 1, 3e4, -3e4}
		L := mk(t, b, dc.dt, logits, 2, 3)
		p := &ops.MaskedCEParams{Logits: L, Targets: mkI(t, b, []int32{1, 2}, 2), Weights: mk(t, b, ops.F64, []float64{1, 0.5}, 2),
			Loss: zeros(t, b, ops.F64, 2), DLogits: zeros(t, b, dc.dt, 2, 3)}
		must(t, b.MaskedCE(p))
		loss, d := get(t, b, p.Loss), get(t, b, p.DLogits)
		wl, wd := refMaskedCE(logits, 2, 3, []int32{1, 2}, []float64{1, 0.5})
		for _, x := range append(loss, d...) {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("%v: non-finite output %v (loss %v, dlogits %v)", dc.dt, x, loss, d)
			}
		}
		closeTo(t, dc.dt.String()+" Loss", loss, wl, tol{1e-12, 0})
		closeTo(t, dc.dt.String()+" DLogits", d, wd, dc.tol)
	}
}

func TestMaskTokensExtremes(t *testing.T) {
	b := testBackend(3)
	const bs, l, v = 2, 9, 4
	x0 := make([]int32, bs*l)
	for i := range x0 {
		x0[i] = int32(i % v)
	}
	for _, c := range []struct {
		prob float64
		lens []int32
	}{{0, nil}, {1, nil}, {1, []int32{3, 9}}, {0, []int32{1, 1}}} {
		p := &ops.MaskParams{XT: zeros(t, b, ops.I32, bs, l), X0: mkI(t, b, x0, bs, l), MaskProb: mk(t, b, ops.F64, []float64{c.prob, c.prob}, bs),
			MaskID: v, Seed: 1, Step: 2, Purpose: 2}
		if c.lens != nil {
			p.SeqLens = mkI(t, b, c.lens, bs)
		}
		must(t, b.MaskTokens(p))
		got := getI(t, b, p.XT)
		for i, x := range got {
			inSeq := c.lens == nil || i%l < int(c.lens[i/l])
			want := x0[i]
			if c.prob == 1 && inSeq {
				want = v
			}
			if x != want {
				t.Errorf("MaskProb %v, SeqLens %v: XT[%d] = %d, want %d", c.prob, c.lens, i, x, want)
			}
		}
	}
}

func TestNormNaNDoesNotPanic(t *testing.T) {
	for _, dc := range fwdTypes {
		b := testBackend(2)
		x := randVec(newRand(50), tN*tD, 1)
		x[3*tD+2] = math.NaN()
		for _, kind := range []ops.NormKind{ops.LayerNorm, ops.RMSNorm} {
			p := &ops.NormParams{Kind: kind, Eps: 1e-5, X: mk(t, b, dc.dt, x, tN, tD), Out: zeros(t, b, dc.dt, tN, tD), Rstd: zeros(t, b, dc.dt, tN)}
			if kind == ops.LayerNorm {
				p.Mean = zeros(t, b, dc.dt, tN)
			}
			must(t, b.NormFwd(p))
			out := get(t, b, p.Out)
			if !math.IsNaN(out[3*tD]) {
				t.Errorf("%v %v: row with NaN: got %v, want NaN", dc.dt, kind, out[3*tD])
			}
			for i, v := range out {
				if i/tD != 3 && math.IsNaN(v) {
					t.Fatalf("%v %v: NaN leaked into row %d", dc.dt, kind, i/tD)
				}
			}
			bp := &ops.NormBwdParams{Kind: kind, DX: zeros(t, b, dc.dt, tN, tD), DOut: p.Out, X: p.X, Mean: p.Mean, Rstd: p.Rstd}
			must(t, b.NormBwd(bp))
		}
	}
}

// TestSingleRowShapes runs the ops at L = 1 and V = 2 (degenerate shapes) once more through
// the gradient harness.
func TestSingleRowShapes(t *testing.T) {
	r := newRand(51)
	sh := []int{3, 1, 2, 2}
	checkGrad(t, gradCase{
		name:   "AttnBwd/L=1",
		inputs: []gradInput{{randVec(r, 12, 1), sh}, {randVec(r, 12, 1), sh}, {randVec(r, 12, 1), sh}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := zeros(t, b, dt, sh...)
			must(t, b.AttnFwd(&ops.AttnParams{Q: in[0], K: in[1], V: in[2], Out: out, LSE: zeros(t, b, dt, 3, 2, 1), Scale: 0.7}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			out, lse := zeros(t, b, dt, sh...), zeros(t, b, dt, 3, 2, 1)
			must(t, b.AttnFwd(&ops.AttnParams{Q: in[0], K: in[1], V: in[2], Out: out, LSE: lse, Scale: 0.7}))
			p := &ops.AttnBwdParams{DQ: zeros(t, b, dt, sh...), DK: zeros(t, b, dt, sh...), DV: zeros(t, b, dt, sh...),
				DOut: mk(t, b, dt, rr, sh...), Q: in[0], K: in[1], V: in[2], Out: out, LSE: lse, Scale: 0.7}
			must(t, b.AttnBwd(p))
			return [][]float64{get(t, b, p.DQ), get(t, b, p.DK), get(t, b, p.DV)}
		},
	})
}

func TestDeviceBasics(t *testing.T) {
	b := New()
	if b.Name() != "cpu" || b.Sync() != nil {
		t.Fatalf("got name %q, sync %v", b.Name(), b.Sync())
	}
	free, total, err := b.MemInfo()
	if err != nil || total <= 0 || free < 0 || free > total {
		t.Errorf("MemInfo: got free %d, total %d, err %v; want 0 ≤ free ≤ total, total > 0", free, total, err)
	}
	for _, dt := range []ops.DType{ops.F32, ops.F64, ops.I32, ops.BF16} {
		x, err := b.Alloc(dt, 3, 5)
		must(t, err)
		if x.Len() != 15 || x.DType() != dt {
			t.Fatalf("Alloc %v: got %v", dt, x)
		}
		if err := storageOK(x); err != nil {
			t.Errorf("Alloc %v: %v", dt, err)
		}
		v, err := b.View(x, 1, 3)
		must(t, err)
		if v.Dim(0) != 2 || v.Dim(1) != 5 {
			t.Errorf("View rows [1, 3) of %v: got %v", x, v)
		}
		if err := b.Free(v); err == nil {
			t.Errorf("Free of a view: got nil error, want one")
		}
		must(t, b.Free(x))
		if err := b.Free(x); err == nil {
			t.Errorf("double Free: got nil error, want one")
		}
	}
	// Views write through.
	x, _ := b.Alloc(ops.F32, 4, 2)
	v, _ := b.View(x, 2, 4)
	must(t, b.Upload(v, []float32{1, 2, 3, 4}))
	got := make([]float32, 8)
	must(t, b.Download(got, x))
	if got[4] != 1 || got[7] != 4 || got[0] != 0 {
		t.Errorf("write through View: got %v, want [0 0 0 0 1 2 3 4]", got)
	}
	if _, err := b.View(x, 3, 5); err == nil {
		t.Errorf("View rows [3, 5) of 4 rows: got nil error, want one")
	}
	// Zero-filled.
	y, _ := b.Alloc(ops.F64, 7)
	for _, v := range get(t, b, y) {
		if v != 0 {
			t.Fatalf("Alloc is not zero-filled: %v", v)
		}
	}
	// Supports: F32 and F64 everywhere, BF16 for Convert only.
	for _, op := range ops.AllOps() {
		for _, dt := range []ops.DType{ops.F32, ops.F64} {
			if !b.Supports(op, dt) {
				t.Errorf("Supports(%v, %v) = false, want true", op, dt)
			}
		}
		if got, want := b.Supports(op, ops.BF16), op == ops.OpConvert; got != want {
			t.Errorf("Supports(%v, bf16) = %v, want %v", op, got, want)
		}
	}
}
