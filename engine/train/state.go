package train

import (
	"fmt"
	"strconv"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"gorgonia.org/tensor"
)

// Metadata keys written by SaveState (besides the caller's and ckpt's own).
const (
	MetaStep    = "mdm.train.step"    // steps completed
	MetaUpdates = "mdm.train.updates" // optimizer updates applied (AdamW step count)
	MetaSkipped = "mdm.train.skipped" // updates skipped for non-finite values
)

// SaveState writes the whole training state to path atomically (architecture.md §5): the
// parameters under their canonical names, the EMA weights under "ema.", the AdamW moments
// under "adam.m." and "adam.v.", the step counters, and the caller's metadata (config,
// tokenizer, loss history, …). Times, masks and batches are Philox-addressed by
// (seed, step), so the step counter is the whole RNG and data-cursor state (pitfalls B19).
func SaveState(path string, tr *Trainer, meta map[string]string) error {
	var named []ckpt.Named
	add := func(name string, t *ops.Tensor, shape []int) error {
		d, err := hostTensor(tr.M.Backend(), t, shape)
		if err != nil {
			return fmt.Errorf("train: checkpoint %s: %w", name, err)
		}
		named = append(named, ckpt.Named{Name: name, T: d})
		return nil
	}
	for i, p := range tr.M.Params {
		if err := add(p.Name, p.W, p.Shape); err != nil {
			return err
		}
		if tr.Opt.EMA != nil {
			if err := add("ema."+p.Name, tr.Opt.EMA[i], p.Shape); err != nil {
				return err
			}
		}
		if err := add("adam.m."+p.Name, tr.Opt.M[i], p.Shape); err != nil {
			return err
		}
		if err := add("adam.v."+p.Name, tr.Opt.V[i], p.Shape); err != nil {
			return err
		}
	}
	m := map[string]string{}
	for k, v := range meta {
		m[k] = v
	}
	m[MetaStep] = strconv.Itoa(tr.Step)
	m[MetaUpdates] = strconv.Itoa(tr.Opt.Updates)
	m[MetaSkipped] = strconv.Itoa(tr.Skipped)
	return ckpt.Save(path, named, m)
}

// StateSpecs lists the tensors a training checkpoint of a model with config c holds
// (ema.* only when withEMA).
func StateSpecs(c model.Config, withEMA bool) []ckpt.Spec {
	dt := ckpt.F32
	if c.WithDefaults().DType == ops.F64 {
		dt = ckpt.F64
	}
	var out []ckpt.Spec
	for _, s := range c.WithDefaults().ParamSpecs() {
		out = append(out, ckpt.Spec{Name: s.Name, Shape: s.Shape, DType: dt})
		if withEMA {
			out = append(out, ckpt.Spec{Name: "ema." + s.Name, Shape: s.Shape, DType: dt})
		}
		out = append(out, ckpt.Spec{Name: "adam.m." + s.Name, Shape: s.Shape, DType: dt},
			ckpt.Spec{Name: "adam.v." + s.Name, Shape: s.Shape, DType: dt})
	}
	return out
}

