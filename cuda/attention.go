package cuda

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of the attention family: kernels/attention_fwd.cu, kernels/attention_bwd.cu and
// kernels/attention_common.cuh (read their header comments for the math and the launch contract).
//
//	AttnFwd  bf16, Dh 64 / 128: attn_fwd_bf16_d{64,128}      (FlashAttention-2 style, mma.sync)
//	         f32, Dh <= 128:    attn_fwd_f32                  (scalar FMAs)
//	AttnBwd  bf16, Dh 64 / 128: attn_bwd_bf16_d{64,128}_dq, then attn_bwd_bf16_d{64,128}_dkdv
//	         f32, Dh <= 128:    attn_bwd_f32_dq, then attn_bwd_f32_dkdv
//
// The backward is deterministic without atomics: the dq kernel (one block per query tile) also
// writes Δ = rowsum(dO ⊙ O) into a scratch buffer that the dkdv kernel (one block per key tile) reads.
// Other bf16 head dimensions are ops.Unsupported; F64 is CPU-only.

func init() {
	register(ops.OpAttnFwd, ops.F32, ops.BF16)
	register(ops.OpAttnBwd, ops.F32, ops.BF16)
}

// Launch constants, mirrored from kernels/attention_common.cuh (change both together).
const (
	attnThreads     = 128 // kThreads, kF32Threads
	attnRows        = 64  // kRows: bf16 query tile (fwd, dq) and key tile (dkdv)
	attnFwdKeys     = 64  // Tiles<D>::kFwdKeys
	attnF32Rows     = 32  // kF32Rows
	attnF32FwdKeys  = 16  // kF32FwdKeys
	attnF32BwdInner = 8   // kF32BwdInner
	attnF32MaxD     = 128 // kF32MaxD
)

// attnDqKeys and attnDkdvQueries mirror Tiles<D>::kDqKeys and Tiles<D>::kDkdvQueries: the inner
// tiles of the bf16 backward kernels.
func attnDqKeys(dh int) int {
	if dh == 64 {
		return 64
	}
	return 32
}

func attnDkdvQueries(dh int) int {
	if dh == 64 {
		return 64
	}
	return 16
}

// AttnFwdFLOPs is the FlashAttention convention for the forward pass: 4·B·L²·H·Dh (two GEMMs,
// padding not discounted).
func AttnFwdFLOPs(b, l, h, dh int) int64 {
	return 4 * int64(b) * int64(l) * int64(l) * int64(h) * int64(dh)
}

// AttnBwdFLOPs is the FlashAttention convention for the backward pass: 2.5× the forward (five
// GEMMs). It counts useful work only: the kernels here do 7 GEMM-sized products (S and dP are
// recomputed by the dkdv kernel for determinism), and the bf16 ones 10 units of mma work, as P and
// dS are multiplied as hi + lo bf16 pairs (kernels/attention_bwd.cu, "Precision").
func AttnBwdFLOPs(b, l, h, dh int) int64 { return AttnFwdFLOPs(b, l, h, dh) * 5 / 2 }

// attnFwdSmem returns the dynamic shared memory of the forward kernel for dt and head dim dh.
func attnFwdSmem(dt ops.DType, dh int) int {
	if dt == ops.BF16 {
		return (attnRows + 2*attnFwdKeys) * dh * 2
	}
	sd := dh | 1
	return (attnF32Rows*sd + attnF32FwdKeys*sd + attnF32FwdKeys*dh + attnF32Rows*(attnF32FwdKeys+1)) * 4
}

// attnDqSmem and attnDkdvSmem return the dynamic shared memory of the two backward kernels.
func attnDqSmem(dt ops.DType, dh int) int {
	if dt == ops.BF16 {
		return (2*attnRows + 2*attnDqKeys(dh)) * dh * 2
	}
	return attnF32BwdSmem(dh)
}

func attnDkdvSmem(dt ops.DType, dh int) int {
	if dt == ops.BF16 {
		return (2*attnRows + 2*attnDkdvQueries(dh)) * dh * 2
	}
	return attnF32BwdSmem(dh)
}

