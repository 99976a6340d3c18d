package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPyTorchAgreement is the numeric check of the PyTorch baseline (and an
// interoperability test of our checkpoints): from the same weights (our safetensors
// training state, read by bench/pytorch/md4.py under our canonical names), the same batch
// and the same mask, PyTorch's loss, gradients and AdamW + EMA update match ours, and our
// loader reads PyTorch's state back. It is skipped when no python3 imports torch.
//
// Tolerances. Both sides compute in float32, but we accumulate reductions in float64 and
// PyTorch in float32 with other summation orders, through 4 blocks. Observed on the
// development machine (gonum and OpenBLAS builds, batch 32 and 4): loss ≤ 5e-8 relative,
// gradients ≤ 3.5e-5 of each tensor's largest element and ≤ 7e-7 in L2, AdamW updates
// ≤ 6e-4 (m̂/(√v̂+ε) divides by small second moments and amplifies gradient
// differences), EMA updates ≤ 5e-4 (a difference of float32 values 100× larger than the
// update), moments ≤ 1e-5. The limits are 10–30× those: loss 1e-6, gradients 5e-4 (max)
// and 2e-5 (L2), updates and EMA 5e-3, moments 1e-4.
func TestPyTorchAgreement(t *testing.T) {
	py, ver, err := FindPython()
	if errors.Is(err, ErrNoTorch) {
		t.Skipf("skipping the PyTorch agreement check: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := Tiny()
	if testing.Short() {
		s.Batch = 4
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, err := CheckAgainstPyTorch(ctx, py, t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PyTorch %s (%s): step %d, %d masked; loss %.9f vs %.9f bits (rel %.2g); grads max rel %.2g (%s), L2 rel %.2g; "+
		"update max rel %.2g (%s); EMA %.2g; moments %.2g; grad norm %.6g vs %.6g",
		ver, py, a.Step, a.Masked, a.LossOurs, a.LossTorch, a.LossRel, a.GradRel, a.GradWorst, a.GradL2Rel,
		a.UpdateRel, a.UpdateWorst, a.EMARel, a.MomentRel, a.GradNormOurs, a.GradNormTorch)
	if a.Masked != a.MaskedTorch {
		t.Errorf("masked positions: ours %d, PyTorch %d", a.Masked, a.MaskedTorch)
	}
	if a.LROurs != a.LRTorch {
		t.Errorf("learning rate: ours %v, PyTorch %v", a.LROurs, a.LRTorch)
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"loss relative difference", a.LossRel, 1e-6},
		{"gradient max relative difference (" + a.GradWorst + ")", a.GradRel, 5e-4},
		{"gradient L2 relative difference", a.GradL2Rel, 2e-5},
		{"AdamW update max relative difference (" + a.UpdateWorst + ")", a.UpdateRel, 5e-3},
		{"EMA update max relative difference", a.EMARel, 5e-3},
		{"moment max relative difference", a.MomentRel, 1e-4},
	} {
		if !(c.got <= c.want) {
			t.Errorf("%s = %.3g, want ≤ %.0e", c.what, c.got, c.want)
		}
	}
	if !a.ReloadedState {
		t.Errorf("PyTorch's state file did not load back with the expected step counters")
	}
}
