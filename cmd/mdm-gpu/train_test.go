package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
	"gorgonia.org/tensor"
)

func TestTrainWritesCheckpointAndPlot(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 1)
	out := filepath.Join(dir, "run")
	r := mustCLI(t, tinyArgs(data, out, "--steps", "6", "--eval-every", "3", "--ckpt-every", "3", "--eval-windows", "0")...)
	for _, want := range []string{"step 0: validation bound (ema weights)", "step 3: validation bound", "Final validation bound after 6 steps",
		"paper-code NELBO", "exact NELBO", "perplexity ≤", checkpointName, plotName} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, f := range []string{checkpointName, plotName} {
		fi, err := os.Stat(filepath.Join(out, f))
		if err != nil || fi.Size() == 0 {
			t.Fatalf("%s missing or empty: %v", f, err)
		}
	}
	png, _ := os.ReadFile(filepath.Join(out, plotName))
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG", plotName)
	}
	rm, err := readRunMeta(filepath.Join(out, checkpointName))
	if err != nil {
		t.Fatal(err)
	}
	if rm.Step != 6 || rm.Config.Steps != 6 || rm.Config.Dim != 16 || rm.Model.Vocab != 27 || rm.Tok.Name() != "text8" {
		t.Errorf("metadata: step %d, config %+v, model %+v, tokenizer %s", rm.Step, rm.Config, rm.Model, rm.Tok.Name())
	}
	if len(rm.History.Train) != 6 || len(rm.History.Eval) != 6 { // evals at 0, 3, 6 × (ema, raw)
		t.Errorf("history has %d train and %d eval points, want 6 and 6", len(rm.History.Train), len(rm.History.Eval))
	}
	if rm.Corpus.Tokens == 0 || rm.Corpus.TrainTokens+rm.Corpus.HeldOutTokens != rm.Corpus.Tokens || !strings.HasPrefix(rm.Corpus.Fingerprint, "sha256:") {
		t.Errorf("corpus metadata %+v", rm.Corpus)
	}
	if math.IsNaN(rm.DataEntropy) || rm.DataEntropy < 2 || rm.DataEntropy > math.Log2(27) {
		t.Errorf("data unigram entropy %v", rm.DataEntropy)
	}
	// The initial bound of a zero-initialised head is (1−ε)·log2 V ± noise (md4.md §8.3).
	e0 := rm.History.Eval[0]
	if b, se := float64(e0.PaperCode), float64(e0.PaperCodeSE); !(math.Abs(b-(1-1e-4)*math.Log2(27)) < 4*se+0.05) {
		t.Errorf("step-0 bound %v ± %v bits, want ≈ (1−ε)·log2 27 = 4.754", b, se)
	}
	// Refuses to overwrite without --resume/--force, and leaves the run untouched.
	before := dirState(t, out)
	r = cli(t, tinyArgs(data, out, "--steps", "6")...)
	if r.code == 0 || !strings.Contains(r.stderr, "already holds a checkpoint") || !strings.Contains(r.stderr, "--resume") {
		t.Errorf("second run without --resume: %v", r)
	}
	if !sameState(before, dirState(t, out)) {
		t.Error("the refused run changed the output directory")
	}
	// --force starts over.
	mustCLI(t, tinyArgs(data, out, "--steps", "2", "--force")...)
	if rm, err := readRunMeta(filepath.Join(out, checkpointName)); err != nil || rm.Step != 2 {
		t.Errorf("after --force: %v, step %v", err, rm)
	}
	// Resuming a complete run does nothing and succeeds.
	mustCLI(t, "train", "--out", out, "--resume")
}

// loadAll reads every tensor of a checkpoint.
func loadAll(t *testing.T, path string) (map[string]*tensor.Dense, map[string]string) {
	t.Helper()
	info, err := ckpt.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	var specs []ckpt.Spec
	for _, ti := range info.Tensors {
		specs = append(specs, ckpt.Spec{Name: ti.Name, Shape: ti.Shape, DType: ti.DType})
	}
	ts, meta, err := ckpt.Load(path, specs)
	if err != nil {
		t.Fatal(err)
	}
	return ts, meta
}

func tensorBytes(d *tensor.Dense) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, d.Data())
	return b.Bytes()
}

