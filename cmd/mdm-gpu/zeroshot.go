package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/data/fetch"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
	"github.com/mdm-gpu/mdm-gpu/engine/zeroshot"
)

// Zero-shot evaluation (issue 7; md4.md §7 Tab. 1): the perplexity bound of a GPT-2-BPE
// checkpoint on held-out corpora (LAMBADA, WikiText-2, PTB, WikiText-103, LM1B) with the
// exact protocol printed beside every number, since the paper leaves it open.

// zeroShotResult is one dataset's result in the --json output.
type zeroShotResult struct {
	zeroshot.Report
	Seconds float64 `json:"seconds"`
}

// zeroShotOutput is the --json output of 'eval --zero-shot'.
type zeroShotOutput struct {
	Checkpoint string           `json:"checkpoint"`
	Step       int              `json:"checkpoint_step"`
	Weights    string           `json:"weights"`
	Headline   string           `json:"headline_bound"`
	Results    []zeroShotResult `json:"results"`
	Skipped    []string         `json:"skipped,omitempty"`
}

// zeroShotNames expands --zero-shot (comma-separated names, or "all").
func zeroShotNames(s string) ([]string, bool, error) {
	var names []string
	if strings.TrimSpace(s) == "all" {
		for _, sp := range zeroshot.Specs() {
			names = append(names, sp.Name)
		}
		return names, true, nil
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		switch n { // the 'data fetch' spellings are accepted too
		case "wikitext-2":
			n = "wikitext2"
		case "wikitext-103":
			n = "wikitext103"
		case "1bw", "lm1b":
			n = "lm1b"
		}
		if n == "" || seen[n] {
			continue
		}
		if _, err := zeroshot.Lookup(n); err != nil {
			return nil, false, usagef("--zero-shot %q: %s (or all)", s, strings.TrimPrefix(err.Error(), "zeroshot: "))
		}
		seen[n] = true
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, false, usagef("--zero-shot %q: name at least one dataset (ptb, wikitext2, wikitext103, lambada, lm1b, or all)", s)
	}
	return names, false, nil
}

// resolveZeroShot finds a dataset's file under dir: dir/<fetch name>/, dir/<name>/ or dir.
func resolveZeroShot(spec zeroshot.Spec, dir, split string) (string, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return dir, nil // --data-dir names the file itself
	}
	var firstErr error
	seen := map[string]bool{}
	for _, d := range []string{filepath.Join(dir, spec.Fetch), filepath.Join(dir, spec.Name), dir} {
		if seen[d] {
			continue
		}
		seen[d] = true
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			continue
		}
		p, err := spec.Resolve(d, split)
		if err == nil {
			return p, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		_, firstErr = spec.Resolve(dir, split)
	}
	return "", fmt.Errorf("%s (looked in %s, its %s/ and %s/ subdirectories; set --data-dir)", strings.TrimPrefix(firstErr.Error(), "zeroshot: "), dir, spec.Fetch, spec.Name)
}

