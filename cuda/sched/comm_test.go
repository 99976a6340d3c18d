package sched_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestMain lets the test binary act as one process of a multi-process job: the TCP tests
// start it again with MDM_SCHED_CHILD set and the launch variables of a rank.
func TestMain(m *testing.M) {
	if role := os.Getenv("MDM_SCHED_CHILD"); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, "child error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// input is rank r's test buffer: values of very different magnitudes, so that the
// summation order shows in the result bits.
func input(r, n int) []float32 {
	v := make([]float32, n)
	scale := []float64{1e-3, 1e-2, 1e-1, 1, 10, 100, 1000}
	for i := range v {
		// splitmix64 of (rank, index) → a uniform in [0, 1)
		z := uint64(r)<<40 + uint64(i) + 0x9e3779b97f4a7c15
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		u := float64(z>>11) / (1 << 53)
		v[i] = float32((u - 0.5) * scale[(i+r)%7])
	}
	return v
}

// expected is the reduction every communicator must produce: TreeSum in rank order.
func expected(world, n int) []float32 {
	src := make([][]float32, world)
	for r := range src {
		src[r] = input(r, n)
	}
	out := make([]float32, n)
	sched.TreeSum(out, src)
	return out
}

// collectives runs the same sequence of collectives on any communicator and checks the
// results bit for bit.
func collectives(c sched.Comm) error {
	r, w := c.Rank(), c.Size()
	const n = 300_007 // more than one 1 MiB TCP chunk of float32
	buf := input(r, n)
	if err := c.AllReduce(buf, sched.Sum); err != nil {
		return err
	}
	want := expected(w, n)
	for i := range buf {
		if math.Float32bits(buf[i]) != math.Float32bits(want[i]) {
			return fmt.Errorf("rank %d: AllReduce sum element %d = %v, want %v", r, i, buf[i], want[i])
		}
	}
	m := []float64{float64(r), 1, float64(r * r)}
	if err := c.AllReduce(m, sched.Mean); err != nil {
		return err
	}
	wantMean := []float64{float64(w-1) / 2, 1, 0}
	for k := 0; k < w; k++ {
		wantMean[2] += float64(k * k)
	}
	wantMean[2] /= float64(w)
	for i := range m {
		if m[i] != wantMean[i] {
			return fmt.Errorf("rank %d: AllReduce mean = %v, want %v", r, m, wantMean)
		}
	}
	root := w - 1
	b := make([]byte, 200)
	if r == root {
		for i := range b {
			b[i] = byte(i * 7)
		}
	}
	if err := c.Broadcast(b, root); err != nil {
		return err
	}
	for i := range b {
		if b[i] != byte(i*7) {
			return fmt.Errorf("rank %d: Broadcast from %d: byte %d = %d", r, root, i, b[i])
		}
	}
	id := make([]int32, 5)
	if r == 0 {
		id = []int32{1, -2, 3, -4, 5}
	}
	if err := c.Broadcast(id, 0); err != nil {
		return err
	}
	if id[1] != -2 || id[4] != 5 {
		return fmt.Errorf("rank %d: Broadcast from 0: %v", r, id)
	}
	return c.Barrier()
}

func child(role string) error {
	env, err := sched.LaunchEnvFromOS()
	if err != nil {
		return err
	}
	join, _ := time.ParseDuration(os.Getenv("MDM_SCHED_JOIN"))
	fp := os.Getenv("MDM_SCHED_FP")
	if fp == "" {
		fp = "model=tiny;batch=8"
	}
	cfg := sched.TCPFromEnv(env, fp)
	cfg.JoinTimeout = join
	cfg.OpTimeout = 20 * time.Second
	switch role {
	case "comm":
		c, err := sched.DialTCP(cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		return collectives(c)
	case "crash":
		// Join, then exit without a word (a crashed process).
		if _, err := sched.DialTCP(cfg); err != nil {
			return err
		}
		os.Exit(3)
	case "train":
		tc := tinyConfig(2)
		cfg.Fingerprint = tc.Fingerprint(env.WorldSize)
		c, err := sched.DialTCP(cfg)
		if err != nil {
			return err
		}
		s, err := sched.New(tc, []sched.Device{{Name: "cpu", Open: func() (ops.Backend, error) { return cpu.New(), nil }}}, []sched.Comm{c})
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Do(0, perturb); err != nil {
			return err
		}
		win, _ := data.NewWindows(tinyData(), tinyModel.SeqLen)
		src := sched.WindowsSource(win, 5)
		for k := 0; k < 3; k++ {
			st, err := s.Step(src)
			if err != nil {
				return err
			}
			fmt.Printf("LOSS %d %x\n", k, math.Float64bits(st.LossBits))
		}
		return s.VerifyReplicas()
	}
	return fmt.Errorf("unknown child role %q", role)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type proc struct {
	rank           int
	out, err       bytes.Buffer
	exitErr        error
	elapsed        time.Duration
	stdout, stderr string
}

// launch starts one process per entry of roles (rank = index; "" = not started) with
// torchrun-style variables, and waits for them all (at most 60 s).
func launch(t *testing.T, world int, roles []string, extra func(rank int) []string) []*proc {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var procs []*proc
	var wg sync.WaitGroup
	for r, role := range roles {
		if role == "" {
			continue
		}
		p := &proc{rank: r}
		procs = append(procs, p)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MDM_SCHED_CHILD="+role, "RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(world),
			"LOCAL_RANK="+strconv.Itoa(r), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "MDM_SCHED_JOIN=10s")
		if extra != nil {
			cmd.Env = append(cmd.Env, extra(r)...)
		}
		cmd.Stdout, cmd.Stderr = &p.out, &p.err
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.exitErr = cmd.Wait()
			p.elapsed = time.Since(start)
			p.stdout, p.stderr = p.out.String(), p.err.String()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("processes still running after 60 s (hang)")
	}
	return procs
}

// TestTCPCommProcesses: 3 processes on 127.0.0.1 meet through the TCP rendezvous
// (torchrun-style variables) and run all-reduce (sum and mean, more than one chunk),
// broadcast from a non-zero root, and a barrier, with the results bit-identical to the
// in-process communicator's tree order.
func TestTCPCommProcesses(t *testing.T) {
	for _, p := range launch(t, 3, []string{"comm", "comm", "comm"}, nil) {
		if p.exitErr != nil {
			t.Errorf("rank %d: %v\n%s", p.rank, p.exitErr, p.stderr)
		}
	}
}

// TestLocalComm: the in-process communicator runs the same collectives as the TCP one,
// for 1, 3 and 4 members.
func TestLocalComm(t *testing.T) {
	for _, n := range []int{1, 3, 4} {
		comms, err := sched.NewLocalGroup(n, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[r] = collectives(c)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Errorf("%d members: %v", n, err)
		}
	}
}

// TestLocalCommFailures: a member that never arrives is reported by rank after the
// timeout (every waiting member returns), mismatched collectives are refused, and Abort
// wakes every waiting member.
func TestLocalCommFailures(t *testing.T) {
	comms, _ := sched.NewLocalGroup(3, 300*time.Millisecond)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ { // rank 2 never comes
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = comms[r].AllReduce([]float32{1}, sched.Sum)
		}()
	}
	withTimeout(t, 5*time.Second, "AllReduce with a missing member", wg.Wait)
	for r, err := range errs {
		if err == nil || !errors.Is(err, sched.ErrAborted) || !strings.Contains(err.Error(), "rank(s) 2") {
			t.Errorf("rank %d: %v, want a timeout naming rank 2", r, err)
		}
	}
	if err := comms[2].Barrier(); err == nil {
		t.Error("a collective on an aborted group succeeded")
	}

	comms, _ = sched.NewLocalGroup(2, 5*time.Second)
	var e0, e1 error
	wg.Add(2)
	go func() { defer wg.Done(); e0 = comms[0].AllReduce([]float32{1, 2}, sched.Sum) }()
	go func() { defer wg.Done(); e1 = comms[1].AllReduce([]float32{1, 2, 3}, sched.Sum) }()
	withTimeout(t, 5*time.Second, "mismatched AllReduce", wg.Wait)
	if e0 == nil || e1 == nil || !strings.Contains(e0.Error(), "mismatch") {
		t.Errorf("mismatched lengths: %v / %v", e0, e1)
	}

	comms, _ = sched.NewLocalGroup(2, time.Minute)
	wg.Add(1)
	go func() { defer wg.Done(); e0 = comms[0].Barrier() }()
	time.Sleep(20 * time.Millisecond)
	comms[1].Abort(fmt.Errorf("device 1 failed"))
	withTimeout(t, 5*time.Second, "Barrier after Abort", wg.Wait)
	if e0 == nil || !strings.Contains(e0.Error(), "device 1 failed") {
		t.Errorf("Barrier after Abort: %v", e0)
	}
}

// TestTCPRendezvousFailures: bounded waits with errors that name the rank, across real
// processes: a rank that never joins, a rank 0 that never comes, a rank with another
// configuration (refused at start), and a rank that dies after joining.
func TestTCPRendezvousFailures(t *testing.T) {
	t.Run("missing rank", func(t *testing.T) {
		procs := launch(t, 3, []string{"comm", "comm", ""}, func(int) []string { return []string{"MDM_SCHED_JOIN=1500ms"} })
		for _, p := range procs {
			t.Logf("rank %d after %v: %s", p.rank, p.elapsed.Round(time.Millisecond), strings.TrimSpace(p.stderr))
			if p.exitErr == nil || !strings.Contains(p.stderr, "rank(s) 2 of 3 did not join within 1.5s") {
				t.Errorf("rank %d (%v after %v): %s", p.rank, p.exitErr, p.elapsed.Round(time.Millisecond), p.stderr)
			}
			if p.elapsed > 15*time.Second {
				t.Errorf("rank %d took %v to give up", p.rank, p.elapsed)
			}
		}
	})
	t.Run("no rank 0", func(t *testing.T) {
		procs := launch(t, 2, []string{"", "comm"}, func(int) []string { return []string{"MDM_SCHED_JOIN=1s"} })
		p := procs[0]
		t.Logf("rank 1 after %v: %s", p.elapsed.Round(time.Millisecond), strings.TrimSpace(p.stderr))
		if p.exitErr == nil || !strings.Contains(p.stderr, "could not reach rank 0 at 127.0.0.1:") {
			t.Errorf("rank 1 without rank 0 (%v): %s", p.exitErr, p.stderr)
		}
	})
	t.Run("config mismatch", func(t *testing.T) {
		procs := launch(t, 2, []string{"comm", "comm"}, func(r int) []string {
			if r == 1 {
				return []string{"MDM_SCHED_FP=model=tiny;batch=16"}
			}
			return nil
		})
		for _, p := range procs {
			t.Logf("rank %d: %s", p.rank, strings.TrimSpace(p.stderr))
			if p.exitErr == nil || !strings.Contains(p.stderr, `batch: rank 0 has "8", the peer has "16"`) {
				t.Errorf("rank %d (%v): %s", p.rank, p.exitErr, p.stderr)
			}
		}
	})
	t.Run("peer dies", func(t *testing.T) {
		procs := launch(t, 2, []string{"comm", "crash"}, nil)
		p := procs[0]
		t.Logf("rank 0 after %v: %s", p.elapsed.Round(time.Millisecond), strings.TrimSpace(p.stderr))
		if p.exitErr == nil || !strings.Contains(p.stderr, "rank 1") || !strings.Contains(p.stderr, "closed the connection") {
			t.Errorf("rank 0 after rank 1 died (%v, %v): %s", p.exitErr, p.elapsed, p.stderr)
		}
	})
}

// TestTCPTraining: the data-parallel scheduler across 2 processes (one CPU device each,
// accumulation 2, host-staged all-reduce over TCP) gives bit for bit the losses of the
// same job on 2 in-process devices and on 1 device × 4 accumulation steps.
func TestTCPTraining(t *testing.T) {
	procs := launch(t, 2, []string{"train", "train"}, nil)
	var lines [][]string
	for _, p := range procs {
		if p.exitErr != nil {
			t.Fatalf("rank %d: %v\n%s", p.rank, p.exitErr, p.stderr)
		}
		lines = append(lines, strings.Fields(strings.TrimSpace(p.stdout)))
	}
	if strings.Join(lines[0], " ") != strings.Join(lines[1], " ") {
		t.Errorf("the ranks report different losses:\n%v\n%v", lines[0], lines[1])
	}
	ref := runSplit(t, cpuBackends, 1, 4, 3, false)
	for k, l := range ref.losses {
		want := fmt.Sprintf("LOSS %d %x", k, math.Float64bits(l))
		if !strings.Contains(procs[0].stdout, want) {
			t.Errorf("step %d: processes reported %q, in-process 1×4 gives %q", k, procs[0].stdout, want)
		}
	}
}
