package cuda

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launchers of kernels/reduce.cu (SumSquares, Axpy, Convert, CopyCols, GatherRows,
// ScatterRows, TimeEmbed), plus the helpers shared by the launchers of the elementwise,
// normalisation and reduction families (embedding.go, layernorm.go, mlp.go, this file).

// Shared launch constants of kernels/common.cuh (namespace mdm); change both together.
const (
	rowWarps        = 8             // ROW_WARPS: one warp per row, rows per block
	rowThreads      = 32 * rowWarps // ROW_THREADS
	elemThreads     = 256           // ELEM_THREADS: flat elementwise blocks (grid-stride over packs)
	colsumWarps     = 8             // COLSUM_WARPS: warps of the column-sum blocks
	colsumThreads   = 32 * colsumWarps
	colsumChunkMin  = 32         // COLSUM_CHUNK_MIN: rows per chunk at least (if the group has them)
	colsumChunksMax = 256        // COLSUM_CHUNKS_MAX: chunks per group at most
	flag32None      = 0x7f7f7f7f // FLAG_NONE: an int32 device error flag nothing lowered
	flag32NoneByte  = 0x7f       // the Memset byte that writes flag32None
	elemWaves       = 32         // flat kernels: at most elemWaves·SMs blocks, then grid-stride
)

// Constants of kernels/reduce.cu.
const (
	sumsqThreads = 256  // SUMSQ_THREADS
	sumsqChunk   = 8192 // SUMSQ_CHUNK: elements per partial sum
)

func init() {
	register(ops.OpSumSquares, ops.F32, ops.BF16)
	// Axpy also takes F64 (in double): the trainer zeroes and scales small f64 accumulators
	// that live on the device (the grad-norm sum that SumSquares writes) with it.
	register(ops.OpAxpy, ops.F32, ops.BF16, ops.F64)
	register(ops.OpConvert, ops.F32, ops.BF16)
	register(ops.OpCopyCols, ops.F32, ops.BF16)
	register(ops.OpGatherRows, ops.F32, ops.BF16)
	register(ops.OpScatterRows, ops.F32, ops.BF16)
	register(ops.OpTimeEmbed, ops.F32, ops.BF16)
}

// ---- shared helpers ------------------------------------------------------------------------

// cdiv returns ⌈a / b⌉ for a ≥ 0, b > 0.
func cdiv(a, b int) int { return (a + b - 1) / b }

// namedTensor is an argument name and its tensor, for dtype checks and messages.
type namedTensor struct {
	name string
	t    *ops.Tensor
}

// tensorArg builds a namedTensor.
func tensorArg(name string, t *ops.Tensor) namedTensor { return namedTensor{name, t} }

// kernelDTypes checks the dtype policy of the families' kernels: the call's main dtype is F32
// or BF16 (F64 is CPU-only), every activation-class tensor in act has that dtype and every
// accumulator-class tensor in acc is F32 (nil tensors are skipped). Anything else is refused
// with an error wrapping ops.ErrUnsupported that names the tensor, before any launch.
func kernelDTypes(op ops.Op, main ops.DType, act, acc []namedTensor) error {
	if main != ops.F32 && main != ops.BF16 {
		return ops.Unsupported(op, "cuda", fmt.Sprintf("dtype %v (F64 is a CPU-only dtype; the kernels take f32 or bf16)", main))
	}
	for _, a := range act {
		if a.t != nil && a.t.DType() != main {
			return ops.Unsupported(op, "cuda", fmt.Sprintf("%s is %v but the call's data dtype is %v; the kernels need one dtype for all of them", a.name, a.t, main))
		}
	}
	for _, a := range acc {
		if a.t != nil && a.t.DType() != ops.F32 {
			return ops.Unsupported(op, "cuda", fmt.Sprintf("%s is %v; the kernels keep it in f32", a.name, a.t))
		}
	}
	return nil
}

// rowGrid is the grid of a warp-per-row kernel over n rows.
func rowGrid(n int) Dim3 { return D1(cdiv(n, rowWarps)) }

// elemGrid is the grid of a flat grid-stride kernel over `items` work items (packs): one item
// per thread up to elemWaves blocks per SM.
func (b *Backend) elemGrid(items int) Dim3 {
	sms := max(1, b.dev.Props().SMs)
	return D1(max(1, min(cdiv(items, elemThreads), elemWaves*sms)))
}

// packWidth is the number of elements of dt in 16 bytes (kernels' VecOf<T>::N).
func packWidth(dt ops.DType) int { return 16 / dt.Size() }

// devFlags returns a scratch array of n int32 device error flags (key names it), each set to
// flag32None; kernels lower a flag to the smallest bad index with atomicMin.
func (b *Backend) devFlags(key string, n int) (Ptr, error) {
	p, err := b.scratchBuf(key, 4*n)
	if err != nil {
		return 0, err
	}
	return p, b.dev.Memset(p, flag32NoneByte, 4*n)
}

// readFlags copies n int32 flags back (this synchronises with the launches before it).
func (b *Backend) readFlags(p Ptr, n int) ([]int32, error) {
	raw := make([]byte, 4*n)
	if err := b.dev.CopyDtoH(raw, p); err != nil {
		return nil, err
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return out, nil
}

// badIndexError turns a lowered index flag into the contract's error for an index array (readI32
// and readF64, which quote the offending value, are shared with the MD4 launchers in mask.go)
// (the same text as the CPU reference): "id <v> at index <i> is not in [0, <n>)".
func (b *Backend) badIndexError(op ops.Op, name string, ids *ops.Tensor, at int32, n int) error {
	v, err := b.readI32(ids, int64(at))
	if err != nil {
		return err
	}
	return ops.Errorf(op, name, ops.ErrValue, "id %d at index %d is not in [0, %d)", v, at, n)
}

// colChunks is the row partition of the two-stage column sums (kernels/common.cuh ColChunks):
// every group of per rows is cut into cpg chunks of crows rows (the last ones may be short or
// empty). It depends only on per (not on the SM count), so neither do the sums.
type colChunks struct{ per, cpg, crows int }

func newColChunks(per int) colChunks {
	cpg := max(1, min(colsumChunksMax, cdiv(per, colsumChunkMin)))
	return colChunks{per: per, cpg: cpg, crows: max(1, cdiv(per, cpg))}
}

// ---- SumSquares ------------------------------------------------------------------------------

// SumSquares implements ops.Ops: Out[0] += Σ X² with float64 partial sums over fixed chunks of
// sumsqChunk elements, added by one block in a fixed order (kernels/reduce.cu).
func (b *Backend) SumSquares(p *ops.SumSquaresParams) error {
	const op = ops.OpSumSquares
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.X.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("X", p.X)}, nil); err != nil {
		return err
	}
	n := p.X.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.X, p.Out)
	if err != nil {
		return err
	}
	nparts := cdiv(n, sumsqChunk)
	part, err := b.scratchBuf("sumsq.part", 8*nparts)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("sumsq_fwd_"+dt.String()+"_partial", D1(nparts), D1(sumsqThreads), 0,
		Args(ptr[0], part, n)...); err != nil {
		return err
	}
	return b.dev.Launch("sumsq_fwd_f64_final", D1(1), D1(sumsqThreads), 0, Args(part, ptr[1], nparts)...)
}