// LoadState restores a training state written by SaveState into tr (whose model and
// optimizer must have the checkpoint's configuration) and returns the file's metadata.
// The file is read and verified completely before anything in tr changes, so a refused
// file leaves tr as it was.
func LoadState(path string, tr *Trainer) (map[string]string, error) {
	specs := StateSpecs(tr.M.Cfg, tr.Opt.EMA != nil)
	ts, meta, err := ckpt.Load(path, specs)
	if err != nil {
		return nil, err
	}
	step, err1 := strconv.Atoi(meta[MetaStep])
	upd, err2 := strconv.Atoi(meta[MetaUpdates])
	skipped, err3 := strconv.Atoi(meta[MetaSkipped])
	if err1 != nil || err2 != nil || err3 != nil || step < 0 || upd < 0 || skipped < 0 || upd+skipped != step {
		return nil, fmt.Errorf("train: checkpoint %s has inconsistent step counters (%s=%q, %s=%q, %s=%q)",
			path, MetaStep, meta[MetaStep], MetaUpdates, meta[MetaUpdates], MetaSkipped, meta[MetaSkipped])
	}
	be := tr.M.Backend()
	set := func(name string, t *ops.Tensor) error {
		if err := uploadDense(be, t, ts[name]); err != nil {
			return fmt.Errorf("train: restoring %s from %s: %w", name, path, err)
		}
		return nil
	}
	for i, p := range tr.M.Params {
		if err := set(p.Name, p.W); err != nil {
			return nil, err
		}
		if tr.Opt.EMA != nil {
			if err := set("ema."+p.Name, tr.Opt.EMA[i]); err != nil {
				return nil, err
			}
		}
		if err := set("adam.m."+p.Name, tr.Opt.M[i]); err != nil {
			return nil, err
		}
		if err := set("adam.v."+p.Name, tr.Opt.V[i]); err != nil {
			return nil, err
		}
	}
	if err := tr.M.SyncHalf(); err != nil {
		return nil, err
	}
	tr.Step, tr.Opt.Updates, tr.Skipped = step, upd, skipped
	return meta, nil
}

// LoadWeights reads only the model weights of a checkpoint into m: the EMA weights
// ("ema.<name>") when ema is true (evaluation and sampling, md4.md §6.3), else the raw
// parameters. Everything else in the file is checked but ignored.
func LoadWeights(path string, m *model.Model, ema bool) (map[string]string, error) {
	info, err := ckpt.Inspect(path)
	if err != nil {
		return nil, err
	}
	var want []ckpt.Spec
	prefix := ""
	if ema {
		prefix = "ema."
	}
	have := map[string]bool{}
	for _, t := range info.Tensors {
		want = append(want, ckpt.Spec{Name: t.Name, Shape: t.Shape, DType: t.DType})
		have[t.Name] = true
	}
	for _, p := range m.Params {
		if name := prefix + p.Name; !have[name] {
			if ema {
				return nil, fmt.Errorf("train: checkpoint %s has no EMA weights (%s missing); was it trained with --ema 0? Use --no-ema to load the raw weights", path, name)
			}
			return nil, fmt.Errorf("train: checkpoint %s lacks %s", path, name)
		}
	}
	ts, meta, err := ckpt.Load(path, want)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Params {
		d := ts[prefix+p.Name]
		if !sameInts(d.Shape(), p.Shape) {
			return nil, fmt.Errorf("train: checkpoint %s: %s has shape %v, the model needs %v", path, prefix+p.Name, []int(d.Shape()), p.Shape)
		}
		if err := uploadDense(m.Backend(), p.W, d); err != nil {
			return nil, fmt.Errorf("train: loading %s from %s: %w", prefix+p.Name, path, err)
		}
	}
	if err := m.SyncHalf(); err != nil {
		return nil, err
	}
	return meta, nil
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hostTensor downloads t as a gorgonia host tensor of the given shape.
func hostTensor(be ops.Backend, t *ops.Tensor, shape []int) (*tensor.Dense, error) {
	switch t.DType() {
	case ops.F32:
		buf := make([]float32, t.Len())
		if err := be.Download(buf, t); err != nil {
			return nil, err
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(buf)), nil
	case ops.F64:
		buf := make([]float64, t.Len())
		if err := be.Download(buf, t); err != nil {
			return nil, err
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(buf)), nil
	}
	return nil, fmt.Errorf("dtype %v cannot be checkpointed", t.DType())
}

// uploadDense copies a host tensor into t (same element count and type).
func uploadDense(be ops.Backend, t *ops.Tensor, d *tensor.Dense) error {
	if d == nil {
		return fmt.Errorf("missing tensor")
	}
	switch data := d.Data().(type) {
	case []float32:
		if t.DType() != ops.F32 {
			return fmt.Errorf("stored as f32, the model uses %v", t.DType())
		}
		return be.Upload(t, data)
	case []float64:
		if t.DType() != ops.F64 {
			return fmt.Errorf("stored as f64, the model uses %v", t.DType())
		}
		return be.Upload(t, data)
	}
	return fmt.Errorf("unsupported stored type %T", d.Data())
}
