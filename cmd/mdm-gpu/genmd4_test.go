package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenMD4CLI: train --genmd4 writes a GenMD4 checkpoint (schedule.w_raw) whose eval
// reports both bounds and whose samples use the learned schedule; resume is exact; the
// first-hitting sampler works on an MD4 checkpoint with at most L network calls per batch;
// mismatched options are refused with clear errors.
func TestGenMD4CLI(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 3)
	gen := filepath.Join(dir, "gen")
	md4 := filepath.Join(dir, "md4")
	mustCLI(t, tinyArgs(data, gen, "--steps", "6", "--genmd4", "--log-every", "3", "--stop-at", "3")...)
	r := mustCLI(t, tinyArgs(data, gen, "--steps", "6", "--log-every", "3", "--resume")...)
	if !strings.Contains(r.stderr, `"message":"genmd4"`) || !strings.Contains(r.stderr, "power_mean") {
		t.Errorf("GenMD4 training does not log its schedule:\n%s", r.stderr)
	}
	genCkpt := filepath.Join(gen, checkpointName)
	r = mustCLI(t, "eval", "--checkpoint", genCkpt, "--threads", "1", "--windows", "4", "--batch", "4")
	if !strings.Contains(r.stdout, "paper-code") || !strings.Contains(r.stdout, "exact") {
		t.Errorf("GenMD4 eval output:\n%s", r.stdout)
	}
	r = mustCLI(t, "sample", "--checkpoint", genCkpt, "--threads", "1", "--steps", "20", "--num", "2", "--prompt", "the")
	if !strings.Contains(r.stdout, "GenMD4 learned per-token schedule") {
		t.Errorf("GenMD4 sample report:\n%s", r.stdout)
	}
	mustCLI(t, tinyArgs(data, md4, "--steps", "3")...)
	md4Ckpt := filepath.Join(md4, checkpointName)
	r = mustCLI(t, "sample", "--checkpoint", md4Ckpt, "--threads", "1", "--sampler", "first-hitting", "--num", "3", "--batch", "3", "--json")
	var js struct {
		Report sampleReport `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatalf("sample --json: %v\n%s", err, r.stdout)
	}
	if js.Report.Sampler != "first-hitting" || js.Report.NFE < 1 || js.Report.NFE > 32+1 {
		t.Errorf("first-hitting report %+v: want sampler first-hitting and 1 ≤ NFE ≤ L+1 = 33", js.Report)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown sampler", []string{"sample", "--checkpoint", md4Ckpt, "--sampler", "euler"}, `--sampler "euler"`},
		{"first-hitting on GenMD4", []string{"sample", "--checkpoint", genCkpt, "--threads", "1", "--sampler", "first-hitting"}, "use the ancestral sampler for GenMD4"},
		{"jax-compat on GenMD4", []string{"sample", "--checkpoint", genCkpt, "--threads", "1", "--mode", "jax-compat"}, "no GenMD4 sampler"},
		{"top-p out of range", []string{"sample", "--checkpoint", md4Ckpt, "--top-p", "1.5"}, "--top-p 1.5"},
		{"--genmd4 on an MD4 run", tinyArgs(data, md4, "--steps", "6", "--genmd4", "--resume"), "genmd4"},
		{"GenMD4 discrete bound", []string{"eval", "--checkpoint", genCkpt, "--threads", "1", "--discrete", "10"}, "continuous-time bound"},
	} {
		r := cli(t, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: want a failure mentioning %q, got %v", c.name, c.want, r)
		}
	}
}
