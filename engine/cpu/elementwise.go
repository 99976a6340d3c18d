package cpu

import (
	"github.com/mdm-gpu/mdm-gpu/engine/cpu/internal/vmath"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Flat elementwise work (items are elements).
type elemKind uint8

const (
	ekGLU    elemKind = iota + 1 // o1 = act(i1)·i2
	ekGLUBwd                     // o1 = i3·i2·act'(i1), o2 = i3·act(i1)
	ekAct                        // o1 = act(i1)
	ekActBwd                     // o1 = i2·act'(i1)
	ekAxpy                       // o1 = alpha·i1 + beta·o1 (i1 may be nil; beta = 0 does not read o1)
)

type elemJob[T float] struct {
	kind        elemKind
	act         ops.Activation
	o1, o2      []T
	i1, i2, i3  []T
	alpha, beta float64
}

func (j *elemJob[T]) run(_, lo, hi int) {
	switch j.kind {
	case ekGLU:
		o, a, b := j.o1[lo:hi], j.i1[lo:hi], j.i2[lo:hi]
		if j.act == ops.Sigmoid && dtIndex[T]() == 0 {
			sigmoidGLU(o, a, b)
			return
		}
		for i := range o {
			o[i] = T(actOnly(j.act, float64(a[i])) * float64(b[i]))
		}
	case ekGLUBwd:
		da, db, a, b, g := j.o1[lo:hi], j.o2[lo:hi], j.i1[lo:hi], j.i2[lo:hi], j.i3[lo:hi]
		if j.act == ops.Sigmoid && dtIndex[T]() == 0 {
			sigmoidGLUBwd(da, db, a, b, g)
			return
		}
		for i := range a {
			y, dy := act(j.act, float64(a[i]))
			gi, bi := float64(g[i]), float64(b[i])
			da[i] = T(gi * bi * dy)
			db[i] = T(gi * y)
		}
	case ekAct:
		o, x := j.o1[lo:hi], j.i1[lo:hi]
		for i := range o {
			o[i] = T(actOnly(j.act, float64(x[i])))
		}
	case ekActBwd:
		dx, x, g := j.o1[lo:hi], j.i1[lo:hi], j.i2[lo:hi]
		for i := range dx {
			_, dy := act(j.act, float64(x[i]))
			dx[i] = T(float64(g[i]) * dy)
		}
	case ekAxpy:
		y := j.o1[lo:hi]
		switch {
		case j.i1 == nil && j.beta == 0:
			clear(y)
		case j.i1 == nil:
			for i := range y {
				y[i] = T(j.beta * float64(y[i]))
			}
		case j.beta == 0:
			x := j.i1[lo:hi]
			for i := range y {
				y[i] = T(j.alpha * float64(x[i]))
			}
		default:
			x := j.i1[lo:hi]
			for i := range y {
				y[i] = T(j.alpha*float64(x[i]) + j.beta*float64(y[i]))
			}
		}
	}
}

// sigmoidBlock is the block length of the F32 sigmoid loops: exp(−a) is computed for a
// block into a stack buffer by expScaleInto, then used.
const sigmoidBlock = 256

// sigmoidGLU is ekGLU for F32 data and the sigmoid gate (MD4's 'glu'): o = σ(a)·b, with
// σ(a) = 1/(1 + e^−a) in float64 (e^−a by fexp) and one rounding to T.
func sigmoidGLU[T float](o, a, b []T) {
	var e [sigmoidBlock]float64
	i0 := 0
	if vecF32[T]() { // vector kernel; groups of 4 it cannot do go through the loop below
		o32, a32, b32 := asF32(o), asF32(a), asF32(b[:len(a)])
		for i0+4 <= len(a) {
			if i0 += vmath.SigmoidGLU(o32[i0:], a32[i0:], b32[i0:]); i0+4 <= len(a) {
				sigmoidGLU(o[i0:i0+4], a[i0:i0+4], b[i0:i0+4])
				i0 += 4
			}
		}
	}
	for ; i0 < len(o); i0 += sigmoidBlock {
		n := min(sigmoidBlock, len(o)-i0)
		expScaleInto(e[:n], a[i0:i0+n], -1, 0)
		for i := range n {
			o[i0+i] = T(float64(b[i0+i]) / (1 + e[i]))
		}
	}
}

// sigmoidGLUBwd is ekGLUBwd for F32 data and the sigmoid gate: da = g·b·σ(a)(1−σ(a)),
// db = g·σ(a), in float64.
func sigmoidGLUBwd[T float](da, db, a, b, g []T) {
	var e [sigmoidBlock]float64
	i0 := 0
	if vecF32[T]() {
		da32, db32, a32, b32, g32 := asF32(da[:len(a)]), asF32(db[:len(a)]), asF32(a), asF32(b[:len(a)]), asF32(g[:len(a)])
		for i0+4 <= len(a) {
			if i0 += vmath.SigmoidGLUBwd(da32[i0:], db32[i0:], a32[i0:], b32[i0:], g32[i0:]); i0+4 <= len(a) {
				sigmoidGLUBwd(da[i0:i0+4], db[i0:i0+4], a[i0:i0+4], b[i0:i0+4], g[i0:i0+4])
				i0 += 4
			}
		}
	}
	for ; i0 < len(a); i0 += sigmoidBlock {
		n := min(sigmoidBlock, len(a)-i0)
		expScaleInto(e[:n], a[i0:i0+n], -1, 0)
		for i := range n {
			s := 1 / (1 + e[i])
			gi := float64(g[i0+i])
			da[i0+i] = T(gi * float64(b[i0+i]) * (s * (1 - s)))
			db[i0+i] = T(gi * s)
		}
	}
}

// elem runs a flat elementwise job over n elements on the pool.
func elem[T float](b *Backend, e elemJob[T], n int) {
	j := getJob[elemJob[T]](b, jobElem, dtIndex[T]())
	*j = e
	b.pool.run(j, n, b.grainFor(4))
	*j = elemJob[T]{}
}

// Row work (items are rows of a matrix with d columns).
type rowKind uint8

const (
	rkBias    rowKind = iota + 1 // o[r] += v
	rkGate                       // o[r] = x[r] + gate[g]·y[r]  (gate nil: x + y)
	rkGateBwd                    // o[r] = gate[g]·x[r]          (gate nil: copy)
	rkCopy                       // o[r, oOff+c] (+)= x[r, xOff+c], c < width
	rkGather                     // o[i] = x[idx[i]]
	rkScatter                    // o[idx[i]] (+)= x[i]
)

type rowJob[T float] struct {
	kind       rowKind
	o, x, y, v []T
	idx        []int32
	d, xd      int // row lengths of o and x
	oOff, xOff int
	width      int
	per        int // rows per group
	accumulate bool
}

func (j *rowJob[T]) run(_, lo, hi int) {
	d := j.d
	for r := lo; r < hi; r++ {
		switch j.kind {
		case rkBias:
			o := j.o[r*d : (r+1)*d]
			for c := range o {
				o[c] = T(float64(o[c]) + float64(j.v[c]))
			}
		case rkGate:
			o, x, y := j.o[r*d:(r+1)*d], j.x[r*d:(r+1)*d], j.y[r*d:(r+1)*d]
			if j.v == nil {
				for c := range o {
					o[c] = T(float64(x[c]) + float64(y[c]))
				}
				continue
			}
			g := r / j.per
			gate := j.v[g*d : (g+1)*d]
			for c := range o {
				o[c] = T(float64(x[c]) + float64(gate[c])*float64(y[c]))
			}
		case rkGateBwd:
			o, x := j.o[r*d:(r+1)*d], j.x[r*d:(r+1)*d]
			if j.v == nil {
				copy(o, x)
				continue
			}
			g := r / j.per
			gate := j.v[g*d : (g+1)*d]
			for c := range o {
				o[c] = T(float64(gate[c]) * float64(x[c]))
			}
		case rkCopy:
			o := j.o[r*d+j.oOff : r*d+j.oOff+j.width]
			x := j.x[r*j.xd+j.xOff : r*j.xd+j.xOff+j.width]
			if !j.accumulate {
				copy(o, x)
				continue
			}
			for c := range o {
				o[c] = T(float64(o[c]) + float64(x[c]))
			}
		case rkGather:
			s := int(j.idx[r]) * d
			copy(j.o[r*d:(r+1)*d], j.x[s:s+d])
		case rkScatter:
			t := int(j.idx[r]) * d
			o, x := j.o[t:t+d], j.x[r*d:(r+1)*d]
			if !j.accumulate {
				copy(o, x)
				continue
			}
			for c := range o {
				o[c] = T(float64(o[c]) + float64(x[c]))
			}
		}
	}
}

// rows runs a row job over n rows of about work elements each.
func rows[T float](b *Backend, r rowJob[T], n, work int) {
	j := getJob[rowJob[T]](b, jobRows, dtIndex[T]())
	*j = r
	b.pool.run(j, n, b.grainFor(work))
	*j = rowJob[T]{}
}

// Column reductions: per output column, a float64 sum over rows in increasing order.
type colKind uint8

const (
	ckBiasGrad colKind = iota + 1 // out[c] += Σ_r x[r, c]
	ckDGate                       // out[g, c] = Σ_{r in g} x[r, c]·y[r, c]
)

// colBlock is the column width of one reduction task.
const colBlock = 64

type colJob[T float] struct {
	b         *Backend
	kind      colKind
	out, x, y []T
	n, d, per int
	blocks    int // column blocks per group
}

func (j *colJob[T]) run(w, lo, hi int) {
	d := j.d
	acc := j.b.pool.scratch[w].accBuf(2, colBlock)
	for t := lo; t < hi; t++ {
		g, cb := t/j.blocks, t%j.blocks
		c0 := cb * colBlock
		c1 := min(c0+colBlock, d)
		clear(acc)
		switch j.kind {
		case ckBiasGrad:
			for r := 0; r < j.n; r++ {
				x := j.x[r*d : (r+1)*d]
				for c := c0; c < c1; c++ {
					acc[c-c0] += float64(x[c])
				}
			}
			for c := c0; c < c1; c++ {
				j.out[c] = T(float64(j.out[c]) + acc[c-c0])
			}
		case ckDGate:
			for r := g * j.per; r < (g+1)*j.per; r++ {
				x, y := j.x[r*d:(r+1)*d], j.y[r*d:(r+1)*d]
				for c := c0; c < c1; c++ {
					acc[c-c0] += float64(x[c]) * float64(y[c])
				}
			}
			for c := c0; c < c1; c++ {
				j.out[g*d+c] = T(acc[c-c0])
			}
		}
	}
}

func cols[T float](b *Backend, c colJob[T], groups, rowsPerTask int) {
	j := getJob[colJob[T]](b, jobCols, dtIndex[T]())
	*j = c
	j.b = b
	j.blocks = (c.d + colBlock - 1) / colBlock
	b.pool.run(j, groups*j.blocks, b.grainFor(rowsPerTask*colBlock))
	*j = colJob[T]{}
}

// BiasAdd adds Bias to every row of Out.
func (b *Backend) BiasAdd(p *ops.BiasAddParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Out.DType() {
	case ops.F32:
		return biasAdd[float32](b, p)
	case ops.F64:
		return biasAdd[float64](b, p)
	}
	return unsupported(ops.OpBiasAdd, p.Out.DType())
}

func biasAdd[T float](b *Backend, p *ops.BiasAddParams) error {
	const op = ops.OpBiasAdd
	out, e1 := fl[T](op, "Out", p.Out)
	bias, e2 := fl[T](op, "Bias", p.Bias)
	if err := errs(e1, e2); err != nil {
		return err
	}
	d := p.Out.Dim(1)
	rows(b, rowJob[T]{kind: rkBias, o: out, v: bias, d: d}, p.Out.Dim(0), d)
	return nil
}

// BiasGrad accumulates DBias += Σ_n DOut[n, :] (float64 column sums in row order).
func (b *Backend) BiasGrad(p *ops.BiasGradParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.DOut.DType() {
	case ops.F32:
		return biasGrad[float32](b, p)
	case ops.F64:
		return biasGrad[float64](b, p)
	}
	return unsupported(ops.OpBiasGrad, p.DOut.DType())
}

func biasGrad[T float](b *Backend, p *ops.BiasGradParams) error {
	const op = ops.OpBiasGrad
	dout, e1 := fl[T](op, "DOut", p.DOut)
	dbias, e2 := fl[T](op, "DBias", p.DBias)
	if err := errs(e1, e2); err != nil {
		return err
	}
	n := p.DOut.Dim(0)
	cols(b, colJob[T]{kind: ckBiasGrad, out: dbias, x: dout, n: n, d: p.DOut.Dim(1)}, 1, n)
	return nil
}

// GateResidualFwd computes Out = X + Gate[g] ⊙ Y (or X + Y without Gate). Out may be X.
func (b *Backend) GateResidualFwd(p *ops.GateResidualParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return gateFwd[float32](b, p)
	case ops.F64:
		return gateFwd[float64](b, p)
	}
	return unsupported(ops.OpGateResidualFwd, p.X.DType())
}

