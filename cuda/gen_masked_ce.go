package cuda

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// Launcher of kernels/gen_masked_ce.cu (GenMD4's fused masked diffusion loss,
// ops.GenMaskedCEParams).

func init() { register(ops.OpGenMaskedCE, ops.F32, ops.BF16) }

// Launch constants mirrored from kernels/gen_masked_ce.cu.
const (
	gceThreads        = 256   // GCE_THREADS
	gceCheckThreads   = 256   // GCE_CHECK_THREADS
	gceCheckMaxBlocks = 65535 // GCE_CHECK_MAX_BLOCKS
	gceColThreads     = 256   // GCE_COL_THREADS
	gceNStat          = 4     // GCE_NSTAT
	gceFlagTarget     = 0     // GCE_FLAG_TARGET
	gceMinChunkRows   = 64    // fewest rows per DPowers chunk
	gceMaxColBlocks   = 1024  // target number of blocks of gen_ce_dpow_* (chunks × column blocks)
)

// gceThreadsFor is the block size of the per-row kernels for vocabulary v (ceRowThreads with
// GCE_THREADS at most).
func gceThreadsFor(v int) int { return ceRowThreads(v, gceThreads) }

// gceChunking returns the row chunk height of the DPowers column sums and the number of chunks
// for r rows of vocabulary v. It depends only on (r, v), so the summation order (and the result)
// is fixed for a shape: max(64, ceil(r / max(1, 1024/ceil(v/256)))) rows per chunk.
func gceChunking(r, v int) (rowsPerChunk, nchunks int) {
	colBlocks := (v + gceColThreads - 1) / gceColThreads
	maxChunks := max(1, gceMaxColBlocks/colBlocks)
	rowsPerChunk = max(gceMinChunkRows, (r+maxChunks-1)/maxChunks)
	return rowsPerChunk, (r + rowsPerChunk - 1) / rowsPerChunk
}

// GenMaskedCE implements ops.Ops: gen_ce_check_i32 validates the targets into an error slot;
// gen_ce_fwd_<dt> computes Loss and per-row statistics (one block per row); with DPowers,
// gen_ce_dpow_<dt> sums column partials per row chunk and gen_ce_dpow_reduce_f64 adds them
// to DPowers in chunk order; with DLogits, gen_ce_bwd_<dt> writes the gradient last (it may
// overwrite the logits). Every kernel returns at once when the slot is set, so nothing is
// written on error. The slot is read back, so the call waits for the kernels.
//
// Accuracy versus the CPU reference (float64 exp and row-sequential sums): exp is float32
// (expf), sums float64 in another fixed order, so Loss and DPowers agree to ~1e-7 relative;
// results are bit-identical from run to run.
func (b *Backend) GenMaskedCE(p *ops.GenMaskedCEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpGenMaskedCE
	suffix, r, v, err := b.ceLogits(op, p.Logits, p.DLogits)
	if err != nil || r == 0 {
		return err
	}
	ptrs, err := b.ptrs(p.Logits, p.Targets, p.Scales, p.Powers, p.Loss, p.DLogits, p.DPowers)
	if err != nil {
		return err
	}
	logits, targets, scales, powers, loss, dlogits, dpowers := ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6]
	flags, err := b.errSlots(1)
	if err != nil {
		return err
	}
	stats, err := b.scratchBuf("gence.stats", 8*gceNStat*r)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("gen_ce_check_i32", gridFor(r, gceCheckThreads, gceCheckMaxBlocks), D1(gceCheckThreads), 0,
		Args(flags, targets, r, v)...); err != nil {
		return err
	}
	threads := gceThreadsFor(v)
	if err := b.dev.Launch("gen_ce_fwd_"+suffix, D1(r), D1(threads), 0,
		Args(logits, targets, scales, powers, loss, stats, flags, v)...); err != nil {
		return err
	}
	if p.DPowers != nil {
		rpc, nchunks := gceChunking(r, v)
		partial, err := b.scratchBuf("gence.partial", 8*nchunks*v)
		if err != nil {
			return err
		}
		colBlocks := (v + gceColThreads - 1) / gceColThreads
		if err := b.dev.Launch("gen_ce_dpow_"+suffix, Dim3{colBlocks, nchunks, 1}, D1(gceColThreads), 0,
			Args(logits, targets, scales, stats, partial, flags, r, v, rpc)...); err != nil {
			return err
		}
		if err := b.dev.Launch("gen_ce_dpow_reduce_f64", D1(colBlocks), D1(gceColThreads), 0,
			Args(partial, dpowers, flags, nchunks, v)...); err != nil {
			return err
		}
	}
	if p.DLogits != nil {
		if err := b.dev.Launch("gen_ce_bwd_"+suffix, D1(r), D1(threads), 0,
			Args(logits, targets, scales, powers, stats, dlogits, flags, v)...); err != nil {
			return err
		}
	}
	return b.ceTargetError(op, flags, gceFlagTarget, p.Targets, v)
}
