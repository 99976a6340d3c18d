// Package train is mdm-gpu's training core: the MD4 training step (mask → forward → masked
// cross-entropy → backward → AdamW + EMA, architecture.md §3), the learning-rate schedule,
// gradient clipping, evaluation of the NELBO, and checkpointing of the whole training state.
package train

import (
	"fmt"
	"math"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// StepConfig describes how a training step draws times and masks and forms the loss.
type StepConfig struct {
	Batch      int    // global batch B (sequences per update)
	MicroBatch int    // sequences per forward/backward; 0 → Batch. Must divide Batch.
	Seed       uint64 // seeds times and masks: Philox (Seed, step, purpose, index)
	Antithetic bool   // stratified times t_b = (u + b/B) mod 1 (md4.md §2.3); MD4 default true
	Est        diffusion.Estimator
	// SkipNonFinite skips the update (and counts it) when the loss or gradient norm is not
	// finite, instead of returning an error.
	SkipNonFinite bool
}

// Validate checks the batch arithmetic (pitfalls B11) and the estimator.
func (c StepConfig) Validate() error {
	mb := c.MicroBatch
	if mb == 0 {
		mb = c.Batch
	}
	switch {
	case c.Batch < 1:
		return fmt.Errorf("train: batch %d must be at least 1", c.Batch)
	case mb < 1 || c.Batch%mb != 0:
		return fmt.Errorf("train: micro-batch %d must divide the global batch %d (e.g. %d)", mb, c.Batch, largestDivisorAtMost(c.Batch, mb))
	}
	return c.Est.Validate()
}

func largestDivisorAtMost(n, k int) int {
	for d := min(n, max(k, 1)); d > 1; d-- {
		if n%d == 0 {
			return d
		}
	}
	return 1
}

// StepStats reports one training step.
type StepStats struct {
	Step      int     // index of this step (0-based); it addresses the step's random draws
	LossBits  float64 // batch-mean objective in bits per token (diffusion term + constants)
	DiffBits  float64 // diffusion term alone, bits per token
	GradNorm  float64 // global gradient norm before clipping
	LR        float64 // learning rate of this update
	Masked    int     // masked positions in the batch
	Tokens    int     // real tokens in the batch
	Skipped   bool    // the update was skipped (non-finite loss or gradient)
	Duration  time.Duration
	SeqLosses []float64 // per-sequence diffusion term c(t_b)·Σ masked CE, nats per sequence
}

// Trainer runs MD4 training steps for one model on its backend.
type Trainer struct {
	Cfg     StepConfig
	M       *model.Model
	Opt     *Optimizer
	Step    int // steps completed (= index of the next step)
	Skipped int // updates skipped because of non-finite values

	r       *runner
	ts      []float64
	probs   []float64
	weights []float64
	seqLoss []float64
}

// NewTrainer allocates the step's buffers. The model's config fixes L and V; cfg.Est must
// agree with them.
func NewTrainer(m *model.Model, opt *Optimizer, cfg StepConfig) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Est.L != m.Cfg.SeqLen || cfg.Est.V != m.Cfg.Vocab {
		return nil, fmt.Errorf("train: estimator (L=%d, V=%d) does not match the model (L=%d, V=%d)",
			cfg.Est.L, cfg.Est.V, m.Cfg.SeqLen, m.Cfg.Vocab)
	}
	if cfg.MicroBatch == 0 {
		cfg.MicroBatch = cfg.Batch
	}
	r, err := newRunner(m, cfg.MicroBatch)
	if err != nil {
		return nil, err
	}
	tr := &Trainer{Cfg: cfg, M: m, Opt: opt, r: r}
	tr.ts = make([]float64, cfg.Batch)
	tr.probs = make([]float64, cfg.Batch)
	tr.weights = make([]float64, cfg.Batch)
	tr.seqLoss = make([]float64, cfg.Batch)
	return tr, nil
}

// Free releases the trainer's buffers (not the model or optimizer).
func (tr *Trainer) Free() { tr.r.free() }

