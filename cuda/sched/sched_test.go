package sched_test

import (
	"math"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

type splitRun struct {
	devices, accum int
	losses         []float64
	grads0         [][]float64 // all-reduced gradient of the first step
	params         [][]float64 // parameters after the last step
}

// runSplit trains `steps` steps of the tiny model with the global batch of 8 split over
// devices × accum, and checks that every replica ends bit-identical.
func runSplit(t *testing.T, mk newBackend, devices, accum, steps int, lowMem bool) splitRun {
	t.Helper()
	cfg := tinyConfig(accum)
	cfg.LowMemAccum = lowMem
	s := startLocal(t, cfg, devices, mk)
	win, err := data.NewWindows(tinyData(), tinyModel.SeqLen)
	if err != nil {
		t.Fatal(err)
	}
	src := sched.WindowsSource(win, 5)
	r := splitRun{devices: devices, accum: accum}
	for k := 0; k < steps; k++ {
		st, err := s.Step(src)
		if err != nil {
			t.Fatalf("%d×%d step %d: %v", devices, accum, k, err)
		}
		if st.Skipped || st.Step != k {
			t.Fatalf("%d×%d step %d: %+v", devices, accum, k, st)
		}
		r.losses = append(r.losses, st.LossBits)
		if k == 0 {
			r.grads0 = grads(t, s, 0)
			for i := 1; i < devices; i++ {
				if _, same := maxRelDiff(r.grads0, grads(t, s, i)); !same {
					t.Errorf("%d×%d: device %d's reduced gradient differs from device 0's", devices, accum, i)
				}
			}
		}
	}
	r.params = params(t, s, 0)
	for i := 1; i < devices; i++ {
		if _, same := maxRelDiff(r.params, params(t, s, i)); !same {
			t.Errorf("%d×%d: device %d's parameters differ from device 0's after %d steps", devices, accum, i, steps)
		}
	}
	if err := s.VerifyReplicas(); err != nil {
		t.Error(err)
	}
	return r
}

// referenceRun is the same training on one device with train.Trainer (no scheduler).
func referenceRun(t *testing.T, be ops.Backend, micro, steps int) splitRun {
	t.Helper()
	cfg := tinyConfig(1)
	m, err := model.New(be, cfg.Model)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(cfg.InitSeed); err != nil {
		t.Fatal(err)
	}
	opt, err := train.NewOptimizer(m, cfg.Optim)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Step
	sc.MicroBatch = micro
	tr, err := train.NewTrainer(m, opt, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := perturb(tr); err != nil {
		t.Fatal(err)
	}
	win, _ := data.NewWindows(tinyData(), tinyModel.SeqLen)
	x0 := make([]int32, tinyBatch*tinyModel.SeqLen)
	r := splitRun{devices: 0, accum: tinyBatch / micro}
	for k := 0; k < steps; k++ {
		if err := win.TrainBatch(x0, tinyBatch, 5, uint64(k)); err != nil {
			t.Fatal(err)
		}
		st, err := tr.TrainStep(x0, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.losses = append(r.losses, st.LossBits)
		if k == 0 {
			for _, p := range m.Params {
				g, _ := m.GetGrad(p)
				r.grads0 = append(r.grads0, g)
			}
		}
	}
	for _, p := range m.Params {
		g, _ := m.GetParam(p)
		r.params = append(r.params, g)
	}
	return r
}

// TestSplitInvariance: the global batch of 8 split as 1 device × 4 accumulation steps,
// 2 × 2 and 4 × 1 (micro-batches of 2 everywhere) gives bit-identical all-reduced
// gradients, losses and parameters over 3 steps — the reduction order is fixed (a tree
// over micro-batches in global order, device-local part included) — and matches the
// single-device train.Trainer within fp32 summation-order tolerance. Low-memory
// accumulation (in place) matches the Trainer with the same micro-batches bit for bit.
func TestSplitInvariance(t *testing.T) {
	const steps = 3
	var runs []splitRun
	for _, dv := range [][2]int{{1, 4}, {2, 2}, {4, 1}} {
		runs = append(runs, runSplit(t, cpuBackends, dv[0], dv[1], steps, false))
	}
	base := runs[0]
	for _, r := range runs[1:] {
		if d, same := maxRelDiff(base.grads0, r.grads0); !same {
			t.Errorf("%d×%d vs 1×4: step-0 gradients not bit-identical (max rel diff %.3g)", r.devices, r.accum, d)
		}
		for k := range r.losses {
			if r.losses[k] != base.losses[k] {
				t.Errorf("%d×%d vs 1×4: step %d loss %.17g vs %.17g", r.devices, r.accum, k, r.losses[k], base.losses[k])
			}
		}
		if d, same := maxRelDiff(base.params, r.params); !same {
			t.Errorf("%d×%d vs 1×4: parameters after %d steps not bit-identical (max rel diff %.3g)", r.devices, r.accum, steps, d)
		}
	}
	ref := referenceRun(t, cpu.New(), tinyBatch, steps)
	d, _ := maxRelDiff(ref.grads0, base.grads0)
	t.Logf("split runs vs one-device Trainer (batch 8 in one pass): max relative gradient difference %.3g", d)
	if d > 1e-5 {
		t.Errorf("gradients differ from the single-device Trainer by %.3g (relative), beyond fp32 summation-order tolerance", d)
	}
	for k := range ref.losses {
		if rel := math.Abs(ref.losses[k]-base.losses[k]) / ref.losses[k]; rel > 1e-5 {
			t.Errorf("step %d: loss %.9g vs Trainer %.9g", k, base.losses[k], ref.losses[k])
		}
	}
	if ref.losses[0] != base.losses[0] {
		t.Errorf("step-0 loss %.17g differs from the Trainer's %.17g (the loss is summed in global row order and should be bit-identical)", base.losses[0], ref.losses[0])
	}

	low := runSplit(t, cpuBackends, 1, 4, steps, true)
	refMicro := referenceRun(t, cpu.New(), 2, steps)
	if d, same := maxRelDiff(refMicro.grads0, low.grads0); !same {
		t.Errorf("low-memory 1×4 vs Trainer with micro-batch 2: gradients not bit-identical (%.3g)", d)
	}
	low22 := runSplit(t, cpuBackends, 2, 2, steps, true)
	d, _ = maxRelDiff(low.grads0, low22.grads0)
	t.Logf("low-memory accumulation 1×4 vs 2×2: max relative gradient difference %.3g", d)
	if d > 1e-5 {
		t.Errorf("low-memory 1×4 vs 2×2 differ by %.3g", d)
	}
}

// TestBatchArithmetic: a global batch that does not divide is refused with the implied
// per-device (or per-micro-batch) size.
func TestBatchArithmetic(t *testing.T) {
	cases := []struct {
		global, world, accum int
		want                 string
	}{
		{10, 4, 1, "10/4 = 2.5 sequences per device"},
		{8, 2, 3, "4/3 = 1.333 sequences per micro-batch"},
		{0, 2, 1, "at least 1"},
	}
	for _, c := range cases {
		_, err := sched.NewPlan(c.global, c.world, c.accum)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewPlan(%d, %d, %d) = %v, want an error containing %q", c.global, c.world, c.accum, err, c.want)
		}
	}
	p, err := sched.NewPlan(512, 8, 4)
	if err != nil || p.PerDevice != 64 || p.Micro != 16 {
		t.Errorf("NewPlan(512, 8, 4) = %+v, %v", p, err)
	}
	// The scheduler refuses too, before opening any device.
	cfg := tinyConfig(1)
	cfg.Step.Batch = 10
	comms, _ := sched.NewLocalGroup(4, time.Second)
	opened := atomic.Int32{}
	devs := make([]sched.Device, 4)
	for i := range devs {
		devs[i] = sched.Device{Open: func() (ops.Backend, error) { opened.Add(1); return cpu.New(), nil }}
	}
	if _, err := sched.New(cfg, devs, comms); err == nil || !strings.Contains(err.Error(), "2.5") {
		t.Errorf("global batch 10 over 4 devices: %v", err)
	}
	if opened.Load() != 0 {
		t.Errorf("%d devices were opened before the batch was refused", opened.Load())
	}
}

// TestNonFiniteSkipsTogether: a NaN in one device's gradient makes every device skip the
// update together (no hang), the skipped-step counter agrees, parameters stay unchanged
// and identical; without SkipNonFinite every device stops with the same error; a failing
// device stops all of them with its error.
func TestNonFiniteSkipsTogether(t *testing.T) { nonFiniteSkipsTogether(t, cpuBackends) }

func nonFiniteSkipsTogether(t *testing.T, base newBackend) {
	var nan, fail atomic.Bool
	mk := func(i int) (ops.Backend, error) {
		be, err := base(i)
		if i == 1 && err == nil {
			return &poison{Backend: be, nan: &nan, fail: &fail}, nil
		}
		return be, err
	}
	win, _ := data.NewWindows(tinyData(), tinyModel.SeqLen)
	src := sched.WindowsSource(win, 5)

	cfg := tinyConfig(1)
	cfg.Step.SkipNonFinite = true
	s := startLocal(t, cfg, 4, mk)
	if _, err := s.Step(src); err != nil {
		t.Fatal(err)
	}
	before := params(t, s, 0)
	nan.Store(true)
	var st train.StepStats
	var err error
	withTimeout(t, 20*time.Second, "a step with a NaN on device 1", func() { st, err = s.Step(src) })
	nan.Store(false)
	if err != nil {
		t.Fatalf("step with a NaN on device 1: %v", err)
	}
	if !st.Skipped || s.Skipped() != 1 || s.StepIndex() != 2 || s.Updates() != 1 {
		t.Fatalf("after the NaN step: skipped=%v counter=%d step=%d updates=%d; want skipped, 1, 2, 1", st.Skipped, s.Skipped(), s.StepIndex(), s.Updates())
	}
	for i := 0; i < 4; i++ {
		var sk int
		s.Do(i, func(tr *train.Trainer) error { sk = tr.Skipped; return nil })
		if sk != 1 {
			t.Errorf("device %d counts %d skipped steps, want 1", i, sk)
		}
		if _, same := maxRelDiff(before, params(t, s, i)); !same {
			t.Errorf("device %d's parameters changed on a skipped step", i)
		}
	}
	if err := s.VerifyReplicas(); err != nil {
		t.Error(err)
	}
	if st, err := s.Step(src); err != nil || st.Skipped {
		t.Errorf("the step after the skipped one: %+v, %v", st, err)
	}

	// Without SkipNonFinite: every device stops, with one message naming rank 1.
	cfg.Step.SkipNonFinite = false
	s2 := startLocal(t, cfg, 4, mk)
	nan.Store(true)
	withTimeout(t, 20*time.Second, "a step with a NaN and no skipping", func() { _, err = s2.Step(src) })
	nan.Store(false)
	if err == nil || !strings.Contains(err.Error(), "rank(s) 1") || !strings.Contains(err.Error(), "every device stops") {
		t.Errorf("NaN without skipping: %v", err)
	}
	if _, err2 := s2.Step(src); err2 == nil {
		t.Error("the scheduler went on after a stop")
	}

	// A device error: every device stops, and the error says which device and why.
	s3 := startLocal(t, tinyConfig(1), 4, mk)
	fail.Store(true)
	withTimeout(t, 20*time.Second, "a step with a failing device", func() { _, err = s3.Step(src) })
	fail.Store(false)
	if err == nil || !strings.Contains(err.Error(), "injected device failure") || !strings.Contains(err.Error(), "rank 1") {
		t.Errorf("device failure: %v", err)
	}
	t.Logf("device failure reported as: %v", err)
}

// TestResumeAcrossDeviceCounts: a state saved by 2 devices resumes on 1 device and on 4
// devices with the same subsequent losses (bit for bit: same micro-batches) as the
// uninterrupted 2-device run.
func TestResumeAcrossDeviceCounts(t *testing.T) { resumeAcrossDeviceCounts(t, cpuBackends) }

func resumeAcrossDeviceCounts(t *testing.T, mk newBackend) {
	win, _ := data.NewWindows(tinyData(), tinyModel.SeqLen)
	src := sched.WindowsSource(win, 5)
	const before, after = 2, 3
	s := startLocal(t, tinyConfig(2), 2, mk)
	for k := 0; k < before; k++ {
		if _, err := s.Step(src); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := s.Save(path, map[string]string{"note": "test"}); err != nil {
		t.Fatal(err)
	}
	var want []float64
	for k := 0; k < after; k++ {
		st, err := s.Step(src)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, st.LossBits)
	}
	for _, dv := range [][2]int{{1, 4}, {4, 1}} {
		r := startLocal(t, tinyConfig(dv[1]), dv[0], mk)
		meta, err := r.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if meta["note"] != "test" || meta["mdm.sched.devices"] != "2" || r.StepIndex() != before {
			t.Errorf("%d devices: resumed at step %d with metadata %v", dv[0], r.StepIndex(), meta)
		}
		for k := 0; k < after; k++ {
			st, err := r.Step(src)
			if err != nil {
				t.Fatal(err)
			}
			if st.LossBits != want[k] || st.Step != before+k {
				t.Errorf("%d×%d resumed: step %d loss %.17g, uninterrupted %.17g", dv[0], dv[1], st.Step, st.LossBits, want[k])
			}
		}
		r.Close()
	}
}

// TestDeviceOpenFailure: a device that cannot be opened (e.g. an index that does not
// exist) fails New with its name, and the other devices are released.
func TestDeviceOpenFailure(t *testing.T) {
	comms, _ := sched.NewLocalGroup(2, time.Second)
	closed := atomic.Int32{}
	devs := []sched.Device{
		{Name: "cuda:0", Open: func() (ops.Backend, error) { return cpu.New(), nil }, Close: func(ops.Backend) error { closed.Add(1); return nil }},
		{Name: "cuda:7", Open: func() (ops.Backend, error) { return nil, errNoDevice }},
	}
	_, err := sched.New(tinyConfig(1), devs, comms)
	if err == nil || !strings.Contains(err.Error(), "cuda:7") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("New with a missing device: %v", err)
	}
	if closed.Load() != 1 {
		t.Errorf("the device that opened was closed %d times, want 1", closed.Load())
	}
}

type simpleErr string

func (e simpleErr) Error() string { return string(e) }

var errNoDevice = simpleErr("device 7 does not exist (2 devices)")

// TestPaddedBatchSplit: a fixed global batch with padded sequences (real lengths < L)
// gives bit for bit the same loss, masked and real-token counts on 1 × 2 and 2 × 1.
func TestPaddedBatchSplit(t *testing.T) {
	L := tinyModel.SeqLen
	x0 := make([]int32, tinyBatch*L)
	win, _ := data.NewWindows(tinyData(), L)
	if err := win.TrainBatch(x0, tinyBatch, 1, 0); err != nil {
		t.Fatal(err)
	}
	lens := []int32{8, 3, 5, 8, 1, 7, 8, 2}
	var got []train.StepStats
	for _, dv := range [][2]int{{1, 2}, {2, 1}} {
		cfg := tinyConfig(dv[1])
		cfg.Step.Batch = 4
		s := startLocal(t, cfg, dv[0], cpuBackends)
		st, err := s.Step(sched.FixedSource(x0[:4*L], lens[:4], L))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st)
	}
	if got[0].LossBits != got[1].LossBits || got[0].Tokens != 24 || got[1].Tokens != 24 || got[0].Masked != got[1].Masked {
		t.Errorf("1×2: loss %v, %d tokens, %d masked; 2×1: loss %v, %d tokens, %d masked", got[0].LossBits, got[0].Tokens, got[0].Masked,
			got[1].LossBits, got[1].Tokens, got[1].Masked)
	}
}