func (a *app) zeroShot(o evalOpts, lm *loadedModel, bound diffusion.Bound) error {
	rm := lm.rm
	if rm.Model.Pixels() {
		return fmt.Errorf("--zero-shot: checkpoint %s is a pixel (image) model; zero-shot text evaluation needs a GPT-2 BPE checkpoint", o.checkpoint)
	}
	mode := zeroshot.Mode(o.zsMode)
	if mode != zeroshot.ModePack && mode != zeroshot.ModePad {
		return usagef("--zero-shot-mode %q: valid: pack (documents with EOS concatenated and cut into blocks, SEDD/MDLM) or pad (one document per block, pads never attended or scored)", o.zsMode)
	}
	if o.windows != 0 {
		return usagef("--windows %d: zero-shot evaluation scores every block of the protocol; drop --windows", o.windows)
	}
	split := o.split
	switch split {
	case "held-out", "test":
		split = "test"
	case "valid", "validation":
		split = "valid"
	default:
		return usagef("--split %q with --zero-shot: valid: test (default), valid", o.split)
	}
	names, all, err := zeroShotNames(o.zeroShot)
	if err != nil {
		return err
	}
	if _, ok := rm.Tok.(interface{ EOS() int32 }); !ok {
		return fmt.Errorf("--zero-shot: checkpoint %s uses the %s tokenizer, which has no EOS token; the zero-shot protocol (md4.md §7) needs a GPT-2 BPE checkpoint (train with --tokenizer gpt2 or on a corpus from 'mdm-gpu prepare')",
			o.checkpoint, rm.Tok.Name())
	}
	dir := o.dataDir
	if dir == "" {
		if dir, err = fetch.DefaultRoot(); err != nil {
			return err
		}
	}
	L, V := rm.Model.SeqLen, rm.Model.Vocab
	weights := "EMA"
	if o.noEMA {
		weights = "raw"
	}
	out := zeroShotOutput{Checkpoint: o.checkpoint, Step: rm.Step, Weights: strings.ToLower(weights), Headline: bound.String()}
	type job struct {
		spec zeroshot.Spec
		file string
	}
	var jobs []job
	for _, n := range names {
		spec, _ := zeroshot.Lookup(n)
		file, err := resolveZeroShot(spec, dir, split)
		if err != nil {
			if all {
				out.Skipped = append(out.Skipped, fmt.Sprintf("%s: %v", n, err))
				a.log.Info().Str("dataset", n).Err(err).Msg("skipped: files not found")
				continue
			}
			return fmt.Errorf("--zero-shot %s: %w", n, err)
		}
		jobs = append(jobs, job{spec, file})
	}
	if len(jobs) == 0 {
		return fmt.Errorf("--zero-shot all: none of the datasets was found under %s:\n  %s\nfetch them with 'mdm-gpu data fetch NAME' or set --data-dir", dir, strings.Join(out.Skipped, "\n  "))
	}
	est := diffusion.Estimator{Sched: lm.sched, L: L, V: V, T: o.discrete, Bound: bound}
	ev, err := newRunEvaluator(lm.m, train.EvalConfig{Batch: o.batch, Samples: o.samples, Seed: o.seed, Antithetic: true, Est: est})
	if err != nil {
		return err
	}
	defer ev.Free()
	w := a.stdout
	if !o.json {
		fmt.Fprintf(w, "Checkpoint %s (step %d, %s weights, L=%d, V=%d, tokenizer %s)\n", o.checkpoint, rm.Step, weights, L, V, rm.Tok.Name())
	}
	for _, j := range jobs {
		p, err := zeroshot.DefaultProtocol(j.spec.Name, split, rm.Tok, L, o.samples, o.seed)
		if err != nil {
			return err
		}
		p.Mode = mode
		if o.discrete > 0 {
			p.Bound, p.DiscreteT = zeroshot.BoundDiscrete, o.discrete
		}
		if err := p.CheckModel(L, V, rm.TokFP); err != nil {
			return fmt.Errorf("--zero-shot %s: %w", j.spec.Name, err)
		}
		ed, err := zeroshot.Load(j.spec, j.file, rm.Tok, p)
		if err != nil {
			return fmt.Errorf("--zero-shot %s (%s): %w", j.spec.Name, j.file, err)
		}
		pr := ed.Protocol
		a.log.Info().Str("dataset", pr.Dataset).Str("file", j.file).Str("mode", string(pr.Mode)).Int("blocks", pr.Blocks).
			Int64("scored_tokens", pr.ScoredTokens).Int64("dropped_tokens", pr.DroppedTokens).Int64("pad_tokens", pr.PadTokens).
			Int("samples", o.samples).Int("discrete_T", o.discrete).Msg("zero-shot evaluation")
		bar := a.newBar(pr.Blocks*o.samples, "zero-shot "+pr.Dataset, "blocks")
		t0 := time.Now()
		var res diffusion.EvalResult
		progress := func(done, total int) { bar.Set(done) }
		if mode == zeroshot.ModePad {
			pe, ok := ev.(*train.Evaluator)
			if !ok {
				a.endBar()
				return fmt.Errorf("--zero-shot-mode pad: GenMD4 checkpoints are evaluated in pack mode only")
			}
			res, err = pe.EvalPadded(ed.Tokens, ed.Lens, progress)
		} else {
			res, err = ev.Eval(ed.Tokens, progress)
		}
		a.endBar()
		if err != nil {
			return fmt.Errorf("--zero-shot %s: %w", pr.Dataset, err)
		}
		rep, err := zeroshot.NewReport(pr, res)
		if err != nil {
			return err
		}
		secs := time.Since(t0).Seconds()
		out.Results = append(out.Results, zeroShotResult{Report: rep, Seconds: math.Round(secs*1000) / 1000})
		if o.json {
			continue
		}
		fmt.Fprintf(w, "\n== %s %s ==\n", pr.Dataset, pr.Split)
		fmt.Fprintf(w, "Protocol: %s\n", pr.String())
		order := []struct {
			name string
			b    zeroshot.BoundReport
		}{{"paper-code", rep.PaperCode}, {"exact", rep.Exact}}
		if bound == diffusion.BoundExact {
			order[0], order[1] = order[1], order[0]
		}
		for i, x := range order {
			mark := " "
			if i == 0 {
				mark = "*"
			}
			fmt.Fprintf(w, "%s %-10s perplexity ≤ %.3f %s   (%.4f %s bits/token, %.4f nats/token)\n", mark, x.name, x.b.Perplexity,
				pmString(x.b.PerplexityStdErr), x.b.BitsPerToken, pmString(x.b.BitsStdErr), x.b.NatsPerToken)
		}
		fmt.Fprintf(w, "  %d blocks, %d tokens scored, %.1fs\n", rep.Blocks, rep.Tokens, secs)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, s := range out.Skipped {
		fmt.Fprintf(w, "skipped %s\n", s)
	}
	return nil
}
