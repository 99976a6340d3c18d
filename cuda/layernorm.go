package cuda

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launchers of kernels/layernorm.cu (launch shapes mirrored from its header; the shared
// constants rowWarps, colsumWarps, ... are in reduce.go).

func init() {
	register(ops.OpNormFwd, ops.F32, ops.BF16)
	register(ops.OpNormBwd, ops.F32, ops.BF16)
}

// NormFwd implements ops.Ops: one warp per row computes the statistics (f32 sums finished in
// f64, LayerNorm with a mean-correction pass), saves Mean/Rstd and writes the (weighted,
// modulated) output.
func (b *Backend) NormFwd(p *ops.NormParams) error {
	const op = ops.OpNormFwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt,
		[]namedTensor{tensorArg("X", p.X), tensorArg("Out", p.Out), tensorArg("Shift", p.Shift), tensorArg("Scale", p.Scale)},
		[]namedTensor{tensorArg("Weight", p.Weight), tensorArg("Mean", p.Mean), tensorArg("Rstd", p.Rstd)}); err != nil {
		return err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.X, p.Out, p.Weight, p.Shift, p.Scale, p.Mean, p.Rstd)
	if err != nil {
		return err
	}
	per := 1
	if p.Shift != nil {
		per = p.RowsPerGroup
	}
	rms := p.Kind == ops.RMSNorm
	return b.dev.Launch("layernorm_fwd_"+dt.String(), rowGrid(n), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[5], ptr[6], n, d, per, rms, p.Eps)...)
}

// NormBwd implements ops.Ops. Parameter gradients first (DX may alias DOut or X): the column
// partials Σ DOut and Σ DOut·n̂ per chunk of rows (two-stage, deterministic), then DShift and
// DScale per group (overwritten) and DWeight (accumulated), then DX, one warp per row.
func (b *Backend) NormBwd(p *ops.NormBwdParams) error {
	const op = ops.OpNormBwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt,
		[]namedTensor{tensorArg("X", p.X), tensorArg("DX", p.DX), tensorArg("DOut", p.DOut), tensorArg("Scale", p.Scale)},
		[]namedTensor{tensorArg("Mean", p.Mean), tensorArg("Rstd", p.Rstd), tensorArg("Weight", p.Weight), tensorArg("DWeight", p.DWeight),
			tensorArg("DShift", p.DShift), tensorArg("DScale", p.DScale)}); err != nil {
		return err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.DOut, p.X, p.Mean, p.Rstd, p.Weight, p.Scale, p.DX, p.DWeight, p.DShift, p.DScale)
	if err != nil {
		return err
	}
	dout, x, mean, rstd, weight, scale, dx, dweight, dshift, dscale :=
		ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[5], ptr[6], ptr[7], ptr[8], ptr[9]
	rms := p.Kind == ops.RMSNorm
	if rms {
		mean = 0 // RMSNorm has no mean, whatever the caller passed
	}
	per := n
	if p.Scale != nil {
		per = p.RowsPerGroup
	}
	if (p.Scale != nil || p.Weight != nil) && d > 0 {
		groups := n / per
		ch := newColChunks(per)
		k := groups * ch.cpg
		part2, err := b.scratchBuf("normbwd.part2", 4*k*d)
		if err != nil {
			return err
		}
		var part1 Ptr
		if p.Scale != nil {
			if part1, err = b.scratchBuf("normbwd.part1", 4*k*d); err != nil {
				return err
			}
		}
		tiles := cdiv(d, 32*packWidth(dt))
		if err := b.dev.Launch("layernorm_bwd_"+dt.String()+"_cols", D1(k*tiles), D1(colsumThreads), 0,
			Args(dout, x, mean, rstd, part1, part2, d, ch.per, ch.cpg, ch.crows, rms)...); err != nil {
			return err
		}
		if p.Scale != nil {
			if err := b.dev.Launch("layernorm_bwd_f32_groups", D1(groups*cdiv(d, 32)), D1(colsumThreads), 0,
				Args(part1, part2, weight, dshift, dscale, d, ch.cpg)...); err != nil {
				return err
			}
		}
		if p.Weight != nil {
			if err := b.dev.Launch("layernorm_bwd_"+dt.String()+"_weight", D1(cdiv(d, 32)), D1(colsumThreads), 0,
				Args(part2, scale, dweight, d, groups, ch.cpg)...); err != nil {
				return err
			}
		}
	}
	return b.dev.Launch("layernorm_bwd_"+dt.String()+"_dx", rowGrid(n), D1(rowThreads), 0,
		Args(dout, x, mean, rstd, weight, scale, dx, n, d, per, rms)...)
}
