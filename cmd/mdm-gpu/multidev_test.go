package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sameRun compares two checkpoints bit for bit: every tensor (weights, EMA, AdamW moments),
// the step counters and the recorded training losses, learning rates and gradient norms.
func sameRun(t *testing.T, what, a, b string) {
	t.Helper()
	ta, ma := loadAll(t, a)
	tb, mb := loadAll(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%s: %d vs %d tensors", what, len(ta), len(tb))
	}
	for name, x := range ta {
		y, ok := tb[name]
		if !ok || !bytes.Equal(tensorBytes(x), tensorBytes(y)) {
			t.Errorf("%s: tensor %s differs", what, name)
		}
	}
	ha, _ := decodeRunMeta("a", ma)
	hb, _ := decodeRunMeta("b", mb)
	if ha.Step != hb.Step || len(ha.History.Train) != len(hb.History.Train) || len(ha.History.Train) == 0 {
		t.Fatalf("%s: steps %d vs %d, %d vs %d recorded", what, ha.Step, hb.Step, len(ha.History.Train), len(hb.History.Train))
	}
	for i := range ha.History.Train {
		if ha.History.Train[i] != hb.History.Train[i] {
			t.Errorf("%s: step %d: %+v vs %+v", what, ha.History.Train[i].Step, ha.History.Train[i], hb.History.Train[i])
		}
	}
}

// TestDataParallelSim: on simulated GPUs, 2 devices × 2 accumulation steps train exactly
// (bit for bit) as 1 device × 4; a run stopped on 2 devices resumes on 4 and continues the
// same losses; NVML is not started (no warning) off GPUs.
func TestDataParallelSim(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 41)
	args := func(out string, extra ...string) []string {
		return tinyArgs(data, out, append([]string{"--device", "sim", "--batch", "8", "--steps", "6", "--log-every", "1", "--eval-every", "3"}, extra...)...)
	}
	a, b, c := filepath.Join(dir, "2x2"), filepath.Join(dir, "1x4"), filepath.Join(dir, "resumed")
	r := mustCLI(t, args(a, "--devices", "2", "--accum", "2")...)
	if !strings.Contains(r.stderr, "global batch 8 = 2 device(s) × 4 (2 micro-batch(es) of 2)") {
		t.Errorf("the plan is not logged:\n%s", r.stderr)
	}
	if strings.Contains(strings.ToLower(r.stderr), "nvml") {
		t.Errorf("NVML mentioned on simulated devices:\n%s", r.stderr)
	}
	mustCLI(t, args(b, "--devices", "1", "--accum", "4")...)
	sameRun(t, "2×2 vs 1×4", filepath.Join(a, checkpointName), filepath.Join(b, checkpointName))

	r = mustCLI(t, args(c, "--devices", "2", "--accum", "2", "--stop-at", "3")...)
	if !strings.Contains(r.stdout, "stopped after step 3 of 6") {
		t.Fatalf("--stop-at: %s", r.stdout)
	}
	rm, _ := readRunMeta(filepath.Join(c, checkpointName))
	if rm.Raw["mdm.sched.devices"] != "2" {
		t.Errorf("checkpoint metadata mdm.sched.devices = %q, want 2", rm.Raw["mdm.sched.devices"])
	}
	r = mustCLI(t, "train", "--out", c, "--resume", "--devices", "4", "--accum", "1", "--log-every", "1")
	if !strings.Contains(r.stderr, "global batch 8 = 4 device(s) × 2") || !strings.Contains(r.stderr, `"message":"resumed"`) {
		t.Errorf("resume on 4 devices:\n%s", r.stderr)
	}
	sameRun(t, "2×2 vs 2×2 stopped at 3 and resumed on 4×1", filepath.Join(a, checkpointName), filepath.Join(c, checkpointName))

	// The single-device trainer resumes a data-parallel checkpoint too.
	d := filepath.Join(dir, "single")
	mustCLI(t, args(d, "--devices", "2", "--stop-at", "2")...)
	mustCLI(t, "train", "--out", d, "--resume", "--devices", "1")
	if rm, err := readRunMeta(filepath.Join(d, checkpointName)); err != nil || rm.Step != 6 {
		t.Fatalf("resumed on one device: %v, step %v", err, rm)
	}

	// A global batch that does not divide is refused with the implied per-device batch.
	r = cli(t, args(filepath.Join(dir, "bad"), "--batch", "6", "--devices", "4")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--batch 6 over 4 device(s)") || !strings.Contains(r.stderr, "6/4 = 1.5 sequences per device") {
		t.Errorf("non-dividing batch: %v", r)
	}
	r = cli(t, args(filepath.Join(dir, "bad"), "--batch", "8", "--devices", "2", "--accum", "3")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "per-device batch 4") || !strings.Contains(r.stderr, "4/3 = 1.333 sequences per micro-batch") {
		t.Errorf("non-dividing accumulation: %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a refused run created its output directory")
	}
}

