package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// NormFwd computes LayerNorm (no affine) or RMSNorm (optional Weight) per row, with the
// optional adaLN modulation Out = x̂·(1 + Scale[g]) + Shift[g]. Statistics are computed
// in float64 (two passes for the LayerNorm variance) and saved rounded to the element
// type. A NaN in X propagates to that row's outputs; it is not an error here.
func (b *Backend) NormFwd(p *ops.NormParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return normFwd[float32](b, p)
	case ops.F64:
		return normFwd[float64](b, p)
	}
	return unsupported(ops.OpNormFwd, p.X.DType())
}

type normFwdJob[T float] struct {
	rms             bool
	eps             float64
	x, out          []T
	weight          []T
	shift, scale    []T
	mean, rstd      []T
	d, rowsPerGroup int
}

func (j *normFwdJob[T]) run(_, lo, hi int) {
	d := j.d
	for r := lo; r < hi; r++ {
		x := j.x[r*d : (r+1)*d]
		out := j.out[r*d : (r+1)*d]
		var mean, rstd float64
		if j.rms {
			rstd = 1 / math.Sqrt(sumSqDev4(x, 0)/float64(d)+j.eps)
		} else {
			mean = sum4(x) / float64(d)
			rstd = 1 / math.Sqrt(sumSqDev4(x, mean)/float64(d)+j.eps)
			j.mean[r] = T(mean)
		}
		j.rstd[r] = T(rstd)
		var sh, sc []T
		if j.shift != nil {
			g := r / j.rowsPerGroup
			sh = j.shift[g*d : (g+1)*d]
			sc = j.scale[g*d : (g+1)*d]
		}
		if sh != nil && j.weight == nil { // adaLN (MD4): one specialised loop
			normMod(out, x, sc, sh, mean, rstd)
			continue
		}
		for c, v := range x {
			y := (float64(v) - mean) * rstd
			if j.weight != nil {
				y *= float64(j.weight[c])
			}
			if sh != nil {
				y = y*(1+float64(sc[c])) + float64(sh[c])
			}
			out[c] = T(y)
		}
	}
}

func normFwd[T float](b *Backend, p *ops.NormParams) error {
	const op = ops.OpNormFwd
	x, e1 := fl[T](op, "X", p.X)
	out, e2 := fl[T](op, "Out", p.Out)
	rstd, e3 := fl[T](op, "Rstd", p.Rstd)
	mean, e4 := optFl[T](op, "Mean", p.Mean)
	weight, e5 := optFl[T](op, "Weight", p.Weight)
	shift, e6 := optFl[T](op, "Shift", p.Shift)
	scale, e7 := optFl[T](op, "Scale", p.Scale)
	if err := errs(e1, e2, e3, e4, e5, e6, e7); err != nil {
		return err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	j := getJob[normFwdJob[T]](b, jobNorm, dtIndex[T]())
	*j = normFwdJob[T]{rms: p.Kind == ops.RMSNorm, eps: float64(p.Eps), x: x, out: out, weight: weight,
		shift: shift, scale: scale, mean: mean, rstd: rstd, d: d, rowsPerGroup: p.RowsPerGroup}
	b.pool.run(j, n, b.grainFor(3*d))
	*j = normFwdJob[T]{}
	return nil
}

// NormBwd is the backward of NormFwd. With g = DOut·(1+Scale)·Weight and x̂ the
// normalised row before Weight (n̂ = (x − mean)·rstd):
//
//	LayerNorm: DX = rstd·(g − mean(g) − n̂·mean(g·n̂))
//	RMSNorm:   DX = rstd·(g − n̂·mean(g·n̂))
//
// DShift[g] = Σ_rows DOut, DScale[g] = Σ_rows DOut·n̂·Weight (overwritten) and DWeight +=
// Σ_rows DOut·(1+Scale)·n̂, all summed in float64 in increasing row order.
func (b *Backend) NormBwd(p *ops.NormBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return normBwd[float32](b, p)
	case ops.F64:
		return normBwd[float64](b, p)
	}
	return unsupported(ops.OpNormBwd, p.X.DType())
}

