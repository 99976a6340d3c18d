package train

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// ForwardBackwardRows is the data-parallel building block of a training step (used by the
// multi-device scheduler, cuda/sched): it runs the forward and backward passes of rows
// [first, first+n) of the global batch of step index step, where n = len(x0)/L is a
// positive multiple of Cfg.MicroBatch and first+n ≤ Cfg.Batch, and adds their gradients
// into the model's Grad buffers (call M.ZeroGrad first to start from zero). It applies no
// update and does not advance tr.Step.
//
// Times, mask probabilities and MaskedCE row weights are those of the whole global batch
// of Cfg.Batch sequences (antithetic strata over B, weights normalised by the global B,
// pitfalls B11), and masks are Philox-addressed by the global position, so the rows add
// exactly what they add inside TrainStep on one device, whatever the split. seqLoss (length
// n) receives the weighted loss of each of the rows' sequences, in the units of
// StepStats.DiffBits (their sum over the global batch is the diffusion term in bits per
// token). seqLens is nil or holds the n rows' real lengths. It returns the number of masked
// positions in the rows.
func (tr *Trainer) ForwardBackwardRows(x0, seqLens []int32, first int, step uint64, seqLoss []float64) (int, error) {
	c, m := tr.Cfg, tr.M
	B, L, V := c.Batch, m.Cfg.SeqLen, m.Cfg.Vocab
	if len(x0) == 0 || len(x0)%L != 0 {
		return 0, fmt.Errorf("train: rows hold %d tokens, not a positive multiple of L=%d", len(x0), L)
	}
	n := len(x0) / L
	switch {
	case first < 0 || first+n > B:
		return 0, fmt.Errorf("train: rows [%d, %d) are outside the global batch [0, %d)", first, first+n, B)
	case n%c.MicroBatch != 0:
		return 0, fmt.Errorf("train: %d rows are not a multiple of the micro-batch %d", n, c.MicroBatch)
	case seqLens != nil && len(seqLens) != n:
		return 0, fmt.Errorf("train: got %d sequence lengths for %d rows", len(seqLens), n)
	case len(seqLoss) != n:
		return 0, fmt.Errorf("train: seqLoss has %d entries for %d rows", len(seqLoss), n)
	}
	if err := checkTokens(x0, V, "training batch"); err != nil {
		return 0, err
	}
	est := &c.Est
	est.SampleTimes(tr.ts, c.Seed, step, c.Antithetic)
	diffusion.MaskProbs(tr.probs, est.Sched, tr.ts)
	est.RowWeights(tr.weights, tr.ts)
	return tr.r.run(&pass{x0: x0, seqLens: seqLens, ts: tr.ts[first : first+n], probs: tr.probs[first : first+n],
		weights: tr.weights[first : first+n], seed: c.Seed, step: step, purpose: rng.PurposeMask, grad: true,
		first: first}, seqLoss)
}
