package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
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
	zeroShot   string
	zsMode     string
	dataDir    string
	json       bool
}

func newEvalCmd(a *app) *cobra.Command {
	var o evalOpts
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Estimate the NELBO bound (bits/token or bits/dim) on text, prepared corpora, images or zero-shot sets",
		Long: `Estimate MD4's negative ELBO, an upper bound on the negative log-likelihood, of a trained
checkpoint on a text file (or a prepared corpus, images or zero-shot sets: see below), in
bits per token with its Monte Carlo standard error and the perplexity bound 2^bits.

The file is tokenised with the checkpoint's tokenizer and cut into non-overlapping windows
of the model's context length L (the tokens after the last full window are dropped and
reported). --split held-out (default) evaluates the last fraction of the file that the
training run held out (use it with the training corpus); --split all evaluates the whole
file. Each window gets --samples K independent (time, mask) draws (md4.md §2.3); with
--discrete T the finite-T bound of the T-step discrete-time model is estimated instead of
the continuous-time one. Both the paper-code bound (the md4 code's, without the tiny prior
term) and the exact bound are printed; --bound chooses the headline. The draws are fixed by
--seed, so the result is reproducible bit for bit. EMA weights are used unless --no-ema.

A checkpoint trained on a prepared corpus ('mdm-gpu prepare') is evaluated on the
corpus's validation split (--split held-out; --split train for the training split), in the
aligned L-token blocks of the packed document stream. An image checkpoint is evaluated on
its run's evaluation images (or every image of --data FILE) in bits per dimension.

--zero-shot NAME[,NAME...] (ptb, wikitext2, wikitext103, lambada, lm1b, or all) evaluates
a GPT-2 BPE checkpoint on held-out corpora in their usual file formats, found under
--data-dir (default: where 'mdm-gpu data fetch' puts them), with the standard
detokenisers: each document is encoded, EOS follows it, and the stream is cut into blocks
of the model's L tokens (--zero-shot-mode pack, SEDD's and MDLM's protocol; the tail that
does not fill a block is dropped and counted) or each document gets its own padded
block(s) (--zero-shot-mode pad: pads are never attended, masked or scored). Every result is
printed with its protocol: block size, packing or padding, EOS policy, K time samples,
continuous or discrete-T bound, split, tokens scored and dropped; --json prints them as one
JSON object.`,
		Example: `  # the held-out bound of a run on its own corpus (the path is taken from the checkpoint)
  mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors

  # another file, 4 samples per window, the T=1000 discrete-time bound
  mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors --data other.txt --split all --samples 4 --discrete 1000

  # zero-shot perplexity bounds of a GPT-2 BPE model (md4.md Tab. 1), protocol printed with each
  mdm-gpu data fetch ptb && mdm-gpu data fetch wikitext-2 --unpack
  mdm-gpu eval --checkpoint runs/owt/checkpoint.safetensors --zero-shot ptb,wikitext2 --samples 4
  mdm-gpu eval --checkpoint runs/owt/checkpoint.safetensors --zero-shot all --data-dir ~/datasets --json

  # an image model: bits per dimension on its test images
  mdm-gpu eval --checkpoint runs/pixels-tiny/checkpoint.safetensors`,
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
	fs.StringVar(&o.zeroShot, "zero-shot", "", "zero-shot evaluation on held-out corpora: ptb, wikitext2, wikitext103, lambada, lm1b (comma-separated) or all")
	fs.StringVar(&o.zsMode, "zero-shot-mode", "pack", "zero-shot layout: pack (documents + EOS concatenated, cut into L-token blocks) or pad (one document per padded block)")
	fs.StringVar(&o.dataDir, "data-dir", "", "zero-shot: directory holding the datasets (or their NAME/ subdirectories); default $MDM_DATA_DIR or ~/.cache/mdm-gpu/datasets")
	fs.BoolVar(&o.json, "json", false, "print the result(s) as JSON")
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
	case o.zeroShot == "" && o.split != "held-out" && o.split != "all" && o.split != "train":
		return usagef("--split %q: valid: held-out, all (text files), train (prepared corpora)", o.split)
	case o.zeroShot == "" && cmd.Flags().Changed("zero-shot-mode"):
		return usagef("--zero-shot-mode needs --zero-shot NAME")
	}
	bound, err := diffusion.ParseBound(o.bound)
	if err != nil {
		return usagef("--bound %q: valid: paper-code, exact", o.bound)
	}
	if o.zeroShot != "" {
		if _, _, err := zeroShotNames(o.zeroShot); err != nil {
			return err
		}
	}
	lm, err := a.loadModel(o.checkpoint, o.device, o.precision, o.threads, o.noEMA)
	if err != nil {
		return err
	}
	defer lm.be.close()
	if o.zeroShot != "" {
		return a.zeroShot(o, lm, bound)
	}
	rm := lm.rm
	var ed *evalData
	switch {
	case rm.Model.Pixels():
		ed, err = imageEvalData(rm, o.data, o.windows)
	case (o.data == "" && rm.Corpus.Format == "shards") || (o.data != "" && corpusFormat(o.data, o.format) == "shards"):
		path := o.data
		if path == "" {
			path = rm.Corpus.Path
		}
		ed, err = shardEvalData(rm, path, o.split, o.windows)
	default:
		ed, err = textEvalData(cmd, o, rm)
	}
	if err != nil {
		return err
	}
	L := rm.Model.SeqLen
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
	a.log.Info().Str("checkpoint", o.checkpoint).Int("step", rm.Step).Str("weights", weights).Str("data", ed.What).Str("split", o.split).
		Int("sequences", ed.N).Int("sequences_available", ed.Available).
		Int("samples", o.samples).Int("discrete_T", o.discrete).Uint64("seed", o.seed).Msg("evaluating")
	bar := a.newBar(ed.N*o.samples, "eval", "seq")
	t0 := time.Now()
	res, err := ev.Eval(ed.Seqs, func(done, total int) { bar.Set(done) })
	a.endBar()
	if err != nil {
		return err
	}
	timeMode := "continuous time"
	if o.discrete > 0 {
		timeMode = fmt.Sprintf("discrete time, T=%d", o.discrete)
	}
	order := []struct {
		name string
		b    diffusion.BoundResult
	}{{"paper-code", res.PaperCode}, {"exact", res.Exact}}
	if bound == diffusion.BoundExact {
		order[0], order[1] = order[1], order[0]
	}
	w := a.stdout
	if o.json {
		out := map[string]any{"checkpoint": o.checkpoint, "checkpoint_step": rm.Step, "weights": strings.ToLower(weights), "data": ed.What,
			"sequences": ed.N, "sequences_available": ed.Available, "tokens": res.Tokens, "unit": ed.Unit, "samples": o.samples,
			"discrete_steps": o.discrete, "seed": o.seed, "headline_bound": bound.String()}
		for _, x := range order {
			b := map[string]float64{"bits": x.b.BitsPerToken, "bits_stderr": jsonNum(x.b.StdErrBits), "nats": x.b.NatsPerToken}
			if ed.Unit != "bits/dim" {
				b["perplexity"] = x.b.Perplexity
			}
			out[strings.ReplaceAll(x.name, "-", "_")] = b
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(w, "Checkpoint %s (step %d, %s weights, L=%d, V=%d, tokenizer %s)\n", o.checkpoint, rm.Step, weights, L, rm.Model.Vocab, rm.Tok.Name())
	for _, l := range ed.Lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintf(w, "Estimator: %s, %d sample(s) per window, seed %d, %.1fs\n", timeMode, o.samples, o.seed, time.Since(t0).Seconds())
	for i, x := range order {
		mark := " "
		if i == 0 {
			mark = "*"
		}
		if ed.Unit == "bits/dim" {
			fmt.Fprintf(w, "%s %-10s NELBO %.4f %s bits/dim   (%.4f nats/dim)\n", mark, x.name, x.b.BitsPerToken, pmString(x.b.StdErrBits), x.b.NatsPerToken)
			continue
		}
		fmt.Fprintf(w, "%s %-10s NELBO %.4f %s bits/token   perplexity ≤ %.4f   (%.4f nats/token)\n", mark, x.name, x.b.BitsPerToken,
			pmString(x.b.StdErrBits), x.b.Perplexity, x.b.NatsPerToken)
	}
	printTerms(w, res)
	return nil
}

// jsonNum maps NaN (no standard error from one sequence) to -1 for JSON.
func jsonNum(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return -1
	}
	return x
}