func gateFwd[T float](b *Backend, p *ops.GateResidualParams) error {
	const op = ops.OpGateResidualFwd
	x, e1 := fl[T](op, "X", p.X)
	y, e2 := fl[T](op, "Y", p.Y)
	out, e3 := fl[T](op, "Out", p.Out)
	gate, e4 := optFl[T](op, "Gate", p.Gate)
	if err := errs(e1, e2, e3, e4); err != nil {
		return err
	}
	d := p.X.Dim(1)
	rows(b, rowJob[T]{kind: rkGate, o: out, x: x, y: y, v: gate, d: d, per: p.RowsPerGroup}, p.X.Dim(0), 2*d)
	return nil
}

// GateResidualBwd computes DGate[g] = Σ_{r in g} DOut[r] ⊙ Y[r] (float64, row order;
// overwritten), then DY = Gate[g] ⊙ DOut (or DOut).
func (b *Backend) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.DOut.DType() {
	case ops.F32:
		return gateBwd[float32](b, p)
	case ops.F64:
		return gateBwd[float64](b, p)
	}
	return unsupported(ops.OpGateResidualBwd, p.DOut.DType())
}

func gateBwd[T float](b *Backend, p *ops.GateResidualBwdParams) error {
	const op = ops.OpGateResidualBwd
	dout, e1 := fl[T](op, "DOut", p.DOut)
	dy, e2 := fl[T](op, "DY", p.DY)
	y, e3 := fl[T](op, "Y", p.Y)
	gate, e4 := optFl[T](op, "Gate", p.Gate)
	dgate, e5 := optFl[T](op, "DGate", p.DGate)
	if err := errs(e1, e2, e3, e4, e5); err != nil {
		return err
	}
	n, d := p.DOut.Dim(0), p.DOut.Dim(1)
	if gate != nil && n > 0 {
		cols(b, colJob[T]{kind: ckDGate, out: dgate, x: dout, y: y, n: n, d: d, per: p.RowsPerGroup},
			n/p.RowsPerGroup, p.RowsPerGroup)
	}
	rows(b, rowJob[T]{kind: rkGateBwd, o: dy, x: dout, v: gate, d: d, per: p.RowsPerGroup}, n, d)
	return nil
}

