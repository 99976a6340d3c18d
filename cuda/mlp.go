package cuda

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launchers of kernels/mlp.cu (launch shapes mirrored from its header; the shared constants
// are in reduce.go). The activation is passed as its ops.Activation value (1 sigmoid, 2 swish,
// 3 gelu), which the kernels mirror as ACT_SIGMOID, ACT_SWISH, ACT_GELU.

func init() {
	for _, o := range []ops.Op{ops.OpGLUFwd, ops.OpGLUBwd, ops.OpActFwd, ops.OpActBwd, ops.OpBiasAdd, ops.OpBiasGrad,
		ops.OpGateResidualFwd, ops.OpGateResidualBwd} {
		register(o, ops.F32, ops.BF16)
	}
}

// launchFlat launches a flat grid-stride kernel over n elements of dt.
func (b *Backend) launchFlat(name string, dt ops.DType, n int, args ...any) error {
	return b.dev.Launch(name, b.elemGrid(cdiv(n, packWidth(dt))), D1(elemThreads), 0, Args(args...)...)
}

// GLUFwd implements ops.Ops: Out = act(A) ⊙ B elementwise.
func (b *Backend) GLUFwd(p *ops.GLUParams) error {
	const op = ops.OpGLUFwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.A.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("A", p.A), tensorArg("B", p.B), tensorArg("Out", p.Out)}, nil); err != nil {
		return err
	}
	n := p.A.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.A, p.B, p.Out)
	if err != nil {
		return err
	}
	return b.launchFlat("glu_fwd_"+dt.String(), dt, n, ptr[0], ptr[1], ptr[2], n, int(p.Act))
}

// GLUBwd implements ops.Ops: DA = DOut ⊙ B ⊙ act'(A), DB = DOut ⊙ act(A).
func (b *Backend) GLUBwd(p *ops.GLUBwdParams) error {
	const op = ops.OpGLUBwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.A.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("A", p.A), tensorArg("B", p.B), tensorArg("DOut", p.DOut), tensorArg("DA", p.DA),
		tensorArg("DB", p.DB)}, nil); err != nil {
		return err
	}
	n := p.A.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.A, p.B, p.DOut, p.DA, p.DB)
	if err != nil {
		return err
	}
	return b.launchFlat("glu_bwd_"+dt.String(), dt, n, ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], n, int(p.Act))
}

// ActFwd implements ops.Ops: Out = act(X) (Out may be X).
func (b *Backend) ActFwd(p *ops.ActParams) error {
	const op = ops.OpActFwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("X", p.X), tensorArg("Out", p.Out)}, nil); err != nil {
		return err
	}
	n := p.X.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.X, p.Out)
	if err != nil {
		return err
	}
	return b.launchFlat("act_fwd_"+dt.String(), dt, n, ptr[0], ptr[1], n, int(p.Act))
}

// ActBwd implements ops.Ops: DX = DOut ⊙ act'(X).
func (b *Backend) ActBwd(p *ops.ActBwdParams) error {
	const op = ops.OpActBwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("X", p.X), tensorArg("DOut", p.DOut), tensorArg("DX", p.DX)}, nil); err != nil {
		return err
	}
	n := p.X.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.X, p.DOut, p.DX)
	if err != nil {
		return err
	}
	return b.launchFlat("act_bwd_"+dt.String(), dt, n, ptr[0], ptr[1], ptr[2], n, int(p.Act))
}

// BiasAdd implements ops.Ops: Out[n, :] += Bias, one warp per row.
func (b *Backend) BiasAdd(p *ops.BiasAddParams) error {
	const op = ops.OpBiasAdd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Out.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Out", p.Out)}, []namedTensor{tensorArg("Bias", p.Bias)}); err != nil {
		return err
	}
	n, m := p.Out.Dim(0), p.Out.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.Out, p.Bias)
	if err != nil {
		return err
	}
	return b.dev.Launch("biasadd_fwd_"+dt.String(), rowGrid(n), D1(rowThreads), 0, Args(ptr[0], ptr[1], n, m)...)
}

