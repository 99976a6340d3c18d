package cuda

import (
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestSampleClassUnmaskErrors: a GenMD4 per-class unmask probability outside [0, 1] (or NaN)
// is refused with the CPU's message and Out is unchanged.
func TestSampleClassUnmaskErrors(t *testing.T) {
	const v = 5
	for _, bad := range []float64{1.5, -0.25} {
		var msgs [2]string
		for i, be := range []ops.Backend{cpu.New(), newSimBackend()} {
			z := upload(t, be, ops.I32, []int32{v, v, 2}, 1, 3)
			out := upload(t, be, ops.I32, []int32{7, 7, 7}, 1, 3)
			q := []float64{0.5, 0.5, 0.5, bad, 0.5}
			err := be.SampleStep(&ops.SampleParams{Out: out, Z: z, Logits: upload(t, be, ops.F32, make([]float32, 2*v), 2, v),
				Rows: upload(t, be, ops.I32, []int32{1, 0}, 2), Mode: ops.SampleExact, MaskID: v,
				ClassUnmask: upload(t, be, ops.F64, q, v)})
			if err == nil {
				t.Fatalf("%s: q = %v accepted", be.Name(), bad)
			}
			msgs[i] = err.Error()
			if got := downloadI32(t, be, out); got[0] != 7 || got[1] != 7 || got[2] != 7 {
				t.Fatalf("%s: Out = %v was written by a failed call", be.Name(), got)
			}
		}
		if msgs[0] != msgs[1] {
			t.Errorf("q = %v: sim says %q, CPU says %q", bad, msgs[1], msgs[0])
		}
	}
}