type normBwdJob[T float] struct {
	b               *Backend
	rms             bool
	dx, dout, x     []T
	mean, rstd      []T
	weight, scale   []T
	dweight         []T
	dshift, dscale  []T
	d, rowsPerGroup int
	n               int
	colBlocks       int // column phase: tasks are (group, column block) pairs
}

// normColBlock is the column width of one task of the parameter-gradient phase.
const normColBlock = 64

// nhat returns the normalised value of row r, column c, before Weight.
func (j *normBwdJob[T]) nhat(r int, v T) float64 {
	if j.rms {
		return float64(v) * float64(j.rstd[r])
	}
	return (float64(v) - float64(j.mean[r])) * float64(j.rstd[r])
}

// run computes DX for rows [lo, hi).
func (j *normBwdJob[T]) run(w, lo, hi int) {
	d := j.d
	ws := &j.b.pool.scratch[w]
	g, nh := ws.accBuf(0, d), ws.accBuf(1, d)
	for r := lo; r < hi; r++ {
		x := j.x[r*d : (r+1)*d]
		dy := j.dout[r*d : (r+1)*d]
		var sc []T
		if j.scale != nil {
			grp := r / j.rowsPerGroup
			sc = j.scale[grp*d : (grp+1)*d]
		}
		mean, rstd := 0.0, float64(j.rstd[r])
		if !j.rms {
			mean = float64(j.mean[r])
		}
		// g = DOut·(1+Scale)·Weight and n̂ = (x − mean)·rstd, then Σg and Σg·n̂ in four
		// interleaved float64 accumulators (see reduce.go).
		if sc != nil && j.weight == nil { // adaLN (MD4)
			normBwdPrep(g, nh, dy, x, sc, mean, rstd)
		} else {
			for c := range d {
				gc := float64(dy[c])
				if sc != nil {
					gc *= 1 + float64(sc[c])
				}
				if j.weight != nil {
					gc *= float64(j.weight[c])
				}
				g[c] = gc
				nh[c] = (float64(x[c]) - mean) * rstd
			}
		}
		var s0, s1, s2, s3, t0, t1, t2, t3 float64
		c := 0
		for ; c+4 <= d; c += 4 {
			s0 += g[c]
			s1 += g[c+1]
			s2 += g[c+2]
			s3 += g[c+3]
			t0 += g[c] * nh[c]
			t1 += g[c+1] * nh[c+1]
			t2 += g[c+2] * nh[c+2]
			t3 += g[c+3] * nh[c+3]
		}
		for ; c < d; c++ {
			s0 += g[c]
			t0 += g[c] * nh[c]
		}
		mg := ((s0 + s1) + (s2 + s3)) / float64(d)
		mgn := ((t0 + t1) + (t2 + t3)) / float64(d)
		if j.rms {
			mg = 0
		}
		normBwdDX(j.dx[r*d:(r+1)*d], g, nh, rstd, mg, mgn)
	}
}

// normBwdCols computes DShift and DScale: task t is (group t / colBlocks, column block
// t % colBlocks), summing that group's rows in increasing order.
type normBwdCols[T float] struct{ *normBwdJob[T] }

