package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/zeroshot"
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

var (
	gpt2Once     sync.Once
	gpt2Dir      string // under refRoot's sibling temp dir, removed by TestMain
	gpt2Manifest string
	gpt2Ckpt     string
	gpt2Prep     result
	gpt2Train    result
)

// proseInputs returns real English prose from ../shared/data/prose when it is there (two
// Austen novels), else a small synthetic English text in dir.
func proseInputs(t *testing.T, dir string) ([]string, string) {
	root := testutil.RepoRoot()
	if root != "" {
		a := filepath.Join(root, "..", "shared", "data", "prose", "austen")
		p1, p2 := filepath.Join(a, "persuasion.txt"), filepath.Join(a, "northangerabbey.txt")
		if fileExists(p1) && fileExists(p2) {
			return []string{p1, p2}, "real prose (Austen)"
		}
	}
	var files []string
	for i := range 3 {
		files = append(files, writeParagraphs(t, filepath.Join(dir, fmt.Sprintf("prose%d.txt", i)), 60000, uint64(i+1)))
	}
	return files, "synthetic prose (../shared/data absent)"
}

// writeParagraphs writes English-like sentences grouped into paragraphs.
func writeParagraphs(t *testing.T, path string, n int, seed uint64) string {
	t.Helper()
	writeCorpus(t, path, n, seed)
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	var sb strings.Builder
	for i, l := range lines {
		sb.WriteString(strings.ToUpper(l[:min(1, len(l))]) + l[min(1, len(l)):])
		sb.WriteString("\n")
		if i%5 == 4 {
			sb.WriteString("\n")
		}
	}
	os.WriteFile(path, []byte(sb.String()), 0o644)
	return path
}

// gpt2Args are the flags of the tiny GPT-2 BPE model of the tests.
func gpt2Args(manifest, out string, extra ...string) []string {
	args := []string{"train", "--data", manifest, "--out", out, "--seq-len", "64", "--dim", "16", "--layers", "1", "--heads", "2",
		"--mlp-hidden", "32", "--cond-dim", "8", "--batch", "4", "--warmup", "2", "--lr", "3e-3", "--ema", "0.9", "--eval-windows", "24",
		"--eval-batch", "8", "--eval-every", "0", "--ckpt-every", "0", "--threads", "2"}
	return append(args, extra...)
}

// gpt2Run prepares prose into GPT-2 shards and trains a tiny model on them for a few
// steps, once per test binary.
func gpt2Run(t *testing.T) (manifest, ckptPath string) {
	t.Helper()
	gpt2Once.Do(func() {
		dir, err := os.MkdirTemp("", "mdm-gpu-gpt2-*")
		if err != nil {
			t.Fatal(err)
		}
		gpt2Dir = dir
		inputs, what := proseInputs(t, dir)
		t.Logf("prepare on %s: %v", what, inputs)
		args := append([]string{"prepare", "--out", filepath.Join(dir, "shards"), "--name", "prose", "--doc-format", "paragraphs",
			"--held-out", "0.05", "--shard-tokens", "100000"}, inputs...)
		if gpt2Prep = cli(t, args...); gpt2Prep.code != 0 {
			t.Fatalf("prepare: %v", gpt2Prep)
		}
		gpt2Manifest = filepath.Join(dir, "shards", "prose.manifest.json")
		out := filepath.Join(dir, "run")
		if gpt2Train = cli(t, gpt2Args(gpt2Manifest, out, "--steps", "6")...); gpt2Train.code != 0 {
			t.Fatalf("train: %v", gpt2Train)
		}
		gpt2Ckpt = filepath.Join(out, checkpointName)
	})
	if gpt2Ckpt == "" {
		t.Fatal("the GPT-2 reference run failed earlier")
	}
	return gpt2Manifest, gpt2Ckpt
}

