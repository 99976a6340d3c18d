package train

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// EvalConfig describes an evaluation of the NELBO on fixed sequences.
type EvalConfig struct {
	Batch      int    // sequences per pass
	Samples    int    // K: independent (time, mask) samples per sequence; ≥ 1
	Seed       uint64 // evaluation seed (fixed, so the estimate is reproducible bit for bit)
	Antithetic bool   // stratified times across each batch (md4.md §2.3)
	Est        diffusion.Estimator
}

// Evaluator estimates the NELBO of a model on a set of sequences with MD4's unbiased
// single-sample estimator averaged over K samples per sequence (md4.md §2.3 "Evaluation"),
// reporting bits per token, the perplexity bound and the Monte Carlo standard error
// (aggregated as exp(total NLL / total tokens), pitfalls B10).
type Evaluator struct {
	Cfg     EvalConfig
	m       *model.Model
	runners map[int]*runner // by pass size: Batch, and the size of a last partial batch
}

// NewEvaluator checks cfg against the model; buffers are allocated on first use.
func NewEvaluator(m *model.Model, cfg EvalConfig) (*Evaluator, error) {
	if cfg.Batch < 1 || cfg.Samples < 1 {
		return nil, fmt.Errorf("train: eval batch %d and samples per sequence %d must be ≥ 1", cfg.Batch, cfg.Samples)
	}
	if err := cfg.Est.Validate(); err != nil {
		return nil, err
	}
	if cfg.Est.L != m.Cfg.SeqLen || cfg.Est.V != m.Cfg.Vocab {
		return nil, fmt.Errorf("train: estimator (L=%d, V=%d) does not match the model (L=%d, V=%d)",
			cfg.Est.L, cfg.Est.V, m.Cfg.SeqLen, m.Cfg.Vocab)
	}
	return &Evaluator{Cfg: cfg, m: m, runners: map[int]*runner{}}, nil
}

// Free releases the evaluator's buffers.
func (ev *Evaluator) Free() {
	for _, r := range ev.runners {
		r.free()
	}
	ev.runners = map[int]*runner{}
}

func (ev *Evaluator) runner(n int) (*runner, error) {
	if r := ev.runners[n]; r != nil {
		return r, nil
	}
	r, err := newRunner(ev.m, n)
	if err != nil {
		return nil, err
	}
	ev.runners[n] = r
	return r, nil
}

// Eval estimates the NELBO of the n = len(seqs)/L sequences in seqs ([n·L] token ids,
// e.g. non-overlapping evaluation windows). Batch k, sample s uses times drawn at
// (Cfg.Seed, step = k·K + s, PurposeEvalTime) and masks at (Cfg.Seed, same step,
// PurposeMask), so the result depends only on the model, the data and the seed. progress,
// if non-nil, is called after each pass with the sequence-samples done and the total.
func (ev *Evaluator) Eval(seqs []int32, progress func(done, total int)) (diffusion.EvalResult, error) {
	return ev.EvalPadded(seqs, nil, progress)
}

// EvalPadded is Eval for padded sequences: seqLens[j] ∈ [1, L] is the number of real
// tokens of sequence j (the rest is padding at the end). Padding positions are never
// masked, never attended to (key padding mask) and never counted: each sequence's
// estimate uses its own token count n_j for the reconstruction and prior terms and the
// per-token normaliser (pitfalls B07). seqLens nil means every sequence is full.
func (ev *Evaluator) EvalPadded(seqs []int32, seqLens []int32, progress func(done, total int)) (diffusion.EvalResult, error) {
	L, V := ev.m.Cfg.SeqLen, ev.m.Cfg.Vocab
	if len(seqs) == 0 || len(seqs)%L != 0 {
		return diffusion.EvalResult{}, fmt.Errorf("train: evaluation data has %d tokens, which is not a positive multiple of L=%d", len(seqs), L)
	}
	if seqLens != nil {
		if len(seqLens) != len(seqs)/L {
			return diffusion.EvalResult{}, fmt.Errorf("train: %d sequence lengths for %d sequences", len(seqLens), len(seqs)/L)
		}
		for j, n := range seqLens {
			if n < 1 || int(n) > L {
				return diffusion.EvalResult{}, fmt.Errorf("train: sequence %d has length %d, outside [1, %d]", j, n, L)
			}
		}
	}
	if err := checkTokens(seqs, V, "evaluation data"); err != nil {
		return diffusion.EvalResult{}, err
	}
	// Mixed precision: refresh the bf16 weight copies (the weights may be EMA tensors that
	// changed since the last evaluation).
	if err := ev.m.SyncHalf(); err != nil {
		return diffusion.EvalResult{}, err
	}
	var acc diffusion.Accumulator
	n, B, K := len(seqs)/L, ev.Cfg.Batch, ev.Cfg.Samples
	est := &ev.Cfg.Est
	done := 0
	for k, b0 := 0, 0; b0 < n; k, b0 = k+1, b0+B {
		bn := min(B, n-b0)
		r, err := ev.runner(bn)
		if err != nil {
			return diffusion.EvalResult{}, err
		}
		x0 := seqs[b0*L : (b0+bn)*L]
		var lens []int32
		if seqLens != nil {
			lens = seqLens[b0 : b0+bn]
		}
		ts, probs, ones, ce := make([]float64, bn), make([]float64, bn), make([]float64, bn), make([]float64, bn)
		avg := make([]diffusion.SeqNLL, bn)
		for j := range ones {
			ones[j] = 1 // rows carry raw CE in nats; the estimator weights each sequence below
		}
		for s := 0; s < K; s++ {
			step := uint64(k*K + s)
			est.SampleTimesFor(ts, ev.Cfg.Seed, step, rng.PurposeEvalTime, ev.Cfg.Antithetic)
			diffusion.MaskProbs(probs, est.Sched, ts)
			clear(ce)
			if _, err := r.run(&pass{x0: x0, seqLens: lens, ts: ts, probs: probs, weights: ones, seed: ev.Cfg.Seed,
				step: step, purpose: rng.PurposeMask}, ce); err != nil {
				return diffusion.EvalResult{}, err
			}
			for j := range ce {
				q := est.Seq(ts[j], ce[j])
				if lens != nil && int(lens[j]) < L {
					n := int(lens[j])
					q.Tokens = n
					q.Recon = diffusion.ReconNats(est.Sched, n, V)
					q.Prior = diffusion.PriorNats(est.Sched, n, V)
				}
				if s == 0 {
					avg[j] = q
				} else {
					avg[j].Diffusion += q.Diffusion
					avg[j].DiffusionExact += q.DiffusionExact
				}
			}
			done += bn
			if progress != nil {
				progress(done, n*K)
			}
		}
		// One estimate per sequence: the mean of its K samples (so the standard error is
		// over sequences, not over correlated samples of one sequence).
		for j := range avg {
			avg[j].Diffusion /= float64(K)
			avg[j].DiffusionExact /= float64(K)
			acc.Add(avg[j])
		}
	}
	return acc.Result(), nil
}