// attnF32BwdSmem: Q, dO (or K, V) tiles of 32 rows, two tiles of 8 rows, and two 32 x 9 exchange
// arrays, f32, with an odd row stride (Dh | 1).
func attnF32BwdSmem(dh int) int {
	sd := dh | 1
	return (2*attnF32Rows*sd + 2*attnF32BwdInner*sd + 2*attnF32Rows*(attnF32BwdInner+1)) * 4
}

// attnBwdSmem is the larger of the two (what attnCheck compares with the device limit).
func attnBwdSmem(dt ops.DType, dh int) int { return max(attnDqSmem(dt, dh), attnDkdvSmem(dt, dh)) }

// attnShape holds the checked dimensions and the kernel-name suffix of one call.
type attnShape struct {
	b, l, h, dh int
	dt          ops.DType
	suffix      string // "bf16_d64", "bf16_d128" or "f32"
}

// attnArg is one tensor argument of a launch: act marks the activation-class tensors (one dtype
// for all), out the tensors the kernels write, vec those read or written as 16-byte vectors by the
// bf16 kernels (cp.async); the others need 4-byte alignment.
type attnArg struct {
	name          string
	t             *ops.Tensor
	act, out, vec bool
}

// attnCheck validates everything the kernels rely on beyond Params.Validate: one dtype for all
// activation tensors, F32 statistics, a supported head dimension, grid limits, shared memory,
// pointer alignment, and outputs that alias no other argument.
func (b *Backend) attnCheck(op ops.Op, smem func(ops.DType, int) int, args []attnArg) (attnShape, error) {
	q := args[0].t
	s := attnShape{b: q.Dim(0), l: q.Dim(1), h: q.Dim(2), dh: q.Dim(3), dt: q.DType()}
	for _, a := range args {
		switch {
		case a.t == nil:
		case a.act && a.t.DType() != s.dt:
			return s, ops.Errorf(op, a.name, ops.ErrDType, "%v has dtype %v but Q has %v; the cuda backend needs one dtype", a.t, a.t.DType(), s.dt)
		case a.name == "LSE" && a.t.DType() != ops.F32:
			return s, ops.Unsupported(op, "cuda", fmt.Sprintf("LSE dtype %v (want f32)", a.t.DType()))
		}
	}
	switch {
	case s.dt == ops.F64:
		return s, ops.Unsupported(op, "cuda", "dtype f64 (CPU only)")
	case s.dt == ops.BF16 && s.dh != 64 && s.dh != 128:
		return s, ops.Unsupported(op, "cuda", fmt.Sprintf("dtype bf16 with head dim %d (the flash kernels have 64 and 128)", s.dh))
	case s.dt == ops.F32 && s.dh > attnF32MaxD:
		return s, ops.Unsupported(op, "cuda", fmt.Sprintf("dtype f32 with head dim %d (at most %d)", s.dh, attnF32MaxD))
	case s.h > 65535 || s.b > 65535:
		return s, ops.Errorf(op, "Q", ops.ErrShape, "%v: B = %d and H = %d must be at most 65535 (grid z and y)", q, s.b, s.h)
	}
	s.suffix = "f32"
	if s.dt == ops.BF16 {
		s.suffix = fmt.Sprintf("bf16_d%d", s.dh)
	}
	if need, have := smem(s.dt, s.dh), b.dev.Props().MaxSmemBlock; need > have {
		return s, fmt.Errorf("cuda: %v: attn_%s needs %d bytes of shared memory per block, the device allows %d without opt-in",
			op, s.suffix, need, have)
	}
	for _, a := range args {
		if a.t == nil {
			continue
		}
		p, err := b.ptr(a.t)
		if err != nil {
			return s, err
		}
		align := uint64(4)
		if a.vec && s.dt == ops.BF16 {
			align = 16
		}
		if uint64(p)%align != 0 {
			return s, ops.Errorf(op, a.name, ops.ErrValue, "%v at %#x is not %d-byte aligned, as the attn_%s kernels need",
				a.t, uint64(p), align, s.suffix)
		}
	}
	for _, o := range args {
		if !o.out {
			continue
		}
		for _, a := range args {
			if a.t != nil && a.name != o.name && b.overlap(o.t, a.t) {
				return s, ops.Errorf(op, o.name, ops.ErrValue, "%v overlaps %s (%v); outputs must not alias other arguments", o.t, a.name, a.t)
			}
		}
	}
	return s, nil
}

