package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
)

func newInfoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the version, platform, build tags and available backends",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := a.stdout
			v := versions("")
			rev := v.Revision
			if rev == "" {
				rev = "unknown"
			}
			tags, cgo := "", "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					switch s.Key {
					case "-tags":
						tags = s.Value
					case "CGO_ENABLED":
						cgo = s.Value
					}
				}
			}
			if tags == "" {
				tags = "none"
			}
			be := cpu.New()
			defer be.Close()
			fmt.Fprintf(w, "mdm-gpu %s (revision %s)\n", v.MDMGPU, rev)
			fmt.Fprintf(w, "Go:          %s\n", v.Go)
			fmt.Fprintf(w, "OS/arch:     %s/%s\n", v.OS, v.Arch)
			fmt.Fprintf(w, "CPUs:        %d (GOMAXPROCS %d)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
			fmt.Fprintf(w, "Build tags:  %s (CGO_ENABLED=%s)\n", tags, cgo)
			fmt.Fprintf(w, "Backends:\n")
			fmt.Fprintf(w, "  cpu   available: reference backend, %d workers, GEMM %s\n", be.Workers(), gemmNote(be.BLAS()))
			var simKernels []string
			for _, k := range cuda.NewSimDevice().Kernels() {
				if !strings.HasPrefix(k, "selftest_") && !strings.HasSuffix(k, "_check_u32") {
					simKernels = append(simKernels, k)
				}
			}
			fmt.Fprintf(w, "  sim   available: the CUDA kernels compiled for the CPU simulator (%d kernels)\n", len(simKernels))
			if cuda.CUDABuild {
				if b, err := cuda.OpenBackend(cuda.DeviceSpec{Kind: "cuda"}); err != nil {
					fmt.Fprintf(w, "  cuda  this is the CUDA build, but no GPU could be opened: %v\n", err)
				} else {
					p := b.Device().Props()
					fmt.Fprintf(w, "  cuda  available: %s, compute capability %d.%d, %d SMs\n", b.Name(), p.ComputeCapability[0], p.ComputeCapability[1], p.SMs)
					if names := b.Device().Kernels(); len(names) > 0 {
						fmt.Fprintf(w, "Kernels:     %d embedded (fatbins: sm_90, sm_80, compute_80 PTX)\n", len(names))
					}
				}
			} else {
				reason := handOff.Reason
				if reason == "" {
					reason = "this is the CPU build (the mdm-gpu-cuda build drives GPUs)"
				}
				fmt.Fprintf(w, "  cuda  not in this binary: %s\n", reason)
			}
			fmt.Fprintf(w, "Simulator kernels: %s\n", strings.Join(simKernels, " "))
			fmt.Fprintf(w, "Tokenizers:  text8, char, byte, gpt2 (GPT-2 BPE, V=50257, embedded ranks), pixels (V=256)\n")
			fmt.Fprintf(w, "Multi-device: sim and cpu replicas in-process; cuda with NCCL %s\n", ncclNote())
			return nil
		},
	}
}

// ncclNote says whether this build can use NCCL.
func ncclNote() string {
	if !sched.NCCLAvailable {
		return "(not in this build: gradients are reduced through host memory)"
	}
	if v, err := sched.NCCLVersion(); err == nil {
		return fmt.Sprintf("%d.%d.%d (loaded)", v/10000, v/100%100, v%100)
	}
	return "(libnccl.so.2 not found: host-memory reduction)"
}

// gemmNote names the CPU backend's GEMM (cpu.Backend.BLAS) with a short description.
func gemmNote(blas string) string {
	desc := map[string]string{
		"go-avx2":  "pure-Go blocked SGEMM with AVX2/FMA assembly micro-kernels; float64 through gonum",
		"gonum":    "gonum's pure-Go SGEMM/DGEMM; this CPU lacks AVX2/FMA or the build is not amd64",
		"openblas": "OpenBLAS through cgo, single-threaded per tile",
	}[blas]
	if desc == "" {
		return blas
	}
	return blas + " (" + desc + ")"
}
