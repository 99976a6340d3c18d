package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// TensorDiff compares one tensor of ours with PyTorch's: the largest absolute difference
// relative to the largest magnitude of PyTorch's tensor (a scale-aware relative error that
// near-zero elements cannot blow up).
type TensorDiff struct {
	Name   string  `json:"name"`
	MaxAbs float64 `json:"max_abs_diff"`
	Scale  float64 `json:"max_abs_torch"`
	Rel    float64 `json:"rel"`
}

// Agreement is the result of CheckAgainstPyTorch.
type Agreement struct {
	Dir           string         `json:"dir"`
	Step          int            `json:"step"`
	Masked        int            `json:"masked"`
	MaskedTorch   int            `json:"masked_torch"`
	LossOurs      float64        `json:"loss_bits_ours"`
	LossTorch     float64        `json:"loss_bits_torch"`
	LossRel       float64        `json:"loss_rel"`
	GradNormOurs  float64        `json:"grad_norm_ours"`
	GradNormTorch float64        `json:"grad_norm_torch"`
	LROurs        float64        `json:"lr_ours"`
	LRTorch       float64        `json:"lr_torch"`
	GradRel       float64        `json:"grad_max_rel"`   // worst TensorDiff.Rel over the gradients
	GradWorst     string         `json:"grad_worst"`     // its tensor
	GradL2Rel     float64        `json:"grad_l2_rel"`    // ‖g_ours − g_torch‖ / ‖g_torch‖ over all gradients
	UpdateRel     float64        `json:"update_max_rel"` // worst over the AdamW updates Δθ = θ_new − θ_old
	UpdateWorst   string         `json:"update_worst"`   //
	EMARel        float64        `json:"ema_max_rel"`    // worst over the EMA updates Δema
	MomentRel     float64        `json:"moment_max_rel"` // worst over the new first and second moments
	ReloadedState bool           `json:"reloaded_state"` // PyTorch's state file loaded with train.LoadState
	Grads         []TensorDiff   `json:"grads"`
	Torch         map[string]any `json:"pytorch_versions"`
}

// checkSeed seeds the weights, data, times and masks of the agreement check.
const checkSeed = 20240613

