package cpu

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// MaskTokens draws x_t ~ q(x_t | x_0): position (b, l) becomes MaskID iff l < SeqLens[b]
// and rng.Uniform64(Seed, Step, Purpose, IndexOffset + b·L + l) < p, with p = MaskProb[b] or
// MaskProb[b, X0[b, l]], compared in float64. X0 must hold tokens in [0, MaskID), SeqLens
// lengths in [1, L] and MaskProb probabilities in [0, 1].
func (b *Backend) MaskTokens(p *ops.MaskParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpMaskTokens
	xt, e1 := i32(op, "XT", p.XT)
	x0, e2 := i32(op, "X0", p.X0)
	prob, e3 := f64(op, "MaskProb", p.MaskProb)
	seqLens, e4 := i32(op, "SeqLens", p.SeqLens)
	if err := errs(e1, e2, e3, e4); err != nil {
		return err
	}
	bs, l := p.X0.Dim(0), p.X0.Dim(1)
	v := p.MaskID
	for i, x := range x0 {
		if x == v {
			return ops.Errorf(op, "X0", ops.ErrValue, "X0[%d, %d] holds the mask id %d; X0 must be clean data", i/max(l, 1), i%max(l, 1), x)
		}
		if x < 0 || x > v {
			return ops.Errorf(op, "X0", ops.ErrValue, "token %d at X0[%d, %d] is not in [0, %d)", x, i/max(l, 1), i%max(l, 1), v)
		}
	}
	if err := checkSeqLens(op, seqLens, l); err != nil {
		return err
	}
	for i, q := range prob {
		if !(q >= 0 && q <= 1) {
			return ops.Errorf(op, "MaskProb", ops.ErrValue, "probability %v at index %d is not in [0, 1]", q, i)
		}
	}
	j := &b.mask
	*j = maskJob{xt: xt, x0: x0, prob: prob, perToken: p.MaskProb.Rank() == 2, seqLens: seqLens,
		l: l, v: int(v), maskID: v, seed: p.Seed, step: p.Step, offset: p.IndexOffset, purpose: rng.Purpose(p.Purpose)}
	b.pool.run(j, bs, b.grainFor(16*l))
	*j = maskJob{}
	return nil
}

type maskJob struct {
	xt, x0, seqLens []int32
	prob            []float64
	perToken        bool
	l, v            int
	maskID          int32
	seed, step      uint64
	offset          uint64 // IndexOffset
	purpose         rng.Purpose
}

func (j *maskJob) run(_, lo, hi int) {
	l := j.l
	for bi := lo; bi < hi; bi++ {
		n := l
		if j.seqLens != nil {
			n = int(j.seqLens[bi])
		}
		for li := range l {
			i := bi*l + li
			x := j.x0[i]
			out := x
			if li < n {
				var p float64
				if j.perToken {
					p = j.prob[bi*j.v+int(x)] // MaskProb [B, V]
				} else {
					p = j.prob[bi] // MaskProb [B]
				}
				if rng.Uniform64(j.seed, j.step, j.purpose, j.offset+uint64(i)) < p {
					out = j.maskID
				}
			}
			j.xt[i] = out
		}
	}
}
