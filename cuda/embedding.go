package cuda

import (
	"math/bits"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Launchers of kernels/embedding.cu. Constants mirrored from there:
const (
	embSortThreads = 256  // SORT_THREADS: keys per block of the radix-sort kernels
	embScanThreads = 1024 // SCAN_THREADS
	embChunk       = 32   // EMB_CHUNK: sorted entries per chunk of the backward sums
	embWarps       = 8    // EMB_WARPS: (chunk, column tile) items per block
	embDigitBits   = 8    // radix digit: 256 buckets
)

func init() {
	register(ops.OpEmbedFwd, ops.F32, ops.BF16)
	register(ops.OpEmbedBwd, ops.F32, ops.BF16)
}

// EmbedFwd implements ops.Ops: one warp per row gathers Table[IDs[n]] (a bit copy, 128-bit
// accesses when aligned). An id outside [0, V+1) is an ErrValue naming the id and its index:
// the kernel lowers a device flag to the smallest bad index, read back after the launch.
func (b *Backend) EmbedFwd(p *ops.EmbedParams) error {
	const op = ops.OpEmbedFwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.Table.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("Table", p.Table), tensorArg("Out", p.Out)}, nil); err != nil {
		return err
	}
	n, rows, d := p.IDs.Dim(0), p.Table.Dim(0), p.Table.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.Out, p.Table, p.IDs)
	if err != nil {
		return err
	}
	flag, err := b.devFlags("embed.err", 1)
	if err != nil {
		return err
	}
	if err := b.dev.Launch("embedding_fwd_"+dt.String(), rowGrid(n), D1(rowThreads), 0,
		Args(ptr[0], ptr[1], ptr[2], flag, n, rows, d)...); err != nil {
		return err
	}
	f, err := b.readFlags(flag, 1)
	if err != nil {
		return err
	}
	if f[0] != flag32None {
		return b.badIndexError(op, "IDs", p.IDs, f[0], rows)
	}
	return nil
}

// EmbedBwd implements ops.Ops deterministically (kernels/embedding.cu): an LSD radix sort of
// the (id, n) pairs by id (8-bit digits, stable, integer-only), then ordered sums of the
// gathered DOut rows per run of equal ids in chunks of 32 sorted entries, and a combine pass
// for runs cut by a chunk boundary. Every DTable row gets its rows added in increasing n, in
// f32, the same way on every run. Bad ids are found by the first kernel; the others then do
// nothing, so DTable is untouched when the call returns the error.
func (b *Backend) EmbedBwd(p *ops.EmbedBwdParams) error {
	const op = ops.OpEmbedBwd
	if err := p.Validate(); err != nil {
		return err
	}
	dt := p.DOut.DType()
	if err := kernelDTypes(op, dt, []namedTensor{tensorArg("DOut", p.DOut)}, []namedTensor{tensorArg("DTable", p.DTable)}); err != nil {
		return err
	}
	n, rows, d := p.IDs.Dim(0), p.DTable.Dim(0), p.DTable.Dim(1)
	if n == 0 {
		return nil
	}
	ptr, err := b.ptrs(p.DTable, p.DOut, p.IDs)
	if err != nil {
		return err
	}
	dtable, dout, ids := ptr[0], ptr[1], ptr[2]
	flag, err := b.devFlags("embedbwd.err", 1)
	if err != nil {
		return err
	}
	nblk := cdiv(n, embSortThreads)
	passes := 1
	if rows > 1 {
		passes = max(1, cdiv(bits.Len(uint(rows-1)), embDigitBits))
	}
	if d == 0 {
		passes = 1 // only the id check of the first histogram matters
	}
	// Scratch: two key/value buffers (ping-pong), the histograms, the chunk partials.
	keys, err := b.scratchBuf("embedbwd.keys", 2*4*n)
	if err != nil {
		return err
	}
	vals, err := b.scratchBuf("embedbwd.vals", 2*4*n)
	if err != nil {
		return err
	}
	hist, err := b.scratchBuf("embedbwd.hist", 4*256*nblk)
	if err != nil {
		return err
	}
	keyBuf := [2]Ptr{keys, keys + Ptr(4*n)}
	valBuf := [2]Ptr{vals, vals + Ptr(4*n)}
	var kin, vin Ptr = ids, 0 // pass 0: keys are the ids, values the implicit index
	for pass := 0; pass < passes; pass++ {
		shift := pass * embDigitBits
		check := pass == 0
		if err := b.dev.Launch("embedding_bwd_i32_hist", D1(nblk), D1(embSortThreads), 0,
			Args(kin, hist, flag, n, rows, shift, check)...); err != nil {
			return err
		}
		if d == 0 {
			break
		}
		if err := b.dev.Launch("embedding_bwd_i32_scan", D1(1), D1(embScanThreads), 0,
			Args(hist, flag, 256*nblk)...); err != nil {
			return err
		}
		kout, vout := keyBuf[pass%2], valBuf[pass%2]
		if err := b.dev.Launch("embedding_bwd_i32_scatter", D1(nblk), D1(embSortThreads), 0,
			Args(kin, vin, kout, vout, hist, flag, n, shift)...); err != nil {
			return err
		}
		kin, vin = kout, vout
	}
	if d > 0 {
		v := packWidth(dt)
		nchunks := cdiv(n, embChunk)
		tiles := cdiv(d, 32*v)
		part, err := b.scratchBuf("embedbwd.part", 4*2*nchunks*d)
		if err != nil {
			return err
		}
		grid := D1(cdiv(nchunks*tiles, embWarps))
		if err := b.dev.Launch("embedding_bwd_"+dt.String()+"_chunk", grid, D1(32*embWarps), 0,
			Args(kin, vin, dout, dtable, part, flag, n, d)...); err != nil {
			return err
		}
		if err := b.dev.Launch("embedding_bwd_f32_combine", grid, D1(32*embWarps), 0,
			Args(kin, dtable, part, flag, n, d, v)...); err != nil {
			return err
		}
	}
	f, err := b.readFlags(flag, 1)
	if err != nil {
		return err
	}
	if f[0] != flag32None {
		return b.badIndexError(op, "IDs", p.IDs, f[0], rows)
	}
	return nil
}
