package cuda

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launcher of kernels/rope.cu (rope_{fwd,bwd}_{f32,bf16}); see its header comment for the math and the
// launch contract.

func init() { register(ops.OpRoPE, ops.F32, ops.BF16) }

// ropeThreads mirrors rope::kThreads in kernels/rope.cu.
const ropeThreads = 256

// ropeMaxBlocks caps the grid; the kernel loops over the remaining pairs (grid-stride).
const ropeMaxBlocks = 1 << 20

// RoPE implements ops.Ops: one launch over the B·L·Dh/2 (position, pair) items, each rotating its pair
// in all H heads; Inverse selects rope_bwd_*. Out may be X (in place) but must not partially overlap it.
func (b *Backend) RoPE(p *ops.RoPEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpRoPE
	dt := p.X.DType()
	switch {
	case p.Out.DType() != dt:
		return ops.Errorf(op, "Out", ops.ErrDType, "%v has dtype %v but X has %v; the cuda backend needs one dtype", p.Out, p.Out.DType(), dt)
	case dt == ops.F64:
		return ops.Unsupported(op, "cuda", "dtype f64 (CPU only)")
	}
	ptrs, err := b.ptrs(p.Out, p.X)
	if err != nil {
		return err
	}
	if ptrs[0] != ptrs[1] && b.overlap(p.Out, p.X) {
		return ops.Errorf(op, "Out", ops.ErrValue, "%v partially overlaps X (%v); Out must be X or disjoint from it", p.Out, p.X)
	}
	align := uint64(2 * dt.Size()) // one channel pair
	for i, name := range []string{"Out", "X"} {
		if uint64(ptrs[i])%align != 0 {
			return ops.Errorf(op, name, ops.ErrValue, "%v at %#x is not %d-byte aligned, as rope_*_%v needs", []*ops.Tensor{p.Out, p.X}[i], uint64(ptrs[i]), align, dt)
		}
	}
	bs, l, h, dh := p.X.Dim(0), p.X.Dim(1), p.X.Dim(2), p.X.Dim(3)
	pairs := bs * l * dh / 2
	if pairs == 0 || h == 0 {
		return nil
	}
	name := "rope_fwd_"
	if p.Inverse {
		name = "rope_bwd_"
	}
	name += dt.String()
	grid := min((pairs+ropeThreads-1)/ropeThreads, ropeMaxBlocks)
	return b.dev.Launch(name, D1(grid), D1(ropeThreads), 0, Args(ptrs[0], ptrs[1], bs*l, l, h, dh, p.Theta)...)
}
