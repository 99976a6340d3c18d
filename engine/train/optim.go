package train

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// OptimConfig holds the optimiser hyperparameters (md4.md §6.3: optax.adamw with
// decoupled weight decay on all parameters, warmup then cosine LR, EMA of the weights).
type OptimConfig struct {
	LR          float64 // peak learning rate
	Beta1       float64 // 0.9
	Beta2       float64 // 0.999 text, 0.99 images
	Eps         float64 // 1e−8 (optax default)
	WeightDecay float64 // decoupled, multiplied by the LR as in optax.adamw
	Warmup      int     // linear warmup steps
	TotalSteps  int     // cosine decays to 0 at this step
	Schedule    string  // "cosine" (default) or "constant" (after warmup)
	EMADecay    float64 // 0.9999 in MD4; 0 disables EMA
	ClipNorm    float64 // global gradient-norm clip; 0 disables (MD4 default)
}

// Validate reports the first bad field with its value.
func (o OptimConfig) Validate() error {
	switch {
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("train: learning rate %v must be positive and finite", o.LR)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("train: Adam betas (%v, %v) must be in [0, 1)", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return fmt.Errorf("train: Adam eps %v must be positive", o.Eps)
	case o.WeightDecay < 0:
		return fmt.Errorf("train: weight decay %v must be ≥ 0", o.WeightDecay)
	case o.Warmup < 0 || o.TotalSteps < 1:
		return fmt.Errorf("train: warmup %d must be ≥ 0 and total steps %d ≥ 1", o.Warmup, o.TotalSteps)
	case o.Schedule != "" && o.Schedule != "cosine" && o.Schedule != "constant":
		return fmt.Errorf("train: LR schedule %q is not one of cosine, constant", o.Schedule)
	case o.EMADecay < 0 || o.EMADecay >= 1:
		return fmt.Errorf("train: EMA decay %v must be in [0, 1) (0 disables EMA)", o.EMADecay)
	case o.ClipNorm < 0:
		return fmt.Errorf("train: clip norm %v must be ≥ 0 (0 disables clipping)", o.ClipNorm)
	}
	return nil
}

// LearningRate returns the LR used by the update made at step k (k counts from 0, so the
// very first update has LR 0 when Warmup > 0), md4.md §6.3:
//
//	lr(k) = LR · min(1, k/Warmup) · ½(1 + cos(π · max(0, (k − Warmup)/(TotalSteps − Warmup))))
//
// The cosine factor is 1 for the "constant" schedule and when TotalSteps ≤ Warmup.
func (o OptimConfig) LearningRate(k int) float64 {
	w := 1.0
	if o.Warmup > 0 {
		w = math.Min(1, float64(k)/float64(o.Warmup))
	}
	if o.Schedule == "constant" || o.TotalSteps <= o.Warmup {
		return o.LR * w
	}
	p := math.Max(0, float64(k-o.Warmup)/float64(o.TotalSteps-o.Warmup))
	p = math.Min(p, 1)
	return o.LR * w * 0.5 * (1 + math.Cos(math.Pi*p))
}

// Optimizer holds AdamW moments and the EMA weights of a model on its backend.
type Optimizer struct {
	Cfg     OptimConfig
	m       *model.Model
	M, V    []*ops.Tensor
	EMA     []*ops.Tensor // nil when EMA is disabled
	sumSq   *ops.Tensor
	Updates int // number of updates applied (AdamW's bias-correction step is Updates+1)
}

// NewOptimizer allocates zero moments and an EMA initialised to the current weights.
func NewOptimizer(m *model.Model, cfg OptimConfig) (*Optimizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	be := m.Backend()
	o := &Optimizer{Cfg: cfg, m: m}
	var err error
	alloc := func(p *model.Param, prefix string) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		t, err = be.Alloc(p.W.DType(), p.Shape...)
		if t != nil {
			t.Name = prefix + p.Name
		}
		return t
	}
	for _, p := range m.Params {
		o.M = append(o.M, alloc(p, "adam.m."))
		o.V = append(o.V, alloc(p, "adam.v."))
		if cfg.EMADecay > 0 {
			e := alloc(p, "ema.")
			if err == nil {
				err = be.Axpy(&ops.AxpyParams{Y: e, X: p.W, Alpha: 1})
			}
			o.EMA = append(o.EMA, e)
		}
	}
	if err == nil {
		o.sumSq, err = be.Alloc(ops.F64, 1)
	}
	if err != nil {
		o.Free()
		return nil, fmt.Errorf("train: optimizer state: %w", err)
	}
	return o, nil
}

// Free releases the optimizer state.
func (o *Optimizer) Free() {
	be := o.m.Backend()
	for _, l := range [][]*ops.Tensor{o.M, o.V, o.EMA, {o.sumSq}} {
		for _, t := range l {
			if t != nil {
				be.Free(t)
			}
		}
	}
}

// GradNorm returns the global L2 norm of all gradients, sqrt(Σ_p Σ g²), accumulated in
// float64 in parameter order.
func (o *Optimizer) GradNorm() (float64, error) {
	be := o.m.Backend()
	if err := be.Axpy(&ops.AxpyParams{Y: o.sumSq}); err != nil {
		return 0, err
	}
	for _, p := range o.m.Params {
		if err := be.SumSquares(&ops.SumSquaresParams{Out: o.sumSq, X: p.Grad}); err != nil {
			return 0, err
		}
	}
	v := make([]float64, 1)
	if err := be.Download(v, o.sumSq); err != nil {
		return 0, err
	}
	return math.Sqrt(v[0]), nil
}

// Step applies one AdamW + EMA update with learning rate LearningRate(Updates), scaling
// gradients by gradScale (e.g. the clip factor), and increments Updates.
func (o *Optimizer) Step(gradScale float64) error {
	be := o.m.Backend()
	lr := o.Cfg.LearningRate(o.Updates)
	for i, p := range o.m.Params {
		q := &ops.AdamWParams{Param: p.W, Grad: p.Grad, M: o.M[i], V: o.V[i], LR: lr,
			Beta1: o.Cfg.Beta1, Beta2: o.Cfg.Beta2, Eps: o.Cfg.Eps, WeightDecay: o.Cfg.WeightDecay,
			GradScale: float32(gradScale), Step: o.Updates + 1}
		if o.EMA != nil {
			q.EMA, q.EMADecay = o.EMA[i], o.Cfg.EMADecay
		}
		q.Shadow = p.Half // mixed precision: refresh the bf16 copy the passes read
		if err := be.AdamW(q); err != nil {
			return fmt.Errorf("train: AdamW on %s: %w", p.Name, err)
		}
	}
	o.Updates++
	return nil
}

// ClipScale returns the gradient scale min(1, ClipNorm/norm) (1 when clipping is off or
// the norm is 0).
func (o *Optimizer) ClipScale(norm float64) float64 {
	if o.Cfg.ClipNorm <= 0 || norm <= o.Cfg.ClipNorm || norm == 0 {
		return 1
	}
	return o.Cfg.ClipNorm / norm
}
