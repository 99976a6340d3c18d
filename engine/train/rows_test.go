package train_test

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

func tinyTrainer(t *testing.T, batch, micro int) *train.Trainer {
	t.Helper()
	cfg := model.Config{Vocab: 11, SeqLen: 8, Dim: 16, Layers: 1, Heads: 2, MLPHidden: 32, TimeCond: true, CondDim: 8}
	m, err := model.New(cpu.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(3); err != nil {
		t.Fatal(err)
	}
	for id, p := range m.Params { // perturb so that adaLN and head gradients are not trivially 0
		v, _ := m.GetParam(p)
		for i := range v {
			v[i] += 0.05 * rng.Normal64(4, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
	opt, err := train.NewOptimizer(m, train.OptimConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, TotalSteps: 10})
	if err != nil {
		t.Fatal(err)
	}
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: batch, MicroBatch: micro, Seed: 5, Antithetic: true,
		Est: diffusion.Estimator{Sched: sched, L: cfg.SeqLen, V: cfg.Vocab, Bound: diffusion.BoundPaperCode}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestForwardBackwardRowsMatchesTrainStep: running the rows of a global batch in two
// halves with ForwardBackwardRows gives bit for bit the gradients, masked count and
// per-sequence losses that TrainStep computes before its update (same micro-batches, same
// global Philox addressing of times and masks).
func TestForwardBackwardRowsMatchesTrainStep(t *testing.T) {
	const B, L = 6, 8
	x0 := make([]int32, B*L)
	for i := range x0 {
		x0[i] = int32(rng.Uniform64(1, 0, rng.PurposeData, uint64(i)) * 11)
	}
	ref := tinyTrainer(t, B, B/2)
	ref.Step = 3
	st, err := ref.TrainStep(x0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dut := tinyTrainer(t, B, B/2)
	if err := dut.M.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	seqLoss := make([]float64, B)
	masked := 0
	for _, first := range []int{0, B / 2} {
		n, err := dut.ForwardBackwardRows(x0[first*L:(first+B/2)*L], nil, first, 3, seqLoss[first:first+B/2])
		if err != nil {
			t.Fatal(err)
		}
		masked += n
	}
	if masked != st.Masked {
		t.Errorf("masked %d, TrainStep %d", masked, st.Masked)
	}
	scale := float64(B) * float64(L) * math.Ln2
	for b := range seqLoss {
		if seqLoss[b]*scale != st.SeqLosses[b] {
			t.Errorf("sequence %d: loss %v, TrainStep %v", b, seqLoss[b]*scale, st.SeqLosses[b])
		}
	}
	for i, p := range ref.M.Params {
		g1, _ := ref.M.GetGrad(p)
		g2, _ := dut.M.GetGrad(dut.M.Params[i])
		for j := range g1 {
			if g1[j] != g2[j] {
				t.Fatalf("%s[%d]: gradient %v, TrainStep %v", p.Name, j, g2[j], g1[j])
			}
		}
	}
	// Bad ranges are refused.
	if _, err := dut.ForwardBackwardRows(x0[:L*3], nil, 4, 3, make([]float64, 3)); err == nil {
		t.Error("rows [4, 7) of a batch of 6 were accepted")
	}
	if _, err := dut.ForwardBackwardRows(x0[:L*2], nil, 0, 3, make([]float64, 2)); err == nil {
		t.Error("2 rows with micro-batch 3 were accepted")
	}
}
