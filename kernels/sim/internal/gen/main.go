// Command gen regenerates the simulator's kernel registration files kernels/sim/k_<family>.cpp from
// kernels/*.cu and kernels/sim/testdata/*.cu. Run it as `go generate ./kernels/sim` after adding,
// renaming or removing a kernel or a .cu file.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mdm-gpu/mdm-gpu/kernels/sim/internal/kgen"
)

func main() {
	dir := flag.String("dir", ".", "the kernels/sim directory")
	check := flag.Bool("check", false, "only report stale files (exit status 1 if any)")
	flag.Parse()
	if *check {
		problems, err := kgen.Check(*dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "gen:", p)
		}
		if len(problems) > 0 {
			os.Exit(1)
		}
		return
	}
	touched, err := kgen.Write(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, t := range touched {
		fmt.Println("gen: wrote", t)
	}
}