// overlap reports whether the device ranges of x and y intersect (false for empty tensors).
func (b *Backend) overlap(x, y *ops.Tensor) bool {
	bx, e1 := b.buf(x, "launch")
	by, e2 := b.buf(y, "launch")
	if e1 != nil || e2 != nil || bx.bytes == 0 || by.bytes == 0 {
		return false
	}
	return bx.ptr < by.ptr+Ptr(by.bytes) && by.ptr < bx.ptr+Ptr(bx.bytes)
}

// AttnFwd implements ops.Ops: one launch of attn_fwd_<dt>[_d<Dh>], grid (⌈L/tile⌉, H, B).
func (b *Backend) AttnFwd(p *ops.AttnParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpAttnFwd
	s, err := b.attnCheck(op, attnFwdSmem, []attnArg{
		{"Q", p.Q, true, false, true}, {"K", p.K, true, false, true}, {"V", p.V, true, false, true},
		{"Out", p.Out, true, true, false}, {"LSE", p.LSE, false, true, false}, {"SeqLens", p.SeqLens, false, false, false}})
	if err != nil {
		return err
	}
	if s.b == 0 || s.l == 0 || s.h == 0 || s.dh == 0 {
		return nil
	}
	ptrs, err := b.ptrs(p.Out, p.LSE, p.Q, p.K, p.V, p.SeqLens)
	if err != nil {
		return err
	}
	tile := attnRows
	args := Args(ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], s.l, s.h)
	if s.dt == ops.F32 {
		tile = attnF32Rows
		args = append(args, Arg(s.dh))
	}
	args = append(args, Arg(p.Scale))
	grid := Dim3{(s.l + tile - 1) / tile, s.h, s.b}
	return b.dev.Launch("attn_fwd_"+s.suffix, grid, D1(attnThreads), attnFwdSmem(s.dt, s.dh), args...)
}

// AttnBwd implements ops.Ops: the dq kernel (which also writes Δ into the scratch buffer
// "attn.delta", B·H·L f32) and then the dkdv kernel, both on grid (⌈L/tile⌉, H, B).
func (b *Backend) AttnBwd(p *ops.AttnBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpAttnBwd
	s, err := b.attnCheck(op, attnBwdSmem, []attnArg{
		{"Q", p.Q, true, false, true}, {"K", p.K, true, false, true}, {"V", p.V, true, false, true},
		{"Out", p.Out, true, false, false}, {"DOut", p.DOut, true, false, true},
		{"DQ", p.DQ, true, true, false}, {"DK", p.DK, true, true, false}, {"DV", p.DV, true, true, false},
		{"LSE", p.LSE, false, false, false}, {"SeqLens", p.SeqLens, false, false, false}})
	if err != nil {
		return err
	}
	if s.b == 0 || s.l == 0 || s.h == 0 || s.dh == 0 {
		return nil
	}
	delta, err := b.scratchBuf("attn.delta", 4*s.b*s.h*s.l)
	if err != nil {
		return err
	}
	ptrs, err := b.ptrs(p.DQ, p.DK, p.DV, p.Q, p.K, p.V, p.Out, p.DOut, p.LSE, p.SeqLens)
	if err != nil {
		return err
	}
	dq, dk, dv, q, k, v, o, dout, lse, lens := ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], ptrs[7], ptrs[8], ptrs[9]
	tile := attnRows
	var dims []any
	if s.dt == ops.F32 {
		tile = attnF32Rows
		dims = []any{s.l, s.h, s.dh, p.Scale}
	} else {
		dims = []any{s.l, s.h, p.Scale}
	}
	grid := Dim3{(s.l + tile - 1) / tile, s.h, s.b}
	dqArgs := Args(append([]any{dq, delta, q, k, v, o, dout, lse, lens}, dims...)...)
	if err := b.dev.Launch("attn_bwd_"+s.suffix+"_dq", grid, D1(attnThreads), attnDqSmem(s.dt, s.dh), dqArgs...); err != nil {
		return err
	}
	dkdvArgs := Args(append([]any{dk, dv, q, k, v, dout, lse, delta, lens}, dims...)...)
	return b.dev.Launch("attn_bwd_"+s.suffix+"_dkdv", grid, D1(attnThreads), attnDkdvSmem(s.dt, s.dh), dkdvArgs...)
}
