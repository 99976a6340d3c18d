package opstest

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

func TestBF16Rounding(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want uint16
	}{
		{1, 0x3F80},
		{1 + 1.0/256, 0x3F80},           // tie: to even (down)
		{1 + 3.0/256, 0x3F82},           // tie: to even (up)
		{1 + 1.0/256 + 0x1p-16, 0x3F81}, // just above the tie
		{1 + 1.0/256 + 0x1p-30, 0x3F81}, // float64 only: through float32 it would be a tie, rounded down
		{-(1 + 3.0/256 - 0x1p-30), 0xBF81},
		{math.MaxFloat32, 0x7F80}, // overflows to +Inf
		{3.3895e38, 0x7F7F},
		{math.Inf(-1), 0xFF80},
		{math.Copysign(0, -1), 0x8000},
		{1e-46, 0x0000},
	} {
		if got := BF16BitsF64(tc.in); got != tc.want {
			t.Errorf("BF16BitsF64(%v) = %#04x, want %#04x", tc.in, got, tc.want)
		}
		if f := float32(tc.in); float64(f) == tc.in {
			if got := BF16Bits(f); got != tc.want {
				t.Errorf("BF16Bits(%v) = %#04x, want %#04x", f, got, tc.want)
			}
		}
	}
	if h := BF16Bits(float32(math.NaN())); BF16Float(h) == BF16Float(h) {
		t.Errorf("BF16Bits(NaN) = %#04x is not a NaN", h)
	}
	// Against exhaustive nearest search on random values: the result is a nearest bf16,
	// with ties to an even mantissa.
	for i := uint64(0); i < 20000; i++ {
		x := (rng.Uniform64(1, 2, rng.PurposeInit, i) - 0.5) * math.Pow(2, float64(int(i%200)-100))
		h := BF16BitsF64(x)
		lo, hi := float64(BF16Float(h-1)), float64(BF16Float(h+1))
		got := float64(BF16Float(h))
		if x < 0 {
			lo, hi = hi, lo
		}
		d := math.Abs(got - x)
		if d > math.Abs(lo-x) || d > math.Abs(hi-x) || (d == math.Abs(lo-x) || d == math.Abs(hi-x)) && h&1 != 0 {
			t.Fatalf("BF16BitsF64(%v) = %v (%#04x); neighbours %v and %v", x, got, h, lo, hi)
		}
		if RoundTo(ops.BF16, x) != got {
			t.Fatalf("RoundTo(BF16, %v) = %v, want %v", x, RoundTo(ops.BF16, x), got)
		}
	}
}

func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		k     int
		want  string
	}{{[]int{5, 20}, 77, "[3, 17]"}, {[]int{7}, 6, "[6]"}, {[]int{2, 3, 4}, 23, "[1, 2, 3]"}} {
		if got := Index(tc.shape, tc.k); got != tc.want {
			t.Errorf("Index(%v, %d) = %s, want %s", tc.shape, tc.k, got, tc.want)
		}
	}
}
