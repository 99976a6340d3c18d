package cpu

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu/internal/vmath"
)

// TestFexp compares fexp with math.Exp over the whole finite range (relative error below
// 1e-8, far below float32 rounding) and checks the special values.
func TestFexp(t *testing.T) {
	worst := 0.0
	check := func(x float64) {
		got, want := fexp(x), math.Exp(x)
		if want == 0 || math.IsInf(want, 0) {
			if x > -700 && x < 700 {
				t.Fatalf("fexp(%v): math.Exp is %v", x, want)
			}
			return
		}
		e := math.Abs(got-want) / want
		worst = max(worst, e)
		if !(e < 1e-8) {
			t.Fatalf("fexp(%v) = %v, want %v (relative error %.3g)", x, got, want, e)
		}
	}
	r := newRand(9)
	for range 200000 {
		check((2*r.Float64() - 1) * 700)
		check((2*r.Float64() - 1) * 20)
		check((2*r.Float64() - 1) * 1e-3)
	}
	for _, x := range []float64{0, -0.5 * math.Ln2, 0.5 * math.Ln2, 1, -1, 88.7, -87.3, -103.9, 708.9, -707.9} {
		check(x)
	}
	t.Logf("worst relative error %.3g", worst)
	for _, c := range []struct{ x, want float64 }{
		{math.Inf(-1), 0}, {-1000, 0}, {math.Inf(1), math.Inf(1)}, {1000, math.Inf(1)}, {0, 1},
	} {
		if got := fexp(c.x); got != c.want {
			t.Errorf("fexp(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if got := fexp(math.NaN()); !math.IsNaN(got) {
		t.Errorf("fexp(NaN) = %v, want NaN", got)
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float64, 4096)
	r := newRand(3)
	for i := range xs {
		xs[i] = -20 * r.Float64()
	}
	var s float64
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				s += math.Exp(x)
			}
		}
	})
	b.Run("fexp", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				s += fexp(x)
			}
		}
	})
	_ = s
}

func BenchmarkExpShiftSum(b *testing.B) {
	xs := make([]float32, 4096)
	e := make([]float64, 4096)
	r := newRand(3)
	for i := range xs {
		xs[i] = float32(-20 * r.Float64())
	}
	b.Run("f32", func(b *testing.B) {
		for b.Loop() {
			expShiftSum(e, xs, 0.5)
		}
	})
}

// TestExpF64x4 checks the vector exp against fexp (both within 1e-8 of math.Exp, and
// within 2e-15 of each other: they differ only by fused multiply-adds) and its stop at
// the first group of four with a lane out of range.
func TestExpF64x4(t *testing.T) {
	if !vmath.Have {
		t.Skip("no AVX2+FMA vector exp on this machine")
	}
	r := newRand(11)
	src := make([]float32, 1003)
	for i := range src {
		src[i] = float32((2*r.Float64() - 1) * 80)
	}
	for _, sc := range [][2]float64{{1, 0}, {-1, 0}, {1, 3.25}, {0.125, -7}} {
		dst := make([]float64, len(src))
		n := vmath.ExpF64x4(dst, src, sc[0], sc[1])
		if n != 1000 {
			t.Fatalf("scale %v shift %v: did %d elements, want 1000", sc[0], sc[1], n)
		}
		for i := range n {
			x := sc[0]*float64(src[i]) - sc[1]
			want := math.Exp(x)
			if e := math.Abs(dst[i]-want) / want; !(e < 1e-8) {
				t.Fatalf("exp(%v) = %v, want %v (relative error %.3g)", x, dst[i], want, e)
			}
			if e := math.Abs(dst[i]-fexp(x)) / want; !(e < 2e-15) {
				t.Fatalf("exp(%v): vector %v, fexp %v", x, dst[i], fexp(x))
			}
		}
	}
	for _, bad := range []float32{-800, 800, float32(math.NaN()), float32(math.Inf(1))} {
		s := append([]float32(nil), src[:16]...)
		s[9] = bad
		if n := vmath.ExpF64x4(make([]float64, 16), s, 1, 0); n != 8 {
			t.Errorf("lane value %v at index 9: did %d elements, want 8", bad, n)
		}
	}
}
