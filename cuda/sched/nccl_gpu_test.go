//go:build cuda

package sched_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// gpuRun trains `steps` steps on the given GPU ordinals, with NCCL or the host-staged
// reduction, and returns the losses.
func gpuRun(t *testing.T, ordinals []int, accum int, nccl bool, steps int) []float64 {
	t.Helper()
	comms, err := sched.NewLocalGroup(len(ordinals), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	devs := make([]sched.Device, len(ordinals))
	for i, o := range ordinals {
		devs[i] = sched.Device{Name: fmt.Sprintf("cuda:%d", o), Open: func() (ops.Backend, error) { return cuda.New(o) }}
		if nccl {
			devs[i].Reducer = sched.NCCLReducer
		}
	}
	s, err := sched.New(tinyConfig(accum), devs, comms)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range ordinals {
		if err := s.Do(i, perturb); err != nil {
			t.Fatal(err)
		}
	}
	win, _ := data.NewWindows(tinyData(), tinyModel.SeqLen)
	src := sched.WindowsSource(win, 5)
	var losses []float64
	for k := 0; k < steps; k++ {
		st, err := s.Step(src)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, st.LossBits)
	}
	if err := s.VerifyReplicas(); err != nil {
		t.Error(err)
	}
	return losses
}

// TestNCCLGPU: NCCL loads, a one-rank NCCL communicator on GPU 0 trains exactly like the
// host-staged reduction (an all-reduce over one rank is the identity), and with two or
// more GPUs, NCCL over 2 GPUs matches the host-staged reduction within fp32 tolerance and
// 1 GPU × accumulation 2 likewise.
func TestNCCLGPU(t *testing.T) {
	v, err := sched.NCCLVersion()
	if err != nil {
		t.Skipf("NCCL not available: %v", err)
	}
	t.Logf("NCCL version %d", v)
	host := gpuRun(t, []int{0}, 2, false, 3)
	one := gpuRun(t, []int{0}, 2, true, 3)
	for k := range host {
		if host[k] != one[k] {
			t.Errorf("1 GPU, NCCL vs host: step %d loss %.17g vs %.17g", k, one[k], host[k])
		}
	}
	if _, err := cuda.NewRealDevice(1); err != nil {
		t.Logf("one GPU only (%v): skipping the 2-GPU NCCL check", err)
		return
	}
	two := gpuRun(t, []int{0, 1}, 1, true, 3)
	twoHost := gpuRun(t, []int{0, 1}, 1, false, 3)
	for k := range host {
		if math.Abs(two[k]-host[k]) > 1e-5*host[k] || twoHost[k] != host[k] {
			t.Errorf("step %d: 2 GPUs NCCL %.9g, 2 GPUs host %.17g, 1 GPU × 2 %.17g", k, two[k], twoHost[k], host[k])
		}
	}
}