// TestResumeIsBitExact: 50 steps, then --resume for 50 more, equals 100 steps straight:
// the same per-step losses, learning rates and gradient norms, the same evaluations, and
// bitwise the same weights, EMA weights, AdamW moments and step counters (pitfalls B19).
func TestResumeIsBitExact(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 30000, 2)
	common := []string{"--steps", "100", "--eval-every", "25", "--ckpt-every", "30", "--seed", "5", "--tokenizer", "char"}
	straight, split := filepath.Join(dir, "straight"), filepath.Join(dir, "split")
	mustCLI(t, tinyArgs(data, straight, common...)...)
	r := mustCLI(t, tinyArgs(data, split, append(common, "--stop-at", "50")...)...)
	if !strings.Contains(r.stdout, "stopped after step 50 of 100") {
		t.Errorf("--stop-at output:\n%s", r.stdout)
	}
	if rm, err := readRunMeta(filepath.Join(split, checkpointName)); err != nil || rm.Step != 50 {
		t.Fatalf("checkpoint after --stop-at 50: %v %+v", err, rm)
	}
	r = mustCLI(t, "train", "--out", split, "--resume", "--data", data, "--log-every", "7")
	if !strings.Contains(r.stderr, `"message":"resumed"`) || !strings.Contains(r.stderr, `"step":50`) {
		t.Errorf("resume log lacks the resumed step:\n%s", r.stderr)
	}

	a, am := loadAll(t, filepath.Join(straight, checkpointName))
	b, bm := loadAll(t, filepath.Join(split, checkpointName))
	if len(a) != len(b) {
		t.Fatalf("%d vs %d tensors", len(a), len(b))
	}
	var nEMA, nAdam int
	for name, ta := range a {
		tb, ok := b[name]
		if !ok {
			t.Fatalf("resumed checkpoint lacks %s", name)
		}
		if !bytes.Equal(tensorBytes(ta), tensorBytes(tb)) {
			t.Errorf("tensor %s differs between the straight and the resumed run", name)
		}
		if strings.HasPrefix(name, "ema.") {
			nEMA++
		}
		if strings.HasPrefix(name, "adam.") {
			nAdam++
		}
	}
	if nEMA == 0 || nAdam == 0 {
		t.Errorf("checkpoint has %d EMA and %d AdamW tensors; want both", nEMA, nAdam)
	}
	for _, k := range []string{train.MetaStep, train.MetaUpdates, train.MetaSkipped, metaCorpusFP, metaTokFP, metaSeed, metaModel} {
		if am[k] != bm[k] {
			t.Errorf("metadata %s: straight %q, resumed %q", k, am[k], bm[k])
		}
	}
	if am[train.MetaStep] != "100" || am[train.MetaUpdates] != "100" {
		t.Errorf("step counters %s=%s %s=%s, want 100", train.MetaStep, am[train.MetaStep], train.MetaUpdates, am[train.MetaUpdates])
	}
	ha, _ := decodeRunMeta("a", am)
	hb, _ := decodeRunMeta("b", bm)
	if len(ha.History.Train) != 100 || len(hb.History.Train) != 100 {
		t.Fatalf("histories have %d and %d training points, want 100", len(ha.History.Train), len(hb.History.Train))
	}
	for i := range ha.History.Train {
		pa, pb := ha.History.Train[i], hb.History.Train[i]
		if pa != pb {
			t.Errorf("step %d: straight %+v, resumed %+v", pa.Step, pa, pb)
		}
	}
	if len(ha.History.Eval) != len(hb.History.Eval) || len(ha.History.Eval) != 10 {
		t.Fatalf("eval histories: %d vs %d points, want 10", len(ha.History.Eval), len(hb.History.Eval))
	}
	for i := range ha.History.Eval {
		if ha.History.Eval[i] != hb.History.Eval[i] {
			t.Errorf("eval %d: straight %+v, resumed %+v", i, ha.History.Eval[i], hb.History.Eval[i])
		}
	}
	// The learning rate followed the same warmup + cosine schedule, ending near 0.
	if lr := float64(ha.History.Train[99].LR); !(lr >= 0 && lr < 1e-5) {
		t.Errorf("last LR %v, want ≈ 0 at the end of the cosine", lr)
	}
}