// ---- Axpy --------------------------------------------------------------------------------------

// Axpy implements ops.Ops: Y = Alpha·X + Beta·Y in f32 (fmaf), or in double for F64 tensors
// (the trainer's device-side f64 accumulators); Beta = 0 writes Y without reading it; X nil
// scales Y (and Beta = 1 is then a no-op).
func (b *Backend) Axpy(p *ops.AxpyParams) error {
	const op = ops.OpAxpy
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Y.DType()
	if dt != ops.F64 {
		if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Y", p.Y), tensorArg("X", p.X)}, nil); err != nil {
			return err
		}
	}
	n := p.Y.Len()
	if n == 0 || (p.X == nil && p.Beta == 1) {
		return nil
	}
	mode := 0
	switch {
	case p.X == nil && p.Beta == 0:
		mode = 3
	case p.X == nil:
		mode = 2
	case p.Beta == 0:
		mode = 1
	}
	ptr, err := b.ptrs(p.Y, p.X)
	if err != nil {
		return err
	}
	if dt == ops.F64 { // Validate checked that X (if any) is F64 too
		return b.dev.Launch("axpy_fwd_f64", b.elemGrid(n), D1(elemThreads), 0,
			Args(ptr[0], ptr[1], float64(p.Alpha), float64(p.Beta), n, mode)...)
	}
	return b.dev.Launch("axpy_fwd_"+dt.String(), b.elemGrid(cdiv(n, packWidth(dt))), D1(elemThreads), 0,
		Args(ptr[0], ptr[1], p.Alpha, p.Beta, n, mode)...)
}

// ---- Convert ------------------------------------------------------------------------------------

// Convert implements ops.Ops for F32 ↔ BF16 (round to nearest even, NaN kept NaN, bit for bit
// BF16FromFloat32) and same-dtype copies. F64 on either side is CPU-only (ErrUnsupported).
func (b *Backend) Convert(p *ops.ConvertParams) error {
	const op = ops.OpConvert
	if err := p.Validate(); err != nil {
		return err
	}
	from, to := p.In.DType(), p.Out.DType()
	if from == ops.F64 || to == ops.F64 {
		return ops.Unsupported(op, "cuda", fmt.Sprintf("conversion %v -> %v (F64 is a CPU-only dtype)", from, to))
	}
	n := p.In.Len()
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.In, p.Out)
	if err != nil {
		return err
	}
	return b.dev.Launch("convert_fwd_"+from.String()+"_"+to.String(), b.elemGrid(cdiv(n, 8)), D1(elemThreads), 0,
		Args(ptr[0], ptr[1], n)...)
}

// ---- CopyCols / GatherRows / ScatterRows ------------------------------------------------------------