// textEvalData reads, tokenises and windows a text file for eval.
func textEvalData(cmd *cobra.Command, o evalOpts, rm *runMeta) (*evalData, error) {
	if o.split == "train" {
		return nil, usagef("--split train is for prepared corpora; a text file has held-out and all")
	}
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
		return nil, err
	}
	ids, err := rm.Tok.Encode(text)
	if err != nil {
		var uc *data.UnknownCharError
		if errors.As(err, &uc) {
			return nil, fmt.Errorf("%s: character %q (U+%04X) at byte offset %d (line %d) is not in the checkpoint's %d-character vocabulary; evaluate text the model can represent (or train with --tokenizer text8 or byte)",
				path, uc.Char, uc.Char, uc.Offset, uc.Line, uc.VocabSize)
		}
		return nil, fmt.Errorf("tokenizing %s: %w", path, err)
	}
	seq := ids
	what := "all of " + path
	if o.split == "held-out" {
		_, held, err := data.Split(ids, rm.Config.HeldOut)
		if err != nil {
			return nil, fmt.Errorf("--split held-out of %s (%d tokens, held-out fraction %g): %w", path, len(ids), rm.Config.HeldOut, err)
		}
		seq = held
		what = fmt.Sprintf("the held-out split (last %g) of %s", rm.Config.HeldOut, path)
	}
	L := rm.Model.SeqLen
	win, err := data.NewWindows(seq, L)
	if err != nil {
		hint := "evaluate a longer file"
		if o.split != "all" {
			hint += " (or --split all)"
		}
		return nil, fmt.Errorf("%s has %d tokens, fewer than one window of the model's context length L=%d; %s", what, len(seq), L, hint)
	}
	es := win.EvalWindows()
	seqs, n := selectWindows(es, o.windows)
	own := ""
	if corpusFingerprint(ids) == rm.Corpus.Fingerprint {
		own = " (the run's own corpus)"
	}
	ed := &evalData{Seqs: seqs, N: n, Available: len(es.Windows), What: what, Unit: "bits/token", OwnData: own != ""}
	ed.Lines = append(ed.Lines, fmt.Sprintf("Data: %s%s: %d tokens; %d of %d non-overlapping windows evaluated = %d tokens; %d tokens after the last full window dropped",
		what, own, len(seq), n, len(es.Windows), n*L, es.Dropped))
	return ed, nil
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
