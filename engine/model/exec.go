package model

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// exec issues ops on a backend and keeps the first error; after an error every further
// call is a no-op, so a pass reads as straight-line math and reports where it failed.
type exec struct {
	b   ops.Backend
	err error
}

func (e *exec) ok() bool { return e.err == nil }

func (e *exec) set(err error) {
	if e.err == nil && err != nil {
		e.err = err
	}
}

// linear: out = x·Wᵀ (+ out if acc). x [N, in], w [out, in].
func (e *exec) linear(out, x, w *ops.Tensor, acc bool) {
	if e.ok() {
		e.set(e.b.MatMul(&ops.MatMulParams{Out: out, A: x, B: w, TransB: true, Alpha: 1, Beta: beta(acc)}))
	}
}

// linearDX: dx = dy·W (+ dx if acc). dy [N, out], w [out, in].
func (e *exec) linearDX(dx, dy, w *ops.Tensor, acc bool) {
	if e.ok() {
		e.set(e.b.MatMul(&ops.MatMulParams{Out: dx, A: dy, B: w, Alpha: 1, Beta: beta(acc)}))
	}
}

// linearDW: dW += dyᵀ·x. dy [N, out], x [N, in], dW [out, in].
func (e *exec) linearDW(dw, dy, x *ops.Tensor) {
	if e.ok() {
		e.set(e.b.MatMul(&ops.MatMulParams{Out: dw, A: dy, B: x, TransA: true, Alpha: 1, Beta: 1}))
	}
}

func beta(acc bool) float32 {
	if acc {
		return 1
	}
	return 0
}

func (e *exec) bias(out, b *ops.Tensor) {
	if e.ok() {
		e.set(e.b.BiasAdd(&ops.BiasAddParams{Out: out, Bias: b}))
	}
}

func (e *exec) biasGrad(db, dy *ops.Tensor) {
	if e.ok() {
		e.set(e.b.BiasGrad(&ops.BiasGradParams{DBias: db, DOut: dy}))
	}
}

func (e *exec) zero(t *ops.Tensor) {
	if e.ok() {
		e.set(e.b.Axpy(&ops.AxpyParams{Y: t}))
	}
}

// add: y += x.
func (e *exec) add(y, x *ops.Tensor) {
	if e.ok() {
		e.set(e.b.Axpy(&ops.AxpyParams{Y: y, X: x, Alpha: 1, Beta: 1}))
	}
}

func (e *exec) copyCols(dst, src *ops.Tensor, dstOff, srcOff, width int, acc bool) {
	if e.ok() {
		e.set(e.b.CopyCols(&ops.CopyColsParams{Dst: dst, Src: src, DstOff: dstOff, SrcOff: srcOff, Width: width, Accumulate: acc}))
	}
}

func (e *exec) act(a ops.Activation, out, x *ops.Tensor) {
	if e.ok() {
		e.set(e.b.ActFwd(&ops.ActParams{Act: a, Out: out, X: x}))
	}
}

func (e *exec) actBwd(a ops.Activation, dx, dy, x *ops.Tensor) {
	if e.ok() {
		e.set(e.b.ActBwd(&ops.ActBwdParams{Act: a, DX: dx, DOut: dy, X: x}))
	}
}

func (e *exec) do(f func() error) {
	if e.ok() {
		e.set(f())
	}
}

// convert: out = in in out's dtype; nothing when they are the same tensor (full precision).
func (e *exec) convert(out, in *ops.Tensor) {
	if e.ok() && out != in {
		e.set(e.b.Convert(&ops.ConvertParams{Out: out, In: in}))
	}
}