// CopyCols copies (or adds, with Accumulate) Width columns of Src into Dst, row by row.
func (b *Backend) CopyCols(p *ops.CopyColsParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Src.DType() {
	case ops.F32:
		return copyCols[float32](b, p)
	case ops.F64:
		return copyCols[float64](b, p)
	}
	return unsupported(ops.OpCopyCols, p.Src.DType())
}

func copyCols[T float](b *Backend, p *ops.CopyColsParams) error {
	const op = ops.OpCopyCols
	src, e1 := fl[T](op, "Src", p.Src)
	dst, e2 := fl[T](op, "Dst", p.Dst)
	if err := errs(e1, e2); err != nil {
		return err
	}
	rows(b, rowJob[T]{kind: rkCopy, o: dst, x: src, d: p.Dst.Dim(1), xd: p.Src.Dim(1),
		oOff: p.DstOff, xOff: p.SrcOff, width: p.Width, accumulate: p.Accumulate}, p.Src.Dim(0), p.Width)
	return nil
}

// GatherRows copies Out[i, :] = In[Rows[i], :]; a row outside [0, N) is an ErrValue.
func (b *Backend) GatherRows(p *ops.GatherRowsParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.In.DType() {
	case ops.F32:
		return gatherRows[float32](b, p)
	case ops.F64:
		return gatherRows[float64](b, p)
	}
	return unsupported(ops.OpGatherRows, p.In.DType())
}

