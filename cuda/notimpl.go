package cuda

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// notImplemented gives Backend a method for every op that returns ErrUnsupported. A
// launcher file (embedding.go, …) defines the real method on *Backend, which takes
// precedence; an op with no launcher yet reports "not supported on backend cuda".
type notImplemented struct{}

func unsupported(op ops.Op) error { return ops.Unsupported(op, "cuda", "no kernel launcher yet") }

func (notImplemented) MatMul(*ops.MatMulParams) error     { return unsupported(ops.OpMatMul) }
func (notImplemented) EmbedFwd(*ops.EmbedParams) error    { return unsupported(ops.OpEmbedFwd) }
func (notImplemented) EmbedBwd(*ops.EmbedBwdParams) error { return unsupported(ops.OpEmbedBwd) }
func (notImplemented) NormFwd(*ops.NormParams) error      { return unsupported(ops.OpNormFwd) }
func (notImplemented) NormBwd(*ops.NormBwdParams) error   { return unsupported(ops.OpNormBwd) }
func (notImplemented) RoPE(*ops.RoPEParams) error         { return unsupported(ops.OpRoPE) }
func (notImplemented) AttnFwd(*ops.AttnParams) error      { return unsupported(ops.OpAttnFwd) }
func (notImplemented) AttnBwd(*ops.AttnBwdParams) error   { return unsupported(ops.OpAttnBwd) }
func (notImplemented) GLUFwd(*ops.GLUParams) error        { return unsupported(ops.OpGLUFwd) }
func (notImplemented) GLUBwd(*ops.GLUBwdParams) error     { return unsupported(ops.OpGLUBwd) }
func (notImplemented) ActFwd(*ops.ActParams) error        { return unsupported(ops.OpActFwd) }
func (notImplemented) ActBwd(*ops.ActBwdParams) error     { return unsupported(ops.OpActBwd) }
func (notImplemented) BiasAdd(*ops.BiasAddParams) error   { return unsupported(ops.OpBiasAdd) }
func (notImplemented) BiasGrad(*ops.BiasGradParams) error { return unsupported(ops.OpBiasGrad) }
func (notImplemented) GateResidualFwd(*ops.GateResidualParams) error {
	return unsupported(ops.OpGateResidualFwd)
}
func (notImplemented) GateResidualBwd(*ops.GateResidualBwdParams) error {
	return unsupported(ops.OpGateResidualBwd)
}
func (notImplemented) CopyCols(*ops.CopyColsParams) error     { return unsupported(ops.OpCopyCols) }
func (notImplemented) GatherRows(*ops.GatherRowsParams) error { return unsupported(ops.OpGatherRows) }
func (notImplemented) ScatterRows(*ops.ScatterRowsParams) error {
	return unsupported(ops.OpScatterRows)
}
func (notImplemented) MaskedCE(*ops.MaskedCEParams) error     { return unsupported(ops.OpMaskedCE) }
func (notImplemented) MaskTokens(*ops.MaskParams) error       { return unsupported(ops.OpMaskTokens) }
func (notImplemented) SampleStep(*ops.SampleParams) error     { return unsupported(ops.OpSampleStep) }
func (notImplemented) AdamW(*ops.AdamWParams) error           { return unsupported(ops.OpAdamW) }
func (notImplemented) SumSquares(*ops.SumSquaresParams) error { return unsupported(ops.OpSumSquares) }
func (notImplemented) Axpy(*ops.AxpyParams) error             { return unsupported(ops.OpAxpy) }
func (notImplemented) Convert(*ops.ConvertParams) error       { return unsupported(ops.OpConvert) }
func (notImplemented) TimeEmbed(*ops.TimeEmbedParams) error   { return unsupported(ops.OpTimeEmbed) }
func (notImplemented) GenMaskedCE(*ops.GenMaskedCEParams) error {
	return unsupported(ops.OpGenMaskedCE)
}
