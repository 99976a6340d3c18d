package opstest_test

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// Check compares a device under test with the reference on a subset of the table; a GPU
// test passes its device instead of the second CPU backend.
func ExampleCheck() {
	ref, dut := cpu.New(), cpu.New()
	small := func(c opstest.Case) bool { return c.Op == ops.OpMaskedCE && c.Size == opstest.Small }
	var passed, unsupported int
	err := opstest.Check(ref, dut, small, opstest.Options{Report: func(r opstest.Result) {
		switch r.Status {
		case opstest.Passed:
			passed++
		case opstest.Unsupported:
			unsupported++ // the CPU has no bf16 MaskedCE
		}
	}})
	fmt.Println(err, passed, unsupported)
	// Output: <nil> 5 5
}
