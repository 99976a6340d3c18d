package opstest

import (
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// BenchCase times case c on backend be: it sets the case up once, then runs the op b.N
// times and synchronises, reporting GFLOP/s and GB/s from the case's FLOPs and Bytes.
// Cases that accumulate or work in place get their inputs uploaded again before every
// run, with the timer stopped. A case the backend does not support is skipped.
func BenchCase(b *testing.B, be ops.Backend, c Case) {
	b.Helper()
	if !be.Supports(c.Op, c.DType) {
		b.Skipf("UNSUPPORTED on %s: Supports(%v, %v) = false", be.Name(), c.Op, c.DType)
	}
	inst, err := c.Setup(be)
	if err != nil {
		b.Fatal(err)
	}
	defer inst.Free()
	reset := false
	for _, a := range c.args {
		reset = reset || a.role == inout
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if reset && i > 0 {
			b.StopTimer()
			if err := inst.Reset(); err != nil {
				b.Fatal(err)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := inst.Run(); err != nil {
			b.Fatal(err)
		}
		if reset {
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	if sec > 0 {
		if c.FLOPs > 0 {
			b.ReportMetric(float64(c.FLOPs)/sec/1e9, "GFLOP/s")
		}
		b.ReportMetric(float64(c.Bytes)/sec/1e9, "GB/s")
	}
}