// TestPrepareTrainEvalSampleGPT2: prepare → GPT-2 shards whose reported token counts match
// the manifest and the files; train on the memory-mapped blocks with the data protocol in
// the checkpoint; eval on the validation blocks; samples decode; a different manifest or
// tokenizer is refused on resume.
func TestPrepareTrainEvalSampleGPT2(t *testing.T) {
	manifest, ck := gpt2Run(t)
	m, err := data.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	// The printed summary is the manifest's, and the shard files hold what it says.
	out := gpt2Prep.stdout
	for _, want := range []string{fmt.Sprintf("train  %d", m.Train.Documents), fmt.Sprint(m.Train.Tokens), fmt.Sprint(m.Val.Tokens),
		"EOS 50256 after every document", "prose.manifest.json", "prose_train_000000.bin"} {
		if !strings.Contains(out, want) {
			t.Errorf("prepare output lacks %q:\n%s", want, out)
		}
	}
	if m.Tokenizer != "gpt2" || m.EOS != data.GPT2EOS || m.Val.Tokens == 0 || m.Train.Tokens < 20000 {
		t.Fatalf("manifest %+v", m)
	}
	if want := int((m.Train.Tokens + 99999) / 100000); len(m.Train.Shards) != want {
		t.Errorf("%d train shards for %d tokens of 100000 per shard, want %d", len(m.Train.Shards), m.Train.Tokens, want)
	}
	var sum int64
	for _, sh := range append(append([]data.ShardInfo{}, m.Train.Shards...), m.Val.Shards...) {
		fi, err := os.Stat(filepath.Join(filepath.Dir(manifest), sh.File))
		if err != nil || fi.Size() != 1024+2*sh.Tokens {
			t.Errorf("shard %s: %v, size %v, want 1024 + 2·%d", sh.File, err, fi, sh.Tokens)
		}
		if !strings.Contains(out, fmt.Sprintf("%s  %d tokens", sh.File, sh.Tokens)) {
			t.Errorf("prepare output does not list %s with %d tokens", sh.File, sh.Tokens)
		}
		sum += sh.Tokens
	}
	if sum != m.Train.Tokens+m.Val.Tokens {
		t.Errorf("shards hold %d tokens, the splits %d", sum, m.Train.Tokens+m.Val.Tokens)
	}

	// Training read the blocks; the checkpoint records the data protocol (pitfalls B09).
	for _, want := range []string{"validation blocks × L=64", "step 0: validation bound", "Final validation bound after 6 steps"} {
		if !strings.Contains(gpt2Train.stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, gpt2Train.stdout)
		}
	}
	rm, err := readRunMeta(ck)
	if err != nil {
		t.Fatal(err)
	}
	var info dataInfo
	if err := json.Unmarshal([]byte(rm.Raw[metaData]), &info); err != nil {
		t.Fatalf("%s: %v", metaData, err)
	}
	gpt2, _ := data.NewGPT2()
	abs, _ := filepath.Abs(manifest)
	if info.Kind != kindShards || info.Manifest != abs || info.TokenizerFingerprint != gpt2.Fingerprint() || info.EOS != data.GPT2EOS ||
		info.EOSPolicy != data.EOSAfterEveryDocument || info.Pack != "blocks" || info.BlockSize != 64 {
		t.Errorf("data protocol in the checkpoint: %+v", info)
	}
	if rm.Tok.Name() != "gpt2" || rm.Model.Vocab != data.GPT2VocabSize || rm.Corpus.Format != "shards" || rm.Corpus.TrainTokens != int(m.Train.Tokens) {
		t.Errorf("checkpoint: tokenizer %s, V=%d, corpus %+v", rm.Tok.Name(), rm.Model.Vocab, rm.Corpus)
	}
	// The zero-initialised model scores (1−ε)·log2 V bits per token (md4.md §8).
	e0 := rm.History.Eval[0]
	if b, se := float64(e0.PaperCode), float64(e0.PaperCodeSE); !(math.Abs(b-(1-1e-4)*math.Log2(50257)) < 4*se+0.05) {
		t.Errorf("step-0 bound %v ± %v bits, want ≈ (1−ε)·log2 50257 = 15.616", b, se)
	}

	// eval: the validation blocks by default.
	r := mustCLI(t, "eval", "--checkpoint", ck, "--windows", "8", "--batch", "8")
	for _, want := range []string{"the val split of", "the run's own corpus", "EOS 50256 after every document", "8 of", "aligned blocks", "bits/token", "perplexity ≤"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, r.stdout)
		}
	}
	// sample: GPT-2 tokens that decode to text.
	r = mustCLI(t, "sample", "--checkpoint", ck, "--steps", "8", "--num", "2", "--json", "--seed", "2")
	o := decodeSamples(t, r)
	if len(o.Samples) != 2 {
		t.Fatalf("%d samples", len(o.Samples))
	}
	for k, s := range o.Samples {
		dec := gpt2.Decode(s.IDs)
		if len(s.IDs) != 64 || s.Text == "" || (utf8.ValidString(dec) && s.Text != dec) {
			t.Errorf("sample %d: %d ids, text %q", k, len(s.IDs), s.Text)
		}
		for _, id := range s.IDs {
			if id < 0 || id >= data.GPT2VocabSize {
				t.Fatalf("sample %d holds id %d (the mask is 50257)", k, id)
			}
		}
	}

	// Resume refuses a different manifest or tokenizer, and continues the same one.
	runDir := filepath.Dir(ck)
	other := filepath.Join(t.TempDir(), "other")
	inputs, _ := proseInputs(t, t.TempDir())
	mustCLI(t, append([]string{"prepare", "--out", other, "--name", "other", "--doc-format", "paragraphs", "--held-out", "0.1"}, inputs[:1]...)...)
	before := dirState(t, runDir)
	r = cli(t, "train", "--out", runDir, "--resume", "--steps", "6", "--data", filepath.Join(other, "other.manifest.json"))
	if r.code == 0 || !strings.Contains(r.stderr, "prepared corpus (manifest) fingerprint differs") {
		t.Errorf("resume with another manifest: %v", r)
	}
	r = cli(t, "train", "--out", runDir, "--resume", "--tokenizer", "char")
	if r.code == 0 || !strings.Contains(r.stderr, "tokenizer") {
		t.Errorf("resume with another tokenizer: %v", r)
	}
	if !sameState(before, dirState(t, runDir)) {
		t.Error("a refused resume changed the run")
	}
}