func TestResumeRefusesChanges(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 3)
	other := writeCorpus(t, filepath.Join(dir, "other.txt"), 20000, 4)
	out := filepath.Join(dir, "run")
	mustCLI(t, tinyArgs(data, out, "--steps", "10", "--stop-at", "2", "--tokenizer", "char")...)
	before := dirState(t, out)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--dim", "32"}, []string{"dim", "16", "32"}},
		{[]string{"--lr", "0.1"}, []string{"lr", "0.1"}},
		{[]string{"--data", other}, []string{"corpus fingerprint differs"}},
		{[]string{"--tokenizer", "byte"}, []string{"tokenizer"}},
		{[]string{"--force"}, []string{"--resume and --force"}},
	} {
		args := append([]string{"train", "--out", out, "--resume", "--data", data}, c.args...)
		r := cli(t, args...)
		if r.code == 0 {
			t.Errorf("%v: accepted", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v: stderr lacks %q: %s", c.args, w, r.stderr)
			}
		}
	}
	if !sameState(before, dirState(t, out)) {
		t.Error("a refused resume changed the run directory")
	}
	// Free settings may change.
	mustCLI(t, "train", "--out", out, "--resume", "--data", data, "--log-every", "3", "--eval-windows", "2")
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "run.toml")
	os.WriteFile(toml, []byte("preset = \"text8\"\nsteps = 7\nbatch = 3\n"), 0o644)
	r := mustCLI(t, "train", "--print-config", "--config", toml, "--batch", "9")
	for _, want := range []string{"preset = 'text8'", "steps = 7", "batch = 9", "dim = 768", "embed-dim = 64", "lr = 0.0003"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("resolved config lacks %q:\n%s", want, r.stdout)
		}
	}
	// A flag --preset wins over the file's preset.
	r = mustCLI(t, "train", "--print-config", "--config", toml, "--preset", "tiny")
	for _, want := range []string{"preset = 'tiny'", "steps = 7", "dim = 128"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("resolved config lacks %q:\n%s", want, r.stdout)
		}
	}
	// The printed TOML is a valid --config file.
	out := filepath.Join(dir, "printed.toml")
	os.WriteFile(out, []byte(r.stdout), 0o644)
	mustCLI(t, "train", "--print-config", "--config", out)
	// Presets are listed with parameter counts (md4.md §8.15).
	r = mustCLI(t, "train", "--preset", "list")
	for _, want := range []string{"88,734,272", "165,857,344", "416,240,960", "tiny", "dropout"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("preset list lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestMaxTimeStopsWithFinalEval(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 6)
	out := filepath.Join(dir, "run")
	r := mustCLI(t, tinyArgs(data, out, "--steps", "50", "--max-time", "1ns")...)
	for _, want := range []string{"Final validation bound after 1 steps", "Stopped by --max-time", "--resume"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if rm, err := readRunMeta(filepath.Join(out, checkpointName)); err != nil || rm.Step != 1 {
		t.Fatalf("checkpoint after --max-time: %v %+v", err, rm)
	}
	mustCLI(t, "train", "--out", out, "--resume", "--data", data)
	if rm, err := readRunMeta(filepath.Join(out, checkpointName)); err != nil || rm.Step != 50 {
		t.Fatalf("checkpoint after resuming: %v %+v", err, rm)
	}
}

// TestResumedLogAverages: after --resume the first train log line's loss_bits_avg covers the
// same steps as in an uninterrupted run (the steps since the previous log line, some of
// them from before the interruption), so the logs of both runs agree line for line.
func TestResumedLogAverages(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 30000, 3)
	common := []string{"--steps", "60", "--log-every", "20", "--seed", "3", "--tokenizer", "char"}
	straight, split := filepath.Join(dir, "straight"), filepath.Join(dir, "split")
	avgs := func(stderr string) map[float64]float64 {
		out := map[float64]float64{}
		for _, line := range strings.Split(stderr, "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "train" {
				out[m["step"].(float64)] = m["loss_bits_avg"].(float64)
			}
		}
		return out
	}
	want := avgs(mustCLI(t, tinyArgs(data, straight, common...)...).stderr)
	mustCLI(t, tinyArgs(data, split, append(common, "--stop-at", "30")...)...)
	got := avgs(mustCLI(t, "train", "--out", split, "--resume", "--data", data).stderr)
	for _, step := range []float64{40, 60} {
		if w, ok := want[step]; !ok || got[step] != w {
			t.Errorf("step %v: loss_bits_avg %v after resume, %v (present %v) uninterrupted", step, got[step], w, ok)
		}
	}
}
