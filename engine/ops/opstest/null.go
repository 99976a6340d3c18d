package opstest

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Null is a backend for plumbing tests (after tinygrad's null device): its Device keeps
// tensors in host memory with the CPU backend's storage types, and every op validates its
// Params and then does nothing. Supports reports every op for F32, BF16 and F64. Use it to
// test wrappers and callers, never as a reference.
type Null struct {
	// Calls counts the op calls that passed validation, by op.
	Calls map[ops.Op]int
}

// NewNull returns a Null backend.
func NewNull() *Null { return &Null{Calls: map[ops.Op]int{}} }

var _ ops.Backend = (*Null)(nil)

// Name returns "null".
func (n *Null) Name() string { return "null" }

// Alloc returns a zero-filled host tensor.
func (n *Null) Alloc(dt ops.DType, shape ...int) (*ops.Tensor, error) {
	k := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("null: Alloc %v%v: %w: negative dimension", dt, shape, ops.ErrShape)
		}
		k *= d
	}
	h := newHost(dt, k)
	if h.slice() == nil {
		return nil, fmt.Errorf("null: Alloc: %w: invalid dtype %v", ops.ErrDType, dt)
	}
	return ops.NewTensor(n, dt, shape, h.slice())
}

// Free drops the tensor's storage.
func (n *Null) Free(t *ops.Tensor) error {
	if t == nil || t.Storage == nil {
		return fmt.Errorf("null: Free of a nil or freed tensor: %w", ops.ErrValue)
	}
	t.Storage = nil
	return nil
}

// View returns a tensor sharing rows [start, end) of t's storage.
func (n *Null) View(t *ops.Tensor, start, end int) (*ops.Tensor, error) {
	if t == nil || t.Storage == nil {
		return nil, fmt.Errorf("null: View of a nil or freed tensor: %w", ops.ErrValue)
	}
	if start < 0 || end < start || end > t.Dim(0) {
		return nil, fmt.Errorf("null: View rows [%d, %d) of %v: %w", start, end, t, ops.ErrShape)
	}
	row := 0
	if t.Dim(0) > 0 {
		row = t.Len() / t.Dim(0)
	}
	lo, hi := start*row, end*row
	var st any
	switch s := t.Storage.(type) {
	case []float32:
		st = s[lo:hi:hi]
	case []uint16:
		st = s[lo:hi:hi]
	case []float64:
		st = s[lo:hi:hi]
	case []int32:
		st = s[lo:hi:hi]
	}
	shape := t.Shape()
	shape[0] = end - start
	return ops.NewTensor(n, t.DType(), shape, st)
}

// Upload copies src into dst.
func (n *Null) Upload(dst *ops.Tensor, src any) error { return hostCopy(dst, src, true) }

// Download copies src into dst.
func (n *Null) Download(dst any, src *ops.Tensor) error { return hostCopy(src, dst, false) }

func hostCopy(t *ops.Tensor, h any, up bool) error {
	if t == nil || t.Storage == nil {
		return fmt.Errorf("null: copy to or from a nil or freed tensor: %w", ops.ErrValue)
	}
	ok := false
	switch s := t.Storage.(type) {
	case []float32:
		var v []float32
		if v, ok = h.([]float32); ok && len(v) == len(s) {
			if up {
				copy(s, v)
			} else {
				copy(v, s)
			}
			return nil
		}
	case []uint16:
		var v []uint16
		if v, ok = h.([]uint16); ok && len(v) == len(s) {
			if up {
				copy(s, v)
			} else {
				copy(v, s)
			}
			return nil
		}
	case []float64:
		var v []float64
		if v, ok = h.([]float64); ok && len(v) == len(s) {
			if up {
				copy(s, v)
			} else {
				copy(v, s)
			}
			return nil
		}
	case []int32:
		var v []int32
		if v, ok = h.([]int32); ok && len(v) == len(s) {
			if up {
				copy(s, v)
			} else {
				copy(v, s)
			}
			return nil
		}
	}
	return fmt.Errorf("null: copy %v: host buffer %T does not match (%d elements of %v wanted): %w", t, h, t.Len(), t.DType(), ops.ErrValue)
}

// Sync returns nil.
func (n *Null) Sync() error { return nil }

// MemInfo reports 1 GiB free of 1 GiB.
func (n *Null) MemInfo() (free, total int64, err error) { return 1 << 30, 1 << 30, nil }

// Supports reports true for every op and F32, BF16 or F64.
func (n *Null) Supports(op ops.Op, dt ops.DType) bool { return op.String() != "Op(?)" && dt.Float() }

func (n *Null) do(op ops.Op, v interface{ Validate() error }) error {
	if err := v.Validate(); err != nil {
		return err
	}
	n.Calls[op]++
	return nil
}

