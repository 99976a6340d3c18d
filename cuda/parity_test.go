package cuda_test

import (
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// TestParitySim runs the whole parity table (engine/ops/opstest) with the CPU reference
// against the simulated GPU, with guard bands, in forward and in reverse thread order
// (a kernel that races gives different bits in the two orders); every case also runs twice
// for bit-identical results. Every f32 and bf16 case must be supported except the head
// dims the flash kernels do not implement (checked separately by TestSimSupportsEveryOp).
func TestParitySim(t *testing.T) {
	for _, order := range []struct {
		name    string
		reverse bool
	}{{"forward", false}, {"reverse", true}} {
		t.Run(order.name, func(t *testing.T) {
			dut := cuda.NewBackend(cuda.NewSimDevice(cuda.SimReverse(order.reverse)), cuda.WithGuardBands(256))
			opstest.Run(t, cpu.New(), dut, opstest.Options{Guard: true})
		})
	}
}

// TestSimSupportsEveryOp: the simulated GPU backend claims support for every (op, dtype)
// pair the parity table exercises, except f64 (a CPU-only dtype, which it must refuse), so
// nothing in the table can pass by being skipped.
func TestSimSupportsEveryOp(t *testing.T) {
	b := cuda.NewBackend(cuda.NewSimDevice())
	seen := map[string]bool{}
	var missing []string
	for _, c := range opstest.Cases() {
		key := c.Op.String() + "/" + c.DType.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		if c.DType == ops.F64 && c.Op != ops.OpMaskTokens {
			if b.Supports(c.Op, ops.F64) {
				t.Errorf("%v claims f64 support; f64 is a CPU-only dtype", c.Op)
			}
			continue
		}
		if !b.Supports(c.Op, c.DType) {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the simulated GPU backend does not support: %s", strings.Join(missing, ", "))
	}
}
