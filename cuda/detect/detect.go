package detect

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// GPU describes one GPU found through NVML.
type GPU struct {
	Index             int    `json:"index"`
	Name              string `json:"name"`
	UUID              string `json:"uuid,omitempty"`
	MemoryBytes       uint64 `json:"memory_bytes,omitempty"`
	ComputeCapability string `json:"compute_capability,omitempty"` // "9.0"
}

// Probe is what Detect found.
type Probe struct {
	// GPUs are the GPUs visible to CUDA (after CUDA_VISIBLE_DEVICES).
	GPUs []GPU `json:"gpus"`
	// Driver is the NVIDIA driver version ("535.309.01"); CUDADriver the CUDA version the
	// driver supports (12020 for 12.2), 0 when unknown.
	Driver     string `json:"driver,omitempty"`
	CUDADriver int    `json:"cuda_driver,omitempty"`
	// Reason says why no GPU is usable ("" when GPUs is not empty).
	Reason string `json:"reason,omitempty"`
	// Missing lists NVML symbols the installed library lacks (calls that were skipped).
	Missing []string `json:"missing_symbols,omitempty"`
}

// Summary is a short description: "1 GPU: NVIDIA H200 (driver 550.54, CUDA 12.4)".
func (p Probe) Summary() string {
	if len(p.GPUs) == 0 {
		return "no GPU: " + p.Reason
	}
	names := make([]string, len(p.GPUs))
	for i, g := range p.GPUs {
		names[i] = g.Name
	}
	s := fmt.Sprintf("%d GPU", len(p.GPUs))
	if len(p.GPUs) > 1 {
		s += "s"
	}
	s += ": " + strings.Join(names, ", ")
	var extra []string
	if p.Driver != "" {
		extra = append(extra, "driver "+p.Driver)
	}
	if p.CUDADriver > 0 {
		extra = append(extra, fmt.Sprintf("CUDA %d.%d", p.CUDADriver/1000, p.CUDADriver%1000/10))
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

// Detect probes the GPUs through the system's NVML (libnvidia-ml.so.1, loaded at run time).
func Detect() Probe { return DetectWith(nvml.New()) }

// DetectLibrary probes through the NVML library at path.
func DetectLibrary(path string) Probe { return DetectWith(nvml.New(nvml.WithLibraryPath(path))) }

// DetectWith probes through lib (a real library or a mock). No NVML function is called
// unless Init succeeded, and none whose symbol the loaded library lacks (pitfalls.md B18).
func DetectWith(lib nvml.Interface) Probe {
	var p Probe
	if r := lib.Init(); r != nvml.SUCCESS {
		p.Reason = initReason(r)
		return p
	}
	defer lib.Shutdown()
	ext := lib.Extensions()
	has := func(syms ...string) bool {
		for _, s := range syms {
			if ext.LookupSymbol(s) == nil {
				return true
			}
		}
		p.Missing = append(p.Missing, syms[0])
		return false
	}
	if has("nvmlSystemGetDriverVersion") {
		if v, r := lib.SystemGetDriverVersion(); r == nvml.SUCCESS {
			p.Driver = v
		}
	}
	if has("nvmlSystemGetCudaDriverVersion", "nvmlSystemGetCudaDriverVersion_v2") {
		if v, r := lib.SystemGetCudaDriverVersion(); r == nvml.SUCCESS {
			p.CUDADriver = v
		}
	}
	if !has("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount") || !has("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex") {
		p.Reason = "the NVIDIA driver's NVML library lacks nvmlDeviceGetCount/nvmlDeviceGetHandleByIndex"
		return p
	}
	n, r := lib.DeviceGetCount()
	if r != nvml.SUCCESS {
		p.Reason = "NVML cannot count the GPUs: " + returnName(r)
		return p
	}
	hasName, hasMem := has("nvmlDeviceGetName"), has("nvmlDeviceGetMemoryInfo")
	hasCC, hasUUID := has("nvmlDeviceGetCudaComputeCapability"), has("nvmlDeviceGetUUID")
	var all []GPU
	for i := range n {
		d, r := lib.DeviceGetHandleByIndex(i)
		if r != nvml.SUCCESS {
			continue // e.g. a GPU without permission; CUDA will not see it either
		}
		g := GPU{Index: i, Name: "GPU " + strconv.Itoa(i)}
		if hasName {
			if s, r := d.GetName(); r == nvml.SUCCESS {
				g.Name = s
			}
		}
		if hasUUID {
			if s, r := d.GetUUID(); r == nvml.SUCCESS {
				g.UUID = s
			}
		}
		if hasMem {
			if m, r := d.GetMemoryInfo(); r == nvml.SUCCESS {
				g.MemoryBytes = m.Total
			}
		}
		if hasCC {
			if a, b, r := d.GetCudaComputeCapability(); r == nvml.SUCCESS {
				g.ComputeCapability = fmt.Sprintf("%d.%d", a, b)
			}
		}
		all = append(all, g)
	}
	if len(all) == 0 {
		p.Reason = "the NVIDIA driver is loaded but reports no usable GPU"
		return p
	}
	vis, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	p.GPUs = visible(all, vis, set)
	if len(p.GPUs) == 0 {
		p.Reason = fmt.Sprintf("CUDA_VISIBLE_DEVICES=%q hides all %d GPU(s)", vis, len(all))
	}
	return p
}

// visible applies CUDA_VISIBLE_DEVICES the way CUDA does: a comma-separated list of
// indices or UUID prefixes, read up to the first entry that matches no GPU.
func visible(all []GPU, v string, set bool) []GPU {
	if !set {
		return all
	}
	var out []GPU
	seen := map[int]bool{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		idx := -1
		if n, err := strconv.Atoi(e); err == nil {
			for i, g := range all {
				if g.Index == n {
					idx = i
				}
			}
		} else if e != "" {
			for i, g := range all {
				if g.UUID != "" && strings.HasPrefix(g.UUID, e) {
					idx = i
				}
			}
		}
		if idx < 0 || seen[idx] {
			break
		}
		seen[idx] = true
		out = append(out, all[idx])
	}
	return out
}

// initReason explains a failed nvmlInit. It does not call NVML (nvmlErrorString may be
// unavailable when the library did not load).
func initReason(r nvml.Return) string {
	switch r {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "no NVIDIA driver (libnvidia-ml.so.1 not found)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "the NVIDIA driver libraries are installed but the kernel driver is not loaded (no GPU, or nvidia.ko not loaded)"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to access the NVIDIA driver (/dev/nvidia*)"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "the NVIDIA driver libraries do not match the loaded kernel driver (reboot or reinstall the driver)"
	}
	return "NVML initialisation failed: " + returnName(r)
}

// returnName names an NVML return code without calling into NVML.
func returnName(r nvml.Return) string {
	names := map[nvml.Return]string{
		nvml.ERROR_UNINITIALIZED: "NVML_ERROR_UNINITIALIZED", nvml.ERROR_INVALID_ARGUMENT: "NVML_ERROR_INVALID_ARGUMENT",
		nvml.ERROR_NOT_SUPPORTED: "NVML_ERROR_NOT_SUPPORTED", nvml.ERROR_NO_PERMISSION: "NVML_ERROR_NO_PERMISSION",
		nvml.ERROR_NOT_FOUND: "NVML_ERROR_NOT_FOUND", nvml.ERROR_INSUFFICIENT_POWER: "NVML_ERROR_INSUFFICIENT_POWER",
		nvml.ERROR_DRIVER_NOT_LOADED: "NVML_ERROR_DRIVER_NOT_LOADED", nvml.ERROR_LIBRARY_NOT_FOUND: "NVML_ERROR_LIBRARY_NOT_FOUND",
		nvml.ERROR_FUNCTION_NOT_FOUND: "NVML_ERROR_FUNCTION_NOT_FOUND", nvml.ERROR_GPU_IS_LOST: "NVML_ERROR_GPU_IS_LOST",
		nvml.ERROR_LIB_RM_VERSION_MISMATCH: "NVML_ERROR_LIB_RM_VERSION_MISMATCH", nvml.ERROR_UNKNOWN: "NVML_ERROR_UNKNOWN",
	}
	if s, ok := names[r]; ok {
		return s
	}
	return fmt.Sprintf("NVML error %d", int(r))
}
