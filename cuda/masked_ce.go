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

// ceThreadsFor is the block size of masked_ce_fwdbwd for vocabulary v (kernels/masked_ce.cu
// launch contract).
func ceThreadsFor(v int) int { return ceRowThreads(v, ceThreads) }

// ceRowThreads is the block size of a one-row-per-block cross-entropy kernel (masked_ce.cu,
// gen_masked_ce.cu) for vocabulary v: about 8 elements per thread, one warp at least,
// maxThreads at most.
func ceRowThreads(v, maxThreads int) int {
	t := ((v+7)/8 + 31) / 32 * 32
	return min(maxThreads, max(32, t))
}

// ceLogits checks what the cross-entropy kernels (masked_ce.cu, gen_masked_ce.cu) support
// for logits [r, v] and the optional dlogits, and returns their dtype suffix (f32, bf16).
func (b *Backend) ceLogits(op ops.Op, logits, dlogits *ops.Tensor) (suffix string, r, v int, err error) {
	switch logits.DType() {
	case ops.F32:
		suffix = "f32"
	case ops.BF16:
		suffix = "bf16"
	default:
		return "", 0, 0, ops.Unsupported(op, b.Name(), "Logits dtype "+logits.DType().String())
	}
	if dlogits != nil && dlogits.DType() != logits.DType() {
		return "", 0, 0, ops.Unsupported(op, b.Name(), fmt.Sprintf("DLogits %v with Logits %v (the kernel writes the logits' dtype)",
			dlogits.DType(), logits.DType()))
	}
	r, v = logits.Dim(0), logits.Dim(1)
	if r > math.MaxInt32 || v > math.MaxInt32 {
		return "", 0, 0, ops.Unsupported(op, b.Name(), fmt.Sprintf("[%d, %d] logits: rows and vocabulary must be < 2^31", r, v))
	}
	return suffix, r, v, nil
}

// ceTargetError reads the error slot that a cross-entropy check kernel filled and returns
// the op's error naming the first out-of-range target, or nil.
func (b *Backend) ceTargetError(op ops.Op, flags Ptr, slot int, targets *ops.Tensor, v int) error {
	slots, err := b.readSlots(flags, 1)
	if err != nil {
		return err
	}
	if i := slots[slot]; i != flagNone {
		t, err := b.readI32(targets, i)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "Targets", ops.ErrValue, "target %d of row %d is not in [0, %d)", t, i, v)
	}
	return nil
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
	suffix, r, v, err := b.ceLogits(op, p.Logits, p.DLogits)
	if err != nil || r == 0 {
		return err
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
	if err := b.dev.Launch("masked_ce_fwdbwd_"+suffix, D1(r), D1(ceThreadsFor(v)), 0,
		Args(ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], flags, v)...); err != nil {
		return err
	}
	return b.ceTargetError(op, flags, ceFlagTarget, p.Targets, v)
}