// CopyCols implements ops.Ops: one warp per row copies (or adds) Width columns.
func (b *Backend) CopyCols(p *ops.CopyColsParams) error {
	const op = ops.OpCopyCols
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Src.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Src", p.Src), tensorArg("Dst", p.Dst)}, nil); err != nil {
		return err
	}
	rows := p.Src.Dim(0)
	if rows == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.Dst, p.Src)
	if err != nil {
		return err
	}
	return b.dev.Launch("copycols_fwd_"+dt.String(), rowGrid(rows), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], rows, p.Dst.Dim(1), p.Src.Dim(1), p.DstOff, p.SrcOff, p.Width, p.Accumulate)...)
}

// GatherRows implements ops.Ops: one warp per output row; a row index outside [0, N) is an
// ErrValue naming it and its index (found on the device, read back after the launch).
func (b *Backend) GatherRows(p *ops.GatherRowsParams) error {
	const op = ops.OpGatherRows
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.In.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("In", p.In), tensorArg("Out", p.Out)}, nil); err != nil {
		return err
	}
	r, n, d := p.Rows.Dim(0), p.In.Dim(0), p.In.Dim(1)
	if r == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.Out, p.In, p.Rows)
	if err != nil {
		return err
	}
	flag, err := b.devFlags("gatherrows.err", 1)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("gatherrows_fwd_"+dt.String(), rowGrid(r), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], ptr[2], flag, r, n, d)...); err != nil {
		return err
	}
	f, err := b.readFlags(flag, 1)
	if err != nil {
		return err
	}
	if f[0] != flag32None {
		return b.badIndexError(op, "Rows", p.Rows, f[0], n)
	}
	return nil
}

// ScatterRows implements ops.Ops. Three launches: mark (range check, first index of every
// row), dups (a row whose first index is not its own is repeated) and the scatter, which runs
// only when both checks passed, so Out is untouched on error. The error names the row and
// both indices, as the CPU reference does.
func (b *Backend) ScatterRows(p *ops.ScatterRowsParams) error {
	const op = ops.OpScatterRows
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Out.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Out", p.Out), tensorArg("In", p.In)}, nil); err != nil {
		return err
	}
	r, nout, d := p.Rows.Dim(0), p.Out.Dim(0), p.Out.Dim(1)
	if r == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.Out, p.In, p.Rows)
	if err != nil {
		return err
	}
	flags, err := b.devFlags("scatterrows.err", 2)
	if err != nil {
		return err
	}
	first, err := b.devFlags("scatterrows.first", max(nout, 1))
	if err != nil {
		return err
	}
	grid := D1(cdiv(r, elemThreads))
	if err := b.dev.Launch("scatterrows_fwd_i32_mark", grid, D1(elemThreads), 0, Args(ptr[2], first, flags, r, nout)...); err != nil {
		return err
	}
	if err := b.dev.Launch("scatterrows_fwd_i32_dups", grid, D1(elemThreads), 0, Args(ptr[2], first, flags, r, nout)...); err != nil {
		return err
	}
	if err := b.dev.Launch("scatterrows_fwd_"+dt.String(), rowGrid(r), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], ptr[2], flags, r, d, p.Accumulate)...); err != nil {
		return err
	}
	f, err := b.readFlags(flags, 2)
	if err != nil {
		return err
	}
	switch {
	case f[0] != flag32None:
		return b.badIndexError(op, "Rows", p.Rows, f[0], nout)
	case f[1] != flag32None:
		row, err := b.readI32(p.Rows, int64(f[1]))
		if err != nil {
			return err
		}
		fa, err := b.readFlags(first+Ptr(4*int(row)), 1)
		if err != nil {
			return err
		}
		firstAt := fa[0]
		return ops.Errorf(op, "Rows", ops.ErrValue, "row %d is repeated at indices %d and %d; rows must be distinct", row, firstAt, f[1])
	}
	return nil
}

// ---- TimeEmbed -------------------------------------------------------------------------------------

// TimeEmbed implements ops.Ops: sinusoidal features computed in float64 on the device; a time
// outside [0, 1] is an ErrValue naming it and its index.
func (b *Backend) TimeEmbed(p *ops.TimeEmbedParams) error {
	const op = ops.OpTimeEmbed
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Out.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Out", p.Out)}, nil); err != nil {
		return err
	}
	bs, dc := p.T.Dim(0), p.Out.Dim(1)
	if bs == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.T, p.Out)
	if err != nil {
		return err
	}
	flag, err := b.devFlags("timeembed.err", 1)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("timeembed_fwd_"+dt.String(), b.elemGrid(bs*(dc/2)), D1(elemThreads), 0,
		Args(ptr[0], ptr[1], flag, bs, dc, p.Scale, math.Log(1e4))...); err != nil {
		return err
	}
	f, err := b.readFlags(flag, 1)
	if err != nil {
		return err
	}
	if f[0] != flag32None {
		t, err := b.readF64(p.T, int64(f[0]))
		if err != nil {
			return err
		}
		return ops.Errorf(op, "T", ops.ErrValue, "time %v at index %d is not in [0, 1]", t, f[0])
	}
	return nil
}
