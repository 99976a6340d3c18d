package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/data/imagepng"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/sample"
)

type sampleOpts struct {
	checkpoint  string
	sampler     string
	steps       int
	grid        string
	seed        uint64
	num         int
	batch       int
	mode        string
	topP        float64
	noEMA       bool
	prompt      string
	template    string
	placeholder string
	json        bool
	png         string
	pngScale    int
	device      string
	precision   string
	threads     int
	stepsSet    bool // --steps was given (refused with the first-hitting sampler)
	gridSet     bool // --grid was given (refused with the first-hitting sampler)
}

func newSampleCmd(a *app) *cobra.Command {
	var o sampleOpts
	cmd := &cobra.Command{
		Use:   "sample",
		Short: "Generate text or images from a checkpoint (ancestral or first-hitting sampler; prompts, infilling)",
		Long: `Generate sequences of the model's context length L with MD4's ancestral sampler
(md4.md §5.1, paper Alg. 2): start from an all-masked sequence, run --steps reverse steps on
a cosine or uniform time grid (one network evaluation each), then fill any position still
masked with the argmax at t = 0, so the output never contains a mask.

--sampler first-hitting (Zheng et al. 2024; MD4 checkpoints, exact mode) draws the exact
time at which the next position unmasks instead of stepping through a grid: one network
evaluation per unmasked token, at most L per batch. It has no time grid, so --steps and
--grid do not apply to it (and are refused).

--mode exact (default) draws every token exactly in float64 (a Bernoulli unmask decision,
then the inverse CDF of the model's distribution; md4.md §5.4). --mode jax-compat
reproduces the paper code's float32 Gumbel-max, which silently truncates rare tokens (an
implicit top-p, pitfalls B01); use it only to reproduce the paper. The mode is printed
with the samples.

Conditioning (infilling): --prompt TEXT fixes the first positions to TEXT and generates
the rest. --template fixes the characters of a template and generates every position
written as the placeholder character (--placeholder, default "_"), one placeholder = one
token; positions after the end of the template are generated too. Example:
--template "the ___ sat on the ___" generates three characters in each gap.

Beside the samples it prints the sampler report (mode, grid, steps, network evaluations,
time) and the unigram entropy of the generated tokens next to that of the training data
(stored in the checkpoint); a much lower entropy means a degenerate, repetitive sampler or
model (pitfalls B02) and is flagged.

Image (pixel-token) checkpoints generate images: the samples are written as a PNG grid
(--png FILE, default samples.png beside the checkpoint; --png-scale magnifies the pixels),
never containing a mask (the final argmax decode fills every position), and the text output
is a short summary.`,
		Example: `  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --num 4
  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --steps 256 --grid uniform --seed 7
  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --sampler first-hitting --num 4
  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --prompt "the jury said"
  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --template "the ___ sat on the ___ and"
  mdm-gpu sample --checkpoint runs/pixels-tiny/checkpoint.safetensors --num 16 --steps 256 --png mnist.png`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stepsSet, o.gridSet = cmd.Flags().Changed("steps"), cmd.Flags().Changed("grid")
			return a.sample(o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint file written by 'mdm-gpu train' (required)")
	fs.StringVar(&o.sampler, "sampler", "ancestral", "ancestral (T steps on a time grid) or first-hitting (one network call per unmasked token, at most L; MD4 checkpoints, exact mode)")
	fs.IntVar(&o.steps, "steps", 1000, "ancestral sampler: reverse steps T (network evaluations)")
	fs.StringVar(&o.grid, "grid", "cosine", "ancestral sampler: time grid, cosine (MD4 default) or uniform")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the draws (the same seed gives the same samples)")
	fs.IntVar(&o.num, "num", 1, "number of samples")
	fs.IntVar(&o.batch, "batch", 0, "samples generated together; 0 = min(--num, 16)")
	fs.StringVar(&o.mode, "mode", "exact", "exact (float64 two-stage draws) or jax-compat (the paper code's float32 Gumbel; biased; ancestral sampler only)")
	fs.Float64Var(&o.topP, "top-p", 0, "nucleus filtering of the model's distribution in (0, 1); 0 or 1 = off")
	fs.BoolVar(&o.noEMA, "no-ema", false, "use the raw weights instead of the EMA weights")
	fs.StringVar(&o.prompt, "prompt", "", "fixed prefix; the rest of the sequence is generated")
	fs.StringVar(&o.template, "template", "", `infilling template: fixed text with placeholder characters to generate, e.g. "the ___ sat"`)
	fs.StringVar(&o.placeholder, "placeholder", "_", "the template character that marks a position to generate")
	fs.BoolVar(&o.json, "json", false, "print one JSON object (samples with token ids, and the report) instead of text")
	fs.StringVar(&o.png, "png", "", "image checkpoints: write the samples as a PNG grid to this file (default: samples.png beside the checkpoint)")
	fs.IntVar(&o.pngScale, "png-scale", 4, "image checkpoints: draw every pixel as an N×N block in the PNG grid")
	fs.StringVar(&o.device, "device", "auto", "backend: auto (a GPU if present, else the CPU), cpu, sim, cuda, cuda:N")
	fs.StringVar(&o.precision, "precision", "auto", "auto (bf16 on cuda, f32 elsewhere), f32, bf16")
	fs.IntVar(&o.threads, "threads", 0, "CPU worker goroutines; 0 = all cores")
	return cmd
}

// buildInit returns the initial sequence: mask (= V) where tokens are generated, fixed
// token ids elsewhere, and how many positions are fixed.
func buildInit(tok data.Tokenizer, L int, prompt, template, placeholder string) ([]int32, int, error) {
	V := int32(tok.VocabSize())
	init := make([]int32, L)
	for i := range init {
		init[i] = V
	}
	switch {
	case prompt != "" && template != "":
		return nil, 0, usagef("--prompt and --template cannot be combined: a prompt is a template whose gaps are all at the end")
	case prompt != "":
		ids, err := encodeFixed(tok, prompt, 0, "--prompt")
		if err != nil {
			return nil, 0, err
		}
		if len(ids) > L {
			return nil, 0, usagef("--prompt is %d tokens long but the model's context is L=%d; shorten it", len(ids), L)
		}
		copy(init, ids)
		return init, len(ids), nil
	case template != "":
		if utf8.RuneCountInString(placeholder) != 1 {
			return nil, 0, usagef("--placeholder %q must be exactly one character", placeholder)
		}
		ph, _ := utf8.DecodeRuneInString(placeholder)
		var out []int32
		fixed := 0
		var seg strings.Builder
		segStart := 0
		flush := func() error {
			if seg.Len() == 0 {
				return nil
			}
			ids, err := encodeFixed(tok, seg.String(), segStart, "--template")
			if err != nil {
				return err
			}
			out = append(out, ids...)
			fixed += len(ids)
			seg.Reset()
			return nil
		}
		for i, r := range template {
			if r == ph {
				if err := flush(); err != nil {
					return nil, 0, err
				}
				out = append(out, V)
				continue
			}
			if seg.Len() == 0 {
				segStart = i
			}
			seg.WriteRune(r)
		}
		if err := flush(); err != nil {
			return nil, 0, err
		}
		if len(out) > L {
			return nil, 0, usagef("--template is %d tokens long but the model's context is L=%d; shorten it", len(out), L)
		}
		if fixed == len(out) && len(out) == L {
			return nil, 0, usagef("--template has no placeholder %q and fills the whole context: nothing to generate", placeholder)
		}
		copy(init, out)
		return init, fixed, nil
	}
	return init, 0, nil
}

// encodeFixed encodes fixed text, naming the flag and the character position on error.
func encodeFixed(tok data.Tokenizer, s string, base int, flag string) ([]int32, error) {
	ids, err := tok.Encode(s)
	if err != nil {
		var uc *data.UnknownCharError
		if errors.As(err, &uc) {
			return nil, fmt.Errorf("%s: character %q (U+%04X) at byte %d is not in the model's %d-character vocabulary; use characters of the training corpus",
				flag, uc.Char, uc.Char, base+uc.Offset, uc.VocabSize)
		}
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return ids, nil
}

type sampleJSON struct {
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
}

type sampleReport struct {
	Checkpoint      string  `json:"checkpoint"`
	CheckpointStep  int     `json:"checkpoint_step"`
	Weights         string  `json:"weights"`
	Sampler         string  `json:"sampler"`
	Mode            string  `json:"mode"`
	Grid            string  `json:"grid,omitempty"`  // ancestral only
	Steps           int     `json:"steps,omitempty"` // ancestral only
	TopP            float64 `json:"top_p"`
	NFE             int     `json:"nfe"`
	FinalDecoded    int     `json:"final_decoded"`
	Seconds         float64 `json:"seconds"`
	Seed            uint64  `json:"seed"`
	SeqLen          int     `json:"seq_len"`
	Generated       int     `json:"generated_tokens"`
	SampleEntropy   jfloat  `json:"sample_unigram_entropy_bits"`
	DataEntropy     jfloat  `json:"data_unigram_entropy_bits"`
	LowEntropyAlarm bool    `json:"low_entropy_warning"`
	PNG             string  `json:"png,omitempty"`
}

// pngCols is the number of images per row of a sample grid: about square.
func pngCols(n int) int {
	c := 1
	for c*c < n {
		c++
	}
	return c
}

func (a *app) sample(o sampleOpts) error {
	if _, err := sample.ParseSampler(o.sampler); err != nil {
		return usagef("--sampler %q: valid: ancestral, first-hitting", o.sampler)
	}
	firstHit := o.sampler == sample.NameFirstHitting
	if firstHit && (o.stepsSet || o.gridSet) {
		var given []string
		if o.stepsSet {
			given = append(given, "--steps")
		}
		if o.gridSet {
			given = append(given, "--grid")
		}
		g := strings.Join(given, " and ")
		return usagef("%s with --sampler first-hitting: the first-hitting sampler draws exact event times and has no time grid, so drop %s (or use --sampler ancestral)", g, g)
	}
	switch {
	case o.steps < 1:
		return usagef("--steps %d: must be at least 1", o.steps)
	case o.num < 1:
		return usagef("--num %d: must be at least 1", o.num)
	case o.batch < 0:
		return usagef("--batch %d: must be ≥ 1 (0 = min(--num, 16))", o.batch)
	case !(o.topP >= 0 && o.topP <= 1):
		return usagef("--top-p %v: must be in [0, 1] (0 or 1 disables it)", o.topP)
	case o.pngScale < 1 || o.pngScale > 64:
		return usagef("--png-scale %d: must be in [1, 64]", o.pngScale)
	}
	grid, err := diffusion.ParseGrid(o.grid)
	if err != nil {
		return usagef("--grid %q: valid: cosine, uniform", o.grid)
	}
	var mode ops.SampleMode
	switch o.mode {
	case "exact":
		mode = ops.SampleExact
	case "jax-compat":
		mode = ops.SampleJAXCompat
	default:
		return usagef("--mode %q: valid: exact (float64, default), jax-compat (the paper code's float32 Gumbel)", o.mode)
	}
	if firstHit && mode != ops.SampleExact {
		return usagef("--mode %s with --sampler first-hitting: the first-hitting sampler draws tokens exactly (float64); the %s mode is for the ancestral sampler only: drop --mode or use --sampler ancestral", o.mode, o.mode)
	}
	lm, err := a.loadModel(o.checkpoint, o.device, o.precision, o.threads, o.noEMA)
	if err != nil {
		return err
	}
	defer lm.be.close()
	rm := lm.rm
	L, V := rm.Model.SeqLen, rm.Model.Vocab
	pixels := rm.Model.Pixels()
	pngPath := o.png
	switch {
	case pixels && (o.prompt != "" || o.template != ""):
		return usagef("--prompt and --template are for text models; %s is an image model", o.checkpoint)
	case !pixels && o.png != "":
		return usagef("--png %s: %s is a text model; PNG grids are for image (pixel-token) checkpoints", o.png, o.checkpoint)
	case pixels && pngPath == "":
		pngPath = filepath.Join(filepath.Dir(o.checkpoint), "samples.png")
	}
	init1, fixed, err := buildInit(rm.Tok, L, o.prompt, o.template, o.placeholder)
	if err != nil {
		return err
	}
	batch := o.batch
	if batch == 0 {
		batch = min(o.num, 16)
	}
	weights := "ema"
	if o.noEMA {
		weights = "raw"
	}
	ev := a.log.Info().Str("checkpoint", o.checkpoint).Int("step", rm.Step).Str("weights", weights).Int("num", o.num).Int("batch", batch).
		Str("sampler", o.sampler)
	rep := sampleReport{Checkpoint: o.checkpoint, CheckpointStep: rm.Step, Weights: weights, Sampler: o.sampler, Mode: mode.String(),
		TopP: o.topP, Seed: o.seed, SeqLen: L}
	perBatch := L // first-hitting: at most L events (network calls) per batch
	if !firstHit {
		ev = ev.Int("steps", o.steps).Str("grid", grid.String())
		rep.Grid, rep.Steps, perBatch = grid.String(), o.steps, o.steps
	}
	ev.Str("mode", mode.String()).Float64("top_p", o.topP).Uint64("seed", o.seed).Int("L", L).Int("fixed_positions", fixed).Msg("sampling")
	var all []int32
	var generated []int32
	bar := a.newBar(perBatch*((o.num+batch-1)/batch), "sample", "steps")
	t0 := time.Now()
	done := 0
	samplers := map[int]sample.Runner{}
	scfg := sample.Config{Steps: o.steps, Grid: grid, Mode: mode, TopP: o.topP, Seed: o.seed, Sched: lm.sched}
	if lm.m.GenSchedule() != nil { // a GenMD4 checkpoint samples with its learned schedule
		scfg.Sched, scfg.GenMD4 = nil, true
	}
	defer func() {
		for _, s := range samplers {
			s.Free()
		}
	}()
	for b0 := 0; b0 < o.num; b0 += batch {
		bn := min(batch, o.num-b0)
		s := samplers[bn]
		if s == nil {
			if s, err = sample.NewRunner(o.sampler, lm.m, scfg, bn); err != nil {
				return err
			}
			samplers[bn] = s
		}
		s.SetIndexOffset(uint64(b0 * L))
		init := make([]int32, 0, bn*L)
		for range bn {
			init = append(init, init1...)
		}
		base := done
		out, r, err := s.Sample(init, func(step, total int) { bar.Set(base + step) })
		if err != nil {
			return err
		}
		done += perBatch
		bar.Set(done)
		rep.NFE += r.NFE
		rep.FinalDecoded += r.Decoded
		all = append(all, out...)
		for i, v := range out {
			if init[i] == int32(V) {
				generated = append(generated, v)
			}
		}
	}
	a.endBar()
	rep.Seconds = math.Round(time.Since(t0).Seconds()*1000) / 1000
	for i, v := range all {
		if v < 0 || int(v) >= V {
			return fmt.Errorf("internal error: sample token %d at position %d is outside [0, %d)", v, i, V)
		}
	}
	rep.Generated = len(generated)
	rep.SampleEntropy = jfloat(sample.UnigramEntropy(generated))
	rep.DataEntropy = jfloat(rm.DataEntropy)
	if len(generated) == 0 {
		rep.SampleEntropy = jfloat(math.NaN())
	}
	rep.LowEntropyAlarm = !math.IsNaN(rm.DataEntropy) && len(generated) > 0 && float64(rep.SampleEntropy) < 0.8*rm.DataEntropy
	if rep.LowEntropyAlarm {
		a.log.Warn().Float64("sample_entropy_bits", round4(float64(rep.SampleEntropy))).Float64("data_entropy_bits", round4(rm.DataEntropy)).
			Msg("the samples' unigram entropy is far below the training data's: repetitive or degenerate samples (pitfalls B02)")
	}
	w := a.stdout
	if pixels {
		if err := imagepng.WriteTokenGrid(pngPath, all, rm.Model.PixelH, rm.Model.PixelW, rm.Model.PixelC,
			imagepng.Options{Scale: o.pngScale, Cols: pngCols(o.num)}); err != nil {
			return err
		}
		rep.PNG = pngPath
		a.log.Info().Str("png", pngPath).Int("images", o.num).Msg("sample grid written")
	}
	if o.json {
		var js []sampleJSON
		for k := range o.num {
			ids := all[k*L : (k+1)*L]
			js = append(js, sampleJSON{Text: rm.Tok.Decode(ids), IDs: ids})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"samples": js, "report": rep})
	}
	if pixels {
		fmt.Fprintf(w, "%d image sample(s) of %dx%dx%d (pixel tokens 0–255, no mask left) written as a PNG grid: %s\n",
			o.num, rm.Model.PixelH, rm.Model.PixelW, rm.Model.PixelC, pngPath)
	} else {
		for k := range o.num {
			fmt.Fprintf(w, "=== sample %d of %d ===\n%s\n", k+1, o.num, rm.Tok.Decode(all[k*L:(k+1)*L]))
		}
	}
	modeNote := "exact float64 two-stage categorical draws (md4.md §5.4)"
	if mode == ops.SampleJAXCompat {
		modeNote = "the paper code's float32 Gumbel-max: biased towards frequent tokens (pitfalls B01), for paper reproduction only"
	}
	topP := "off"
	if o.topP > 0 && o.topP < 1 {
		topP = fmt.Sprint(o.topP)
	}
	gridNote := fmt.Sprintf("grid %s | steps %d", grid, o.steps)
	if firstHit {
		gridNote = "no grid (event times drawn exactly; at most L network calls per batch)"
	}
	if scfg.GenMD4 {
		gridNote += " | GenMD4 learned per-token schedule"
	}
	fmt.Fprintf(w, "--- report: sampler %s | mode %s (%s) | %s | NFE %d (incl. final decode; %d positions decoded by argmax at t=0) | top-p %s | seed %d | %d sample(s) × L=%d | %s weights of step %d | %.2fs\n",
		o.sampler, mode, modeNote, gridNote, rep.NFE, rep.FinalDecoded, topP, o.seed, o.num, L, weights, rm.Step, rep.Seconds)
	dataEnt := "unknown"
	if !math.IsNaN(rm.DataEntropy) {
		dataEnt = fmt.Sprintf("%.3f bits/token", rm.DataEntropy)
	}
	fmt.Fprintf(w, "--- unigram entropy: samples %.3f bits/token (%d generated tokens; small samples read low), training data %s\n",
		float64(rep.SampleEntropy), len(generated), dataEnt)
	if rep.LowEntropyAlarm {
		fmt.Fprintf(w, "--- WARNING: the samples' entropy is far below the data's: the sampler or model is producing repetitive text (pitfalls B02)\n")
	}
	return nil
}
