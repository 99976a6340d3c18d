package cuda

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func TestMLPParity(t *testing.T) {
	enrParity(t, []ops.Op{ops.OpGLUFwd, ops.OpGLUBwd, ops.OpActFwd, ops.OpActBwd, ops.OpBiasAdd, ops.OpBiasGrad,
		ops.OpGateResidualFwd, ops.OpGateResidualBwd})
}

// TestActExtremes: the activations and their derivatives at saturating, huge, tiny and
// non-finite inputs: finite where the float64 reference is finite (no overflow inside σ or
// GELU's cubic), the same non-finite values where it is not.
func TestActExtremes(t *testing.T) {
	var xs []float32
	for _, v := range []float32{0, 1e-30, 1e-3, 1, 3, 10, 30, 50, 88, 89, 100, 1e4, 1e13, 1e20, 3e38, float32(math.Inf(1))} {
		xs = append(xs, v, -v)
	}
	xs = append(xs, float32(math.NaN()))
	n := len(xs)
	dout := make([]float32, n)
	for i := range dout {
		dout[i] = 1
	}
	run := func(b ops.Backend, act ops.Activation) (y, dx []float32) {
		xt := enrUpload(t, b, ops.F32, xs, n)
		yt := enrUpload(t, b, ops.F32, make([]float32, n), n)
		dxt := enrUpload(t, b, ops.F32, make([]float32, n), n)
		if err := b.ActFwd(&ops.ActParams{Act: act, Out: yt, X: xt}); err != nil {
			t.Fatal(err)
		}
		if err := b.ActBwd(&ops.ActBwdParams{Act: act, DX: dxt, DOut: enrUpload(t, b, ops.F32, dout, n), X: xt}); err != nil {
			t.Fatal(err)
		}
		y, dx = make([]float32, n), make([]float32, n)
		if err := b.Download(y, yt); err != nil {
			t.Fatal(err)
		}
		if err := b.Download(dx, dxt); err != nil {
			t.Fatal(err)
		}
		return y, dx
	}
	dut := NewBackend(NewSimDevice())
	for _, act := range []ops.Activation{ops.Sigmoid, ops.Swish, ops.GELU} {
		wy, wd := run(cpu.New(), act)
		gy, gd := run(dut, act)
		for i, x := range xs {
			for _, c := range []struct {
				what      string
				got, want float32
			}{{"act", gy[i], wy[i]}, {"act'", gd[i], wd[i]}} {
				g, w := float64(c.got), float64(c.want)
				ok := math.Abs(g-w) <= 1e-6+1e-5*math.Abs(w)
				if math.IsNaN(w) || math.IsInf(w, 0) || math.IsNaN(g) || math.IsInf(g, 0) {
					ok = g == w || (math.IsNaN(g) && math.IsNaN(w))
				}
				if !ok {
					t.Errorf("%v: %s(%g) = %g, want %g", act, c.what, x, g, w)
				}
			}
		}
	}
}