// TestMetricsEndpoint: --metrics-addr serves Prometheus text with the training metrics.
func TestMetricsEndpoint(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 43)
	var body string
	var getErr error
	testHookMetrics = func(addr string) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			getErr = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body, getErr = string(b), err
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			getErr = fmt.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	defer func() { testHookMetrics = nil }()
	r := mustCLI(t, tinyArgs(data, filepath.Join(dir, "run"), "--steps", "3", "--metrics-addr", "127.0.0.1:0")...)
	if getErr != nil {
		t.Fatalf("GET /metrics: %v", getErr)
	}
	if !strings.Contains(r.stderr, "serving Prometheus metrics") {
		t.Errorf("the endpoint is not logged:\n%s", r.stderr)
	}
	for _, re := range []string{`(?m)^mdm_train_step\{rank="0"\} 3$`, `(?m)^mdm_train_steps_target\{rank="0"\} 3$`, `(?m)^mdm_train_loss_bits\{rank="0"\} [0-9.e+-]+$`,
		`(?m)^mdm_eval_bound_bits\{rank="0",weights="ema"\} [0-9.e+-]+$`, `(?m)^# TYPE mdm_train_tokens_per_second gauge$`, `(?m)^go_goroutines `} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	// A bad address is refused before anything is written.
	r = cli(t, tinyArgs(data, filepath.Join(dir, "bad"), "--steps", "3", "--metrics-addr", "127.0.0.1:99999")...)
	if r.code == 0 || !strings.Contains(r.stderr, "--metrics-addr") {
		t.Errorf("bad --metrics-addr: %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a refused run created its output directory")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMultiProcessTorchrunEnv: two processes started the torchrun way (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) meet over TCP on 127.0.0.1 and train exactly as two devices in
// one process; rank 0 alone writes the checkpoint and the output. A rank whose
// configuration differs is refused at the rendezvous, naming the setting.
func TestMultiProcessTorchrunEnv(t *testing.T) {
	if binPath == "" {
		t.Fatal("the mdm-gpu binary was not built (see TestMain)")
	}
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 47)
	args := func(out string, extra ...string) []string {
		return tinyArgs(data, out, append([]string{"--device", "cpu", "--batch", "8", "--steps", "4", "--accum", "2", "--eval-every", "2"}, extra...)...)
	}
	local := filepath.Join(dir, "local")
	mustCLI(t, args(local, "--devices", "2")...)

	launch := func(out string, extraByRank ...[]string) ([]string, []error) {
		port := freePort(t)
		outs := make([]string, 2)
		errs := make([]error, 2)
		cmds := make([]*exec.Cmd, 2)
		bufs := make([]*bytes.Buffer, 2)
		for rank := range 2 {
			a := args(out)
			if rank < len(extraByRank) {
				a = append(a, extraByRank[rank]...)
			}
			cmd := exec.Command(binPath, a...)
			cmd.Env = append(os.Environ(), "RANK="+fmt.Sprint(rank), "WORLD_SIZE=2", "LOCAL_RANK="+fmt.Sprint(rank), "MASTER_ADDR=127.0.0.1",
				fmt.Sprintf("MASTER_PORT=%d", port), "MDM_NO_HANDOFF=1")
			bufs[rank] = &bytes.Buffer{}
			cmd.Stdout, cmd.Stderr = bufs[rank], bufs[rank]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[rank] = cmd
		}
		done := make(chan struct{})
		go func() {
			for rank, c := range cmds {
				errs[rank] = c.Wait()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			for _, c := range cmds {
				c.Process.Kill()
			}
			<-done
			t.Fatalf("the two processes did not finish in 90 s:\n%s\n%s", bufs[0], bufs[1])
		}
		for i := range outs {
			outs[i] = bufs[i].String()
		}
		return outs, errs
	}
	mp := filepath.Join(dir, "mp")
	outs, errs := launch(mp)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("ranks failed: %v / %v\n--- rank 0:\n%s\n--- rank 1:\n%s", errs[0], errs[1], outs[0], outs[1])
	}
	if !strings.Contains(outs[0], "Final validation bound after 4 steps") || strings.Contains(outs[1], "Final validation bound") ||
		!strings.Contains(outs[0], "rank 0/2 (local 0) via torchrun") {
		t.Errorf("rank 0 reports, rank 1 stays quiet:\n--- rank 0:\n%s\n--- rank 1:\n%s", outs[0], outs[1])
	}
	sameRun(t, "2 processes vs 2 in-process devices", filepath.Join(local, checkpointName), filepath.Join(mp, checkpointName))

	// Mismatched configurations are refused at start.
	outs, errs = launch(filepath.Join(dir, "mismatch"), nil, []string{"--lr", "0.01"})
	if errs[0] == nil || errs[1] == nil || !strings.Contains(outs[0]+outs[1], "optim") {
		t.Errorf("mismatched ranks: %v / %v\n--- rank 0:\n%s\n--- rank 1:\n%s", errs[0], errs[1], outs[0], outs[1])
	}
}

// TestLaunchEnvErrors: malformed launch variables are usage errors naming the variable.
func TestLaunchEnvErrors(t *testing.T) {
	dir := t.TempDir()
	data := writeCorpus(t, filepath.Join(dir, "corpus.txt"), 8000, 49)
	t.Setenv("RANK", "1")
	t.Setenv("WORLD_SIZE", "")
	r := cli(t, tinyArgs(data, filepath.Join(dir, "run"), "--steps", "1")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "RANK") || !strings.Contains(r.stderr, "WORLD_SIZE") {
		t.Errorf("RANK without WORLD_SIZE: %v", r)
	}
	t.Setenv("WORLD_SIZE", "2")
	r = cli(t, tinyArgs(data, filepath.Join(dir, "run"), "--steps", "1", "--device", "cpu", "--devices", "0,1")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "one device") {
		t.Errorf("two devices per process: %v", r)
	}
}
