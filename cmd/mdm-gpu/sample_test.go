package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sampleOutput struct {
	Samples []sampleJSON `json:"samples"`
	Report  sampleReport `json:"report"`
}

func decodeSamples(t *testing.T, r result) sampleOutput {
	t.Helper()
	var o sampleOutput
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
		t.Fatalf("sample --json output is not JSON: %v\n%s", err, r.stdout)
	}
	return o
}

// TestSampleNeverEmitsMask: for L ∈ {1, 256} and T ∈ {1, 2, 1000} every sample token is a
// real token (no mask id V, and no mask placeholder in the text), pitfalls B05.
func TestSampleNeverEmitsMask(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 8000, 11)
	for _, L := range []int{1, 256} {
		out := filepath.Join(dir, fmt.Sprintf("L%d", L))
		mustCLI(t, tinyArgs(data, out, "--steps", "2", "--seq-len", fmt.Sprint(L), "--held-out", "0.4", "--eval-windows", "2", "--batch", "2")...)
		for _, T := range []int{1, 2, 1000} {
			for _, mode := range []string{"exact", "jax-compat"} {
				if mode == "jax-compat" && T == 1000 {
					continue
				}
				t.Run(fmt.Sprintf("L=%d,T=%d,%s", L, T, mode), func(t *testing.T) {
					num := 3 // two batches: 2 + 1
					if T == 1000 && L == 256 {
						num = 2 // one batch keeps the test fast
					}
					r := mustCLI(t, "sample", "--checkpoint", filepath.Join(out, checkpointName), "--steps", fmt.Sprint(T), "--num", fmt.Sprint(num),
						"--batch", "2", "--seed", "3", "--json", "--mode", mode)
					o := decodeSamples(t, r)
					if len(o.Samples) != num {
						t.Fatalf("got %d samples, want %d", len(o.Samples), num)
					}
					for k, s := range o.Samples {
						if len(s.IDs) != L {
							t.Fatalf("sample %d has %d tokens, want L=%d", k, len(s.IDs), L)
						}
						for i, id := range s.IDs {
							if id < 0 || id >= 27 {
								t.Fatalf("sample %d position %d holds id %d (the mask is 27)", k, i, id)
							}
						}
						if strings.Contains(s.Text, "_") {
							t.Errorf("sample %d text shows a mask placeholder: %q", k, s.Text)
						}
					}
					rep := o.Report
					if rep.Steps != T || rep.Generated != num*L || rep.NFE < 1 || rep.NFE > 2*(T+1) || !strings.Contains(rep.Mode, strings.Split(mode, "-")[0]) {
						t.Errorf("report %+v", rep)
					}
				})
			}
		}
	}
}

func TestSampleTextReportAndInfilling(t *testing.T) {
	ck, _ := refRun(t)
	r := mustCLI(t, "sample", "--checkpoint", ck, "--steps", "20", "--num", "2", "--seed", "1")
	for _, want := range []string{"=== sample 1 of 2 ===", "=== sample 2 of 2 ===", "mode exact-f64", "grid cosine", "steps 20", "NFE", "unigram entropy: samples", "training data"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sample output lacks %q:\n%s", want, r.stdout)
		}
	}
	// Same seed, same samples; another seed, other samples.
	again := mustCLI(t, "sample", "--checkpoint", ck, "--steps", "20", "--num", "2", "--seed", "1", "--json")
	other := mustCLI(t, "sample", "--checkpoint", ck, "--steps", "20", "--num", "2", "--seed", "2", "--json")
	a1 := decodeSamples(t, again)
	if a2 := decodeSamples(t, mustCLI(t, "sample", "--checkpoint", ck, "--steps", "20", "--num", "2", "--seed", "1", "--json")); a1.Samples[0].Text != a2.Samples[0].Text {
		t.Error("the same seed gave different samples")
	}
	if o := decodeSamples(t, other); o.Samples[0].Text == a1.Samples[0].Text {
		t.Error("different seeds gave the same sample")
	}
	if a1.Samples[0].Text == a1.Samples[1].Text {
		t.Error("two samples of one run are identical")
	}
	// Samples in different batches get different draws (sample.Config.IndexOffset).
	if b := decodeSamples(t, mustCLI(t, "sample", "--checkpoint", ck, "--steps", "20", "--num", "2", "--batch", "1", "--seed", "1", "--json")); b.Samples[0].Text == b.Samples[1].Text {
		t.Error("samples of two batches are identical")
	}

	// Template: fixed characters stay, each "_" is generated (the char vocabulary of the
	// test corpus has no "_").
	tmpl := "the ___ sat on the ___."
	o := decodeSamples(t, mustCLI(t, "sample", "--checkpoint", ck, "--steps", "10", "--template", tmpl, "--json"))
	got := o.Samples[0].Text
	for i, c := range tmpl {
		if c != '_' && rune(got[i]) != c {
			t.Fatalf("template position %d: got %q, want %q (sample %q)", i, got[i], c, got)
		}
	}
	if o.Report.Generated != 32-(len(tmpl)-6) {
		t.Errorf("generated %d positions, want %d", o.Report.Generated, 32-(len(tmpl)-6))
	}
	// Another placeholder character.
	o = decodeSamples(t, mustCLI(t, "sample", "--checkpoint", ck, "--steps", "10", "--template", "a ## b", "--placeholder", "#", "--json"))
	if s := o.Samples[0].Text; !strings.HasPrefix(s, "a ") || s[4:6] != " b" {
		t.Errorf("template with placeholder #: %q", s)
	}
	// Prompt: the prefix is kept.
	o = decodeSamples(t, mustCLI(t, "sample", "--checkpoint", ck, "--steps", "10", "--prompt", "the cat", "--json"))
	if !strings.HasPrefix(o.Samples[0].Text, "the cat") {
		t.Errorf("prompt not kept: %q", o.Samples[0].Text)
	}
}

