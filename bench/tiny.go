package bench

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// Shape is the model and step being measured: the network, the batch, and the
// optimiser settings of the step. The PyTorch baseline receives the same values
// (bench/pytorch/md4.py --config).
type Shape struct {
	Name        string  `json:"name"`
	Vocab       int     `json:"vocab"`
	SeqLen      int     `json:"seq_len"`
	Dim         int     `json:"dim"`
	Layers      int     `json:"layers"`
	Heads       int     `json:"heads"`
	MLPHidden   int     `json:"mlp_hidden"`
	CondDim     int     `json:"cond_dim"`
	Batch       int     `json:"batch"`
	LR          float64 `json:"lr"`
	Warmup      int     `json:"warmup"`
	TotalSteps  int     `json:"total_steps"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	AdamEps     float64 `json:"adam_eps"`
	WeightDecay float64 `json:"weight_decay"`
	EMADecay    float64 `json:"ema_decay"`
	SchedEps    float64 `json:"sched_eps"` // ε of the shifted linear schedule
	NormEps     float64 `json:"norm_eps"`
	RoPETheta   float64 `json:"rope_theta"`
	TimeScale   float64 `json:"time_scale"`
}

// Tiny is the `tiny` preset of the CLI (char-level V = 27, L = 128, D = 128, 4 layers, 4
// heads, MLP 352, adaLN Dc = 64, batch 32; AdamW lr 2e-3, 50 warmup steps then cosine
// over 300, wd 0.03, b2 0.999, EMA 0.99; linear schedule with ε = 1e-4).
func Tiny() Shape {
	return Shape{Name: "tiny", Vocab: 27, SeqLen: 128, Dim: 128, Layers: 4, Heads: 4, MLPHidden: 352, CondDim: 64,
		Batch: 32, LR: 2e-3, Warmup: 50, TotalSteps: 300, Beta1: 0.9, Beta2: 0.999, AdamEps: 1e-8, WeightDecay: 0.03,
		EMADecay: 0.99, SchedEps: 1e-4, NormEps: 1e-5, RoPETheta: 10000, TimeScale: 1000}
}

// OWTSmall is MD4-S on OpenWebText (md4.md §6.4: 12 layers, D = 768, 12 heads, L = 1024,
// V = 50257, MLP 2048) with a per-device batch of 8 (the global batch of 512 does not fit
// one step on one device without accumulation; tokens/s does not depend on it much).
func OWTSmall() Shape {
	s := Tiny()
	s.Name, s.Vocab, s.SeqLen, s.Dim, s.Layers, s.Heads, s.MLPHidden = "owt-small", 50257, 1024, 768, 12, 12, 2048
	s.Batch, s.LR, s.Warmup, s.TotalSteps, s.EMADecay = 8, 3e-4, 2000, 1_000_000, 0.9999
	return s
}

// Shapes lists the named shapes.
func Shapes() []Shape { return []Shape{Tiny(), OWTSmall()} }

// LookupShape returns the named shape.
func LookupShape(name string) (Shape, error) {
	for _, s := range Shapes() {
		if s.Name == name {
			return s, nil
		}
	}
	return Shape{}, fmt.Errorf("bench: unknown shape %q (valid: tiny, owt-small)", name)
}

// ModelConfig returns the network configuration.
func (s Shape) ModelConfig() model.Config {
	return model.Config{Vocab: s.Vocab, SeqLen: s.SeqLen, Dim: s.Dim, Layers: s.Layers, Heads: s.Heads,
		MLPHidden: s.MLPHidden, TimeCond: true, CondDim: s.CondDim, NormEps: float32(s.NormEps),
		RoPETheta: s.RoPETheta, TimeScale: s.TimeScale}.WithDefaults()
}

// OptimConfig returns the optimiser configuration.
func (s Shape) OptimConfig() train.OptimConfig {
	return train.OptimConfig{LR: s.LR, Beta1: s.Beta1, Beta2: s.Beta2, Eps: s.AdamEps, WeightDecay: s.WeightDecay,
		Warmup: s.Warmup, TotalSteps: s.TotalSteps, Schedule: "cosine", EMADecay: s.EMADecay}
}

// Estimator returns the loss estimator (shifted linear schedule, continuous time, the
// md4 code's bound).
func (s Shape) Estimator() (diffusion.Estimator, error) {
	sched, err := diffusion.ParseSchedule("linear", true, s.SchedEps)
	if err != nil {
		return diffusion.Estimator{}, err
	}
	return diffusion.Estimator{Sched: sched, L: s.SeqLen, V: s.Vocab, Bound: diffusion.BoundPaperCode}, nil
}

// TokensPerStep returns B·L.
func (s Shape) TokensPerStep() int { return s.Batch * s.SeqLen }

// FLOPsPerToken returns the training FLOPs per token by the PaLM convention for a
// bidirectional model (perf-anchors.md §1): 6·N + 12·Layers·D·L, N counting the matmul
// parameters (attention, MLP and head; the embedding is a gather and adaLN runs once per
// sequence).
func (s Shape) FLOPsPerToken() float64 {
	c := s.ModelConfig()
	d, hm := float64(c.Dim), float64(c.MLPHidden)
	n := float64(c.Layers)*(4*d*d+3*d*hm) + d*float64(c.Vocab)
	return 6*n + 12*float64(c.Layers)*d*float64(c.SeqLen)
}

// Stepper is one model, optimiser and trainer of a Shape on a backend, with a fixed
// pseudo-random batch, ready to time training steps.
type Stepper struct {
	Shape Shape
	Be    ops.Backend
	M     *model.Model
	Opt   *train.Optimizer
	Tr    *train.Trainer
	X0    []int32 // [B·L] clean tokens
}

// NewStepper builds a Stepper in float32: MD4's initialisation from seed with the
// zero-initialised parameters perturbed (see perturb), and a batch of tokens drawn
// uniformly from Philox (seed, 0, PurposeData).
func NewStepper(be ops.Backend, s Shape, seed uint64) (*Stepper, error) {
	return NewStepperCompute(be, s, seed, 0)
}

// NewStepperCompute is NewStepper with the activation dtype compute (0: float32; BF16:
// mixed precision on GPU-side backends, see model.Config.Compute).
func NewStepperCompute(be ops.Backend, s Shape, seed uint64, compute ops.DType) (*Stepper, error) {
	cfg := s.ModelConfig()
	cfg.Compute = compute
	m, err := model.New(be, cfg)
	if err != nil {
		return nil, err
	}
	if err := initWeights(m, seed); err != nil {
		m.Free()
		return nil, err
	}
	opt, err := train.NewOptimizer(m, s.OptimConfig())
	if err != nil {
		m.Free()
		return nil, err
	}
	est, err := s.Estimator()
	if err != nil {
		return nil, err
	}
	tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: s.Batch, Seed: seed, Antithetic: true, Est: est})
	if err != nil {
		opt.Free()
		m.Free()
		return nil, err
	}
	return &Stepper{Shape: s, Be: be, M: m, Opt: opt, Tr: tr, X0: RandomTokens(s.Batch*s.SeqLen, s.Vocab, seed)}, nil
}

// fastInitParams is the model size above which benchmarks fill the weights by fastInit:
// MD4's initialisation draws ~10⁷ Philox normals per second on the host, 15 s for
// owt-small.
const fastInitParams = 20_000_000

// initWeights gives m the weights of a throughput benchmark (timings do not depend on the
// values): MD4's initialisation from seed with the zero-initialised parameters (adaLN,
// head, biases) perturbed, as after some training (from MD4's initialisation the head and
// the gates are zero, every gradient but the head's is exactly zero, and a GEMM that skips
// zero multipliers would make the first steps unrepresentatively fast; the PyTorch baseline
// does the same); for models above fastInitParams parameters, fastInit.
func initWeights(m *model.Model, seed uint64) error {
	if m.Cfg.NumParams() > fastInitParams {
		return fastInit(m, seed)
	}
	if err := m.Init(seed); err != nil {
		return err
	}
	return perturb(m, seed)
}

// fastInit fills every parameter with uniform values of MD4's standard deviation for its
// kind (perturb's for the zero-initialised ones) from a xorshift generator.
func fastInit(m *model.Model, seed uint64) error {
	x := seed*0x9e3779b97f4a7c15 | 1
	for _, p := range m.Params {
		std := 0.1
		switch {
		case p.Init == model.InitOne:
			std = 0
		case p.Init == model.InitZero && len(p.Shape) == 2:
			std = 0.5 / math.Sqrt(float64(p.FanIn))
		case p.Init != model.InitZero:
			std = math.Sqrt(p.Scale / float64(p.FanIn))
		}
		a := std * math.Sqrt(3)
		v := make([]float64, p.Numel())
		for i := range v {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v[i] = a * (float64(x>>11)/(1<<52) - 1)
			if p.Init == model.InitOne {
				v[i] = 1
			}
		}
		if err := m.SetParam(p, v); err != nil {
			return err
		}
	}
	return nil
}

// RandomTokens returns n token ids uniform in [0, v) from Philox (seed, 0, PurposeData).
func RandomTokens(n, v int, seed uint64) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.Uniform64(seed, 0, rng.PurposeData, uint64(i)) * float64(v))
	}
	return out
}

// Free releases the trainer, optimiser and model.
func (s *Stepper) Free() {
	s.Tr.Free()
	s.Opt.Free()
	s.M.Free()
}

// Step runs one training step on the fixed batch (synchronised) and returns its stats.
func (s *Stepper) Step() (train.StepStats, error) {
	st, err := s.Tr.TrainStep(s.X0, nil)
	if err != nil {
		return st, err
	}
	return st, s.Be.Sync()
}

// Timing summarises repeated measurements of one step: wall-clock time, and the CPU time
// (user + system, all threads of the process) that the step used, which is less sensitive
// to other processes on a shared machine.
type Timing struct {
	Steps     []float64 `json:"step_seconds"` // wall time of every timed step, in order
	CPU       []float64 `json:"cpu_seconds,omitempty"`
	Median    float64   `json:"median_seconds"`
	Min       float64   `json:"min_seconds"`
	CPUMedian float64   `json:"cpu_median_seconds,omitempty"`
	TokensSec float64   `json:"tokens_per_second"`      // from the median wall time
	BestTokS  float64   `json:"best_tokens_per_second"` // from the fastest step
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summarise computes medians, the minimum and tokens/s for tokens per step from per-step
// wall times and (optionally, nil) CPU times.
func Summarise(wall, cpu []float64, tokens int) Timing {
	t := Timing{Steps: wall, CPU: cpu}
	if len(wall) == 0 {
		return t
	}
	t.Median, t.Min, t.CPUMedian = median(wall), slices.Min(wall), median(cpu)
	t.TokensSec = float64(tokens) / t.Median
	t.BestTokS = float64(tokens) / t.Min
	return t
}

// CPUTime returns the user + system CPU time used so far by this process.
func CPUTime() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// Time runs warmup untimed steps, then steps timed steps (at least one), and returns
// their timing. A garbage collection runs before the timed steps.
func (s *Stepper) Time(warmup, steps int) (Timing, error) {
	for range warmup {
		if _, err := s.Step(); err != nil {
			return Timing{}, err
		}
	}
	runtime.GC()
	var wall, cpu []float64
	for range max(steps, 1) {
		t0, c0 := time.Now(), CPUTime()
		if _, err := s.Step(); err != nil {
			return Timing{}, err
		}
		wall, cpu = append(wall, time.Since(t0).Seconds()), append(cpu, CPUTime()-c0)
	}
	return Summarise(wall, cpu, s.Shape.TokensPerStep()), nil
}
