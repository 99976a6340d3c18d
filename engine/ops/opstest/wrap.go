package opstest

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// Hook intercepts one op call of an Intercept backend: op names the op, p is its
// *Params (e.g. *ops.AttnParams) and call runs the wrapped backend's method on p. A hook
// may inspect or change p, skip or repeat call, change outputs afterwards through the
// Device, or return its own error.
type Hook func(op ops.Op, p any, call func() error) error

// Intercept returns a backend that forwards every Device method and Supports to b and
// routes every op through hook. It is the building block of fault-injecting backends in
// tests (perturb one output, make an op nondeterministic, fail an op) and implements
// Unwrapper, so a GuardChecker of b is still found.
func Intercept(b ops.Backend, hook Hook) ops.Backend { return &intercept{Backend: b, hook: hook} }

type intercept struct {
	ops.Backend
	hook Hook
}

func (w *intercept) Unwrap() ops.Backend { return w.Backend }

func (w *intercept) MatMul(p *ops.MatMulParams) error {
	return w.hook(ops.OpMatMul, p, func() error { return w.Backend.MatMul(p) })
}
func (w *intercept) EmbedFwd(p *ops.EmbedParams) error {
	return w.hook(ops.OpEmbedFwd, p, func() error { return w.Backend.EmbedFwd(p) })
}
func (w *intercept) EmbedBwd(p *ops.EmbedBwdParams) error {
	return w.hook(ops.OpEmbedBwd, p, func() error { return w.Backend.EmbedBwd(p) })
}
func (w *intercept) NormFwd(p *ops.NormParams) error {
	return w.hook(ops.OpNormFwd, p, func() error { return w.Backend.NormFwd(p) })
}
func (w *intercept) NormBwd(p *ops.NormBwdParams) error {
	return w.hook(ops.OpNormBwd, p, func() error { return w.Backend.NormBwd(p) })
}
func (w *intercept) RoPE(p *ops.RoPEParams) error {
	return w.hook(ops.OpRoPE, p, func() error { return w.Backend.RoPE(p) })
}
func (w *intercept) AttnFwd(p *ops.AttnParams) error {
	return w.hook(ops.OpAttnFwd, p, func() error { return w.Backend.AttnFwd(p) })
}
func (w *intercept) AttnBwd(p *ops.AttnBwdParams) error {
	return w.hook(ops.OpAttnBwd, p, func() error { return w.Backend.AttnBwd(p) })
}
func (w *intercept) GLUFwd(p *ops.GLUParams) error {
	return w.hook(ops.OpGLUFwd, p, func() error { return w.Backend.GLUFwd(p) })
}
func (w *intercept) GLUBwd(p *ops.GLUBwdParams) error {
	return w.hook(ops.OpGLUBwd, p, func() error { return w.Backend.GLUBwd(p) })
}
func (w *intercept) ActFwd(p *ops.ActParams) error {
	return w.hook(ops.OpActFwd, p, func() error { return w.Backend.ActFwd(p) })
}
func (w *intercept) ActBwd(p *ops.ActBwdParams) error {
	return w.hook(ops.OpActBwd, p, func() error { return w.Backend.ActBwd(p) })
}
func (w *intercept) BiasAdd(p *ops.BiasAddParams) error {
	return w.hook(ops.OpBiasAdd, p, func() error { return w.Backend.BiasAdd(p) })
}
func (w *intercept) BiasGrad(p *ops.BiasGradParams) error {
	return w.hook(ops.OpBiasGrad, p, func() error { return w.Backend.BiasGrad(p) })
}
func (w *intercept) GateResidualFwd(p *ops.GateResidualParams) error {
	return w.hook(ops.OpGateResidualFwd, p, func() error { return w.Backend.GateResidualFwd(p) })
}
func (w *intercept) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	return w.hook(ops.OpGateResidualBwd, p, func() error { return w.Backend.GateResidualBwd(p) })
}
func (w *intercept) CopyCols(p *ops.CopyColsParams) error {
	return w.hook(ops.OpCopyCols, p, func() error { return w.Backend.CopyCols(p) })
}
func (w *intercept) GatherRows(p *ops.GatherRowsParams) error {
	return w.hook(ops.OpGatherRows, p, func() error { return w.Backend.GatherRows(p) })
}
func (w *intercept) ScatterRows(p *ops.ScatterRowsParams) error {
	return w.hook(ops.OpScatterRows, p, func() error { return w.Backend.ScatterRows(p) })
}
func (w *intercept) MaskedCE(p *ops.MaskedCEParams) error {
	return w.hook(ops.OpMaskedCE, p, func() error { return w.Backend.MaskedCE(p) })
}
func (w *intercept) MaskTokens(p *ops.MaskParams) error {
	return w.hook(ops.OpMaskTokens, p, func() error { return w.Backend.MaskTokens(p) })
}
func (w *intercept) SampleStep(p *ops.SampleParams) error {
	return w.hook(ops.OpSampleStep, p, func() error { return w.Backend.SampleStep(p) })
}
func (w *intercept) AdamW(p *ops.AdamWParams) error {
	return w.hook(ops.OpAdamW, p, func() error { return w.Backend.AdamW(p) })
}
func (w *intercept) SumSquares(p *ops.SumSquaresParams) error {
	return w.hook(ops.OpSumSquares, p, func() error { return w.Backend.SumSquares(p) })
}
func (w *intercept) Axpy(p *ops.AxpyParams) error {
	return w.hook(ops.OpAxpy, p, func() error { return w.Backend.Axpy(p) })
}
func (w *intercept) Convert(p *ops.ConvertParams) error {
	return w.hook(ops.OpConvert, p, func() error { return w.Backend.Convert(p) })
}
func (w *intercept) TimeEmbed(p *ops.TimeEmbedParams) error {
	return w.hook(ops.OpTimeEmbed, p, func() error { return w.Backend.TimeEmbed(p) })
}
func (w *intercept) GenMaskedCE(p *ops.GenMaskedCEParams) error {
	return w.hook(ops.OpGenMaskedCE, p, func() error { return w.Backend.GenMaskedCE(p) })
}
