package cuda

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of kernels/adamw.cu (fused AdamW + EMA + bf16 shadow, ops.AdamWParams).

// AdamW runs on fp32 master weights only (F64 is a CPU dtype).
func init() { register(ops.OpAdamW, ops.F32) }

// Launch constants mirrored from kernels/adamw.cu.
const (
	adamwThreads   = 256   // ADAMW_THREADS
	adamwMaxBlocks = 65535 // ADAMW_MAX_BLOCKS
)

// AdamW implements ops.Ops with one launch of adamw_step_f32. The result is bit-identical to
// the CPU backend on amd64: the kernel rounds every float32 operation separately (no FMA
// contraction) in the CPU's order, with the scalar factors computed here exactly as the CPU
// computes them (float64, rounded once to float32).
func (b *Backend) AdamW(p *ops.AdamWParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.Param.DType() != ops.F32 {
		return ops.Unsupported(ops.OpAdamW, b.Name(), "master weights of dtype "+p.Param.DType().String()+" (fp32 only)")
	}
	n := p.Param.Len()
	if n == 0 {
		return nil
	}
	if n > math.MaxInt32 {
		return ops.Unsupported(ops.OpAdamW, b.Name(), fmt.Sprintf("a tensor of %d elements (at most 2^31 − 1)", n))
	}
	ptrs, err := b.ptrs(p.Param, p.Grad, p.M, p.V, p.EMA, p.Shadow)
	if err != nil {
		return err
	}
	// 128-bit accesses need 16-byte aligned fp32 tensors and an 8-byte aligned shadow (views
	// can start anywhere); otherwise the kernel goes element by element, with the same bits.
	vec := int32(1)
	for i, ptr := range ptrs {
		align := Ptr(16)
		if i == 5 {
			align = 8
		}
		if ptr%align != 0 {
			vec = 0
		}
	}
	bc1, bc2 := p.BiasCorrections()
	groups := (n + 3) / 4
	return b.dev.Launch("adamw_step_f32", gridFor(groups, adamwThreads, adamwMaxBlocks), D1(adamwThreads), 0,
		Args(ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], n, vec,
			p.GradScale, float32(p.Beta1), float32(1-p.Beta1), float32(p.Beta2), float32(1-p.Beta2),
			float32(bc1), float32(bc2), float32(p.LR), float32(p.Eps), float32(p.WeightDecay), float32(1-p.EMADecay))...)
}