// perturb gives every parameter that MD4 initialises to zero (adaLN, head, biases) random
// values, so that every gradient of the check is non-trivial (from MD4's initialisation the
// gates and the head are zero and only the head gets a gradient).
func perturb(m *model.Model, seed uint64) error {
	for id, p := range m.Params {
		if p.Init != model.InitZero {
			continue
		}
		std := 0.1
		if len(p.Shape) == 2 {
			std = 0.5 / math.Sqrt(float64(p.FanIn))
		}
		v := make([]float64, p.Numel())
		for i := range v {
			v[i] = std * rng.Normal64(seed, uint64(1000+id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			return err
		}
	}
	return nil
}

// CheckAgainstPyTorch runs the numeric agreement check of md4.py --check in dir (created
// if needed; its files stay there): on our CPU backend, MD4's initialisation with every
// zero-initialised parameter perturbed, the optimiser moved past warmup (60 updates) and
// two training steps taken, the training state is saved with train.SaveState, the batch,
// times and mask of the next step are exported, and that step is taken. PyTorch then takes
// the same step from the saved state; its state (in our checkpoint layout) is loaded back
// with train.LoadState and its loss, gradients, update, EMA and moments are compared with
// ours.
func CheckAgainstPyTorch(ctx context.Context, python, dir string, s Shape) (*Agreement, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	be := cpu.New()
	defer be.Close()
	st, err := NewStepper(be, s, checkSeed)
	if err != nil {
		return nil, err
	}
	defer st.Free()
	st.Tr.Step, st.Opt.Updates = 60, 60
	for range 2 {
		if _, err := st.Step(); err != nil {
			return nil, err
		}
	}
	if err := train.SaveState(filepath.Join(dir, "state.safetensors"), st.Tr, map[string]string{"mdm.bench.shape": s.Name}); err != nil {
		return nil, err
	}
	old := map[string][]float64{}
	oldEMA := map[string][]float64{}
	for i, p := range st.M.Params {
		if old[p.Name], err = st.M.GetParam(p); err != nil {
			return nil, err
		}
		if oldEMA[p.Name], err = model.Download(be, st.Opt.EMA[i]); err != nil {
			return nil, err
		}
	}
	step := st.Tr.Step
	xt, ts, err := stepMask(be, st, uint64(step))
	if err != nil {
		return nil, err
	}
	B, L := s.Batch, s.SeqLen
	batch := []ckpt.Named{
		{Name: "x0", T: tensor.New(tensor.WithShape(B, L), tensor.WithBacking(append([]int32(nil), st.X0...)))},
		{Name: "xt", T: tensor.New(tensor.WithShape(B, L), tensor.WithBacking(xt))},
		{Name: "t", T: tensor.New(tensor.WithShape(B), tensor.WithBacking(ts))},
	}
	if err := ckpt.Save(filepath.Join(dir, "batch.safetensors"), batch, map[string]string{"step": fmt.Sprint(step)}); err != nil {
		return nil, err
	}
	cfg, _ := json.MarshalIndent(s, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return nil, err
	}
	lrOurs := st.Opt.Cfg.LearningRate(st.Opt.Updates)
	stats, err := st.Step()
	if err != nil {
		return nil, err
	}

	var tj struct {
		LossBits float64        `json:"loss_bits"`
		Masked   int            `json:"masked"`
		GradNorm float64        `json:"grad_norm"`
		LR       float64        `json:"lr"`
		Versions map[string]any `json:"versions"`
	}
	if err := RunTorch(ctx, TorchOptions{Python: python, Shape: s}, &tj, "--check", dir); err != nil {
		return nil, err
	}
	a := &Agreement{Dir: dir, Step: step, Masked: stats.Masked, MaskedTorch: tj.Masked, LossOurs: stats.LossBits,
		LossTorch: tj.LossBits, GradNormOurs: stats.GradNorm, GradNormTorch: tj.GradNorm, LROurs: lrOurs, LRTorch: tj.LR,
		Torch: tj.Versions}
	a.LossRel = math.Abs(a.LossOurs-a.LossTorch) / math.Abs(a.LossTorch)

	// Gradients (a plain safetensors file of "grad.<name>" tensors with our fingerprints).
	var gspecs []ckpt.Spec
	for _, p := range st.M.Params {
		gspecs = append(gspecs, ckpt.Spec{Name: "grad." + p.Name, Shape: p.Shape, DType: ckpt.F32})
	}
	tg, _, err := ckpt.Load(filepath.Join(dir, "torch_grads.safetensors"), gspecs)
	if err != nil {
		return nil, fmt.Errorf("bench: PyTorch's gradients: %w", err)
	}
	var num, den float64
	for _, p := range st.M.Params {
		ours, err := st.M.GetGrad(p)
		if err != nil {
			return nil, err
		}
		theirs := f64s(tg["grad."+p.Name])
		d := diff(p.Name, ours, theirs)
		a.Grads = append(a.Grads, d)
		if d.Rel > a.GradRel || a.GradWorst == "" {
			a.GradRel, a.GradWorst = d.Rel, p.Name
		}
		for i := range ours {
			num += (ours[i] - theirs[i]) * (ours[i] - theirs[i])
			den += theirs[i] * theirs[i]
		}
	}
	a.GradL2Rel = math.Sqrt(num / den)

	// PyTorch's state after the step, read by our own checkpoint loader into a second
	// trainer: the parameters, EMA and moments it holds are compared with ours.
	be2 := cpu.New()
	defer be2.Close()
	st2, err := NewStepper(be2, s, checkSeed)
	if err != nil {
		return nil, err
	}
	defer st2.Free()
	if _, err := train.LoadState(filepath.Join(dir, "torch_state.safetensors"), st2.Tr); err != nil {
		return nil, fmt.Errorf("bench: loading PyTorch's training state: %w", err)
	}
	a.ReloadedState = st2.Tr.Step == step+1 && st2.Opt.Updates == st.Opt.Updates
	for i, p := range st.M.Params {
		p2 := st2.M.Params[i]
		newO, err1 := st.M.GetParam(p)
		newT, err2 := st2.M.GetParam(p2)
		emaO, err3 := model.Download(be, st.Opt.EMA[i])
		emaT, err4 := model.Download(be2, st2.Opt.EMA[i])
		mO, err5 := model.Download(be, st.Opt.M[i])
		mT, err6 := model.Download(be2, st2.Opt.M[i])
		vO, err7 := model.Download(be, st.Opt.V[i])
		vT, err8 := model.Download(be2, st2.Opt.V[i])
		for _, e := range []error{err1, err2, err3, err4, err5, err6, err7, err8} {
			if e != nil {
				return nil, e
			}
		}
		if d := diff(p.Name, sub(newO, old[p.Name]), sub(newT, old[p.Name])); d.Rel > a.UpdateRel || a.UpdateWorst == "" {
			a.UpdateRel, a.UpdateWorst = d.Rel, p.Name
		}
		a.EMARel = max(a.EMARel, diff(p.Name, sub(emaO, oldEMA[p.Name]), sub(emaT, oldEMA[p.Name])).Rel)
		a.MomentRel = max(a.MomentRel, diff(p.Name, mO, mT).Rel, diff(p.Name, vO, vT).Rel)
	}
	out, _ := json.MarshalIndent(a, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "agreement.json"), out, 0o644); err != nil {
		return nil, err
	}
	return a, nil
}

// stepMask reproduces the times and the mask that TrainStep draws at step (the runner's
// MaskTokens call for a single pass over the batch).
func stepMask(be ops.Backend, st *Stepper, step uint64) ([]int32, []float64, error) {
	s := st.Shape
	cfg := st.Tr.Cfg
	ts := make([]float64, s.Batch)
	probs := make([]float64, s.Batch)
	cfg.Est.SampleTimes(ts, cfg.Seed, step, cfg.Antithetic)
	diffusion.MaskProbs(probs, cfg.Est.Sched, ts)
	x0T, err := be.Alloc(ops.I32, s.Batch, s.SeqLen)
	if err != nil {
		return nil, nil, err
	}
	defer be.Free(x0T)
	xtT, err := be.Alloc(ops.I32, s.Batch, s.SeqLen)
	if err != nil {
		return nil, nil, err
	}
	defer be.Free(xtT)
	pT, err := be.Alloc(ops.F64, s.Batch)
	if err != nil {
		return nil, nil, err
	}
	defer be.Free(pT)
	if err := be.Upload(x0T, st.X0); err != nil {
		return nil, nil, err
	}
	if err := be.Upload(pT, probs); err != nil {
		return nil, nil, err
	}
	if err := be.MaskTokens(&ops.MaskParams{XT: xtT, X0: x0T, MaskProb: pT, MaskID: int32(s.Vocab), Seed: cfg.Seed,
		Step: step, Purpose: uint8(rng.PurposeMask)}); err != nil {
		return nil, nil, err
	}
	xt := make([]int32, s.Batch*s.SeqLen)
	return xt, ts, be.Download(xt, xtT)
}

func f64s(d *tensor.Dense) []float64 {
	switch v := d.Data().(type) {
	case []float32:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	case []float64:
		return v
	}
	return nil
}

func sub(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func diff(name string, ours, theirs []float64) TensorDiff {
	d := TensorDiff{Name: name}
	for i := range ours {
		d.MaxAbs = max(d.MaxAbs, math.Abs(ours[i]-theirs[i]))
		d.Scale = max(d.Scale, math.Abs(theirs[i]))
	}
	if d.Scale > 0 {
		d.Rel = d.MaxAbs / d.Scale
	} else if d.MaxAbs > 0 {
		d.Rel = math.Inf(1)
	}
	return d
}