func gatherRows[T float](b *Backend, p *ops.GatherRowsParams) error {
	const op = ops.OpGatherRows
	in, e1 := fl[T](op, "In", p.In)
	out, e2 := fl[T](op, "Out", p.Out)
	idx, e3 := i32(op, "Rows", p.Rows)
	if err := errs(e1, e2, e3); err != nil {
		return err
	}
	if err := checkIDs(op, "Rows", idx, p.In.Dim(0)); err != nil {
		return err
	}
	d := p.In.Dim(1)
	rows(b, rowJob[T]{kind: rkGather, o: out, x: in, idx: idx, d: d}, len(idx), d)
	return nil
}

// ScatterRows writes (or adds, with Accumulate) Out[Rows[i], :] = In[i, :]. Rows must be
// distinct and in [0, N).
func (b *Backend) ScatterRows(p *ops.ScatterRowsParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Out.DType() {
	case ops.F32:
		return scatterRows[float32](b, p)
	case ops.F64:
		return scatterRows[float64](b, p)
	}
	return unsupported(ops.OpScatterRows, p.Out.DType())
}

// checkDistinct requires the row indices to be in [0, n) and pairwise distinct; first
// names the index of an earlier occurrence.
func (b *Backend) checkDistinct(op ops.Op, name string, idx []int32, n int) error {
	if err := checkIDs(op, name, idx, n); err != nil {
		return err
	}
	if cap(b.stamp) < n {
		b.stamp = make([]uint32, n)
		b.stampGen = 0
	}
	stamp := b.stamp[:n]
	b.stampGen++
	if b.stampGen == 0 { // wrapped: reset
		clear(b.stamp[:cap(b.stamp)])
		b.stampGen = 1
	}
	gen := b.stampGen
	for i, r := range idx {
		if stamp[r] == gen {
			first := 0
			for k, q := range idx[:i] {
				if q == r {
					first = k
					break
				}
			}
			return ops.Errorf(op, name, ops.ErrValue, "row %d is repeated at indices %d and %d; rows must be distinct", r, first, i)
		}
		stamp[r] = gen
	}
	return nil
}

