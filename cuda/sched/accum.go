package sched

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// treeAcc accumulates the gradients of a device's micro-batches as a left-packed binary
// tree in micro-batch order (the order of TreeSum), on the device: after each micro-batch
// the model's gradient set is taken out and merged like a binary counter (slot k holds the
// sum of 2^k consecutive micro-batches), and finish adds the remaining slots from the
// smallest up. Gradient sets are swapped, never copied: the model's Param.Grad pointers
// are re-pointed at free sets. It needs up to ⌊log2 A⌋+1 extra gradient sets for A
// micro-batches (none when A = 1, where the scheduler does not use it).
type treeAcc struct {
	m     *model.Model
	spare [][]*ops.Tensor
	slots [][]*ops.Tensor // slots[k]: the sum of 2^k micro-batch gradients, or nil
	all   [][]*ops.Tensor // the model's original set and every set allocated here
}

func newTreeAcc(m *model.Model) *treeAcc {
	orig := make([]*ops.Tensor, len(m.Params))
	for i, p := range m.Params {
		orig[i] = p.Grad
	}
	return &treeAcc{m: m, all: [][]*ops.Tensor{orig}}
}

// install points the model's gradients at set and returns the set they pointed at.
func (a *treeAcc) install(set []*ops.Tensor) []*ops.Tensor {
	old := make([]*ops.Tensor, len(a.m.Params))
	for i, p := range a.m.Params {
		old[i], p.Grad = p.Grad, set[i]
	}
	return old
}

// take removes the model's current gradient set and installs a free one (allocated on
// first use; its contents are stale, the caller zeroes it before the next backward pass).
func (a *treeAcc) take() ([]*ops.Tensor, error) {
	var fresh []*ops.Tensor
	if n := len(a.spare); n > 0 {
		fresh, a.spare = a.spare[n-1], a.spare[:n-1]
	} else {
		be := a.m.Backend()
		fresh = make([]*ops.Tensor, len(a.m.Params))
		for i, p := range a.m.Params {
			t, err := be.Alloc(p.Grad.DType(), p.Shape...)
			if err != nil {
				for _, u := range fresh[:i] {
					be.Free(u)
				}
				return nil, fmt.Errorf("sched: gradient accumulation buffer for %s: %w (use low-memory accumulation, or fewer accumulation steps)", p.Name, err)
			}
			t.Name = "grad." + p.Name
			fresh[i] = t
		}
		a.all = append(a.all, fresh)
	}
	return a.install(fresh), nil
}

// add sets dst += src, tensor by tensor (Axpy: y = 1·x + 1·y, one rounding, the same as
// a host float addition).
func (a *treeAcc) add(dst, src []*ops.Tensor) error {
	be := a.m.Backend()
	for i := range dst {
		if err := be.Axpy(&ops.AxpyParams{Y: dst[i], X: src[i], Alpha: 1, Beta: 1}); err != nil {
			return fmt.Errorf("sched: accumulating the gradient of %s: %w", a.m.Params[i].Name, err)
		}
	}
	return nil
}

// push files the gradient of the micro-batch just computed.
func (a *treeAcc) push() error {
	set, err := a.take()
	if err != nil {
		return err
	}
	for k := 0; ; k++ {
		if k == len(a.slots) {
			a.slots = append(a.slots, nil)
		}
		if a.slots[k] == nil {
			a.slots[k] = set
			return nil
		}
		if err := a.add(a.slots[k], set); err != nil {
			return err
		}
		a.spare = append(a.spare, set)
		set, a.slots[k] = a.slots[k], nil
	}
}

// finish leaves the tree sum of every pushed micro-batch in the model's gradients.
func (a *treeAcc) finish() error {
	var acc []*ops.Tensor
	for k, s := range a.slots {
		if s == nil {
			continue
		}
		a.slots[k] = nil
		if acc == nil {
			acc = s
			continue
		}
		if err := a.add(s, acc); err != nil {
			return err
		}
		a.spare = append(a.spare, acc)
		acc = s
	}
	if acc == nil {
		return fmt.Errorf("sched: internal error: no micro-batch gradient to finish")
	}
	a.spare = append(a.spare, a.install(acc))
	return nil
}

// free releases the accumulator's buffers: every set it knows except the one installed
// in the model (which the model frees).
func (a *treeAcc) free() {
	be := a.m.Backend()
	inModel := map[*ops.Tensor]bool{}
	for _, p := range a.m.Params {
		inModel[p.Grad] = true
	}
	for _, set := range a.all {
		for _, t := range set {
			if t != nil && !inModel[t] {
				be.Free(t)
			}
		}
	}
	a.spare, a.slots, a.all = nil, nil, nil
}