// MatMul validates p and does nothing.
func (n *Null) MatMul(p *ops.MatMulParams) error { return n.do(ops.OpMatMul, p) }

// EmbedFwd validates p and does nothing.
func (n *Null) EmbedFwd(p *ops.EmbedParams) error { return n.do(ops.OpEmbedFwd, p) }

// EmbedBwd validates p and does nothing.
func (n *Null) EmbedBwd(p *ops.EmbedBwdParams) error { return n.do(ops.OpEmbedBwd, p) }

// NormFwd validates p and does nothing.
func (n *Null) NormFwd(p *ops.NormParams) error { return n.do(ops.OpNormFwd, p) }

// NormBwd validates p and does nothing.
func (n *Null) NormBwd(p *ops.NormBwdParams) error { return n.do(ops.OpNormBwd, p) }

// RoPE validates p and does nothing.
func (n *Null) RoPE(p *ops.RoPEParams) error { return n.do(ops.OpRoPE, p) }

// AttnFwd validates p and does nothing.
func (n *Null) AttnFwd(p *ops.AttnParams) error { return n.do(ops.OpAttnFwd, p) }

// AttnBwd validates p and does nothing.
func (n *Null) AttnBwd(p *ops.AttnBwdParams) error { return n.do(ops.OpAttnBwd, p) }

// GLUFwd validates p and does nothing.
func (n *Null) GLUFwd(p *ops.GLUParams) error { return n.do(ops.OpGLUFwd, p) }

// GLUBwd validates p and does nothing.
func (n *Null) GLUBwd(p *ops.GLUBwdParams) error { return n.do(ops.OpGLUBwd, p) }

// ActFwd validates p and does nothing.
func (n *Null) ActFwd(p *ops.ActParams) error { return n.do(ops.OpActFwd, p) }

// ActBwd validates p and does nothing.
func (n *Null) ActBwd(p *ops.ActBwdParams) error { return n.do(ops.OpActBwd, p) }

// BiasAdd validates p and does nothing.
func (n *Null) BiasAdd(p *ops.BiasAddParams) error { return n.do(ops.OpBiasAdd, p) }

// BiasGrad validates p and does nothing.
func (n *Null) BiasGrad(p *ops.BiasGradParams) error { return n.do(ops.OpBiasGrad, p) }

// GateResidualFwd validates p and does nothing.
func (n *Null) GateResidualFwd(p *ops.GateResidualParams) error {
	return n.do(ops.OpGateResidualFwd, p)
}

// GateResidualBwd validates p and does nothing.
func (n *Null) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	return n.do(ops.OpGateResidualBwd, p)
}

// CopyCols validates p and does nothing.
func (n *Null) CopyCols(p *ops.CopyColsParams) error { return n.do(ops.OpCopyCols, p) }

// GatherRows validates p and does nothing.
func (n *Null) GatherRows(p *ops.GatherRowsParams) error { return n.do(ops.OpGatherRows, p) }

// ScatterRows validates p and does nothing.
func (n *Null) ScatterRows(p *ops.ScatterRowsParams) error { return n.do(ops.OpScatterRows, p) }

// MaskedCE validates p and does nothing.
func (n *Null) MaskedCE(p *ops.MaskedCEParams) error { return n.do(ops.OpMaskedCE, p) }

// MaskTokens validates p and does nothing.
func (n *Null) MaskTokens(p *ops.MaskParams) error { return n.do(ops.OpMaskTokens, p) }

// SampleStep validates p and does nothing.
func (n *Null) SampleStep(p *ops.SampleParams) error { return n.do(ops.OpSampleStep, p) }

// AdamW validates p and does nothing.
func (n *Null) AdamW(p *ops.AdamWParams) error { return n.do(ops.OpAdamW, p) }

// SumSquares validates p and does nothing.
func (n *Null) SumSquares(p *ops.SumSquaresParams) error { return n.do(ops.OpSumSquares, p) }

// Axpy validates p and does nothing.
func (n *Null) Axpy(p *ops.AxpyParams) error { return n.do(ops.OpAxpy, p) }

// Convert validates p and does nothing.
func (n *Null) Convert(p *ops.ConvertParams) error { return n.do(ops.OpConvert, p) }

// TimeEmbed validates p and does nothing.
func (n *Null) TimeEmbed(p *ops.TimeEmbedParams) error { return n.do(ops.OpTimeEmbed, p) }

// GenMaskedCE validates p and does nothing.
func (n *Null) GenMaskedCE(p *ops.GenMaskedCEParams) error { return n.do(ops.OpGenMaskedCE, p) }
