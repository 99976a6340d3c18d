package opstest

import (
	"errors"
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// inputs is a case's generated host data, rounded to the dtypes the device under test
// stores, so that every run (device, honest reference, oracle) sees exactly the same
// values.
type inputs struct {
	f map[string][]float64
	i map[string][]int32
}

// makeInputs generates the case's data and rounds every float argument to its dtype on
// the device under test.
func (c *Case) makeInputs() (*inputs, error) {
	d := data{f: map[string][]float64{}, i: map[string][]int32{}}
	c.fill(newGen(c.Name), d)
	res := &inputs{f: map[string][]float64{}, i: map[string][]int32{}}
	for _, a := range c.args {
		dt := a.dtype(c.DType, forDUT)
		n := a.len()
		if dt == ops.I32 {
			v, ok := d.i[a.name]
			if !ok {
				v = make([]int32, n)
			}
			if len(v) != n {
				return nil, fmt.Errorf("opstest: case %s: argument %s has %d values for shape %v", c.Name, a.name, len(v), a.shape)
			}
			res.i[a.name] = v
			continue
		}
		v, ok := d.f[a.name]
		if !ok {
			v = make([]float64, n)
		}
		if len(v) != n {
			return nil, fmt.Errorf("opstest: case %s: argument %s has %d values for shape %v", c.Name, a.name, len(v), a.shape)
		}
		r := make([]float64, n)
		for k, x := range v {
			r[k] = RoundTo(dt, x)
		}
		res.f[a.name] = r
	}
	return res, nil
}

// Instance is a case allocated on one backend: its tensors exist and hold the case's
// inputs. It is the perf hook: a benchmark calls Setup once, then Run in its loop.
type Instance struct {
	c       *Case
	b       ops.Backend
	t       target
	up      map[string]*host // upload sources
	tensors map[string]*ops.Tensor
	dts     map[string]ops.DType
}

// Setup allocates the case's tensors on b in the dtypes of a device under test and
// uploads its inputs. Free the instance when done.
func (c Case) Setup(b ops.Backend) (*Instance, error) {
	in, err := c.makeInputs()
	if err != nil {
		return nil, err
	}
	return c.instantiate(b, in, forDUT)
}

// instantiate allocates and uploads the case on b for the given run.
func (c *Case) instantiate(b ops.Backend, inp *inputs, t target) (*Instance, error) {
	inst := &Instance{c: c, b: b, t: t, up: map[string]*host{}, tensors: map[string]*ops.Tensor{}, dts: map[string]ops.DType{}}
	for _, a := range c.args {
		dt := a.dtype(c.DType, t)
		inst.dts[a.name] = dt
		inst.up[a.name] = hostFrom(dt, inp.f[a.name], inp.i[a.name])
		ten, err := b.Alloc(dt, a.shape...)
		if err != nil {
			inst.Free()
			return nil, fmt.Errorf("alloc %s %v%v: %w", a.name, dt, a.shape, err)
		}
		ten.Name = a.name
		inst.tensors[a.name] = ten
	}
	if err := inst.Reset(); err != nil {
		inst.Free()
		return nil, err
	}
	return inst, nil
}

// Reset uploads the case's inputs and the initial contents of its outputs again (for
// cases that accumulate or work in place).
func (inst *Instance) Reset() error {
	for _, a := range inst.c.args {
		if err := inst.b.Upload(inst.tensors[a.name], inst.up[a.name].slice()); err != nil {
			return fmt.Errorf("upload %s: %w", a.name, err)
		}
	}
	return nil
}

// Run calls the op once. It does not synchronise: call the backend's Sync before
// reading the time of an asynchronous backend.
func (inst *Instance) Run() error { return inst.c.call(inst.b, inst.tensors) }

// Tensors returns the instance's tensors by argument name (the Params field names).
func (inst *Instance) Tensors() map[string]*ops.Tensor { return inst.tensors }

// Free releases the instance's tensors. It returns the first error of Device.Free.
func (inst *Instance) Free() error {
	var errs []error
	for _, a := range inst.c.args {
		if t := inst.tensors[a.name]; t != nil {
			errs = append(errs, inst.b.Free(t))
			delete(inst.tensors, a.name)
		}
	}
	return errors.Join(errs...)
}

// download copies one argument back to the host.
func (inst *Instance) download(name string) (*host, error) {
	t := inst.tensors[name]
	h := newHost(inst.dts[name], t.Len())
	if err := inst.b.Download(h.slice(), t); err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}
	return h, nil
}

// outputs downloads every argument the op writes.
func (inst *Instance) outputs() (map[string]*host, error) {
	res := map[string]*host{}
	for _, a := range inst.c.args {
		if a.role == in {
			continue
		}
		h, err := inst.download(a.name)
		if err != nil {
			return nil, err
		}
		res[a.name] = h
	}
	return res, nil
}

// checkInputs verifies that the op left its read-only inputs untouched.
func (inst *Instance) checkInputs() error {
	for _, a := range inst.c.args {
		if a.role != in {
			continue
		}
		h, err := inst.download(a.name)
		if err != nil {
			return err
		}
		if k := firstBitDiff(h, inst.up[a.name]); k >= 0 {
			return fmt.Errorf("the op modified its input %s: at %s it holds %s, uploaded %s",
				a.name, Index(a.shape, k), h.fmtBits(k), inst.up[a.name].fmtBits(k))
		}
	}
	return nil
}
