package traced

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// MatMul traces the wrapped backend's MatMul.
func (t *Backend) MatMul(p *ops.MatMulParams) error {
	return t.do(ops.OpMatMul, p, func() error { return t.Backend.MatMul(p) })
}

// EmbedFwd traces the wrapped backend's EmbedFwd.
func (t *Backend) EmbedFwd(p *ops.EmbedParams) error {
	return t.do(ops.OpEmbedFwd, p, func() error { return t.Backend.EmbedFwd(p) })
}

// EmbedBwd traces the wrapped backend's EmbedBwd.
func (t *Backend) EmbedBwd(p *ops.EmbedBwdParams) error {
	return t.do(ops.OpEmbedBwd, p, func() error { return t.Backend.EmbedBwd(p) })
}

// NormFwd traces the wrapped backend's NormFwd.
func (t *Backend) NormFwd(p *ops.NormParams) error {
	return t.do(ops.OpNormFwd, p, func() error { return t.Backend.NormFwd(p) })
}

// NormBwd traces the wrapped backend's NormBwd.
func (t *Backend) NormBwd(p *ops.NormBwdParams) error {
	return t.do(ops.OpNormBwd, p, func() error { return t.Backend.NormBwd(p) })
}

// RoPE traces the wrapped backend's RoPE.
func (t *Backend) RoPE(p *ops.RoPEParams) error {
	return t.do(ops.OpRoPE, p, func() error { return t.Backend.RoPE(p) })
}

// AttnFwd traces the wrapped backend's AttnFwd.
func (t *Backend) AttnFwd(p *ops.AttnParams) error {
	return t.do(ops.OpAttnFwd, p, func() error { return t.Backend.AttnFwd(p) })
}

// AttnBwd traces the wrapped backend's AttnBwd.
func (t *Backend) AttnBwd(p *ops.AttnBwdParams) error {
	return t.do(ops.OpAttnBwd, p, func() error { return t.Backend.AttnBwd(p) })
}

// GLUFwd traces the wrapped backend's GLUFwd.
func (t *Backend) GLUFwd(p *ops.GLUParams) error {
	return t.do(ops.OpGLUFwd, p, func() error { return t.Backend.GLUFwd(p) })
}

// GLUBwd traces the wrapped backend's GLUBwd.
func (t *Backend) GLUBwd(p *ops.GLUBwdParams) error {
	return t.do(ops.OpGLUBwd, p, func() error { return t.Backend.GLUBwd(p) })
}

// ActFwd traces the wrapped backend's ActFwd.
func (t *Backend) ActFwd(p *ops.ActParams) error {
	return t.do(ops.OpActFwd, p, func() error { return t.Backend.ActFwd(p) })
}

// ActBwd traces the wrapped backend's ActBwd.
func (t *Backend) ActBwd(p *ops.ActBwdParams) error {
	return t.do(ops.OpActBwd, p, func() error { return t.Backend.ActBwd(p) })
}

// BiasAdd traces the wrapped backend's BiasAdd.
func (t *Backend) BiasAdd(p *ops.BiasAddParams) error {
	return t.do(ops.OpBiasAdd, p, func() error { return t.Backend.BiasAdd(p) })
}

// BiasGrad traces the wrapped backend's BiasGrad.
func (t *Backend) BiasGrad(p *ops.BiasGradParams) error {
	return t.do(ops.OpBiasGrad, p, func() error { return t.Backend.BiasGrad(p) })
}

// GateResidualFwd traces the wrapped backend's GateResidualFwd.
func (t *Backend) GateResidualFwd(p *ops.GateResidualParams) error {
	return t.do(ops.OpGateResidualFwd, p, func() error { return t.Backend.GateResidualFwd(p) })
}

// GateResidualBwd traces the wrapped backend's GateResidualBwd.
func (t *Backend) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	return t.do(ops.OpGateResidualBwd, p, func() error { return t.Backend.GateResidualBwd(p) })
}

// CopyCols traces the wrapped backend's CopyCols.
func (t *Backend) CopyCols(p *ops.CopyColsParams) error {
	return t.do(ops.OpCopyCols, p, func() error { return t.Backend.CopyCols(p) })
}

// GatherRows traces the wrapped backend's GatherRows.
func (t *Backend) GatherRows(p *ops.GatherRowsParams) error {
	return t.do(ops.OpGatherRows, p, func() error { return t.Backend.GatherRows(p) })
}

// ScatterRows traces the wrapped backend's ScatterRows.
func (t *Backend) ScatterRows(p *ops.ScatterRowsParams) error {
	return t.do(ops.OpScatterRows, p, func() error { return t.Backend.ScatterRows(p) })
}

// MaskedCE traces the wrapped backend's MaskedCE.
func (t *Backend) MaskedCE(p *ops.MaskedCEParams) error {
	return t.do(ops.OpMaskedCE, p, func() error { return t.Backend.MaskedCE(p) })
}

// MaskTokens traces the wrapped backend's MaskTokens.
func (t *Backend) MaskTokens(p *ops.MaskParams) error {
	return t.do(ops.OpMaskTokens, p, func() error { return t.Backend.MaskTokens(p) })
}

// SampleStep traces the wrapped backend's SampleStep.
func (t *Backend) SampleStep(p *ops.SampleParams) error {
	return t.do(ops.OpSampleStep, p, func() error { return t.Backend.SampleStep(p) })
}

// AdamW traces the wrapped backend's AdamW.
func (t *Backend) AdamW(p *ops.AdamWParams) error {
	return t.do(ops.OpAdamW, p, func() error { return t.Backend.AdamW(p) })
}

// SumSquares traces the wrapped backend's SumSquares.
func (t *Backend) SumSquares(p *ops.SumSquaresParams) error {
	return t.do(ops.OpSumSquares, p, func() error { return t.Backend.SumSquares(p) })
}

// Axpy traces the wrapped backend's Axpy.
func (t *Backend) Axpy(p *ops.AxpyParams) error {
	return t.do(ops.OpAxpy, p, func() error { return t.Backend.Axpy(p) })
}

// Convert traces the wrapped backend's Convert.
func (t *Backend) Convert(p *ops.ConvertParams) error {
	return t.do(ops.OpConvert, p, func() error { return t.Backend.Convert(p) })
}

// TimeEmbed traces the wrapped backend's TimeEmbed.
func (t *Backend) TimeEmbed(p *ops.TimeEmbedParams) error {
	return t.do(ops.OpTimeEmbed, p, func() error { return t.Backend.TimeEmbed(p) })
}

// GenMaskedCE traces the wrapped backend's GenMaskedCE.
func (t *Backend) GenMaskedCE(p *ops.GenMaskedCEParams) error {
	return t.do(ops.OpGenMaskedCE, p, func() error { return t.Backend.GenMaskedCE(p) })
}
