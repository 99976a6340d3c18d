package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// GenMaskedCE is GenMD4's fused masked diffusion loss (ops.GenMaskedCEParams) in three
// passes: (1) per row, in parallel: the max-subtracted float64 softmax statistics, the
// loss and the row's w̄ = Σ_j w_j μ_j; (2) per column, in parallel over column blocks: the
// DPowers increment summed over rows in the reference order of ops.GenCERowChunk; (3) per
// row, in parallel: DLogits (last, because it may overwrite the logits). R = 0 writes
// nothing.
func (b *Backend) GenMaskedCE(p *ops.GenMaskedCEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Logits.DType() {
	case ops.F32:
		return genMaskedCE[float32](b, p)
	case ops.F64:
		return genMaskedCE[float64](b, p)
	}
	return unsupported(ops.OpGenMaskedCE, p.Logits.DType())
}

// Per-row statistics kept between the passes: max logit, Σ exp(l − max), w̄, CE.
const (
	gsMax = iota
	gsSum
	gsWbar
	gsCE
	gsN
)

type genCEJob[T float] struct {
	b              *Backend
	logits, dl     []T
	targets        []int32
	scales, powers []float64
	loss, stats    []float64
	v              int
	pass           int
}

func (j *genCEJob[T]) run(w, lo, hi int) {
	v := j.v
	for r := lo; r < hi; r++ {
		row := j.logits[r*v : (r+1)*v]
		st := j.stats[r*gsN : (r+1)*gsN]
		t := int(j.targets[r])
		c := j.scales[r]
		if j.pass == 1 {
			m := row[0]
			for _, x := range row[1:] {
				if x > m {
					m = x
				}
			}
			mf := float64(m)
			var sum, sw float64
			for k, x := range row {
				e := math.Exp(float64(x) - mf)
				sum += e
				sw += j.powers[k] * e
			}
			wbar := sw / sum
			ce := mf + math.Log(sum) - float64(row[t])
			wx := j.powers[t]
			st[gsMax], st[gsSum], st[gsWbar], st[gsCE] = mf, sum, wbar, ce
			j.loss[r] = c * (wx*ce + wbar - wx)
			continue
		}
		// pass 3: DLogits[r, k] = c·(μ_k·(w_x + w_k − w̄) − w_x·[k = t])
		d := j.dl[r*v : (r+1)*v]
		mf, inv, wbar, wx := st[gsMax], 1/st[gsSum], st[gsWbar], j.powers[t]
		for k, x := range row {
			mu := math.Exp(float64(x)-mf) * inv
			g := c * mu * (wx + j.powers[k] - wbar)
			if k == t {
				g -= c * wx
			}
			d[k] = T(g)
		}
	}
}

// genCEColsJob adds to DPowers, for its columns, Σ_r c_r·(μ_{r,j} + [j = x_r]·(CE_r − 1))
// in the order of ops.GenCERowChunk.
type genCEColsJob[T float] struct {
	logits        []T
	targets       []int32
	scales, stats []float64
	dpowers       []float64
	r, v          int
}

const genCEColBlock = 32 // columns per work item of pass 2

func (j *genCEColsJob[T]) run(_, lo, hi int) {
	v := j.v
	for cb := lo; cb < hi; cb++ {
		for col := cb * genCEColBlock; col < min((cb+1)*genCEColBlock, v); col++ {
			var total float64
			for r0 := 0; r0 < j.r; r0 += ops.GenCERowChunk {
				var cs float64
				for r := r0; r < min(r0+ops.GenCERowChunk, j.r); r++ {
					st := j.stats[r*gsN : (r+1)*gsN]
					term := math.Exp(float64(j.logits[r*v+col])-st[gsMax]) / st[gsSum]
					if int(j.targets[r]) == col {
						term += st[gsCE] - 1
					}
					cs += j.scales[r] * term
				}
				total += cs
			}
			j.dpowers[col] += total
		}
	}
}

func genMaskedCE[T float](b *Backend, p *ops.GenMaskedCEParams) error {
	const op = ops.OpGenMaskedCE
	logits, e1 := fl[T](op, "Logits", p.Logits)
	targets, e2 := i32(op, "Targets", p.Targets)
	scales, e3 := f64(op, "Scales", p.Scales)
	powers, e4 := f64(op, "Powers", p.Powers)
	loss, e5 := f64(op, "Loss", p.Loss)
	dl, e6 := optFl[T](op, "DLogits", p.DLogits)
	dpow, e7 := f64(op, "DPowers", p.DPowers)
	if err := errs(e1, e2, e3, e4, e5, e6, e7); err != nil {
		return err
	}
	r, v := p.Logits.Dim(0), p.Logits.Dim(1)
	for i, t := range targets {
		if t < 0 || int(t) >= v {
			return ops.Errorf(op, "Targets", ops.ErrValue, "target %d of row %d is not in [0, %d)", t, i, v)
		}
	}
	if r == 0 {
		return nil
	}
	if cap(b.genStats) < r*gsN {
		b.genStats = make([]float64, r*gsN)
	}
	stats := b.genStats[:r*gsN]
	j := getJob[genCEJob[T]](b, jobGenCE, dtIndex[T]())
	*j = genCEJob[T]{b: b, logits: logits, targets: targets, scales: scales, powers: powers, loss: loss, stats: stats, v: v, pass: 1}
	b.pool.run(j, r, b.grainFor(3*v))
	if dpow != nil {
		cj := getJob[genCEColsJob[T]](b, jobGenCECols, dtIndex[T]())
		*cj = genCEColsJob[T]{logits: logits, targets: targets, scales: scales, stats: stats, dpowers: dpow, r: r, v: v}
		b.pool.run(cj, (v+genCEColBlock-1)/genCEColBlock, b.grainFor(2*r*genCEColBlock))
		*cj = genCEColsJob[T]{}
	}
	if dl != nil {
		j.pass, j.dl = 3, dl
		b.pool.run(j, r, b.grainFor(3*v))
	}
	*j = genCEJob[T]{}
	return nil
}
