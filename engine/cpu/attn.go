package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// AttnFwd computes non-causal attention per (sequence b, head h): S = Scale·Q_bh·K_bhᵀ
// over the real keys (positions < SeqLens[b]), P = softmax(S) with max subtraction and
// float64 row sums (exp by fexp for F32 data, math.Exp for F64), LSE = log Σ exp(S),
// Out = P·V_bh. Padded keys get weight exactly 0
// because they are never part of the product. The (b, h) pairs run in parallel; each
// pair's GEMMs run serially on its worker, on strided views of Q, K, V and Out (leading
// dimension H·Dh, no copies).
func (b *Backend) AttnFwd(p *ops.AttnParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Q.DType() {
	case ops.F32:
		return attnFwd[float32](b, p)
	case ops.F64:
		return attnFwd[float64](b, p)
	}
	return unsupported(ops.OpAttnFwd, p.Q.DType())
}

// checkSeqLens requires every length to be in [1, L].
func checkSeqLens(op ops.Op, seqLens []int32, l int) error {
	for i, n := range seqLens {
		if n < 1 || int(n) > l {
			return ops.Errorf(op, "SeqLens", ops.ErrValue, "length %d of sequence %d is not in [1, %d]", n, i, l)
		}
	}
	return nil
}

type attnJob[T float] struct {
	b                 *Backend
	q, k, v, out, lse []T
	dq, dk, dv, dout  []T
	seqLens           []int32
	l, h, dh          int
	scale             T
}

// keys returns the number of real keys of sequence bi.
func (j *attnJob[T]) keys(bi int) int {
	if j.seqLens == nil {
		return j.l
	}
	return int(j.seqLens[bi])
}

// run computes (b, h) pairs [lo, hi) of the forward pass.
func (j *attnJob[T]) run(w, lo, hi int) {
	l, dh := j.l, j.dh
	d := j.h * dh
	ws := &j.b.pool.scratch[w]
	for bh := lo; bh < hi; bh++ {
		bi, hh := bh/j.h, bh%j.h
		n := j.keys(bi)
		off := bi*l*d + hh*dh
		s := buf[T](ws, 0, l*n)
		e := ws.accBuf(0, n)
		tileGemm(false, true, l, n, dh, j.scale, j.q[off:], d, j.k[off:], d, 0, s, n)
		lse := j.lse[bh*l : (bh+1)*l]
		for i := range l {
			row := s[i*n : (i+1)*n]
			mf := float64(max4(row))
			sum := expShiftSum(e, row, mf)
			scaleToT(row, e, 1/sum)
			lse[i] = T(mf + math.Log(sum))
		}
		tileGemm(false, false, l, dh, n, 1, s, n, j.v[off:], d, 0, j.out[off:], d)
	}
}

func attnFwd[T float](b *Backend, p *ops.AttnParams) error {
	const op = ops.OpAttnFwd
	q, e1 := fl[T](op, "Q", p.Q)
	k, e2 := fl[T](op, "K", p.K)
	v, e3 := fl[T](op, "V", p.V)
	out, e4 := fl[T](op, "Out", p.Out)
	lse, e5 := fl[T](op, "LSE", p.LSE)
	seqLens, e6 := i32(op, "SeqLens", p.SeqLens)
	if err := errs(e1, e2, e3, e4, e5, e6); err != nil {
		return err
	}
	bs, l, h, dh := p.Q.Dim(0), p.Q.Dim(1), p.Q.Dim(2), p.Q.Dim(3)
	if err := checkSeqLens(op, seqLens, l); err != nil {
		return err
	}
	if l == 0 || dh == 0 {
		return nil
	}
	j := getJob[attnJob[T]](b, jobAttn, dtIndex[T]())
	*j = attnJob[T]{b: b, q: q, k: k, v: v, out: out, lse: lse, seqLens: seqLens, l: l, h: h, dh: dh, scale: T(p.Scale)}
	b.pool.run(j, bs*h, 1)
	*j = attnJob[T]{}
	return nil
}

