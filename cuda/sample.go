package cuda

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of kernels/sample.cu (one ancestral sampling step, ops.SampleParams).
//
// Draws are bit-identical to the CPU backend for the same (Seed, Step, IndexOffset + row)
// addresses: every float64 sum follows the reference order of ops.SampleCDFChunk. The one
// residual difference is the last bit of exp/log (Go's math.Exp/Log, glibc in the simulator,
// CUDA's libdevice on the GPU are each < 1 ulp but not correctly rounded), which can change a
// draw only when u·Σe lands within a few ulps of a CDF boundary (~1e-13 per draw); see the
// header of kernels/sample.cu.

func init() { register(ops.OpSampleStep, ops.F32, ops.BF16) }

// Launch constants mirrored from kernels/sample.cu.
const (
	sampleThreads         = 256                // SAMPLE_THREADS
	sampleChunk           = ops.SampleCDFChunk // SAMPLE_CHUNK
	sampleCommitThreads   = 256                // SAMPLE_COMMIT_THREADS
	sampleCommitMaxBlocks = 65535              // SAMPLE_COMMIT_MAX_BLOCKS
	sampleFlagRows        = 0                  // SAMPLE_FLAG_ROWS
	sampleFlagLogits      = 1                  // SAMPLE_FLAG_LOGITS
	sampleFlagClass       = 2                  // SAMPLE_FLAG_CLASS
	sampleFlags           = 3
)

// sampleThreadsFor is the block size of sample_step for vocabulary v (kernels/sample.cu launch
// contract): one warp for small vocabularies, up to sampleThreads, always a multiple of 32.
// The draws do not depend on it.
func sampleThreadsFor(v int) int {
	t := ((v+15)/16 + 31) / 32 * 32
	return min(sampleThreads, max(32, t))
}

func init() {
	// The kernel's mode switch uses the ops.SampleMode values.
	if ops.SampleExact != 1 || ops.SampleJAXCompat != 2 || ops.SampleArgmax != 3 || sampleChunk != 256 {
		panic("cuda: kernels/sample.cu SAMPLE_MODE_* / SAMPLE_CHUNK no longer match engine/ops")
	}
}

// SampleStep implements ops.Ops: sample_step_<dt> draws every listed row into a scratch token
// array (one block per row) while claiming its position in a zeroed stamp array (which also
// finds repeated rows); sample_commit_i32 then writes Out = Z with the draws, unless an error
// slot is set, in which case Out is unchanged. The error slots are read back, so the call
// waits for the kernels; errors carry the CPU backend's messages.
func (b *Backend) SampleStep(p *ops.SampleParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpSampleStep
	var kernel string
	switch p.Logits.DType() {
	case ops.F32:
		kernel = "sample_step_f32"
	case ops.BF16:
		kernel = "sample_step_bf16"
	default:
		return ops.Unsupported(op, b.Name(), "Logits dtype "+p.Logits.DType().String())
	}
	r, v := p.Logits.Dim(0), p.Logits.Dim(1)
	npos := p.Z.Len()
	nchunks := (v + sampleChunk - 1) / sampleChunk
	smem := 8 * nchunks
	if lim := b.dev.Props().MaxSmemBlock; smem > lim {
		return ops.Unsupported(op, b.Name(), fmt.Sprintf("vocabulary %d needs %d bytes of shared memory for its chunk sums (limit %d, so V ≤ %d)",
			v, smem, lim, lim/8*sampleChunk))
	}
	if r > math.MaxInt32 || npos > math.MaxInt32 {
		return ops.Unsupported(op, b.Name(), fmt.Sprintf("%d rows over %d positions: both must be < 2^31", r, npos))
	}
	ptrs, err := b.ptrs(p.Out, p.Z, p.Logits, p.Rows, p.ClassUnmask)
	if err != nil {
		return err
	}
	threads := sampleThreadsFor(v)
	if npos == 0 && r == 0 {
		return nil
	}
	flags, err := b.errSlots(sampleFlags)
	if err != nil {
		return err
	}
	stamp, err := b.scratchBuf("sample.stamp", 4*npos)
	if err != nil {
		return err
	}
	if err := b.dev.Memset(stamp, 0, 4*npos); err != nil {
		return err
	}
	tokens, err := b.scratchBuf("sample.tokens", 4*r)
	if err != nil {
		return err
	}
	if r > 0 {
		if err := b.dev.Launch(kernel, D1(r), D1(threads), smem,
			Args(tokens, stamp, flags, ptrs[1], ptrs[2], ptrs[3], v, npos, p.PUnmask, p.TopP,
				int32(p.Mode), p.MaskID, p.Seed, p.Step, p.IndexOffset, ptrs[4])...); err != nil {
			return err
		}
	}
	if npos > 0 {
		if err := b.dev.Launch("sample_commit_i32", gridFor(npos, sampleCommitThreads, sampleCommitMaxBlocks), D1(sampleCommitThreads), 0,
			Args(ptrs[0], ptrs[1], stamp, tokens, flags, npos)...); err != nil {
			return err
		}
	}
	slots, err := b.readSlots(flags, sampleFlags)
	if err != nil {
		return err
	}
	if slots[sampleFlagRows] != flagNone {
		return b.sampleRowsError(p)
	}
	if k := slots[sampleFlagClass]; k != flagNone {
		q, err := b.readF64(p.ClassUnmask, k)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "ClassUnmask", ops.ErrValue, "probability %v of token %d is not in [0, 1]", q, k)
	}
	if i := slots[sampleFlagLogits]; i != flagNone {
		pos, err := b.readI32(p.Rows, i)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "Logits", ops.ErrNonFinite, "row %d (position %d) has a NaN or +Inf logit, or only −Inf logits", i, pos)
	}
	return nil
}

// sampleRowsError re-derives, on the host, the CPU backend's message for the first structural
// problem of Rows (out of range, repeated, or naming a position that is not masked). It runs
// only after the kernel has flagged one.
func (b *Backend) sampleRowsError(p *ops.SampleParams) error {
	const op = ops.OpSampleStep
	rows := make([]int32, p.Rows.Len())
	z := make([]int32, p.Z.Len())
	if err := b.Download(rows, p.Rows); err != nil {
		return err
	}
	if err := b.Download(z, p.Z); err != nil {
		return err
	}
	n := len(z)
	for i, r := range rows {
		if r < 0 || int(r) >= n {
			return ops.Errorf(op, "Rows", ops.ErrValue, "id %d at index %d is not in [0, %d)", r, i, n)
		}
	}
	first := make(map[int32]int, len(rows))
	for i, r := range rows {
		if k, ok := first[r]; ok {
			return ops.Errorf(op, "Rows", ops.ErrValue, "row %d is repeated at indices %d and %d; rows must be distinct", r, k, i)
		}
		first[r] = i
	}
	l := max(p.Z.Dim(1), 1)
	for i, r := range rows {
		if z[r] != p.MaskID {
			return ops.Errorf(op, "Rows", ops.ErrValue, "position %d (Z[%d, %d], row %d) holds %d, not the mask id %d; only masked positions can be sampled",
				r, int(r)/l, int(r)%l, i, z[r], p.MaskID)
		}
	}
	return ops.Errorf(op, "Rows", ops.ErrValue, "the kernel flagged a row the host check does not reproduce (rows %v)", rows)
}