func scatterRows[T float](b *Backend, p *ops.ScatterRowsParams) error {
	const op = ops.OpScatterRows
	in, e1 := fl[T](op, "In", p.In)
	out, e2 := fl[T](op, "Out", p.Out)
	idx, e3 := i32(op, "Rows", p.Rows)
	if err := errs(e1, e2, e3); err != nil {
		return err
	}
	if err := b.checkDistinct(op, "Rows", idx, p.Out.Dim(0)); err != nil {
		return err
	}
	d := p.Out.Dim(1)
	rows(b, rowJob[T]{kind: rkScatter, o: out, x: in, idx: idx, d: d, accumulate: p.Accumulate}, len(idx), d)
	return nil
}

// Axpy computes Y = Alpha·X + Beta·Y (Y = Beta·Y without X); Beta = 0 does not read Y.
func (b *Backend) Axpy(p *ops.AxpyParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Y.DType() {
	case ops.F32:
		return axpy[float32](b, p)
	case ops.F64:
		return axpy[float64](b, p)
	}
	return unsupported(ops.OpAxpy, p.Y.DType())
}

func axpy[T float](b *Backend, p *ops.AxpyParams) error {
	const op = ops.OpAxpy
	y, e1 := fl[T](op, "Y", p.Y)
	x, e2 := optFl[T](op, "X", p.X)
	if err := errs(e1, e2); err != nil {
		return err
	}
	if x == nil && p.Beta == 1 {
		return nil
	}
	elem(b, elemJob[T]{kind: ekAxpy, o1: y, i1: x, alpha: float64(p.Alpha), beta: float64(p.Beta)}, len(y))
	return nil
}

// sumSqChunk is the fixed chunk of SumSquares: partial sums over chunks of this many
// elements are added in chunk order, whatever the number of workers.
const sumSqChunk = 1 << 13

// SumSquares accumulates Out[0] += Σ X² in float64.
func (b *Backend) SumSquares(p *ops.SumSquaresParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return sumSquares[float32](b, p)
	case ops.F64:
		return sumSquares[float64](b, p)
	}
	return unsupported(ops.OpSumSquares, p.X.DType())
}

type sumSqJob[T float] struct {
	x        []T
	partials []float64
}

func (j *sumSqJob[T]) run(_, lo, hi int) {
	for c := lo; c < hi; c++ {
		var s float64
		for _, v := range j.x[c*sumSqChunk : min((c+1)*sumSqChunk, len(j.x))] {
			s += float64(v) * float64(v)
		}
		j.partials[c] = s
	}
}

func sumSquares[T float](b *Backend, p *ops.SumSquaresParams) error {
	const op = ops.OpSumSquares
	x, e1 := fl[T](op, "X", p.X)
	out, e2 := f64(op, "Out", p.Out)
	if err := errs(e1, e2); err != nil {
		return err
	}
	chunks := (len(x) + sumSqChunk - 1) / sumSqChunk
	if cap(b.partials) < chunks {
		b.partials = make([]float64, chunks)
	}
	j := getJob[sumSqJob[T]](b, jobSumSq, dtIndex[T]())
	*j = sumSqJob[T]{x: x, partials: b.partials[:chunks]}
	b.pool.run(j, chunks, b.grainFor(sumSqChunk))
	*j = sumSqJob[T]{}
	var s float64
	for _, v := range b.partials[:chunks] {
		s += v
	}
	out[0] += s
	return nil
}
