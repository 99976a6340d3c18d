package bench

import (
	"context"
	"runtime"
	"strconv"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// StepResult is the training throughput of one shape on one backend.
type StepResult struct {
	Shape         string         `json:"shape"`
	Batch         int            `json:"batch"`
	Compute       string         `json:"compute"`
	FLOPsPerToken float64        `json:"flops_per_token"`
	PeakTFLOPs    float64        `json:"peak_tflops,omitempty"`
	Ours          Timing         `json:"ours"`
	MFU           float64        `json:"mfu,omitempty"` // from the median step; 0 when the peak is unknown
	Torch         *Timing        `json:"pytorch,omitempty"`
	TorchVersions map[string]any `json:"pytorch_versions,omitempty"`
	TorchCompile  bool           `json:"pytorch_compile,omitempty"`
}

// RunStep times training steps of s on be: warmup untimed steps, then steps timed ones
// (at least one; fewer when budget > 0 runs out). peakTFLOPs (bf16, 0: unknown) gives
// the MFU.
func RunStep(be ops.Backend, s Shape, compute ops.DType, warmup, steps int, budget time.Duration, peakTFLOPs float64) (StepResult, error) {
	r := StepResult{Shape: s.Name, Batch: s.Batch, Compute: compute.String(), FLOPsPerToken: s.FLOPsPerToken(), PeakTFLOPs: peakTFLOPs}
	if compute == 0 {
		r.Compute = ops.F32.String()
	}
	start := time.Now()
	st, err := NewStepperCompute(be, s, 1, compute)
	if err != nil {
		return r, err
	}
	defer st.Free()
	for range warmup {
		if _, err := st.Step(); err != nil {
			return r, err
		}
	}
	runtime.GC()
	var wall, cpu []float64
	for i := 0; i < max(steps, 1); i++ {
		t0, c0 := time.Now(), CPUTime()
		if _, err := st.Step(); err != nil {
			return r, err
		}
		wall, cpu = append(wall, time.Since(t0).Seconds()), append(cpu, CPUTime()-c0)
		if budget > 0 && time.Since(start) > budget {
			break
		}
	}
	r.Ours = Summarise(wall, cpu, s.TokensPerStep())
	if peakTFLOPs > 0 {
		r.MFU = r.Ours.TokensSec * r.FLOPsPerToken / (peakTFLOPs * 1e12)
	}
	return r, nil
}

// RunTorchStep runs the PyTorch baseline's --bench mode for o.Shape and returns its timing
// and versions.
func RunTorchStep(ctx context.Context, o TorchOptions, warmup, steps int) (Timing, map[string]any, error) {
	var out struct {
		Steps    []float64      `json:"step_seconds"`
		CPU      []float64      `json:"cpu_seconds"`
		Versions map[string]any `json:"versions"`
	}
	if err := RunTorch(ctx, o, &out, "--bench", "--warmup", strconv.Itoa(warmup), "--steps", strconv.Itoa(max(steps, 1))); err != nil {
		return Timing{}, nil, err
	}
	return Summarise(out.Steps, out.CPU, o.Shape.TokensPerStep()), out.Versions, nil
}
