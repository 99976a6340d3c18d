package cuda_test

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// newTrainer builds the tiny preset's network (V=65, L=128, D=128, 4 layers, 4 heads,
// MLP 352, adaLN with Dc=64) on be, with MD4's init from one seed and then every parameter
// perturbed so that no gradient is trivially zero (adaLN and the head start at 0).
func newTrainer(t *testing.T, be ops.Backend, batch int) *train.Trainer {
	return newTrainerDT(t, be, batch, 0, 4)
}

// newTrainerDT is newTrainer with a compute dtype (0 = the parameter dtype, BF16 = mixed
// precision) and a head count (the bf16 flash kernels need head dim 64 or 128).
func newTrainerDT(t *testing.T, be ops.Backend, batch int, compute ops.DType, heads int) *train.Trainer {
	t.Helper()
	cfg := model.Config{Vocab: 65, SeqLen: 128, Dim: 128, Layers: 4, Heads: heads, MLPHidden: 352, TimeCond: true, CondDim: 64, Compute: compute}
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
			v[i] += 0.02 * rng.Normal64(9, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
	opt, err := train.NewOptimizer(m, train.OptimConfig{LR: 2e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		WeightDecay: 0.03, Warmup: 0, TotalSteps: 10, EMADecay: 0.99})
	if err != nil {
		t.Fatal(err)
	}
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: batch, Seed: 3, Antithetic: true,
		Est: diffusion.Estimator{Sched: sched, L: cfg.SeqLen, V: cfg.Vocab, Bound: diffusion.BoundPaperCode}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTrainStepSimMatchesCPU: one whole training step of the tiny model (masking on the
// device, forward, fused CE, backward, AdamW + EMA) on the simulated GPU gives the CPU
// backend's loss, gradients and updated weights within f32 tolerance, and the same masks
// bit for bit (same number of masked positions).
func TestTrainStepSimMatchesCPU(t *testing.T) {
	const B = 4
	ref := newTrainer(t, cpu.New(), B)
	dut := newTrainer(t, cuda.NewBackend(cuda.NewSimDevice()), B)
	sr, sd := stepBoth(t, ref, dut, B)
	if d := math.Abs(sd.LossBits - sr.LossBits); d > 1e-5*math.Abs(sr.LossBits) {
		t.Errorf("loss: sim %.9g, cpu %.9g", sd.LossBits, sr.LossBits)
	}
	if d := math.Abs(sd.GradNorm - sr.GradNorm); d > 1e-4*sr.GradNorm {
		t.Errorf("gradient norm: sim %.9g, cpu %.9g", sd.GradNorm, sr.GradNorm)
	}
	t.Logf("loss %.6f bits/token (cpu %.6f), grad norm %.6f (cpu %.6f), %d masked", sd.LossBits, sr.LossBits, sd.GradNorm, sr.GradNorm, sd.Masked)
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
			// relative L2 error of the whole tensor: f32 reductions in a different order
			// (GEMM blocking, tree sums) give ~1e-6; 1e-4 leaves room for long sums.
			if den > 0 && math.Sqrt(num/den) > 1e-4 || den == 0 && num > 0 {
				t.Errorf("%s of %s: relative L2 difference %.3g between sim and cpu", kind, p.Name, math.Sqrt(num/math.Max(den, 1e-300)))
			}
		}
	}
}

// TestTrainStepMixedPrecisionSim: bf16 mixed precision (bf16 activations and weight copies,
// fp32 master weights, gradients and optimizer state) on the simulated GPU against the CPU
// in fp32: the same masks, the loss within bf16 accuracy, every parameter gradient
// pointing the same way (cosine similarity) with a bounded relative error, and the bf16
// weight copies refreshed by AdamW equal to bf16(master) after the update.
func TestTrainStepMixedPrecisionSim(t *testing.T) {
	const B = 4
	ref := newTrainerDT(t, cpu.New(), B, 0, 2) // head dim 64
	dut := newTrainerDT(t, cuda.NewBackend(cuda.NewSimDevice()), B, ops.BF16, 2)
	if !dut.M.Cfg.Mixed() {
		t.Fatal("config is not mixed precision")
	}
	sr, sd := stepBoth(t, ref, dut, B)
	if d := math.Abs(sd.LossBits - sr.LossBits); d > 1e-2*math.Abs(sr.LossBits) {
		t.Errorf("loss: bf16 sim %.6g, f32 cpu %.6g", sd.LossBits, sr.LossBits)
	}
	t.Logf("loss bf16 %.6f vs f32 %.6f; grad norm %.6f vs %.6f", sd.LossBits, sr.LossBits, sd.GradNorm, sr.GradNorm)
	worst := 0.0
	for i, p := range ref.M.Params {
		q := dut.M.Params[i]
		a, _ := ref.M.GetGrad(p)
		b, _ := dut.M.GetGrad(q)
		var dot, na, nb, diff float64
		for j := range a {
			dot += a[j] * b[j]
			na += a[j] * a[j]
			nb += b[j] * b[j]
			diff += (a[j] - b[j]) * (a[j] - b[j])
		}
		if na == 0 {
			continue
		}
		rel := math.Sqrt(diff / na)
		worst = math.Max(worst, rel)
		if cos := dot / math.Sqrt(na*nb); cos < 0.995 || rel > 0.1 {
			t.Errorf("gradient of %s: cosine %.5f, relative L2 error %.3g (bf16 vs f32)", p.Name, cos, rel)
		}
		if q.Half != nil {
			w, _ := dut.M.GetParam(q)
			h := make([]uint16, q.Half.Len())
			if err := dut.M.Backend().Download(h, q.Half); err != nil {
				t.Fatal(err)
			}
			for j := range w {
				if h[j] != cuda.BF16FromFloat32(float32(w[j])) {
					t.Fatalf("%s: bf16 copy [%d] = %#04x, want bf16(master %v) = %#04x", p.Name, j, h[j], w[j], cuda.BF16FromFloat32(float32(w[j])))
				}
			}
		}
	}
	t.Logf("worst relative gradient error bf16 vs f32: %.3g", worst)
}

// stepBoth runs one training step of the reference and the device-under-test trainer on
// the same batch of B sequences of 128 tokens (V = 65) and checks that they masked the
// same number of positions (the masks must be bit-identical).
func stepBoth(t *testing.T, ref, dut *train.Trainer, B int) (sr, sd train.StepStats) {
	t.Helper()
	x0 := make([]int32, B*128)
	for i := range x0 {
		x0[i] = int32(rng.Uniform64(1, 0, rng.PurposeData, uint64(i)) * 65)
	}
	sr, err := ref.TrainStep(x0, nil)
	if err != nil {
		t.Fatal(err)
	}
	sd, err = dut.TrainStep(x0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Masked != sd.Masked {
		t.Fatalf("masked positions: sim %d, cpu %d (masks must be bit-identical)", sd.Masked, sr.Masked)
	}
	return sr, sd
}
