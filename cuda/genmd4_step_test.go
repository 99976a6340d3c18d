package cuda_test

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// newGenTrainer builds a small GenMD4 model (V=27, L=32, D=64 in one head — the bf16 flash kernels need head dim 64 —, 2 layers) on be, perturbed so
// that no gradient is trivially zero, with powers moved away from 1.
func newGenTrainer(t *testing.T, be ops.Backend, batch int, compute ops.DType) *train.GenTrainer {
	t.Helper()
	cfg := model.Config{Vocab: 27, SeqLen: 32, Dim: 64, Layers: 2, Heads: 1, TimeCond: true, CondDim: 16, GenMD4: true, Compute: compute}
	m, err := model.New(be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(5); err != nil {
		t.Fatal(err)
	}
	for id, p := range m.Params {
		v, err := m.GetParam(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] += 0.05 * rng.Normal64(9, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SyncHalf(); err != nil {
		t.Fatal(err)
	}
	opt, err := train.NewOptimizer(m, train.OptimConfig{LR: 2e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		WeightDecay: 0.03, TotalSteps: 10, EMADecay: 0.99})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewGenTrainer(m, opt, train.GenConfig{Batch: batch, MicroBatch: batch / 2, Seed: 3, Antithetic: true})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestGenMD4StepSimMatchesCPU: one whole GenMD4 training step (two masks per sequence on the
// device from the [B, V] table, two forward/backward passes with GenMaskedCE, the host RLOO and
// reconstruction terms, AdamW on every parameter including schedule.w_raw) on the simulated GPU
// gives the CPU backend's masks bit for bit and its losses, gradients (w_raw's included) and
// updated weights within f32 tolerance. Mixed precision (bf16 compute) agrees within bf16
// accuracy.
func TestGenMD4StepSimMatchesCPU(t *testing.T) {
	const B = 4
	x0 := make([]int32, B*32)
	for i := range x0 {
		x0[i] = int32(rng.Uniform64(1, 0, rng.PurposeData, uint64(i)) * 27)
	}
	ref := newGenTrainer(t, cpu.New(), B, 0)
	sr, err := ref.TrainStep(x0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		compute ops.DType
		tol     float64
	}{{"f32", 0, 1e-4}, {"bf16-mixed", ops.BF16, 3e-2}} {
		t.Run(c.name, func(t *testing.T) {
			dut := newGenTrainer(t, cuda.NewBackend(cuda.NewSimDevice()), B, c.compute)
			sd, err := dut.TrainStep(x0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sr.Masked != sd.Masked {
				t.Fatalf("masked positions: sim %v, cpu %v (masks must be bit-identical)", sd.Masked, sr.Masked)
			}
			t.Logf("loss %.6f bits/token (cpu %.6f), exact %.6f (cpu %.6f), RLOO %.4g (cpu %.4g), grad norm %.6f (cpu %.6f), masked %v",
				sd.LossBits, sr.LossBits, sd.ExactBits, sr.ExactBits, sd.RLOOBits, sr.RLOOBits, sd.GradNorm, sr.GradNorm, sd.Masked)
			if d := math.Abs(sd.LossBits - sr.LossBits); d > c.tol*math.Abs(sr.LossBits) {
				t.Errorf("loss: sim %.9g, cpu %.9g", sd.LossBits, sr.LossBits)
			}
			for j := range sr.GradW {
				if d := math.Abs(sd.GradW[j] - sr.GradW[j]); d > c.tol*(math.Abs(sr.GradW[j])+1e-3) {
					t.Errorf("∂/∂w_%d: sim %.9g, cpu %.9g", j, sd.GradW[j], sr.GradW[j])
				}
			}
			for i, p := range ref.M.Params {
				q := dut.M.Params[i]
				for _, kind := range []string{"grad", "param"} {
					var a, b []float64
					if kind == "grad" {
						a, _ = ref.M.GetGrad(p)
						b, _ = dut.M.GetGrad(q)
					} else {
						a, _ = ref.M.GetParam(p)
						b, _ = dut.M.GetParam(q)
					}
					var num, den float64
					for j := range a {
						num += (a[j] - b[j]) * (a[j] - b[j])
						den += a[j] * a[j]
					}
					if den > 0 && math.Sqrt(num/den) > c.tol || den == 0 && num > 0 {
						t.Errorf("%s of %s: relative L2 difference %.3g between sim and cpu", kind, p.Name, math.Sqrt(num/math.Max(den, 1e-300)))
					}
				}
			}
		})
	}
}