// TrainStep runs step tr.Step on the global batch x0 ([B·L] clean token ids; seqLens nil or
// [B] real lengths, padding at the end) and applies the update. Times and masks are drawn
// from Philox at (Cfg.Seed, step), so the step is a pure function of the state, the batch
// and the step index: resuming from a checkpoint reproduces it exactly.
func (tr *Trainer) TrainStep(x0 []int32, seqLens []int32) (StepStats, error) {
	start := time.Now()
	st, err := tr.forwardBackward(x0, seqLens, uint64(tr.Step), true)
	if err != nil {
		return st, err
	}
	st.Step = tr.Step
	if st.GradNorm, st.LR, st.Skipped, err = update(tr.Opt, tr.Cfg.SkipNonFinite, "step", tr.Step, st.LossBits); err != nil {
		return st, err
	}
	if st.Skipped {
		tr.Skipped++
	}
	tr.Step++
	st.Duration = time.Since(start)
	return st, nil
}

// update finishes a training step whose gradients are in the model's Grad buffers (md4.md
// §6.3): it takes the global gradient norm and this update's learning rate, then applies
// the clipped AdamW update, or for a non-finite loss or norm skips it (skipNonFinite) or
// returns an error naming the step (what: "step", "GenMD4 step").
func update(opt *Optimizer, skipNonFinite bool, what string, step int, lossBits float64) (norm, lr float64, skipped bool, err error) {
	norm, err = opt.GradNorm()
	if err != nil {
		return 0, 0, false, err
	}
	lr = opt.Cfg.LearningRate(opt.Updates)
	if math.IsNaN(lossBits) || math.IsInf(lossBits, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
		if !skipNonFinite {
			return norm, lr, false, fmt.Errorf("train: %s %d: non-finite loss %v or gradient norm %v (pass --skip-nonfinite to skip such steps)", what, step, lossBits, norm)
		}
		return norm, lr, true, nil
	}
	return norm, lr, false, opt.Step(opt.ClipScale(norm))
}

// forwardBackward computes the batch objective (and, with grad, the gradients) at step
// index step.
func (tr *Trainer) forwardBackward(x0 []int32, seqLens []int32, step uint64, grad bool) (StepStats, error) {
	c, m := tr.Cfg, tr.M
	B, L, V := c.Batch, m.Cfg.SeqLen, m.Cfg.Vocab
	var st StepStats
	if len(x0) != B*L {
		return st, fmt.Errorf("train: batch has %d tokens, want B·L = %d·%d = %d", len(x0), B, L, B*L)
	}
	if seqLens != nil && len(seqLens) != B {
		return st, fmt.Errorf("train: got %d sequence lengths for %d sequences", len(seqLens), B)
	}
	if err := checkTokens(x0, V, "training batch"); err != nil {
		return st, err
	}
	est := &c.Est
	est.SampleTimes(tr.ts, c.Seed, step, c.Antithetic)
	diffusion.MaskProbs(tr.probs, est.Sched, tr.ts)
	est.RowWeights(tr.weights, tr.ts)
	if grad {
		if err := m.ZeroGrad(); err != nil {
			return st, err
		}
	}
	for j := range tr.seqLoss {
		tr.seqLoss[j] = 0
	}
	masked, err := tr.r.run(&pass{x0: x0, seqLens: seqLens, ts: tr.ts, probs: tr.probs, weights: tr.weights,
		seed: c.Seed, step: step, purpose: rng.PurposeMask, grad: grad}, tr.seqLoss)
	if err != nil {
		return st, err
	}
	st.Masked = masked
	// Row losses are weighted by c(t_b)/(L ln2)/B: their sum is the batch-mean diffusion
	// term in bits per token.
	var diff float64
	for _, l := range tr.seqLoss {
		diff += l
	}
	st.DiffBits = diff
	st.LossBits = diff + est.ConstBits()
	st.SeqLosses = make([]float64, B)
	scale := float64(B) * float64(L) * math.Ln2 // (bits/token)/B → nats per sequence
	for b, l := range tr.seqLoss {
		st.SeqLosses[b] = l * scale
	}
	st.Tokens = B * L
	if seqLens != nil {
		st.Tokens = 0
		for _, n := range seqLens {
			st.Tokens += int(n)
		}
	}
	return st, nil
}