func TestEvalReportsAndShortFile(t *testing.T) {
	ck, data := refRun(t)
	r := mustCLI(t, "eval", "--checkpoint", ck, "--samples", "2", "--seed", "4")
	for _, want := range []string{"the run's own corpus", "held-out split", "non-overlapping windows evaluated", "dropped",
		"paper-code NELBO", "exact      NELBO", "perplexity ≤", "±", "continuous time, 2 sample(s)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "NaN") {
		t.Errorf("eval printed NaN:\n%s", r.stdout)
	}
	// Bitwise reproducible for a fixed seed.
	if r2 := mustCLI(t, "eval", "--checkpoint", ck, "--samples", "2", "--seed", "4"); lines(r2.stdout, "NELBO") != lines(r.stdout, "NELBO") {
		t.Errorf("eval is not reproducible:\n%s\n%s", r.stdout, r2.stdout)
	}
	r = mustCLI(t, "eval", "--checkpoint", ck, "--data", data, "--split", "all", "--discrete", "100", "--bound", "exact", "--no-ema", "--windows", "5")
	for _, want := range []string{"discrete time, T=100", "* exact", "raw weights", "5 of"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, r.stdout)
		}
	}
	// A file shorter than one window: a clear error naming both lengths, never NaN.
	short := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(short, []byte("the cat sat"), 0o644)
	for _, split := range []string{"all", "held-out"} {
		r = cli(t, "eval", "--checkpoint", ck, "--data", short, "--split", split)
		if r.code == 0 || strings.Contains(r.stdout+r.stderr, "NaN") {
			t.Fatalf("short file, --split %s: %v", split, r)
		}
		n := "11 tokens"
		if split == "held-out" {
			n = "2 tokens"
		}
		for _, want := range []string{n, "L=32", short, "evaluate a longer file"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("short file, --split %s: message lacks %q: %s", split, want, r.stderr)
			}
		}
		// --split all is suggested only when it was not given.
		if got, want := strings.Contains(r.stderr, "--split all"), split != "all"; got != want {
			t.Errorf("short file, --split %s: suggests --split all = %v, want %v: %s", split, got, want, r.stderr)
		}
	}
}

// TestFirstHittingClaimsNoGrid: the first-hitting sampler has no time grid, so neither its
// log line, its JSON report nor its text report claims --steps or --grid.
func TestFirstHittingClaimsNoGrid(t *testing.T) {
	ck, _ := refRun(t)
	r := mustCLI(t, "sample", "--checkpoint", ck, "--sampler", "first-hitting", "--threads", "1", "--json")
	var logLine map[string]any
	for _, l := range strings.Split(r.stderr, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "sampling" {
			logLine = m
		}
	}
	if logLine == nil || logLine["sampler"] != "first-hitting" {
		t.Fatalf("no sampling log line naming the sampler:\n%s", r.stderr)
	}
	for _, k := range []string{"steps", "grid"} {
		if _, ok := logLine[k]; ok {
			t.Errorf("the first-hitting log line claims %q: %v", k, logLine)
		}
	}
	var raw struct {
		Report map[string]any `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"steps", "grid"} {
		if _, ok := raw.Report[k]; ok {
			t.Errorf("the first-hitting JSON report claims %q: %v", k, raw.Report)
		}
	}
	r = mustCLI(t, "sample", "--checkpoint", ck, "--sampler", "first-hitting", "--threads", "1")
	if !strings.Contains(r.stdout, "sampler first-hitting") || !strings.Contains(r.stdout, "no grid") || strings.Contains(r.stdout, "steps 1000") {
		t.Errorf("first-hitting text report:\n%s", r.stdout)
	}
	// The ancestral sampler still logs both.
	r = mustCLI(t, "sample", "--checkpoint", ck, "--steps", "5", "--threads", "1")
	if !strings.Contains(r.stderr, `"steps":5,"grid":"cosine"`) {
		t.Errorf("the ancestral log line lacks steps and grid:\n%s", r.stderr)
	}
}

// lines returns the lines of s that contain sub, joined.
func lines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