// AttnBwd is the backward of AttnFwd, per (b, h) with P recomputed from Q, K and LSE:
//
//	dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),
//	dQ = Scale·dS·K,  dK = Scale·dSᵀ·Q
//
// Padded keys (positions ≥ SeqLens[b]) get exactly zero DK and DV.
func (b *Backend) AttnBwd(p *ops.AttnBwdParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Q.DType() {
	case ops.F32:
		return attnBwd[float32](b, p)
	case ops.F64:
		return attnBwd[float64](b, p)
	}
	return unsupported(ops.OpAttnBwd, p.Q.DType())
}

type attnBwdJob[T float] struct{ attnJob[T] }

func (j *attnBwdJob[T]) run(w, lo, hi int) {
	l, dh := j.l, j.dh
	d := j.h * dh
	ws := &j.b.pool.scratch[w]
	for bh := lo; bh < hi; bh++ {
		bi, hh := bh/j.h, bh%j.h
		n := j.keys(bi)
		off := bi*l*d + hh*dh
		pm := buf[T](ws, 0, l*n)
		dp := buf[T](ws, 1, l*n)
		tileGemm(false, true, l, n, dh, j.scale, j.q[off:], d, j.k[off:], d, 0, pm, n)
		lse := j.lse[bh*l : (bh+1)*l]
		e := ws.accBuf(0, n)
		for i := range l {
			expShiftTo(pm[i*n:(i+1)*n], e, float64(lse[i]))
		}
		// dV = Pᵀ·dO for the real keys; padded keys get zero.
		tileGemm(true, false, n, dh, l, 1, pm, n, j.dout[off:], d, 0, j.dv[off:], d)
		// dP = dO·Vᵀ.
		tileGemm(false, true, l, n, dh, 1, j.dout[off:], d, j.v[off:], d, 0, dp, n)
		for i := range l {
			o := j.out[off+i*d : off+i*d+dh]
			do := j.dout[off+i*d : off+i*d+dh]
			delta := dot4(do, o)
			dSoftmax(dp[i*n:(i+1)*n], pm[i*n:(i+1)*n], delta)
		}
		tileGemm(false, false, l, dh, n, j.scale, dp, n, j.k[off:], d, 0, j.dq[off:], d)
		tileGemm(true, false, n, dh, l, j.scale, dp, n, j.q[off:], d, 0, j.dk[off:], d)
		for r := n; r < l; r++ {
			clear(j.dk[off+r*d : off+r*d+dh])
			clear(j.dv[off+r*d : off+r*d+dh])
		}
	}
}

func attnBwd[T float](b *Backend, p *ops.AttnBwdParams) error {
	const op = ops.OpAttnBwd
	q, e1 := fl[T](op, "Q", p.Q)
	k, e2 := fl[T](op, "K", p.K)
	v, e3 := fl[T](op, "V", p.V)
	out, e4 := fl[T](op, "Out", p.Out)
	lse, e5 := fl[T](op, "LSE", p.LSE)
	seqLens, e6 := i32(op, "SeqLens", p.SeqLens)
	dq, e7 := fl[T](op, "DQ", p.DQ)
	dk, e8 := fl[T](op, "DK", p.DK)
	dv, e9 := fl[T](op, "DV", p.DV)
	dout, e10 := fl[T](op, "DOut", p.DOut)
	if err := errs(e1, e2, e3, e4, e5, e6, e7, e8, e9, e10); err != nil {
		return err
	}
	bs, l, h, dh := p.Q.Dim(0), p.Q.Dim(1), p.Q.Dim(2), p.Q.Dim(3)
	if err := checkSeqLens(op, seqLens, l); err != nil {
		return err
	}
	if l == 0 || dh == 0 {
		return nil
	}
	j := getJob[attnBwdJob[T]](b, jobAttnBwd, dtIndex[T]())
	j.attnJob = attnJob[T]{b: b, q: q, k: k, v: v, out: out, lse: lse, dq: dq, dk: dk, dv: dv, dout: dout,
		seqLens: seqLens, l: l, h: h, dh: dh, scale: T(p.Scale)}
	b.pool.run(j, bs*h, 1)
	j.attnJob = attnJob[T]{}
	return nil
}
