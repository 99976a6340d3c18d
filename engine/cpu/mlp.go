package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// geluC is sqrt(2/π), the constant of the tanh approximation of GELU.
const (
	geluC = 0.7978845608028654
	geluA = 0.044715
)

// act returns act(x) and act'(x) in float64.
func act(a ops.Activation, x float64) (y, dy float64) {
	switch a {
	case ops.Sigmoid:
		s := 1 / (1 + math.Exp(-x))
		return s, s * (1 - s)
	case ops.Swish:
		s := 1 / (1 + math.Exp(-x))
		return x * s, s + x*s*(1-s)
	default: // GELU, tanh approximation
		x2 := x * x
		t := math.Tanh(geluC * (x + geluA*x2*x))
		return 0.5 * x * (1 + t), 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*geluA*x2)
	}
}

// actOnly returns act(x) in float64.
func actOnly(a ops.Activation, x float64) float64 {
	switch a {
	case ops.Sigmoid:
		return 1 / (1 + math.Exp(-x))
	case ops.Swish:
		return x / (1 + math.Exp(-x))
	default:
		return 0.5 * x * (1 + math.Tanh(geluC*(x+geluA*x*x*x)))
	}
}

// GLUFwd computes Out = act(A) ⊙ B elementwise (act and the product in float64).
func (b *Backend) GLUFwd(p *ops.GLUParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.A.DType() {
	case ops.F32:
		return glu[float32](b, p)
	case ops.F64:
		return glu[float64](b, p)
	}
	return unsupported(ops.OpGLUFwd, p.A.DType())
}

func glu[T float](b *Backend, p *ops.GLUParams) error {
	const op = ops.OpGLUFwd
	a, e1 := fl[T](op, "A", p.A)
	bb, e2 := fl[T](op, "B", p.B)
	out, e3 := fl[T](op, "Out", p.Out)
	if err := errs(e1, e2, e3); err != nil {
		return err
	}
	elem(b, elemJob[T]{kind: ekGLU, act: p.Act, o1: out, i1: a, i2: bb}, len(a))
	return nil
}

// GLUBwd computes DA = DOut ⊙ B ⊙ act'(A) and DB = DOut ⊙ act(A).
func (b *Backend) GLUBwd(p *ops.GLUBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.A.DType() {
	case ops.F32:
		return gluBwd[float32](b, p)
	case ops.F64:
		return gluBwd[float64](b, p)
	}
	return unsupported(ops.OpGLUBwd, p.A.DType())
}

func gluBwd[T float](b *Backend, p *ops.GLUBwdParams) error {
	const op = ops.OpGLUBwd
	a, e1 := fl[T](op, "A", p.A)
	bb, e2 := fl[T](op, "B", p.B)
	da, e3 := fl[T](op, "DA", p.DA)
	db, e4 := fl[T](op, "DB", p.DB)
	dout, e5 := fl[T](op, "DOut", p.DOut)
	if err := errs(e1, e2, e3, e4, e5); err != nil {
		return err
	}
	elem(b, elemJob[T]{kind: ekGLUBwd, act: p.Act, o1: da, o2: db, i1: a, i2: bb, i3: dout}, len(a))
	return nil
}

// ActFwd computes Out = act(X) elementwise. Out may be X.
func (b *Backend) ActFwd(p *ops.ActParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return actFwd[float32](b, p)
	case ops.F64:
		return actFwd[float64](b, p)
	}
	return unsupported(ops.OpActFwd, p.X.DType())
}

func actFwd[T float](b *Backend, p *ops.ActParams) error {
	const op = ops.OpActFwd
	x, e1 := fl[T](op, "X", p.X)
	out, e2 := fl[T](op, "Out", p.Out)
	if err := errs(e1, e2); err != nil {
		return err
	}
	elem(b, elemJob[T]{kind: ekAct, act: p.Act, o1: out, i1: x}, len(x))
	return nil
}

// ActBwd computes DX = DOut ⊙ act'(X).
func (b *Backend) ActBwd(p *ops.ActBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return actBwd[float32](b, p)
	case ops.F64:
		return actBwd[float64](b, p)
	}
	return unsupported(ops.OpActBwd, p.X.DType())
}

func actBwd[T float](b *Backend, p *ops.ActBwdParams) error {
	const op = ops.OpActBwd
	x, e1 := fl[T](op, "X", p.X)
	dx, e2 := fl[T](op, "DX", p.DX)
	dout, e3 := fl[T](op, "DOut", p.DOut)
	if err := errs(e1, e2, e3); err != nil {
		return err
	}
	elem(b, elemJob[T]{kind: ekActBwd, act: p.Act, o1: dx, i1: x, i2: dout}, len(x))
	return nil
}
