// Command mdm-detect prints what mdm-gpu's GPU detection (package cuda/detect) finds:
// the GPUs visible through NVML, or why there are none, and what the mdm-gpu hand-off
// would do. It links no NVIDIA library (NVML is loaded at run time).
//
//	mdm-detect          # one line
//	mdm-detect -json    # the probe as JSON
//
// Exit status: 0 when at least one GPU is visible, 3 when none is, 1 on a usage error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/mdm-gpu/mdm-gpu/cuda/detect"
)

func main() {
	asJSON := flag.Bool("json", false, "print the probe as JSON")
	lib := flag.String("nvml", "", "path of the NVML library (default: libnvidia-ml.so.1 from the loader's search path)")
	flag.Parse()
	var p detect.Probe
	if *lib != "" {
		p = detect.DetectLibrary(*lib)
	} else {
		p = detect.Detect()
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	} else {
		fmt.Println(p.Summary())
	}
	if len(p.GPUs) == 0 {
		os.Exit(3)
	}
}
