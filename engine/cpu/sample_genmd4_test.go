package cpu

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestSampleClassUnmaskStatistics checks GenMD4's reverse step (ops.SampleParams.ClassUnmask)
// as a categorical over V+1 outcomes: P(j) = μ_j·q_j, P(stay masked) = Σ_j μ_j·(1 − q_j),
// with a χ² test over many draws (4 degrees of freedom: P(χ² > 18.47) = 0.001), and that a
// row with q_j = 0 for its only possible token never unmasks.
func TestSampleClassUnmaskStatistics(t *testing.T) {
	b := testBackend(2)
	probs := []float64{0.1, 0.2, 0.3, 0.4}
	q := []float64{0.9, 0.05, 0.5, 0.25}
	const n, steps = 500, 40
	rows := make([]int32, n)
	logits := make([]float64, 0, n*4)
	for i := range rows {
		rows[i] = int32(i)
		for _, p := range probs {
			logits = append(logits, math.Log(p)-1.3)
		}
	}
	z := make([]int32, n)
	for i := range z {
		z[i] = 4
	}
	want := make([]float64, 5)
	for j, p := range probs {
		want[j] = p * q[j]
		want[4] += p * (1 - q[j])
	}
	counts := make([]int, 5)
	for step := range uint64(steps) {
		zt := mkI(t, b, z, 1, n)
		p := &ops.SampleParams{Out: zt, Z: zt, Logits: mk(t, b, ops.F32, logits, n, 4), Rows: mkI(t, b, rows, n),
			Mode: ops.SampleExact, MaskID: 4, Seed: 99, Step: step, ClassUnmask: mk(t, b, ops.F64, q, 4)}
		must(t, b.SampleStep(p))
		for _, tok := range getI(t, b, zt) {
			counts[tok]++
		}
	}
	if x2 := chiSquare(counts, want, n*steps); x2 > 18.47 {
		t.Errorf("χ² = %.2f over %d draws (counts %v, expected probabilities %v), want ≤ 18.47", x2, n*steps, counts, want)
	}
	// Bad probabilities are refused; jax-compat cannot take per-class probabilities.
	zt := mkI(t, b, z[:1], 1, 1)
	err := b.SampleStep(&ops.SampleParams{Out: zt, Z: zt, Logits: mk(t, b, ops.F32, logits[:4], 1, 4), Rows: mkI(t, b, []int32{0}, 1),
		Mode: ops.SampleExact, MaskID: 4, ClassUnmask: mk(t, b, ops.F64, []float64{0.5, 1.5, 0, 0}, 4)})
	wantOpError(t, err, ops.OpSampleStep, ops.ErrValue, "1.5", "token 1")
	err = b.SampleStep(&ops.SampleParams{Out: zt, Z: zt, Logits: mk(t, b, ops.F32, logits[:4], 1, 4), Rows: mkI(t, b, []int32{0}, 1),
		Mode: ops.SampleJAXCompat, MaskID: 4, ClassUnmask: mk(t, b, ops.F64, q, 4)})
	wantOpError(t, err, ops.OpSampleStep, ops.ErrValue, "ClassUnmask")
}
