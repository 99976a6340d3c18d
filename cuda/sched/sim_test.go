package sched_test

import (
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func simBackends(int) (ops.Backend, error) { return cuda.NewBackend(cuda.NewSimDevice()), nil }

// simMissing lists the ops the simulated device does not support yet in f32.
func simMissing() []string {
	be := cuda.NewBackend(cuda.NewSimDevice())
	var out []string
	for _, op := range ops.AllOps() {
		dt := ops.F32
		if op == ops.OpMaskTokens {
			dt = ops.F64 // its data tensor is the F64 mask probability
		}
		if !be.Supports(op, dt) {
			out = append(out, op.String())
		}
	}
	return out
}

// TestSplitInvarianceSim is TestSplitInvariance on simulated GPUs (the real kernels under
// the CUDA simulator, one OS thread per device): 1×4, 2×2 and 4×1 give bit-identical
// gradients, losses and parameters, every replica stays identical, and the result agrees
// with the CPU backend within fp32 tolerance.
func TestSplitInvarianceSim(t *testing.T) {
	if m := simMissing(); len(m) > 0 {
		t.Skipf("the simulated device does not support %s yet (kernels in progress); the CPU-backend tests cover the scheduler", strings.Join(m, ", "))
	}
	if testing.Short() {
		t.Skip("-short")
	}
	const steps = 2
	var runs []splitRun
	for _, dv := range [][2]int{{1, 4}, {2, 2}, {4, 1}} {
		runs = append(runs, runSplit(t, simBackends, dv[0], dv[1], steps, false))
	}
	for _, r := range runs[1:] {
		if d, same := maxRelDiff(runs[0].grads0, r.grads0); !same {
			t.Errorf("sim %d×%d vs 1×4: gradients not bit-identical (max rel diff %.3g)", r.devices, r.accum, d)
		}
		for k := range r.losses {
			if r.losses[k] != runs[0].losses[k] {
				t.Errorf("sim %d×%d vs 1×4: step %d loss %.17g vs %.17g", r.devices, r.accum, k, r.losses[k], runs[0].losses[k])
			}
		}
		if _, same := maxRelDiff(runs[0].params, r.params); !same {
			t.Errorf("sim %d×%d vs 1×4: parameters not bit-identical", r.devices, r.accum)
		}
	}
	cpuRun := runSplit(t, cpuBackends, 2, 2, steps, false)
	d, _ := maxRelDiff(cpuRun.grads0, runs[0].grads0)
	t.Logf("sim vs CPU backend: max relative gradient difference %.3g; losses %v vs %v", d, runs[0].losses, cpuRun.losses)
	if d > 1e-4 {
		t.Errorf("sim gradients differ from the CPU backend's by %.3g", d)
	}
}

// TestNonFiniteSkipsTogetherSim: NaN skipping and failure stops on simulated GPUs.
func TestNonFiniteSkipsTogetherSim(t *testing.T) {
	if m := simMissing(); len(m) > 0 {
		t.Skipf("the simulated device does not support %s yet", strings.Join(m, ", "))
	}
	nonFiniteSkipsTogether(t, simBackends)
}

// TestResumeAcrossDeviceCountsSim: save on 2 simulated GPUs, resume on 1 and on 4.
func TestResumeAcrossDeviceCountsSim(t *testing.T) {
	if m := simMissing(); len(m) > 0 {
		t.Skipf("the simulated device does not support %s yet", strings.Join(m, ", "))
	}
	resumeAcrossDeviceCounts(t, simBackends)
}
