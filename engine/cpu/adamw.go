package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// AdamW applies one fused AdamW + EMA update, element by element in the element type
// (float32 arithmetic for F32), with the bias corrections from p.BiasCorrections():
//
//	g = GradScale·Grad
//	M = Beta1·M + (1−Beta1)·g;  V = Beta2·V + (1−Beta2)·g·g
//	Param −= LR·( (M/bc1) / (sqrt(V/bc2) + Eps) + WeightDecay·Param )
//	EMA   += (1−EMADecay)·(Param − EMA);  Shadow = bf16(Param)
//
// The scalar factors (1−Beta1, 1−Beta2, 1−EMADecay, bc1, bc2) are computed in float64 and
// rounded once to the element type.
func (b *Backend) AdamW(p *ops.AdamWParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Param.DType() {
	case ops.F32:
		return adamW[float32](b, p)
	case ops.F64:
		return adamW[float64](b, p)
	}
	return unsupported(ops.OpAdamW, p.Param.DType())
}

type adamWJob[T float] struct {
	param, grad, m, v, ema       []T
	shadow                       []uint16
	is32                         bool
	gs, b1, omb1, b2, omb2       T
	bc1, bc2, lr, eps, wd, omEMA T
}

func (j *adamWJob[T]) run(_, lo, hi int) {
	for i := lo; i < hi; i++ {
		g := j.gs * j.grad[i]
		m := j.b1*j.m[i] + j.omb1*g
		v := j.b2*j.v[i] + j.omb2*g*g
		j.m[i], j.v[i] = m, v
		mhat := m / j.bc1
		vhat := v / j.bc2
		p := j.param[i]
		p -= j.lr * (mhat/(T(math.Sqrt(float64(vhat)))+j.eps) + j.wd*p)
		j.param[i] = p
		if j.ema != nil {
			j.ema[i] += j.omEMA * (p - j.ema[i])
		}
		if j.shadow != nil {
			if j.is32 {
				j.shadow[i] = BF16FromF32(float32(p))
			} else {
				j.shadow[i] = BF16FromF64(float64(p))
			}
		}
	}
}

func adamW[T float](b *Backend, p *ops.AdamWParams) error {
	const op = ops.OpAdamW
	param, e1 := fl[T](op, "Param", p.Param)
	grad, e2 := fl[T](op, "Grad", p.Grad)
	m, e3 := fl[T](op, "M", p.M)
	v, e4 := fl[T](op, "V", p.V)
	ema, e5 := optFl[T](op, "EMA", p.EMA)
	shadow, e6 := bf16s(op, "Shadow", p.Shadow)
	if err := errs(e1, e2, e3, e4, e5, e6); err != nil {
		return err
	}
	bc1, bc2 := p.BiasCorrections()
	j := getJob[adamWJob[T]](b, jobAdamW, dtIndex[T]())
	*j = adamWJob[T]{param: param, grad: grad, m: m, v: v, ema: ema, shadow: shadow, is32: dtIndex[T]() == 0,
		gs: T(p.GradScale), b1: T(p.Beta1), omb1: T(1 - p.Beta1), b2: T(p.Beta2), omb2: T(1 - p.Beta2),
		bc1: T(bc1), bc2: T(bc2), lr: T(p.LR), eps: T(p.Eps), wd: T(p.WeightDecay), omEMA: T(1 - p.EMADecay)}
	b.pool.run(j, len(param), b.grainFor(16))
	*j = adamWJob[T]{}
	return nil
}
