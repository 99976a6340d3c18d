package cuda

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of kernels/masked_ce.cu (fused masked cross-entropy, ops.MaskedCEParams).

func init() { register(ops.OpMaskedCE, ops.F32, ops.BF16) }

// Launch constants mirrored from kernels/masked_ce.cu.
const (
	ceThreads        = 256   // CE_THREADS
	ceCheckThreads   = 256   // CE_CHECK_THREADS
	ceCheckMaxBlocks = 65535 // CE_CHECK_MAX_BLOCKS
	ceFlagTarget     = 0     // CE_FLAG_TARGET
)

// ceThreadsFor is the block size of masked_ce_fwdbwd for vocabulary v: about 8 elements per
// thread, one warp at least, CE_THREADS at most (kernels/masked_ce.cu launch contract).
func ceThreadsFor(v int) int {
	t := ((v+7)/8 + 31) / 32 * 32
	return min(ceThreads, max(32, t))
}

// MaskedCE implements ops.Ops: masked_ce_check_i32 validates the targets into an error slot,
// then masked_ce_fwdbwd_<dt> computes one row per block (and writes nothing if the slot is
// set). The slot is read back, so the call waits for the kernels. R = 0 launches nothing.
//
// Accuracy versus the CPU reference (float64 exp and sums): exp is float32 (expf) and the sums
// float64, so Loss agrees to ~1e-7 relative and DLogits to ~3e-7 relative; results are
// bit-identical from run to run and do not depend on where the rows live in memory.
func (b *Backend) MaskedCE(p *ops.MaskedCEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpMaskedCE
	var kernel string
	switch p.Logits.DType() {
	case ops.F32:
		kernel = "masked_ce_fwdbwd_f32"
	case ops.BF16:
		kernel = "masked_ce_fwdbwd_bf16"
	default:
		return ops.Unsupported(op, b.Name(), "Logits dtype "+p.Logits.DType().String())
	}
	if p.DLogits != nil && p.DLogits.DType() != p.Logits.DType() {
		return ops.Unsupported(op, b.Name(), fmt.Sprintf("DLogits %v with Logits %v (the kernel writes the logits' dtype)",
			p.DLogits.DType(), p.Logits.DType()))
	}
	r, v := p.Logits.Dim(0), p.Logits.Dim(1)
	if r == 0 {
		return nil
	}
	if r > math.MaxInt32 || v > math.MaxInt32 {
		return ops.Unsupported(op, b.Name(), fmt.Sprintf("[%d, %d] logits: rows and vocabulary must be < 2^31", r, v))
	}
	ptrs, err := b.ptrs(p.Logits, p.Targets, p.Weights, p.Loss, p.DLogits)
	if err != nil {
		return err
	}
	flags, err := b.errSlots(1)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("masked_ce_check_i32", gridFor(r, ceCheckThreads, ceCheckMaxBlocks), D1(ceCheckThreads), 0,
		Args(flags, ptrs[1], r, v)...); err != nil {
		return err
	}
	if err := b.dev.Launch(kernel, D1(r), D1(ceThreadsFor(v)), 0,
		Args(ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], flags, v)...); err != nil {
		return err
	}
	slots, err := b.readSlots(flags, 1)
	if err != nil {
		return err
	}
	if i := slots[ceFlagTarget]; i != flagNone {
		t, err := b.readI32(p.Targets, i)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "Targets", ops.ErrValue, "target %d of row %d is not in [0, %d)", t, i, v)
	}
	return nil
}
