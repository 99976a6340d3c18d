package cuda

import (
	"encoding/binary"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of kernels/mask.cu (forward masking, ops.MaskParams) and the device error slots
// shared by the MD4 launchers (mask.go, sample.go, masked_ce.go).

// MaskTokens's dtype for Supports is F64: MaskProb is its only floating tensor and is always F64
// (opstest.MaskDType).
func init() { register(ops.OpMaskTokens, ops.F64) }

// Launch constants mirrored from kernels/mask.cu.
const (
	maskThreads   = 256   // MASK_THREADS
	maskMaxBlocks = 65535 // MASK_MAX_BLOCKS (grid-stride loops cover the rest)
)

// Error slots of kernels/mask.cu (MASK_FLAG_*).
const (
	maskFlagX0 = iota
	maskFlagSeqLens
	maskFlagProb
	maskFlags
)

// flagNone is an error slot that holds no error: the 0x7F byte pattern the launchers memset
// (MASK_FLAG_NONE, SAMPLE_FLAG_NONE, CE_FLAG_NONE in the kernels). Kernels lower a slot with an
// integer atomicMin to the smallest offending index, so the reported index does not depend on
// thread or block order.
const flagNone = 0x7F7F7F7F7F7F7F7F

// errSlots returns the device address of n int64 error slots, all set to flagNone. The buffer
// is a per-backend scratch shared by the MD4 launchers (calls are sequential on one device).
func (b *Backend) errSlots(n int) (Ptr, error) {
	p, err := b.scratchBuf("md4.errslots", 8*n)
	if err != nil {
		return 0, err
	}
	return p, b.dev.Memset(p, 0x7F, 8*n)
}

// readSlots copies n error slots back to the host (this waits for the kernels before it).
func (b *Backend) readSlots(p Ptr, n int) ([]int64, error) {
	raw := make([]byte, 8*n)
	if err := b.dev.CopyDtoH(raw, p); err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}

// readI32 and readF64 fetch element i of a tensor (used on error paths only, to quote the
// offending value like the CPU backend does).
func (b *Backend) readI32(t *ops.Tensor, i int64) (int32, error) {
	p, err := b.ptr(t)
	if err != nil {
		return 0, err
	}
	var raw [4]byte
	if err := b.dev.CopyDtoH(raw[:], p+Ptr(4*i)); err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(raw[:])), nil
}

func (b *Backend) readF64(t *ops.Tensor, i int64) (float64, error) {
	p, err := b.ptr(t)
	if err != nil {
		return 0, err
	}
	var raw [8]byte
	if err := b.dev.CopyDtoH(raw[:], p+Ptr(8*i)); err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(raw[:])), nil
}

// gridFor returns the 1-D grid of a grid-stride kernel over n items with the given block size.
func gridFor(n, threads, maxBlocks int) Dim3 {
	return D1(max(1, min((n+threads-1)/threads, maxBlocks)))
}

// MaskTokens implements ops.Ops (kernels/mask.cu): mask_check_i32 validates X0, SeqLens and
// MaskProb into error slots, then mask_fwd_i32 draws the mask (and writes nothing if a slot is
// set); the slots are read back, so the call waits for the kernels. Errors quote the CPU
// backend's messages.
func (b *Backend) MaskTokens(p *ops.MaskParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpMaskTokens
	ptrs, err := b.ptrs(p.XT, p.X0, p.MaskProb, p.SeqLens)
	if err != nil {
		return err
	}
	bs, l := p.X0.Dim(0), p.X0.Dim(1)
	npos, nprob := bs*l, p.MaskProb.Len()
	nCheck := max(npos, nprob, bs)
	if nCheck == 0 {
		return nil
	}
	flags, err := b.errSlots(maskFlags)
	if err != nil {
		return err
	}
	v := int(p.MaskID)
	if err := b.dev.Launch("mask_check_i32", gridFor(nCheck, maskThreads, maskMaxBlocks), D1(maskThreads), 0,
		Args(flags, ptrs[1], ptrs[2], ptrs[3], bs, l, v, nprob)...); err != nil {
		return err
	}
	if npos > 0 {
		perToken := int32(0)
		if p.MaskProb.Rank() == 2 {
			perToken = 1
		}
		if err := b.dev.Launch("mask_fwd_i32", gridFor(npos, maskThreads, maskMaxBlocks), D1(maskThreads), 0,
			Args(ptrs[0], ptrs[1], ptrs[2], ptrs[3], flags, bs, l, v, perToken, p.MaskID,
				p.Seed, p.Step, uint32(p.Purpose), p.IndexOffset)...); err != nil {
			return err
		}
	}
	slots, err := b.readSlots(flags, maskFlags)
	if err != nil {
		return err
	}
	// Report in the CPU backend's order: X0, then SeqLens, then MaskProb.
	if i := slots[maskFlagX0]; i != flagNone {
		x, err := b.readI32(p.X0, i)
		if err != nil {
			return err
		}
		r, c := int(i)/max(l, 1), int(i)%max(l, 1)
		if x == p.MaskID {
			return ops.Errorf(op, "X0", ops.ErrValue, "X0[%d, %d] holds the mask id %d; X0 must be clean data", r, c, x)
		}
		return ops.Errorf(op, "X0", ops.ErrValue, "token %d at X0[%d, %d] is not in [0, %d)", x, r, c, v)
	}
	if i := slots[maskFlagSeqLens]; i != flagNone {
		n, err := b.readI32(p.SeqLens, i)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "SeqLens", ops.ErrValue, "length %d of sequence %d is not in [1, %d]", n, i, l)
	}
	if i := slots[maskFlagProb]; i != flagNone {
		q, err := b.readF64(p.MaskProb, i)
		if err != nil {
			return err
		}
		return ops.Errorf(op, "MaskProb", ops.ErrValue, "probability %v at index %d is not in [0, 1]", q, i)
	}
	return nil
}
