package bench

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// BenchmarkTrainStep times whole training steps (mask → forward → masked CE → backward →
// AdamW + EMA) of the tiny preset on the CPU backend with GOMAXPROCS workers, and on the
// simulated device (plumbing only: its timings say nothing about a GPU).
func BenchmarkTrainStep(b *testing.B) {
	s := Tiny()
	b.Run(fmt.Sprintf("cpu/%s", s.Name), func(b *testing.B) {
		be := cpu.New(cpu.WithWorkers(runtime.GOMAXPROCS(0)))
		defer be.Close()
		benchStep(b, be, s)
	})
	b.Run(fmt.Sprintf("sim/%s-b4", s.Name), func(b *testing.B) {
		small := s
		small.Batch = 4
		benchStep(b, cuda.NewBackend(cuda.NewSimDevice()), small)
	})
}

func benchStep(b *testing.B, be ops.Backend, s Shape) {
	st, err := NewStepper(be, s, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Free()
	if _, err := st.Step(); err != nil { // warm-up: workers, scratch
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := st.Step(); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(s.TokensPerStep())/sec, "tokens/s")
	b.ReportMetric(s.FLOPsPerToken()*float64(s.TokensPerStep())/sec/1e9, "GFLOP/s")
}
