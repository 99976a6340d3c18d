package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

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
			gemm := "gonum (pure Go)"
			if strings.Contains(tags, "openblas") && cgo == "1" {
				gemm = "OpenBLAS"
			}
			fmt.Fprintf(w, "mdm-gpu %s (revision %s)\n", v.MDMGPU, rev)
			fmt.Fprintf(w, "Go:          %s\n", v.Go)
			fmt.Fprintf(w, "OS/arch:     %s/%s\n", v.OS, v.Arch)
			fmt.Fprintf(w, "CPUs:        %d (GOMAXPROCS %d)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
			fmt.Fprintf(w, "Build tags:  %s (CGO_ENABLED=%s)\n", tags, cgo)
			fmt.Fprintf(w, "Backends:\n")
			fmt.Fprintf(w, "  cpu   available: reference backend in pure Go, %d workers, GEMM %s\n", be.Workers(), gemm)
			fmt.Fprintf(w, "  sim   not built yet: the CUDA kernels under the CPU simulator come in a later issue\n")
			fmt.Fprintf(w, "  cuda  not built yet: the GPU backend comes in a later issue\n")
			fmt.Fprintf(w, "Kernels:     none embedded in this binary (CUDA kernels come with the cuda backend)\n")
			fmt.Fprintf(w, "Tokenizers:  text8, char, byte (GPT-2 BPE not available yet)\n")
			return nil
		},
	}
}
