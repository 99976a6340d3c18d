package cuda

import (
	"fmt"
	"strconv"
	"strings"
)

// DeviceSpec is a parsed --device value: cpu, sim, cuda, cuda:N or auto.
type DeviceSpec struct {
	Kind    string // "cpu", "sim", "cuda" or "auto"
	Ordinal int    // GPU ordinal for "cuda" (0 for plain "cuda")
}

// String formats the spec as it is written on the command line.
func (s DeviceSpec) String() string {
	if s.Kind == "cuda" {
		return fmt.Sprintf("cuda:%d", s.Ordinal)
	}
	return s.Kind
}

// ParseDeviceSpec parses a --device value: "cpu" (the Go reference backend), "sim" (the
// kernels under the CPU simulator), "cuda" (= "cuda:0"), "cuda:N", "gpu" (= "cuda"), or
// "auto" / "" (cuda:0 when this binary can drive a GPU, otherwise cpu).
func ParseDeviceSpec(s string) (DeviceSpec, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "auto":
		return DeviceSpec{Kind: "auto"}, nil
	case "cpu", "sim":
		return DeviceSpec{Kind: v}, nil
	case "cuda", "gpu":
		return DeviceSpec{Kind: "cuda"}, nil
	}
	for _, prefix := range []string{"cuda:", "gpu:"} {
		if rest, ok := strings.CutPrefix(v, prefix); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 {
				return DeviceSpec{}, fmt.Errorf("--device %q: %q is not a GPU ordinal (use cuda:0, cuda:1, …)", s, rest)
			}
			return DeviceSpec{Kind: "cuda", Ordinal: n}, nil
		}
	}
	return DeviceSpec{}, fmt.Errorf("--device %q: unknown device; valid: auto, cpu, sim, cuda, cuda:N", s)
}

// OpenBackend opens the GPU-side backend of a spec: "sim" gives the simulated device,
// "cuda" the real GPU (ErrNoCUDA in builds without the cuda tag). "cpu" and "auto" are
// resolved by the caller (the CPU backend lives in engine/cpu; see the package doc).
func OpenBackend(spec DeviceSpec, opts ...Option) (*Backend, error) {
	switch spec.Kind {
	case "sim":
		return NewBackend(NewSimDevice(), opts...), nil
	case "cuda":
		dev, err := NewRealDevice(spec.Ordinal)
		if err != nil {
			return nil, err
		}
		return NewBackend(dev, opts...), nil
	}
	return nil, fmt.Errorf("cuda: OpenBackend(%s): not a GPU-side device", spec)
}

// PeakBF16TFLOPs returns the dense bf16 tensor-core peak of a GPU from its name (CUDA or
// NVML spelling), or 0 when unknown (perf-anchors.md §2). It is the MFU denominator.
func PeakBF16TFLOPs(name string) float64 {
	n := strings.ToUpper(name)
	switch {
	case strings.Contains(n, "H200") && strings.Contains(n, "NVL"):
		return 835
	case strings.Contains(n, "H200"):
		return 989
	case strings.Contains(n, "H100") && strings.Contains(n, "PCIE"):
		return 756
	case strings.Contains(n, "H100") && strings.Contains(n, "NVL"):
		return 0 // not in perf-anchors.md: unknown rather than the SXM figure
	case strings.Contains(n, "H100"):
		return 989.4
	case strings.Contains(n, "A100"):
		return 312
	}
	return 0
}
