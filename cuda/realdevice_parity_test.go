//go:build cuda

package cuda_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// The parity suite on the GPU: the engine/ops/opstest table with the CPU reference
// backend as reference and the real device (through the shared launchers) as the device
// under test, with guard bands around every allocation. Like every cuda-tagged test
// binary it only runs on a machine with a GPU (bench/gpu-check.sh).

func realBackend(t testing.TB, opts ...cuda.Option) (*cuda.Backend, *cuda.RealDevice) {
	t.Helper()
	dev, err := cuda.NewRealDevice(0)
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	return cuda.NewBackend(dev, opts...), dev.(*cuda.RealDevice)
}

func TestRealParity(t *testing.T) {
	be, _ := realBackend(t, cuda.WithGuardBands(256))
	opstest.Run(t, cpu.New(), be, opstest.Options{Guard: true})
}

// BenchmarkRealOps times the Large parity cases on the GPU with CUDA events and reports
// GB/s and TFLOP/s with their share of the device's peak (perf-anchors.md §2). Select
// with -test.bench 'RealOps/<substring>'.
func BenchmarkRealOps(b *testing.B) {
	be, dev := realBackend(b)
	p := dev.Props()
	for _, c := range opstest.Cases() {
		if c.Size != opstest.Large {
			continue
		}
		b.Run(benchName(c), func(b *testing.B) {
			if !be.Supports(c.Op, c.DType) {
				b.Skipf("UNSUPPORTED on %s", be.Name())
			}
			inst, err := c.Setup(be)
			if err != nil {
				b.Fatal(err)
			}
			defer inst.Free()
			for range 3 { // warm-up: module loads, cuBLAS heuristics, clocks
				if err := inst.Run(); err != nil {
					b.Fatal(err)
				}
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			gpu, err := dev.TimeStream(func() error {
				for range b.N {
					if err := inst.Run(); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			sec := gpu.Seconds() / float64(b.N)
			if sec <= 0 {
				return
			}
			b.ReportMetric(sec*1e6, "gpu-us/op")
			gbs := float64(c.Bytes) / sec / 1e9
			b.ReportMetric(gbs, "GB/s")
			if p.MemBandwidthGBs > 0 {
				b.ReportMetric(100*gbs/p.MemBandwidthGBs, "%peakBW")
			}
			if c.FLOPs > 0 {
				tf := float64(c.FLOPs) / sec / 1e12
				b.ReportMetric(tf, "TFLOP/s")
				if p.PeakTFLOPsBF16 > 0 && c.DType == ops.BF16 {
					b.ReportMetric(100*tf/p.PeakTFLOPsBF16, "%peakBF16")
				}
			}
		})
	}
}

// benchName turns a case name into a benchmark name without spaces or slashes.
func benchName(c opstest.Case) string {
	return strings.NewReplacer(" ", "", "/", "_").Replace(c.Name)
}

// TestRealTrainOWTSmall trains the owt-small shape (MD4-S: 12 layers, D=768, 12 heads,
// L=1024, V=50257, adaLN) on the GPU for a few steps on random tokens and reports tokens/s
// and MFU (FLOPs per token 6N + 12·layers·D·L, perf-anchors.md §1 and §3). Batch:
// MDM_TRAIN_BATCH (default 8); dtype: MDM_TRAIN_DTYPE=f32|bf16 (default bf16, falling back
// to f32 when the model refuses it). It prints one "GPU-CHECK-TRAIN:" line for
// bench/gpu-check.sh.
func TestRealTrainOWTSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	be, dev := realBackend(t)
	batch := 8
	if v, err := strconv.Atoi(os.Getenv("MDM_TRAIN_BATCH")); err == nil && v > 0 {
		batch = v
	}
	cfg := model.Config{Vocab: 50257, SeqLen: 1024, Dim: 768, Layers: 12, Heads: 12, TimeCond: true, CondDim: 64,
		DType: ops.BF16}
	if os.Getenv("MDM_TRAIN_DTYPE") == "f32" {
		cfg.DType = ops.F32
	}
	m, err := model.New(be, cfg)
	if err != nil && cfg.DType == ops.BF16 {
		t.Logf("bf16 model refused (%v); training in f32", err)
		cfg.DType = ops.F32
		m, err = model.New(be, cfg)
	}
	if err != nil {
		t.Skipf("owt-small model on %s: %v", be.Name(), err)
	}
	if err := m.Init(1); err != nil {
		t.Fatal(err)
	}
	opt, err := train.NewOptimizer(m, train.OptimConfig{LR: 3e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		WeightDecay: 0.03, Warmup: 0, TotalSteps: 1000, EMADecay: 0.9999})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: batch, Seed: 1, Antithetic: true,
		Est: diffusion.Estimator{Sched: sched, L: cfg.SeqLen, V: cfg.Vocab, Bound: diffusion.BoundPaperCode}})
	if err != nil {
		t.Fatal(err)
	}
	x0 := make([]int32, batch*cfg.SeqLen)
	step := func(i int) train.StepStats {
		for k := range x0 {
			x0[k] = int32(rng.Uniform64(uint64(i), 0, rng.PurposeData, uint64(k)) * float64(cfg.Vocab))
		}
		st, err := tr.TrainStep(x0, nil)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		return st
	}
	for i := range 2 { // warm-up: module loads, cuBLAS heuristics, allocator
		step(i)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, tokens := 0, 0
	var last train.StepStats
	for n < 3 || (n < 20 && time.Since(start) < 20*time.Second) {
		last = step(2 + n)
		tokens += batch * cfg.SeqLen
		n++
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	sec := time.Since(start).Seconds()
	hm := model.DefaultMLPHidden(cfg.Dim)
	matmulParams := float64(cfg.Layers*(4*cfg.Dim*cfg.Dim+3*cfg.Dim*hm) + cfg.Vocab*cfg.Dim)
	flopsPerToken := 6*matmulParams + 12*float64(cfg.Layers*cfg.Dim*cfg.SeqLen)
	tps := float64(tokens) / sec
	peak := dev.Props().PeakTFLOPsBF16
	mfu := 0.0
	if peak > 0 {
		mfu = 100 * tps * flopsPerToken / (peak * 1e12)
	}
	line := fmt.Sprintf("GPU-CHECK-TRAIN: shape=owt-small dtype=%v batch=%d steps=%d step_ms=%.1f tokens/s=%.0f mfu=%.2f%% (peak %.0f TFLOP/s, %.1f MFLOP/token) loss=%.4f bits",
		cfg.DType, batch, n, 1000*sec/float64(n), tps, mfu, peak, flopsPerToken/1e6, last.LossBits)
	fmt.Println(line)
	t.Log(line)
	if last.LossBits != last.LossBits || last.LossBits <= 0 {
		t.Errorf("loss %v after %d steps", last.LossBits, n+2)
	}
}
