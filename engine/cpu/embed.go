package cpu

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// EmbedFwd gathers Out[n, :] = Table[IDs[n], :].
func (b *Backend) EmbedFwd(p *ops.EmbedParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Table.DType() {
	case ops.F32:
		return embedFwd[float32](b, p)
	case ops.F64:
		return embedFwd[float64](b, p)
	}
	return unsupported(ops.OpEmbedFwd, p.Table.DType())
}

// checkIDs reports the first id outside [0, rows) as an ErrValue naming id and index.
func checkIDs(op ops.Op, name string, ids []int32, rows int) error {
	for i, id := range ids {
		if id < 0 || int(id) >= rows {
			return ops.Errorf(op, name, ops.ErrValue, "id %d at index %d is not in [0, %d)", id, i, rows)
		}
	}
	return nil
}

type rowCopyJob[T float] struct {
	dst, src []T
	idx      []int32 // dst row i = src row idx[i]
	d        int
}

func (j *rowCopyJob[T]) run(_, lo, hi int) {
	d := j.d
	for i := lo; i < hi; i++ {
		s := int(j.idx[i]) * d
		copy(j.dst[i*d:(i+1)*d], j.src[s:s+d])
	}
}

func embedFwd[T float](b *Backend, p *ops.EmbedParams) error {
	const op = ops.OpEmbedFwd
	table, err1 := fl[T](op, "Table", p.Table)
	out, err2 := fl[T](op, "Out", p.Out)
	ids, err3 := i32(op, "IDs", p.IDs)
	if err := errs(err1, err2, err3); err != nil {
		return err
	}
	if err := checkIDs(op, "IDs", ids, p.Table.Dim(0)); err != nil {
		return err
	}
	d := p.Table.Dim(1)
	j := getJob[rowCopyJob[T]](b, jobEmbed, dtIndex[T]())
	*j = rowCopyJob[T]{dst: out, src: table, idx: ids, d: d}
	b.pool.run(j, len(ids), b.grainFor(d))
	*j = rowCopyJob[T]{}
	return nil
}

// EmbedBwd accumulates DTable[IDs[n], :] += DOut[n, :]. The rows of each id are summed in
// float64 in increasing n, then added to DTable once: deterministic for any worker count.
func (b *Backend) EmbedBwd(p *ops.EmbedBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.DTable.DType() {
	case ops.F32:
		return embedBwd[float32](b, p)
	case ops.F64:
		return embedBwd[float64](b, p)
	}
	return unsupported(ops.OpEmbedBwd, p.DTable.DType())
}

type embedBwdJob[T float] struct {
	b      *Backend
	dtable []T
	dout   []T
	start  []int32 // rows of id v are order[start[v]:start[v+1]]
	order  []int32
	d      int
}

func (j *embedBwdJob[T]) run(w, lo, hi int) {
	d := j.d
	acc := j.b.pool.scratch[w].accBuf(0, d)
	for v := lo; v < hi; v++ {
		rows := j.order[j.start[v]:j.start[v+1]]
		if len(rows) == 0 {
			continue
		}
		clear(acc)
		for _, n := range rows {
			src := j.dout[int(n)*d : (int(n)+1)*d]
			for c, x := range src {
				acc[c] += float64(x)
			}
		}
		dst := j.dtable[v*d : (v+1)*d]
		for c := range dst {
			dst[c] = T(float64(dst[c]) + acc[c])
		}
	}
}

func embedBwd[T float](b *Backend, p *ops.EmbedBwdParams) error {
	const op = ops.OpEmbedBwd
	dtable, err1 := fl[T](op, "DTable", p.DTable)
	dout, err2 := fl[T](op, "DOut", p.DOut)
	ids, err3 := i32(op, "IDs", p.IDs)
	if err := errs(err1, err2, err3); err != nil {
		return err
	}
	rows, d := p.DTable.Dim(0), p.DTable.Dim(1)
	if err := checkIDs(op, "IDs", ids, rows); err != nil {
		return err
	}
	// Stable counting sort of the row indices by id.
	if cap(b.idCount) < rows+1 {
		b.idCount = make([]int32, rows+1)
	}
	start := b.idCount[:rows+1]
	clear(start)
	for _, id := range ids {
		start[id+1]++
	}
	for v := 1; v <= rows; v++ {
		start[v] += start[v-1]
	}
	if cap(b.idOrder) < len(ids) {
		b.idOrder = make([]int32, len(ids))
	}
	order := b.idOrder[:len(ids)]
	// Fill using start[v] as a cursor, then shift back.
	for n, id := range ids {
		order[start[id]] = int32(n)
		start[id]++
	}
	for v := rows; v > 0; v-- {
		start[v] = start[v-1]
	}
	start[0] = 0

	j := getJob[embedBwdJob[T]](b, jobEmbedBwd, dtIndex[T]())
	*j = embedBwdJob[T]{b: b, dtable: dtable, dout: dout, start: start, order: order, d: d}
	// Chunk over ids; a chunk's work is about (its rows + ids)·d.
	b.pool.run(j, rows, b.grainFor(d*(1+len(ids)/max(rows, 1))))
	*j = embedBwdJob[T]{}
	return nil
}