// TestGPT2OnTextFile: --tokenizer gpt2 also trains on a plain text file (in memory).
func TestGPT2OnTextFile(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 5)
	r := mustCLI(t, tinyArgs(data, filepath.Join(dir, "run"), "--steps", "2", "--tokenizer", "gpt2")...)
	if !strings.Contains(r.stdout, "Final validation bound after 2 steps") {
		t.Errorf("output:\n%s", r.stdout)
	}
	rm, err := readRunMeta(filepath.Join(dir, "run", checkpointName))
	if err != nil || rm.Tok.Name() != "gpt2" || rm.Model.Vocab != 50257 {
		t.Fatalf("checkpoint: %v %+v", err, rm)
	}
}

// TestZeroShotPTB: eval --zero-shot on Penn Treebank's test file prints the bound with its
// standard error and the exact protocol, as text and as JSON; pad mode scores every
// document token and no pad.
func TestZeroShotPTB(t *testing.T) {
	ptb := testutil.SharedData(t, "eval/ptb/ptb.test.txt")
	_, ck := gpt2Run(t)
	evalDir := filepath.Dir(filepath.Dir(ptb)) // ../shared/data/eval: the ptb/ subdirectory is found
	r := mustCLI(t, "eval", "--checkpoint", ck, "--zero-shot", "ptb", "--data-dir", evalDir, "--batch", "64", "--json")
	var out zeroShotOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	if len(out.Results) != 1 {
		t.Fatalf("%d results", len(out.Results))
	}
	rep := out.Results[0]
	p := rep.Protocol
	t.Logf("PTB zero-shot (tiny 6-step model): %s\nprotocol: %s", rep.Report.String(), p.String())
	if p.Dataset != "ptb" || p.Split != "test" || p.File != ptb || p.BlockSize != 64 || p.Mode != zeroshot.ModePack || p.Documents != 3761 ||
		p.EOS != data.GPT2EOS || p.Samples != 1 || p.Bound != zeroshot.BoundContinuous || p.ScoredTokens+p.DroppedTokens != p.Tokens ||
		p.ScoredTokens != int64(p.Blocks*64) || rep.Tokens != p.ScoredTokens {
		t.Errorf("protocol %+v, report tokens %d", p, rep.Tokens)
	}
	if pp := rep.Exact.Perplexity; !(pp > 1 && !math.IsInf(pp, 0)) || !(rep.Exact.PerplexityStdErr > 0) || !(rep.Exact.BitsStdErr > 0) {
		t.Errorf("exact bound %+v", rep.Exact)
	}

	// Text output of pad mode on a small PTB-format file (the first 150 sentences).
	b, _ := os.ReadFile(ptb)
	small := filepath.Join(t.TempDir(), "ptb.test.txt")
	os.WriteFile(small, []byte(strings.Join(strings.SplitAfter(string(b), "\n")[:150], "")), 0o644)
	r = mustCLI(t, "eval", "--checkpoint", ck, "--zero-shot", "ptb", "--data-dir", small, "--zero-shot-mode", "pad", "--samples", "2", "--discrete", "100")
	for _, want := range []string{"== ptb test ==", "Protocol: ptb test (" + small, "150 documents", "EOS 50256 after every document",
		"padded:", "pad positions never attended, masked or scored", "discrete-time bound, T = 100", "K = 2", "perplexity ≤", "±", "tokens scored"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("pad-mode output lacks %q:\n%s", want, r.stdout)
		}
	}
}
