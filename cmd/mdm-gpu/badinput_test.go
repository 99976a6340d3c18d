package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
)

// TestBadInput: every bad input gives a non-zero exit status, a message that names the
// offending value, and leaves existing outputs untouched and no new output behind.
func TestBadInput(t *testing.T) {
	ck, _ := refRun(t) // a char-vocabulary model of L=32
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 21)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	blank := filepath.Join(dir, "blank.jsonl")
	os.WriteFile(blank, []byte("{\"text\": \"\"}\n"), 0o644)
	tiny := filepath.Join(dir, "tiny.txt")
	os.WriteFile(tiny, []byte("a few words of text, not enough for one window\n"), 0o644)
	unknownChar := filepath.Join(dir, "unknown.txt")
	os.WriteFile(unknownChar, []byte(strings.Repeat("the cat sat on the mat. ", 10)+"Zebra ☃ snow"), 0o644)
	badTOML := filepath.Join(dir, "bad.toml")
	os.WriteFile(badTOML, []byte("steps = 5\nlearning-rate = 0.1\n"), 0o644)
	syntaxTOML := filepath.Join(dir, "syntax.toml")
	os.WriteFile(syntaxTOML, []byte("steps = = 5\n"), 0o644)

	shards := filepath.Join(dir, "shards")
	mustCLI(t, "prepare", "--out", shards, "--name", "c", "--doc-format", "lines", "--held-out", "0.1", data)
	manifest := filepath.Join(shards, "c.manifest.json")
	idx := writeIDX(t, filepath.Join(dir, "img-images-idx3-ubyte"), 20, 8, 8, 5)
	truncIDX := filepath.Join(dir, "trunc-images-idx3-ubyte")
	b, _ := os.ReadFile(idx)
	os.WriteFile(truncIDX, b[:len(b)-10], 0o644)
	cifarBad := filepath.Join(dir, "bad.bin")
	os.WriteFile(cifarBad, make([]byte, 3073+100), 0o644)
	emptyDir := t.TempDir()

	existing := filepath.Join(dir, "existing")
	mustCLI(t, tinyArgs(data, existing, "--steps", "2")...)
	corrupt := filepath.Join(dir, "corrupt") // a checkpoint that cannot be read
	os.MkdirAll(corrupt, 0o755)
	os.WriteFile(filepath.Join(corrupt, checkpointName), []byte("not a safetensors file"), 0o644)
	fresh := filepath.Join(dir, "fresh") // must not be created by a failing run
	before := dirState(t, existing)

	train := func(out string, extra ...string) []string {
		return tinyArgs(data, out, append([]string{"--steps", "2"}, extra...)...)
	}
	cases := []struct {
		name string
		args []string
		code int // 0 = any non-zero
		want []string
	}{
		{"missing file", tinyArgs(filepath.Join(dir, "nope.txt"), fresh), 1, []string{"nope.txt", "no such file"}},
		{"no data", []string{"train", "--out", fresh}, 1, []string{"--data"}},
		{"directory as data", tinyArgs(dir, fresh), 1, []string{"is a directory"}},
		{"empty corpus", tinyArgs(empty, fresh), 1, []string{"empty.txt", "empty"}},
		{"empty jsonl", tinyArgs(blank, fresh), 1, []string{"blank.jsonl", "empty"}},
		{"jsonl field", tinyArgs(blank, fresh, "--jsonl-field", "body"), 1, []string{"body"}},
		{"corpus shorter than L", tinyArgs(tiny, fresh, "--seq-len", "64"), 1, []string{"--seq-len 64", "fewer than one window"}},
		{"held-out shorter than L", train(fresh, "--seq-len", "3000"), 1, []string{"held-out part", "3000"}},
		{"L larger than corpus", train(fresh, "--seq-len", "100000"), 1, []string{"100000"}},
		{"negative steps", train(fresh, "--steps", "-5"), 2, []string{"--steps -5"}},
		{"zero batch", train(fresh, "--batch", "0"), 2, []string{"--batch 0"}},
		{"micro-batch", train(fresh, "--micro-batch", "3"), 2, []string{"--micro-batch 3", "divide"}},
		{"held-out fraction", train(fresh, "--held-out", "1.5"), 2, []string{"--held-out 1.5"}},
		{"negative lr", train(fresh, "--lr", "-1"), 2, []string{"--lr -1"}},
		{"heads", train(fresh, "--heads", "3"), 2, []string{"--heads 3"}},
		{"unknown preset", train(fresh, "--preset", "huge"), 2, []string{"huge", "tiny"}},
		{"unknown tokenizer", train(fresh, "--tokenizer", "klingon"), 2, []string{"klingon", "text8"}},
		{"unknown schedule", train(fresh, "--schedule", "zigzag"), 2, []string{"zigzag", "linear"}},
		{"tokenizer pixels on text", train(fresh, "--tokenizer", "pixels"), 1, []string{"--tokenizer pixels", "image data"}},
		{"manifest with another tokenizer", train(fresh, "--data", manifest, "--tokenizer", "char"), 1, []string{"--tokenizer char", "tokenizer mismatch", "gpt2"}},
		{"manifest blocks longer than the split", train(fresh, "--data", manifest, "--seq-len", "100000"), 1, []string{"fewer than one block", "100000"}},
		{"pack mode", train(fresh, "--pack", "diagonal"), 2, []string{"--pack", "diagonal", "any-offset"}},
		{"missing manifest", train(fresh, "--data", filepath.Join(dir, "none.manifest.json")), 1, []string{"none.manifest.json"}},
		{"image dataset not fetched", train(fresh, "--data", "mnist", "--data-dir", emptyDir), 1, []string{"mdm-gpu data fetch mnist", emptyDir}},
		{"image seq-len", train(fresh, "--data", idx, "--seq-len", "32"), 1, []string{"--seq-len 32", "8x8x1 = 64"}},
		{"image tokenizer", train(fresh, "--data", idx, "--tokenizer", "byte"), 1, []string{"--tokenizer byte", "pixel tokens"}},
		{"image downscale", train(fresh, "--data", idx, "--image-downscale", "3"), 1, []string{"--image-downscale 3", "8x8"}},
		{"image crop syntax", train(fresh, "--data", idx, "--image-crop", "5"), 2, []string{"--image-crop", "HxW"}},
		{"image crop too large", train(fresh, "--data", idx, "--image-crop", "9x9"), 1, []string{"9x9", "8x8"}},
		{"truncated IDX", train(fresh, "--data", truncIDX), 1, []string{"trunc-images-idx3-ubyte", "truncated"}},
		{"truncated CIFAR-10", train(fresh, "--data", cifarBad), 1, []string{"bad.bin", "3073", "truncated"}},
		{"devices zero", train(fresh, "--devices", "0"), 2, []string{"--devices 0", "at least 1"}},
		{"devices negative", train(fresh, "--devices", "-2"), 2, []string{"--devices -2"}},
		{"devices syntax", train(fresh, "--devices", "a,b"), 2, []string{"--devices", "a,b"}},
		{"devices duplicate", train(fresh, "--device", "sim", "--devices", "0,0"), 2, []string{"device 0 twice"}},
		{"device index that does not exist", train(fresh, "--device", "sim", "--devices", "0,99"), 2, []string{"device 99 does not exist"}},
		{"batch does not divide", train(fresh, "--device", "sim", "--devices", "3"), 2, []string{"--batch 4 over 3 device(s)", "1.333 sequences per device"}},
		{"accum negative", train(fresh, "--accum", "-1"), 2, []string{"--accum -1"}},
		{"accum with micro-batch", train(fresh, "--accum", "2", "--micro-batch", "2"), 2, []string{"--micro-batch 2", "--accum"}},
		{"devices with genmd4", train(fresh, "--device", "sim", "--devices", "2", "--genmd4"), 2, []string{"--genmd4", "one device"}},
		{"metrics address", train(fresh, "--metrics-addr", "127.0.0.1:99999"), 1, []string{"--metrics-addr"}},
		{"prepare no input", []string{"prepare", "--out", fresh}, 2, []string{"at least one input"}},
		{"prepare no out", []string{"prepare", data}, 2, []string{"--out is required"}},
		{"prepare held-out", []string{"prepare", "--out", fresh, "--held-out", "1.5", data}, 2, []string{"--held-out 1.5"}},
		{"prepare doc format", []string{"prepare", "--out", fresh, "--doc-format", "html", data}, 2, []string{"html", "paragraphs"}},
		{"prepare tokenizer", []string{"prepare", "--out", fresh, "--tokenizer", "char", data}, 2, []string{"--tokenizer \"char\"", "gpt2"}},
		{"prepare missing input", []string{"prepare", "--out", fresh, filepath.Join(dir, "gone.txt")}, 1, []string{"gone.txt", "no such file"}},
		{"prepare existing manifest", []string{"prepare", "--out", shards, "--name", "c", data}, 1, []string{"c.manifest.json already exists", "--force"}},
		{"prepare too few documents", []string{"prepare", "--out", fresh, "--held-out", "0.01", tiny}, 1, []string{"held-out fraction 0.01 selected none"}},
		{"zero-shot unknown dataset", []string{"eval", "--checkpoint", ck, "--zero-shot", "imagenet"}, 2, []string{"imagenet", "ptb"}},
		{"zero-shot char checkpoint", []string{"eval", "--checkpoint", ck, "--zero-shot", "ptb", "--data-dir", emptyDir}, 1, []string{"no EOS token", "gpt2"}},
		{"zero-shot mode", []string{"eval", "--checkpoint", ck, "--zero-shot", "ptb", "--zero-shot-mode", "wrap"}, 2, []string{"wrap", "pack", "pad"}},
		{"zero-shot mode without zero-shot", []string{"eval", "--checkpoint", ck, "--zero-shot-mode", "pad"}, 2, []string{"--zero-shot-mode needs --zero-shot"}},
		{"sample png on text", []string{"sample", "--checkpoint", ck, "--png", filepath.Join(dir, "x.png")}, 2, []string{"--png", "text model"}},
		{"device cuda on the CPU build", train(fresh, "--device", "cuda"), 1, []string{"cuda", "no CUDA device", "--device cpu"}},
		{"precision bf16 on cpu", train(fresh, "--device", "cpu", "--precision", "bf16"), 2, []string{"bf16", "--device sim or cuda"}},
		{"precision bf16 head dim", train(fresh, "--device", "sim", "--precision", "bf16"), 2, []string{"head dims 64 and 128", "32"}},
		{"precision unknown", train(fresh, "--precision", "fp8"), 2, []string{"fp8"}},
		{"device tpu", train(fresh, "--device", "tpu"), 2, []string{"tpu"}},
		{"unknown flag", train(fresh, "--learning-rate", "1"), 2, []string{"unknown flag: --learning-rate"}},
		{"non-numeric", train(fresh, "--steps", "many"), 2, []string{"many"}},
		{"positional argument", append(train(fresh), "extra"), 2, []string{"extra"}},
		{"unknown config key", train(fresh, "--config", badTOML), 2, []string{"learning-rate", "bad.toml"}},
		{"config syntax", train(fresh, "--config", syntaxTOML), 2, []string{"syntax.toml", "line 1"}},
		{"missing config", train(fresh, "--config", filepath.Join(dir, "none.toml")), 2, []string{"none.toml"}},
		{"existing checkpoint", train(existing), 1, []string{"already holds a checkpoint", "--resume"}},
		{"resume nothing", train(fresh, "--resume"), 1, []string{"no checkpoint to resume"}},
		{"resume different model", train(existing, "--resume", "--dim", "32"), 2, []string{"dim"}},
		{"resume different lr", train(existing, "--resume", "--lr", "1e-3"), 2, []string{"lr: the checkpoint was trained with", "0.001"}},
		{"resume corrupt checkpoint", train(corrupt, "--resume", "--lr", "1e-3"), 1, []string{"cannot resume", "corrupt"}},
		{"log level", append([]string{"--log-level", "loud"}, train(fresh)...), 2, []string{"loud"}},
		{"log format", append([]string{"--log-format", "xml"}, train(fresh)...), 2, []string{"xml"}},
		{"unknown command", []string{"trian"}, 2, []string{"unknown command", "trian"}},
		{"sample steps", []string{"sample", "--checkpoint", ck, "--steps", "0"}, 2, []string{"--steps 0"}},
		{"sample num", []string{"sample", "--checkpoint", ck, "--num", "-1"}, 2, []string{"--num -1"}},
		{"sample grid", []string{"sample", "--checkpoint", ck, "--grid", "spiral"}, 2, []string{"spiral"}},
		{"sample mode", []string{"sample", "--checkpoint", ck, "--mode", "fast"}, 2, []string{"fast"}},
		{"sample top-p", []string{"sample", "--checkpoint", ck, "--top-p", "1.5"}, 2, []string{"--top-p 1.5"}},
		{"sample no checkpoint", []string{"sample"}, 2, []string{"--checkpoint"}},
		{"sample missing checkpoint", []string{"sample", "--checkpoint", filepath.Join(dir, "none.safetensors")}, 1, []string{"none.safetensors"}},
		{"sample long prompt", []string{"sample", "--checkpoint", ck, "--prompt", strings.Repeat("a", 40)}, 2, []string{"--prompt is 40 tokens", "L=32"}},
		{"sample long template", []string{"sample", "--checkpoint", ck, "--template", strings.Repeat("a_", 20)}, 2, []string{"--template is 40 tokens", "L=32"}},
		{"sample first-hitting jax-compat", []string{"sample", "--checkpoint", ck, "--sampler", "first-hitting", "--mode", "jax-compat"}, 2, []string{"--mode jax-compat with --sampler first-hitting", "ancestral sampler only"}},
		{"sample first-hitting steps", []string{"sample", "--checkpoint", ck, "--sampler", "first-hitting", "--steps", "50"}, 2, []string{"no time grid", "drop --steps"}},
		{"sample first-hitting grid", []string{"sample", "--checkpoint", ck, "--sampler", "first-hitting", "--grid", "uniform"}, 2, []string{"exact event times", "drop --grid"}},
		{"sample first-hitting steps and grid", []string{"sample", "--checkpoint", ck, "--sampler", "first-hitting", "--steps", "1000", "--grid", "cosine"}, 2, []string{"drop --steps and --grid"}},
		{"sample unknown char", []string{"sample", "--checkpoint", ck, "--prompt", "the Zebra"}, 1, []string{`'Z'`, "byte 4"}},
		{"sample prompt and template", []string{"sample", "--checkpoint", ck, "--prompt", "a", "--template", "b_"}, 2, []string{"--prompt and --template"}},
		{"sample placeholder", []string{"sample", "--checkpoint", ck, "--template", "a__", "--placeholder", "ab"}, 2, []string{`"ab"`}},
		{"sample device", []string{"sample", "--checkpoint", ck, "--device", "tpu"}, 2, []string{"tpu", "unknown device"}},
		{"eval samples", []string{"eval", "--checkpoint", ck, "--samples", "0"}, 2, []string{"--samples 0"}},
		{"eval split", []string{"eval", "--checkpoint", ck, "--split", "test"}, 2, []string{"test"}},
		{"eval bound", []string{"eval", "--checkpoint", ck, "--bound", "tight"}, 2, []string{"tight"}},
		{"eval unknown character", []string{"eval", "--checkpoint", ck, "--data", unknownChar, "--split", "all"}, 1, []string{`'Z'`, "byte offset 240", "line 1"}},
		{"eval missing data", []string{"eval", "--checkpoint", ck, "--data", filepath.Join(dir, "gone.txt")}, 1, []string{"gone.txt"}},
		{"data unknown dataset", []string{"data", "fetch", "nosuch", "--dir", fresh}, 2, []string{"nosuch", "brown"}},
		{"data fetch args", []string{"data", "fetch"}, 2, []string{"exactly one dataset"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, c.args...)
			if r.code == 0 || (c.code != 0 && r.code != c.code) {
				t.Fatalf("exit %d, want %d: %v", r.code, c.code, r)
			}
			t.Logf("exit %d: %s", r.code, r.stderr)
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message lacks %q:\n%s", w, r.stderr)
				}
			}
			if _, err := os.Stat(fresh); err == nil {
				t.Errorf("the failing command created %s", fresh)
				os.RemoveAll(fresh)
			}
			if !sameState(before, dirState(t, existing)) {
				t.Fatalf("the failing command changed %s", existing)
			}
		})
	}
}

// TestDeviceCUDAAdviceOnce: --device cuda:N on the CPU build fails with one concise
// message that gives its advice once (not the CUDA stub's advice and the CLI's both).
func TestDeviceCUDAAdviceOnce(t *testing.T) {
	if cuda.CUDABuild {
		t.Skip("the CUDA build opens GPUs itself")
	}
	ck, _ := refRun(t)
	r := cli(t, "sample", "--checkpoint", ck, "--device", "cuda:7")
	if r.code != exitError {
		t.Fatalf("exit %d, want %d: %v", r.code, exitError, r)
	}
	msg := r.stderr[strings.Index(r.stderr, "mdm-gpu: error:"):]
	if n := strings.Count(msg, "--device cpu"); n != 1 || strings.Contains(msg, "cmake") || !strings.Contains(msg, "--device cuda:7") || len(msg) > 300 {
		t.Errorf("want one concise message naming cuda:7 and advising --device cpu once (%d times, %d chars):\n%s", n, len(msg), msg)
	}
}
