package main

import (
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// GenMD4 in the CLI (md4.md §4): `train --genmd4` trains the learned per-token schedule
// (engine/train GenTrainer); eval and sample detect a GenMD4 checkpoint from its model
// configuration (schedule.w_raw) and use GenMD4's evaluator and reverse step.

// runEvaluator is the held-out evaluation of either model family.
type runEvaluator interface {
	Eval(seqs []int32, progress func(done, total int)) (diffusion.EvalResult, error)
	Free()
}

// newRunTrainer returns the training step of the run: an MD4 Trainer, or for --genmd4 a
// GenTrainer together with a Trainer shim holding the same model and optimizer (the loop,
// SaveState and the logs read its M, Opt, Step and Skipped, which trainStep keeps in sync).
func newRunTrainer(cfg RunConfig, m *model.Model, opt *train.Optimizer, est diffusion.Estimator) (*train.Trainer, *train.GenTrainer, error) {
	if !cfg.GenMD4 {
		tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: cfg.Batch, MicroBatch: cfg.MicroBatch, Seed: cfg.Seed,
			Antithetic: cfg.Antithetic, Est: est, SkipNonFinite: cfg.SkipNonFinite})
		return tr, nil, err
	}
	gen, err := train.NewGenTrainer(m, opt, train.GenConfig{Batch: cfg.Batch, MicroBatch: cfg.MicroBatch, Seed: cfg.Seed,
		Antithetic: cfg.Antithetic, Eps: cfg.ScheduleEps, SkipNonFinite: cfg.SkipNonFinite})
	if err != nil {
		return nil, nil, err
	}
	return &train.Trainer{M: m, Opt: opt}, gen, nil
}

func freeRunTrainer(tr *train.Trainer, gen *train.GenTrainer) {
	if gen != nil {
		gen.Free()
		return
	}
	tr.Free()
}

// newRunEvaluator returns MD4's evaluator, or GenMD4's (both bounds, learned schedule) for a
// GenMD4 model.
func newRunEvaluator(m *model.Model, c train.EvalConfig) (runEvaluator, error) {
	if m.GenSchedule() == nil {
		return train.NewEvaluator(m, c)
	}
	if c.Est.T > 0 {
		return nil, usagef("--discrete %d: GenMD4 has only the continuous-time bound (md4.md §4); drop --discrete", c.Est.T)
	}
	return train.NewGenEvaluator(m, train.GenEvalConfig{Batch: c.Batch, Samples: c.Samples, Seed: c.Seed, Antithetic: c.Antithetic,
		Eps: c.Est.Sched.Eps()})
}

// trainStep runs one step of the run's trainer and returns MD4's step statistics (for
// GenMD4: the optimised bound, its diffusion term, and both samples' masked positions; the
// exact bound, the RLOO term and the learned powers are logged every --log-every steps).
func (r *singleTrainer) trainStep(x0 []int32) (train.StepStats, error) {
	if r.gen == nil {
		return r.tr.TrainStep(x0, nil)
	}
	gs, err := r.gen.TrainStep(x0, nil)
	r.tr.Step, r.tr.Skipped = r.gen.Step, r.gen.Skipped
	st := train.StepStats{Step: gs.Step, LossBits: gs.LossBits, DiffBits: gs.DiffBits, GradNorm: gs.GradNorm, LR: gs.LR,
		Masked: gs.Masked[0] + gs.Masked[1], Tokens: gs.Tokens, Skipped: gs.Skipped, Duration: gs.Duration}
	if err == nil && (r.gen.Step%r.cfg.LogEvery == 0 || r.gen.Step == r.cfg.Steps) {
		r.log.Info().Int("step", r.gen.Step).Float64("paper_code_bits", round4(gs.PaperBits)).Float64("exact_bits", round4(gs.ExactBits)).
			Float64("recon_bits", sig6(gs.ReconBits)).Float64("rloo_bits", sig6(gs.RLOOBits)).Float64("power_min", round4(gs.PowerMin)).
			Float64("power_mean", round4(gs.PowerMean)).Float64("power_max", round4(gs.PowerMax)).Msg("genmd4")
	}
	return st, err
}

// loadState restores a training checkpoint into the run's trainer.
func (r *singleTrainer) loadState(path string) error {
	if r.gen == nil {
		_, err := train.LoadState(path, r.tr)
		return err
	}
	if _, err := train.LoadGenState(path, r.gen); err != nil {
		return err
	}
	r.tr.Step, r.tr.Skipped = r.gen.Step, r.gen.Skipped
	return nil
}
