package main

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/cuda/detect"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// handOff is what detect.MaybeHandOff decided at start-up (set by main; the zero value in
// tests means "no probe made").
var handOff detect.Decision

// backend is an opened backend and how to release it.
type backend struct {
	ops.Backend
	kind  string // "cpu", "sim" or "cuda"
	close func()
}

// checkDevice validates a --device value (cpu, sim, cuda, cuda:N, auto).
func checkDevice(d string) error {
	_, err := cuda.ParseDeviceSpec(d)
	return err
}

// checkPrecision validates --precision against the device: bf16 (mixed precision) needs a
// GPU-side backend, because the CPU reference computes in f32/f64 only.
func checkPrecision(p, device string) error {
	switch p {
	case "auto", "f32":
		return nil
	case "bf16":
		spec, err := cuda.ParseDeviceSpec(device)
		if err != nil {
			return err
		}
		if spec.Kind == "cpu" || (spec.Kind == "auto" && !cuda.CUDABuild) {
			return fmt.Errorf("--precision bf16: mixed precision needs a GPU-side backend (--device sim or cuda); the CPU backend computes in f32")
		}
		return nil
	}
	return fmt.Errorf("--precision %q: valid: auto (bf16 on cuda, f32 elsewhere), f32, bf16", p)
}

// bf16HeadDims are the head dimensions of the bf16 flash-attention kernels
// (kernels/attention_fwd.cu); other head dims run in f32.
var bf16HeadDims = map[int]bool{64: true, 128: true}

// computeDType resolves --precision for an opened backend and a model's head dimension:
// auto is bf16 on a GPU when the flash kernels cover the head dimension, else f32; an
// explicit bf16 with an unsupported head dimension is refused with what to do.
func computeDType(precision string, b *backend, headDim int) (ops.DType, error) {
	switch precision {
	case "f32":
		return ops.F32, nil
	case "bf16":
		if !bf16HeadDims[headDim] {
			return 0, usagef("--precision bf16: the bf16 attention kernels support head dims 64 and 128, this model has %d (dim / heads); use --precision f32 or change --dim/--heads", headDim)
		}
		return ops.BF16, nil
	}
	if b.kind == "cuda" && bf16HeadDims[headDim] {
		return ops.BF16, nil
	}
	return ops.F32, nil
}

// openBackend opens the backend named by --device: cpu (the Go reference), sim (the CUDA
// kernels under the CPU simulator), cuda / cuda:N (a GPU; only in the mdm-gpu-cuda build,
// which the CPU build hands over to automatically when a GPU is present), or auto (a GPU
// when this binary can drive one, else the CPU with one line saying why).
func openBackend(device string, threads int, log zerolog.Logger) (*backend, error) {
	spec, err := cuda.ParseDeviceSpec(device)
	if err != nil {
		return nil, &usageError{err}
	}
	openCPU := func() *backend {
		c := cpu.New(cpu.WithWorkers(threads))
		return &backend{Backend: c, kind: "cpu", close: c.Close}
	}
	switch spec.Kind {
	case "cpu":
		return openCPU(), nil
	case "sim":
		b, err := cuda.OpenBackend(spec)
		if err != nil {
			return nil, err
		}
		return &backend{Backend: b, kind: "sim", close: func() {}}, nil
	case "cuda":
		b, err := cuda.OpenBackend(spec)
		if err != nil {
			return nil, deviceError("--device "+device, err)
		}
		return &backend{Backend: b, kind: "cuda", close: func() {}}, nil
	}
	// auto
	if cuda.CUDABuild {
		b, err := cuda.OpenBackend(cuda.DeviceSpec{Kind: "cuda"})
		if err == nil {
			return &backend{Backend: b, kind: "cuda", close: func() {}}, nil
		}
		log.Warn().Err(err).Msg("no usable GPU; running on the CPU")
		return openCPU(), nil
	}
	reason := handOff.Reason
	if reason == "" {
		reason = "CPU build"
	}
	log.Info().Str("reason", reason).Msg("running on the CPU")
	return openCPU(), nil
}

// deviceError reports a GPU that could not be opened, prefixed with what (the flag). In
// the CPU build the error (cuda.ErrNoCUDA, whose text already carries advice) is replaced
// by one concise line: why no CUDA build took over, and what to do, said once.
func deviceError(what string, err error) error {
	if !errors.Is(err, cuda.ErrNoCUDA) || cuda.CUDABuild {
		return fmt.Errorf("%s: %w", what, err)
	}
	why := ""
	if handOff.Reason != "" {
		why = " (" + handOff.Reason + ")"
	}
	return fmt.Errorf("%s: %w: this CPU build cannot drive GPUs and no CUDA build took over%s; use --device cpu, or run the CUDA build (mdm-gpu-cuda) on a machine with an NVIDIA GPU",
		what, cuda.ErrNoCUDA, why)
}

// workers returns the CPU backend's worker count (0 for GPU-side backends).
func workers(b *backend) int {
	if c, ok := b.Backend.(*cpu.Backend); ok {
		return c.Workers()
	}
	return 0
}
