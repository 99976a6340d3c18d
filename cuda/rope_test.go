package cuda

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

func isRoPE(c opstest.Case) bool { return c.Op == ops.OpRoPE }

// TestRoPEParity runs the harness's RoPE cases (f32 and bf16, forward and inverse, in place) on the
// simulator in both thread orders and with two workers.
func TestRoPEParity(t *testing.T) {
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
			opstest.Run(t, cpu.New(), dut, opstest.Options{Filter: isRoPE, Guard: true, FailUnsupported: true})
		})
	}
}

// TestRoPEInverse: the inverse rotation undoes the forward one (f32, in place, within rounding), at
// positions up to 2000 (where an f32 angle would already be visibly off).
func TestRoPEInverse(t *testing.T) {
	b := NewBackend(NewSimDevice())
	const bs, l, h, dh = 1, 2000, 2, 16
	x := make([]float32, bs*l*h*dh)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37) + 0.1)
	}
	xt := attnUpload(t, b, ops.F32, x, bs, l, h, dh)
	for _, inv := range []bool{false, true} {
		if err := b.RoPE(&ops.RoPEParams{Out: xt, X: xt, Theta: 10000, Inverse: inv}); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]float32, len(x))
	if err := b.Download(got, xt); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if d := math.Abs(float64(got[i] - x[i])); d > 1e-6 {
			t.Fatalf("element %d: got %v after RoPE and its inverse, want %v", i, got[i], x[i])
		}
	}
}

// TestRoPERefusals: F64, mixed dtypes and a partial overlap of Out and X are refused before launch.
func TestRoPERefusals(t *testing.T) {
	b := NewBackend(NewSimDevice())
	x64, _ := b.Alloc(ops.F64, 1, 4, 1, 8)
	if err := b.RoPE(&ops.RoPEParams{Out: x64, X: x64, Theta: 10000}); !errors.Is(err, ops.ErrUnsupported) {
		t.Errorf("f64: got %v, want ops.ErrUnsupported", err)
	}
	xf, _ := b.Alloc(ops.F32, 1, 4, 1, 8)
	xb, _ := b.Alloc(ops.BF16, 1, 4, 1, 8)
	if err := b.RoPE(&ops.RoPEParams{Out: xb, X: xf, Theta: 10000}); !errors.Is(err, ops.ErrDType) {
		t.Errorf("mixed dtypes: got %v, want ops.ErrDType", err)
	}
	big, _ := b.Alloc(ops.F32, 3, 4, 1, 8)
	v0, _ := b.View(big, 0, 2)
	v1, _ := b.View(big, 1, 3)
	if err := b.RoPE(&ops.RoPEParams{Out: v1, X: v0, Theta: 10000}); err == nil || !errors.Is(err, ops.ErrValue) {
		t.Errorf("partial overlap: got %v, want ops.ErrValue", err)
	}
}
