package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

type evalOpts struct {
	checkpoint string
	data       string
	format     string
	jsonlField string
	split      string
	samples    int
	discrete   int
	bound      string
	noEMA      bool
	seed       uint64
	batch      int
	windows    int
	device     string
	precision  string
	threads    int
}

func newEvalCmd(a *app) *cobra.Command {
	var o evalOpts
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Estimate the NELBO (bits/token, perplexity bound) of a checkpoint on a text file",
		Long: `Estimate MD4's negative ELBO, an upper bound on the negative log-likelihood, of a trained
checkpoint on a text file, in bits per token with its Monte Carlo standard error and the
perplexity bound 2^bits.

The file is tokenised with the checkpoint's tokenizer and cut into non-overlapping windows
of the model's context length L (the tokens after the last full window are dropped and
reported). --split held-out (default) evaluates the last fraction of the file that the
training run held out (use it with the training corpus); --split all evaluates the whole
file. Each window gets --samples K independent (time, mask) draws (md4.md §2.3); with
--discrete T the finite-T bound of the T-step discrete-time model is estimated instead of
the continuous-time one. Both the paper-code bound (the md4 code's, without the tiny prior
term) and the exact bound are printed; --bound chooses the headline. The draws are fixed by
--seed, so the result is reproducible bit for bit. EMA weights are used unless --no-ema.`,
		Example: `  # the held-out bound of a run on its own corpus (the path is taken from the checkpoint)
  mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors

  # another file, 4 samples per window, the T=1000 discrete-time bound
  mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors --data other.txt --split all --samples 4 --discrete 1000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.eval(cmd, o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint file written by 'mdm-gpu train' (required)")
	fs.StringVar(&o.data, "data", "", "text file to evaluate (default: the run's training corpus, as recorded in the checkpoint)")
	fs.StringVar(&o.format, "data-format", "auto", "format of --data: auto (by extension), text, jsonl, brown")
	fs.StringVar(&o.jsonlField, "jsonl-field", "", "string field of JSON Lines objects (default: the run's)")
	fs.StringVar(&o.split, "split", "held-out", "held-out (the last --held-out fraction the run used) or all (the whole file)")
	fs.IntVar(&o.samples, "samples", 1, "time/mask samples K per window")
	fs.IntVar(&o.discrete, "discrete", 0, "estimate the discrete-time bound with T steps; 0 = continuous time")
	fs.StringVar(&o.bound, "bound", "paper-code", "headline bound: paper-code (md4 code, omits the prior term) or exact (both are printed)")
	fs.BoolVar(&o.noEMA, "no-ema", false, "use the raw weights instead of the EMA weights")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the times and masks (fixed: the same seed gives the same result, bit for bit)")
	fs.IntVar(&o.batch, "batch", 32, "windows per forward pass")
	fs.IntVar(&o.windows, "windows", 0, "evaluate at most N windows (evenly spaced); 0 = all")
	fs.StringVar(&o.device, "device", "auto", "backend: auto (a GPU if present, else the CPU), cpu, sim, cuda, cuda:N")
	fs.StringVar(&o.precision, "precision", "auto", "auto (bf16 on cuda, f32 elsewhere), f32, bf16")
	fs.IntVar(&o.threads, "threads", 0, "CPU worker goroutines; 0 = all cores")
	return cmd
}

// loadedModel is a checkpoint's model on a backend.
type loadedModel struct {
	rm    *runMeta
	be    *backend
	m     *model.Model
	sched diffusion.Schedule
}

// loadModel reads a checkpoint's metadata and weights (EMA unless noEMA) strictly.
func (a *app) loadModel(path, device, precision string, threads int, noEMA bool) (*loadedModel, error) {
	if path == "" {
		return nil, usagef("--checkpoint is required: give the checkpoint.safetensors written by 'mdm-gpu train'")
	}
	if err := checkDevice(device); err != nil {
		return nil, &usageError{err}
	}
	if err := checkPrecision(precision, device); err != nil {
		return nil, &usageError{err}
	}
	if threads < 0 {
		return nil, usagef("--threads %d: must be ≥ 0 (0 = all cores)", threads)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--checkpoint %s: %w", path, errors.Unwrap(err))
	}
	rm, err := readRunMeta(path)
	if err != nil {
		return nil, err
	}
	sched, err := diffusion.ParseSchedule(rm.Config.Schedule, true, rm.Config.ScheduleEps)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	hasEMA := rm.Config.EMA > 0
	if !noEMA && !hasEMA {
		return nil, fmt.Errorf("checkpoint %s was trained without EMA (--ema 0), so it has no EMA weights; pass --no-ema to use the raw weights", path)
	}
	// The file must hold exactly the training state of its model configuration (strict:
	// a renamed, missing, extra or misshapen tensor is refused, pitfalls B20), and every
	// tensor's CRC is verified.
	ts, _, err := ckpt.Load(path, train.StateSpecs(rm.Model, hasEMA))
	if err != nil {
		return nil, fmt.Errorf("cannot load the weights: %w", err)
	}
	be, err := openBackend(device, threads, a.log)
	if err != nil {
		return nil, err
	}
	mc := rm.Model
	if mc.Compute, err = computeDType(precision, be, mc.WithDefaults().HeadDim()); err != nil {
		be.close()
		return nil, err
	}
	m, err := model.New(be, mc)
	if err != nil {
		be.close()
		return nil, err
	}
	prefix := "ema."
	if noEMA {
		prefix = ""
	}
	for _, p := range m.Params {
		if err := be.Upload(p.W, ts[prefix+p.Name].Data()); err != nil {
			be.close()
			return nil, fmt.Errorf("cannot load %s%s from %s: %w", prefix, p.Name, path, err)
		}
	}
	if err := m.SyncHalf(); err != nil {
		be.close()
		return nil, err
	}
	return &loadedModel{rm: rm, be: be, m: m, sched: sched}, nil
}

func (a *app) eval(cmd *cobra.Command, o evalOpts) error {
	switch {
	case o.samples < 1:
		return usagef("--samples %d: must be at least 1", o.samples)
	case o.discrete < 0:
		return usagef("--discrete %d: must be ≥ 0 (0 = continuous time)", o.discrete)
	case o.batch < 1:
		return usagef("--batch %d: must be at least 1", o.batch)
	case o.windows < 0:
		return usagef("--windows %d: must be ≥ 0 (0 = all)", o.windows)
	case o.split != "held-out" && o.split != "all":
		return usagef("--split %q: valid: held-out, all", o.split)
	}
	bound, err := diffusion.ParseBound(o.bound)
	if err != nil {
		return usagef("--bound %q: valid: paper-code, exact", o.bound)
	}
	lm, err := a.loadModel(o.checkpoint, o.device, o.precision, o.threads, o.noEMA)
	if err != nil {
		return err
	}
	defer lm.be.close()
	rm := lm.rm
	path, format, field := o.data, o.format, o.jsonlField
	if path == "" {
		path = rm.Corpus.Path
		if !cmd.Flags().Changed("data-format") {
			format = rm.Config.DataFormat
		}
	}
	if field == "" {
		field = rm.Config.JSONLField
	}
	text, err := readCorpus(path, format, field)
	if err != nil {
		return err
	}
	ids, err := rm.Tok.Encode(text)
	if err != nil {
		var uc *data.UnknownCharError
		if errors.As(err, &uc) {
			return fmt.Errorf("%s: character %q (U+%04X) at byte offset %d (line %d) is not in the checkpoint's %d-character vocabulary; evaluate text the model can represent (or train with --tokenizer text8 or byte)",
				path, uc.Char, uc.Char, uc.Offset, uc.Line, uc.VocabSize)
		}
		return fmt.Errorf("tokenizing %s: %w", path, err)
	}
	seq := ids
	what := "all of " + path
	if o.split == "held-out" {
		_, held, err := data.Split(ids, rm.Config.HeldOut)
		if err != nil {
			return fmt.Errorf("--split held-out of %s (%d tokens, held-out fraction %g): %w", path, len(ids), rm.Config.HeldOut, err)
		}
		seq = held
		what = fmt.Sprintf("the held-out split (last %g) of %s", rm.Config.HeldOut, path)
	}
	L := rm.Model.SeqLen
	win, err := data.NewWindows(seq, L)
	if err != nil {
		return fmt.Errorf("%s has %d tokens, fewer than one window of the model's context length L=%d; evaluate a longer file (or --split all)", what, len(seq), L)
	}
	es := win.EvalWindows()
	seqs, n := selectWindows(es, o.windows)
	est := diffusion.Estimator{Sched: lm.sched, L: L, V: rm.Model.Vocab, T: o.discrete, Bound: bound}
	ev, err := newRunEvaluator(lm.m, train.EvalConfig{Batch: o.batch, Samples: o.samples, Seed: o.seed, Antithetic: true, Est: est}) // MD4 or GenMD4 (genmd4.go)
	if err != nil {
		return err
	}
	defer ev.Free()
	weights := "EMA"
	if o.noEMA {
		weights = "raw"
	}
	a.log.Info().Str("checkpoint", o.checkpoint).Int("step", rm.Step).Str("weights", weights).Str("data", path).Str("split", o.split).
		Int("tokens", len(seq)).Int("windows", n).Int("windows_available", len(es.Windows)).Int("dropped_tokens", es.Dropped).
		Int("samples", o.samples).Int("discrete_T", o.discrete).Uint64("seed", o.seed).Msg("evaluating")
	bar := a.newBar(n*o.samples, "eval", "seq")
	t0 := time.Now()
	res, err := ev.Eval(seqs, func(done, total int) { bar.Set(done) })
	a.endBar()
	if err != nil {
		return err
	}
	own := ""
	if corpusFingerprint(ids) == rm.Corpus.Fingerprint {
		own = " (the run's own corpus)"
	}
	timeMode := "continuous time"
	if o.discrete > 0 {
		timeMode = fmt.Sprintf("discrete time, T=%d", o.discrete)
	}
	w := a.stdout
	fmt.Fprintf(w, "Checkpoint %s (step %d, %s weights, L=%d, V=%d, tokenizer %s)\n", o.checkpoint, rm.Step, weights, L, rm.Model.Vocab, rm.Tok.Name())
	fmt.Fprintf(w, "Data: %s%s: %d tokens; %d of %d non-overlapping windows evaluated = %d tokens; %d tokens after the last full window dropped\n",
		what, own, len(seq), n, len(es.Windows), n*L, es.Dropped)
	fmt.Fprintf(w, "Estimator: %s, %d sample(s) per window, seed %d, %.1fs\n", timeMode, o.samples, o.seed, time.Since(t0).Seconds())
	order := []struct {
		name string
		b    diffusion.BoundResult
	}{{"paper-code", res.PaperCode}, {"exact", res.Exact}}
	if bound == diffusion.BoundExact {
		order[0], order[1] = order[1], order[0]
	}
	for i, x := range order {
		mark := " "
		if i == 0 {
			mark = "*"
		}
		fmt.Fprintf(w, "%s %-10s NELBO %.4f %s bits/token   perplexity ≤ %.4f   (%.4f nats/token)\n", mark, x.name, x.b.BitsPerToken,
			pmString(x.b.StdErrBits), x.b.Perplexity, x.b.NatsPerToken)
	}
	printTerms(w, res)
	return nil
}

func pmString(se float64) string {
	if math.IsNaN(se) {
		return "± n/a (one window)"
	}
	return fmt.Sprintf("± %.4f", se)
}

func printTerms(w io.Writer, r diffusion.EvalResult) {
	fmt.Fprintf(w, "  terms (nats/token): diffusion %.5f, reconstruction %.6f, prior %.6f (exact bound only)\n",
		r.DiffusionNats, r.ReconNats, r.PriorNats)
}