func (j normBwdCols[T]) run(w, lo, hi int) {
	d := j.d
	acc := j.b.pool.scratch[w].accBuf(1, 2*normColBlock)
	sShift, sScale := acc[:normColBlock], acc[normColBlock:]
	for t := lo; t < hi; t++ {
		grp, cb := t/j.colBlocks, t%j.colBlocks
		c0 := cb * normColBlock
		c1 := min(c0+normColBlock, d)
		clear(acc)
		sShift, sScale := sShift[:c1-c0], sScale[:c1-c0]
		for r := grp * j.rowsPerGroup; r < (grp+1)*j.rowsPerGroup; r++ {
			mean, rstd := 0.0, float64(j.rstd[r])
			if !j.rms {
				mean = float64(j.mean[r])
			}
			x := j.x[r*d+c0 : r*d+c1]
			dy := j.dout[r*d+c0 : r*d+c1]
			for c, v := range dy {
				dyc := float64(v)
				sShift[c] += dyc
				sScale[c] += dyc * ((float64(x[c]) - mean) * rstd)
			}
		}
		for c := c0; c < c1; c++ {
			wc := 1.0
			if j.weight != nil {
				wc = float64(j.weight[c])
			}
			j.dshift[grp*d+c] = T(sShift[c-c0])
			j.dscale[grp*d+c] = T(sScale[c-c0] * wc)
		}
	}
}

// normBwdW accumulates DWeight: one task per column block, summing all rows in
// increasing order.
type normBwdW[T float] struct{ *normBwdJob[T] }

func (j normBwdW[T]) run(w, lo, hi int) {
	d := j.d
	acc := j.b.pool.scratch[w].accBuf(1, normColBlock)
	for cb := lo; cb < hi; cb++ {
		c0 := cb * normColBlock
		c1 := min(c0+normColBlock, d)
		clear(acc)
		for r := 0; r < j.n; r++ {
			x := j.x[r*d : (r+1)*d]
			dy := j.dout[r*d : (r+1)*d]
			var sc []T
			if j.scale != nil {
				grp := r / j.rowsPerGroup
				sc = j.scale[grp*d : (grp+1)*d]
			}
			for c := c0; c < c1; c++ {
				m := float64(dy[c])
				if sc != nil {
					m *= 1 + float64(sc[c])
				}
				acc[c-c0] += m * j.nhat(r, x[c])
			}
		}
		for c := c0; c < c1; c++ {
			j.dweight[c] = T(float64(j.dweight[c]) + acc[c-c0])
		}
	}
}

func normBwd[T float](b *Backend, p *ops.NormBwdParams) error {
	const op = ops.OpNormBwd
	x, e1 := fl[T](op, "X", p.X)
	dx, e2 := fl[T](op, "DX", p.DX)
	dout, e3 := fl[T](op, "DOut", p.DOut)
	rstd, e4 := fl[T](op, "Rstd", p.Rstd)
	var mean []T
	var e5 error
	if p.Kind == ops.LayerNorm {
		mean, e5 = fl[T](op, "Mean", p.Mean)
	}
	weight, e6 := optFl[T](op, "Weight", p.Weight)
	dweight, e7 := optFl[T](op, "DWeight", p.DWeight)
	scale, e8 := optFl[T](op, "Scale", p.Scale)
	dshift, e9 := optFl[T](op, "DShift", p.DShift)
	dscale, e10 := optFl[T](op, "DScale", p.DScale)
	if err := errs(e1, e2, e3, e4, e5, e6, e7, e8, e9, e10); err != nil {
		return err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	j := getJob[normBwdJob[T]](b, jobNormBwd, dtIndex[T]())
	*j = normBwdJob[T]{b: b, rms: p.Kind == ops.RMSNorm, dx: dx, dout: dout, x: x, mean: mean, rstd: rstd,
		weight: weight, scale: scale, dweight: dweight, dshift: dshift, dscale: dscale,
		d: d, rowsPerGroup: p.RowsPerGroup, n: n, colBlocks: (d + normColBlock - 1) / normColBlock}
	defer func() { *j = normBwdJob[T]{} }()

	// Parameter gradients first: DX may alias DOut or X.
	if scale != nil && n > 0 {
		groups := n / p.RowsPerGroup
		b.pool.run(normBwdCols[T]{j}, groups*j.colBlocks, b.grainFor(p.RowsPerGroup*normColBlock))
	}
	if weight != nil && n > 0 {
		b.pool.run(normBwdW[T]{j}, j.colBlocks, 1)
	}
	b.pool.run(j, n, b.grainFor(4*d))
	return nil
}
