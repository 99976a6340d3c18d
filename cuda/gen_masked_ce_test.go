package cuda

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestGenMaskedCEParity runs the opstest GenMaskedCE cases (forward and reverse thread order,
// 2 workers; Large cases once).
func TestGenMaskedCEParity(t *testing.T) { parityOp(t, ops.OpGenMaskedCE) }

type gceRun struct {
	loss, dpow []float64
	dl         []float32
}

// runGenCE runs GenMaskedCE on be (the CPU always in F32); rows start at row offset off of a
// larger buffer when off > 0, to move them in memory.
func runGenCE(t testing.TB, be ops.Backend, dt ops.DType, r, v int, inplace bool, off int) (gceRun, error) {
	t.Helper()
	if _, ok := be.(*cpu.Backend); ok {
		dt = ops.F32
	}
	rnd := &testRand{seed: uint64(r*131 + v)}
	logits := make([]float32, r*v)
	for i := range logits {
		logits[i] = float32(2 * rnd.normal())
		if dt == ops.BF16 {
			logits[i] = bf16Round(logits[i])
		}
	}
	targets := make([]int32, r)
	scales := make([]float64, r)
	for i := range targets {
		targets[i] = int32(rnd.intn(v))
		scales[i] = 2 * rnd.u64()
	}
	powers := make([]float64, v)
	dpow := make([]float64, v)
	for j := range powers {
		powers[j] = 0.3 + 2*rnd.u64()
		dpow[j] = rnd.normal()
	}
	big := uploadFloat(t, be, dt, append(make([]float32, off*v), logits...), r+off, v)
	lt, err := be.View(big, off, off+r)
	if err != nil {
		t.Fatal(err)
	}
	p := &ops.GenMaskedCEParams{Logits: lt, Targets: upload(t, be, ops.I32, targets, r), Scales: upload(t, be, ops.F64, scales, r),
		Powers: upload(t, be, ops.F64, powers, v), Loss: upload(t, be, ops.F64, nil, r), DPowers: upload(t, be, ops.F64, dpow, v)}
	if inplace {
		p.DLogits = lt
	} else {
		p.DLogits = uploadFloat(t, be, dt, make([]float32, r*v), r, v)
	}
	err = be.GenMaskedCE(p)
	if sb, ok := be.(*Backend); ok {
		checkGuards(t, sb)
	}
	return gceRun{loss: downloadF64(t, be, p.Loss), dpow: downloadF64(t, be, p.DPowers), dl: downloadFloat(t, be, p.DLogits)}, err
}

// TestGenMaskedCEInPlaceAndAddress: DLogits aliasing Logits gives the same bits as a separate
// buffer, and moving the rows in memory (so that 128-bit loads are or are not possible) changes
// nothing; the result matches the CPU within the documented accuracy.
func TestGenMaskedCEInPlaceAndAddress(t *testing.T) {
	b := newSimBackend(SimReverse(true))
	for _, dt := range []ops.DType{ops.F32, ops.BF16} {
		const r, v = 70, 131
		base, err := runGenCE(t, b, dt, r, v, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, variant := range []struct {
			inplace bool
			off     int
		}{{true, 0}, {false, 1}, {true, 3}} {
			got, err := runGenCE(t, b, dt, r, v, variant.inplace, variant.off)
			if err != nil {
				t.Fatal(err)
			}
			for i := range base.loss {
				if math.Float64bits(base.loss[i]) != math.Float64bits(got.loss[i]) {
					t.Fatalf("%v %+v: Loss[%d] %v, want %v", dt, variant, i, got.loss[i], base.loss[i])
				}
			}
			for j := range base.dpow {
				if math.Float64bits(base.dpow[j]) != math.Float64bits(got.dpow[j]) {
					t.Fatalf("%v %+v: DPowers[%d] %v, want %v", dt, variant, j, got.dpow[j], base.dpow[j])
				}
			}
			for k := range base.dl {
				if math.Float32bits(base.dl[k]) != math.Float32bits(got.dl[k]) {
					t.Fatalf("%v %+v: DLogits[%d] %v, want %v", dt, variant, k, got.dl[k], base.dl[k])
				}
			}
		}
		if dt != ops.F32 {
			continue
		}
		ref, err := runGenCE(t, cpu.New(), dt, r, v, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ref.loss {
			if d := math.Abs(base.loss[i] - ref.loss[i]); d > 1e-6*math.Abs(ref.loss[i])+1e-9 {
				t.Errorf("Loss[%d] = %v, CPU %v", i, base.loss[i], ref.loss[i])
			}
		}
		for j := range ref.dpow {
			if d := math.Abs(base.dpow[j] - ref.dpow[j]); d > 1e-6*math.Abs(ref.dpow[j])+1e-8 {
				t.Errorf("DPowers[%d] = %v, CPU %v", j, base.dpow[j], ref.dpow[j])
			}
		}
	}
}

// TestGenMaskedCEErrors: a bad target is refused with the CPU's message and nothing is written
// (DPowers keeps its value).
func TestGenMaskedCEErrors(t *testing.T) {
	b := newSimBackend()
	const r, v = 9, 27
	lt := upload(t, b, ops.F32, make([]float32, r*v), r, v)
	targets := make([]int32, r)
	targets[4], targets[7] = 27, -1
	dp := upload(t, b, ops.F64, []float64{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, v)
	powers := make([]float64, v)
	for j := range powers {
		powers[j] = 1
	}
	err := b.GenMaskedCE(&ops.GenMaskedCEParams{Logits: lt, Targets: upload(t, b, ops.I32, targets, r), Scales: upload(t, b, ops.F64, nil, r),
		Powers: upload(t, b, ops.F64, powers, v), Loss: upload(t, b, ops.F64, nil, r), DLogits: lt, DPowers: dp})
	if !errors.Is(err, ops.ErrValue) || err.Error() != "ops.GenMaskedCE: Targets: invalid value: target 27 of row 4 is not in [0, 27)" {
		t.Fatalf("got %v, want the CPU's message for row 4", err)
	}
	for j, x := range downloadF64(t, b, dp) {
		if x != 5 {
			t.Fatalf("DPowers[%d] = %v was written by a failed call", j, x)
		}
	}
}