// colSums writes out[g, :] (+)= Σ_{rows r of group g} X[r, :] (⊙ Y[r, :] when y != 0), groups
// of per rows of the [n, d] inputs, with the two-stage deterministic column sums of
// kernels/common.cuh: colsum_bwd_<dt>_partial then colsum_bwd_f32_final.
func (b *Backend) colSums(dt ops.DType, x, y, out Ptr, n, d, per int, accumulate bool) error {
	if n == 0 || d == 0 {
		return nil
	}
	groups := n / per
	ch := newColChunks(per)
	k := groups * ch.cpg
	part, err := b.scratchBuf("colsum.part", 4*k*d)
	if err != nil {
		return err
	}
	tiles := cdiv(d, 32*packWidth(dt))
	if err := b.dev.Launch("colsum_bwd_"+dt.String()+"_partial", D1(k*tiles), D1(colsumThreads), 0,
		Args(x, y, part, d, ch.per, ch.cpg, ch.crows)...); err != nil {
		return err
	}
	return b.dev.Launch("colsum_bwd_f32_final", D1(groups*cdiv(d, 32)), D1(colsumThreads), 0,
		Args(part, out, d, ch.cpg, accumulate)...)
}

// BiasGrad implements ops.Ops: DBias += Σ_n DOut[n, :] (deterministic column sums).
func (b *Backend) BiasGrad(p *ops.BiasGradParams) error {
	const op = ops.OpBiasGrad
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.DOut.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("DOut", p.DOut)}, []namedTensor{tensorArg("DBias", p.DBias)}); err != nil {
		return err
	}
	ptr, err := b.ptrs(p.DOut, p.DBias)
	if err != nil {
		return err
	}
	n := p.DOut.Dim(0)
	return b.colSums(dt, ptr[0], 0, ptr[1], n, p.DOut.Dim(1), max(n, 1), true)
}

// GateResidualFwd implements ops.Ops: Out = X + Gate[g] ⊙ Y (or X + Y), one warp per row
// (Out may be X).
func (b *Backend) GateResidualFwd(p *ops.GateResidualParams) error {
	const op = ops.OpGateResidualFwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("X", p.X), tensorArg("Y", p.Y), tensorArg("Out", p.Out), tensorArg("Gate", p.Gate)}, nil); err != nil {
		return err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.X, p.Y, p.Gate, p.Out)
	if err != nil {
		return err
	}
	per := max(p.RowsPerGroup, 1)
	return b.dev.Launch("gateres_fwd_"+dt.String(), rowGrid(n), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], ptr[2], ptr[3], n, d, per)...)
}

// GateResidualBwd implements ops.Ops: DGate[g] = Σ_{rows of g} DOut ⊙ Y first (deterministic
// column sums, overwritten), then DY = Gate[g] ⊙ DOut (or a copy of DOut).
func (b *Backend) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	const op = ops.OpGateResidualBwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.DOut.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("DOut", p.DOut), tensorArg("DY", p.DY), tensorArg("Y", p.Y), tensorArg("Gate", p.Gate)},
		[]namedTensor{tensorArg("DGate", p.DGate)}); err != nil {
		return err
	}
	n, d := p.DOut.Dim(0), p.DOut.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.DOut, p.Y, p.Gate, p.DGate, p.DY)
	if err != nil {
		return err
	}
	per := max(p.RowsPerGroup, 1)
	if p.Gate != nil {
		if err := b.colSums(dt, ptr[0], ptr[1], ptr[3], n, d, per, false); err != nil {
			return err
		}
	}
	return b.dev.Launch("gateres_bwd_"+dt.String(), rowGrid(n), D1(rowThreads), 0,
		Args(ptr[0], ptr[2], ptr[4], n, d, per)...)
}
