package sim

import (
	"testing"
	"time"
)

// TestPerformance logs the two numbers the design cares about (docs/cudasim.md §9): the fiber switch
// cost and the 40 x 256-thread block reduction. It fails only on gross regressions.
func TestPerformance(t *testing.T) {
	ns := switchNanos(200000)
	if ns <= 0 {
		t.Fatal("switch benchmark failed")
	}
	t.Logf("context switch: %.1f ns (barrier round trip of one thread / 2)", ns)

	const n, grid, block = 100000, 40, 256
	x := make([]float32, n)
	for i := range x {
		x[i] = 1
	}
	xp := upload(t, x)
	partials, total := dev(t, 4*grid), dev(t, 4)
	args := []uint64{ptr(xp), ptr(partials), ptr(total), i64(n)}
	best := time.Hour
	for i := 0; i < 5; i++ {
		start := time.Now()
		mustLaunch(t, "selftest_block_reduce_f32", d1(grid), d1(block), 4*block, args, Options{})
		best = min(best, time.Since(start))
	}
	t.Logf("block reduction, 40 blocks x 256 threads, n=100000: %v (best of 5)", best)
	if best > 2*time.Second {
		t.Errorf("block reduction took %v", best)
	}
}

func BenchmarkContextSwitch(b *testing.B) {
	b.ReportMetric(switchNanos(b.N+1000), "ns/switch")
}

func BenchmarkBlockReduce40x256(b *testing.B) {
	const n, grid, block = 100000, 40, 256
	xp := upload(b, make([]float32, n))
	partials, total := dev(b, 4*grid), dev(b, 4)
	args := []uint64{ptr(xp), ptr(partials), ptr(total), i64(n)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Launch("selftest_block_reduce_f32", d1(grid), d1(block), 4*block, args, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
