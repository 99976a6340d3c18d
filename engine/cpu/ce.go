package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// MaskedCE computes, per row r of Logits [R, V], Loss[r] = Weights[r]·(LSE_r −
// Logits[r, Targets[r]]) and optionally DLogits[r] = Weights[r]·(softmax(Logits[r]) −
// onehot(Targets[r])), in one pass per row with a max-subtracted float64 log-sum-exp.
// DLogits may alias Logits. R = 0 writes nothing.
func (b *Backend) MaskedCE(p *ops.MaskedCEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Logits.DType() {
	case ops.F32:
		return maskedCE[float32](b, p)
	case ops.F64:
		return maskedCE[float64](b, p)
	}
	return unsupported(ops.OpMaskedCE, p.Logits.DType())
}

type ceJob[T float] struct {
	b               *Backend
	logits, dlogits []T
	targets         []int32
	weights, loss   []float64
	v               int
}

func (j *ceJob[T]) run(w, lo, hi int) {
	v := j.v
	e := j.b.pool.scratch[w].accBuf(0, v)
	for r := lo; r < hi; r++ {
		row := j.logits[r*v : (r+1)*v]
		m := row[0]
		for _, x := range row[1:] {
			if x > m {
				m = x
			}
		}
		mf := float64(m)
		var sum float64
		for c, x := range row {
			e[c] = math.Exp(float64(x) - mf)
			sum += e[c]
		}
		t := int(j.targets[r])
		lse := mf + math.Log(sum)
		wr := j.weights[r]
		j.loss[r] = wr * (lse - float64(row[t]))
		if j.dlogits != nil {
			d := j.dlogits[r*v : (r+1)*v]
			scale := wr / sum
			for c := range d {
				d[c] = T(e[c] * scale)
			}
			d[t] = T(e[t]*scale - wr)
		}
	}
}

func maskedCE[T float](b *Backend, p *ops.MaskedCEParams) error {
	const op = ops.OpMaskedCE
	logits, e1 := fl[T](op, "Logits", p.Logits)
	targets, e2 := i32(op, "Targets", p.Targets)
	weights, e3 := f64(op, "Weights", p.Weights)
	loss, e4 := f64(op, "Loss", p.Loss)
	dlogits, e5 := optFl[T](op, "DLogits", p.DLogits)
	if err := errs(e1, e2, e3, e4, e5); err != nil {
		return err
	}
	r, v := p.Logits.Dim(0), p.Logits.Dim(1)
	for i, t := range targets {
		if t < 0 || int(t) >= v {
			return ops.Errorf(op, "Targets", ops.ErrValue, "target %d of row %d is not in [0, %d)", t, i, v)
		}
	}
	j := getJob[ceJob[T]](b, jobCE, dtIndex[T]())
	*j = ceJob[T]{b: b, logits: logits, dlogits: dlogits, targets: targets, weights: weights, loss: loss, v: v}
	b.pool.run(j, r, b.grainFor(3*v))
	*j = ceJob[T]{}
	return nil
}
