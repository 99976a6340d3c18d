package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

	existing := filepath.Join(dir, "existing")
	mustCLI(t, tinyArgs(data, existing, "--steps", "2")...)
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
		{"gpt2 not available", train(fresh, "--preset", "owt-small"), 2, []string{"GPT-2 BPE tokenizer not available yet"}},
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
		{"resume different model", train(existing, "--resume", "--dim", "32"), 1, []string{"dim"}},
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
		{"sample long prompt", []string{"sample", "--checkpoint", ck, "--prompt", strings.Repeat("a", 40)}, 1, []string{"40 tokens", "L=32"}},
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
