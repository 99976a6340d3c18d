package sched_test

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// The tiny test model: V=11, L=8, D=16, 1 block, 2 heads, adaLN time conditioning.
var tinyModel = model.Config{Vocab: 11, SeqLen: 8, Dim: 16, Layers: 1, Heads: 2, MLPHidden: 32, TimeCond: true, CondDim: 8}

const tinyBatch = 8

func tinyConfig(accum int) sched.Config {
	s, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	return sched.Config{
		Model: tinyModel,
		Optim: train.OptimConfig{LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Warmup: 1, TotalSteps: 20,
			EMADecay: 0.9, ClipNorm: 1},
		Step: train.StepConfig{Batch: tinyBatch, Seed: 11, Antithetic: true,
			Est: diffusion.Estimator{Sched: s, L: tinyModel.SeqLen, V: tinyModel.Vocab, Bound: diffusion.BoundPaperCode}},
		Accum:    accum,
		InitSeed: 7,
	}
}

// tinyData is a token stream the windows are drawn from.
func tinyData() []int32 {
	x := make([]int32, 400)
	for i := range x {
		// a learnable pattern with some noise
		x[i] = int32((i*3 + int(4*rng.Uniform64(2, 0, rng.PurposeData, uint64(i)))) % tinyModel.Vocab)
	}
	return x
}

// newBackend makes the backend of simulated device i of a test.
type newBackend func(i int) (ops.Backend, error)

func cpuBackends(int) (ops.Backend, error) { return cpu.New(), nil }

// perturb moves every parameter off MD4's initialisation (zero adaLN and head) so that no
// gradient is trivially zero; the same on every replica.
func perturb(tr *train.Trainer) error {
	m := tr.M
	for id, p := range m.Params {
		v, err := m.GetParam(p)
		if err != nil {
			return err
		}
		for i := range v {
			v[i] += 0.05 * rng.Normal64(9, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			return err
		}
	}
	// The optimizer's EMA starts at the perturbed weights.
	for i, p := range m.Params {
		if tr.Opt.EMA != nil {
			if err := m.Backend().Axpy(&ops.AxpyParams{Y: tr.Opt.EMA[i], X: p.W, Alpha: 1}); err != nil {
				return err
			}
		}
	}
	return nil
}

// startLocal starts a scheduler over n in-process devices.
func startLocal(t *testing.T, cfg sched.Config, n int, mk newBackend) *sched.Scheduler {
	t.Helper()
	comms, err := sched.NewLocalGroup(n, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	devs := make([]sched.Device, n)
	for i := range devs {
		devs[i] = sched.Device{Name: fmt.Sprintf("test%d", i), Open: func() (ops.Backend, error) { return mk(i) }}
	}
	s, err := sched.New(cfg, devs, comms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := 0; i < n; i++ {
		if err := s.Do(i, perturb); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// grads returns device i's current gradients (after a step: the all-reduced gradient).
func grads(t *testing.T, s *sched.Scheduler, i int) [][]float64 {
	t.Helper()
	return perParam(t, s, i, (*model.Model).GetGrad)
}

// params returns device i's parameters.
func params(t *testing.T, s *sched.Scheduler, i int) [][]float64 {
	t.Helper()
	return perParam(t, s, i, (*model.Model).GetParam)
}

// perParam reads get(p) for every parameter p of device i's model, in parameter order.
func perParam(t *testing.T, s *sched.Scheduler, i int, get func(*model.Model, *model.Param) ([]float64, error)) [][]float64 {
	t.Helper()
	var out [][]float64
	err := s.Do(i, func(tr *train.Trainer) error {
		for _, p := range tr.M.Params {
			v, err := get(tr.M, p)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// maxRelDiff compares two gradient sets: the largest |a−b| relative to the largest |a|
// of the same tensor, and whether they are bit-identical.
func maxRelDiff(a, b [][]float64) (float64, bool) {
	worst, same := 0.0, true
	for i := range a {
		scale := 0.0
		for _, x := range a[i] {
			scale = math.Max(scale, math.Abs(x))
		}
		for j := range a[i] {
			if math.Float64bits(a[i][j]) != math.Float64bits(b[i][j]) {
				same = false
			}
			if d := math.Abs(a[i][j] - b[i][j]); scale > 0 && d/scale > worst {
				worst = d / scale
			}
		}
	}
	return worst, same
}

// poison wraps a backend; while armed, the embedding gradient gets a NaN (nan) or the
// embedding backward fails (fail).
type poison struct {
	ops.Backend
	nan, fail *atomic.Bool
}

func (p *poison) EmbedBwd(q *ops.EmbedBwdParams) error {
	if p.fail.Load() {
		return fmt.Errorf("injected device failure")
	}
	if err := p.Backend.EmbedBwd(q); err != nil {
		return err
	}
	if p.nan.Load() {
		v := make([]float32, q.DTable.Len())
		if err := p.Backend.Download(v, q.DTable); err != nil {
			return err
		}
		v[3] = float32(math.NaN())
		return p.Backend.Upload(q.DTable, v)
	}
	return nil
}

// withTimeout fails the test if f does not return within d (a hang).
func withTimeout(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (hang)", what, d)
	}
}
