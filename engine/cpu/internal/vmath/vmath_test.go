package vmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randF32(r *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((2*r.Float64() - 1) * scale)
	}
	return out
}

func randF64(r *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (2*r.Float64() - 1) * scale
	}
	return out
}

func sameF32(t *testing.T, what string, got, want []float32, n int) {
	t.Helper()
	for i := range n {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v (bit-identical to the scalar Go code)", what, i, got[i], want[i])
		}
	}
}

func closeF32(t *testing.T, what string, got []float32, want []float64, n int, rel float64) {
	t.Helper()
	for i := range n {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= rel*math.Abs(want[i])+1e-30) {
			t.Fatalf("%s[%d] = %v, want %v (relative error %.3g)", what, i, got[i], want[i], d/math.Abs(want[i]))
		}
	}
}

// The non-exponential kernels perform the scalar Go code's operations in the same order:
// bit-identical results.
func TestExactKernels(t *testing.T) {
	if !Have {
		t.Skip("no AVX2+FMA on this machine")
	}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 1031 // not a multiple of 4: the kernels leave the tail
	n4 := n &^ 3
	{
		src, s := randF64(r, n, 3), 0.37
		got, want := make([]float32, n), make([]float32, n)
		ScaleF64ToF32(got, src, s)
		for i := range want {
			want[i] = float32(src[i] * s)
		}
		sameF32(t, "ScaleF64ToF32", got, want, n4)
	}
	{
		dp, p, delta := randF32(r, n, 2), randF32(r, n, 1), 0.123
		want := make([]float32, n)
		for i := range want {
			want[i] = float32(float64(p[i]) * (float64(dp[i]) - delta))
		}
		DSoftmaxF32(dp, p, delta)
		sameF32(t, "DSoftmaxF32", dp, want, n4)
	}
	{
		x, sc, sh := randF32(r, n, 4), randF32(r, n, 0.5), randF32(r, n, 0.5)
		mean, rstd := 0.31, 1.7
		got, want := make([]float32, n), make([]float32, n)
		NormModF32(got, x, sc, sh, mean, rstd)
		for i := range want {
			want[i] = float32(((float64(x[i])-mean)*rstd)*(1+float64(sc[i])) + float64(sh[i]))
		}
		sameF32(t, "NormModF32", got, want, n4)
	}
	{
		dy, x, sc := randF32(r, n, 1), randF32(r, n, 4), randF32(r, n, 0.5)
		mean, rstd := -0.2, 0.9
		g, nh := make([]float64, n), make([]float64, n)
		NormBwdPrep(g, nh, dy, x, sc, mean, rstd)
		for i := range n4 {
			wg, wn := float64(dy[i])*(1+float64(sc[i])), (float64(x[i])-mean)*rstd
			if g[i] != wg || nh[i] != wn {
				t.Fatalf("NormBwdPrep[%d] = %v, %v, want %v, %v", i, g[i], nh[i], wg, wn)
			}
		}
		dx, want := make([]float32, n), make([]float32, n)
		rs, mg, mgn := 1.3, 0.01, -0.2
		NormBwdDX(dx, g, nh, rs, mg, mgn)
		for i := range want {
			want[i] = float32(rs * (g[i] - mg - nh[i]*mgn))
		}
		sameF32(t, "NormBwdDX", dx, want, n4)
	}
}

// The exponential kernels match math.Exp to 1e-8 (relative, before rounding to float32)
// and stop before a group with a lane out of range.
func TestExpKernels(t *testing.T) {
	if !Have {
		t.Skip("no AVX2+FMA on this machine")
	}
	r := rand.New(rand.NewPCG(3, 4))
	const n = 1030
	n4 := n &^ 3
	a, b, g := randF32(r, n, 30), randF32(r, n, 2), randF32(r, n, 2)
	{
		got := make([]float32, n)
		if k := ExpF32(got, a, 0.5, 1.25); k != n4 {
			t.Fatalf("ExpF32 did %d, want %d", k, n4)
		}
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(float32(math.Exp(0.5*float64(a[i]) - 1.25)))
		}
		closeF32(t, "ExpF32", got, want, n4, 1.2e-7)
	}
	{
		o := make([]float32, n)
		if k := SigmoidGLU(o, a, b); k != n4 {
			t.Fatalf("SigmoidGLU did %d, want %d", k, n4)
		}
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(b[i]) / (1 + math.Exp(-float64(a[i])))
		}
		closeF32(t, "SigmoidGLU", o, want, n4, 1.2e-7)
	}
	{
		da, db := make([]float32, n), make([]float32, n)
		if k := SigmoidGLUBwd(da, db, a, b, g); k != n4 {
			t.Fatalf("SigmoidGLUBwd did %d, want %d", k, n4)
		}
		wa, wb := make([]float64, n), make([]float64, n)
		for i := range wa {
			s := 1 / (1 + math.Exp(-float64(a[i])))
			wa[i] = float64(g[i]) * float64(b[i]) * s * (1 - s)
			wb[i] = float64(g[i]) * s
		}
		closeF32(t, "SigmoidGLUBwd da", da, wa, n4, 2e-7)
		closeF32(t, "SigmoidGLUBwd db", db, wb, n4, 2e-7)
	}
	bad := append([]float32(nil), a[:16]...)
	bad[6] = 800 // −a out of range for the sigmoid kernels; a out of range for ExpF32
	if k := ExpF32(make([]float32, 16), bad, 1, 0); k != 4 {
		t.Errorf("ExpF32 with a lane out of range at 6 did %d, want 4", k)
	}
	bad[6] = -800
	if k := SigmoidGLU(make([]float32, 16), bad, b[:16]); k != 4 {
		t.Errorf("SigmoidGLU with a lane out of range at 6 did %d, want 4", k)
	}
	if k := SigmoidGLUBwd(make([]float32, 16), make([]float32, 16), bad, b[:16], g[:16]); k != 4 {
		t.Errorf("SigmoidGLUBwd with a lane out of range at 6 did %d, want 4", k)
	}
}
