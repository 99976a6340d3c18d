package model

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Backward accumulates into every parameter's Grad the gradient of the sum of the row
// losses of the last Loss(…, grad=true) call. It walks the network in reverse using the
// activations saved by Forward (explicit per-layer backward, no autograd). Call ZeroGrad
// before the first micro-batch of a step.
func (m *Model) Backward(ws *Workspace) error {
	if !ws.haveLoss {
		return fmt.Errorf("model: Backward needs a preceding Loss with grad=true")
	}
	ws.haveLoss = false
	c := m.Cfg
	L, D := c.SeqLen, c.Dim
	be := m.be
	e := exec{b: be}
	var lens *ops.Tensor
	if ws.hasLens {
		lens = ws.seqLens
	}
	if c.TimeCond {
		e.zero(ws.dca)
	}

	// Head: dhr = dlogits·W_head; dW_head += dlogitsᵀ·hr; scatter dhr into dnf.
	dnf, dx := ws.dtmp, ws.dx // dx carries d(residual stream) from here on
	e.zero(dnf)
	if ws.r > 0 {
		var dhrV *ops.Tensor
		e.do(func() (err error) { dhrV, err = be.View(ws.dhr, 0, ws.r); return err })
		e.linearDX(dhrV, ws.logitsV, m.head.fwd(), false)
		e.linearDW(m.head.Grad, ws.logitsV, ws.hrV)
		e.do(func() error { return be.ScatterRows(&ops.ScatterRowsParams{Out: dnf, In: dhrV, Rows: ws.rowsV}) })
	}

	// Final norm.
	x := ws.xs[len(ws.xs)-1]
	if c.TimeCond {
		dshift, dscale := ws.dchunks[0], ws.dchunks[1]
		e.do(func() error {
			return be.NormBwd(&ops.NormBwdParams{Kind: ops.LayerNorm, DX: dx, DOut: dnf, X: x, Mean: ws.fmean, Rstd: ws.frstd,
				Scale: ws.fscaleC, RowsPerGroup: L, DShift: dshift, DScale: dscale})
		})
		e.copyCols(ws.dfmod, dshift, 0, 0, D, false)
		e.copyCols(ws.dfmod, dscale, D, 0, D, false)
		m.adaLNBwd(&e, ws, m.finW, m.finB, ws.dfmod)
	} else {
		e.do(func() error {
			return be.NormBwd(&ops.NormBwdParams{Kind: ops.RMSNorm, DX: dx, DOut: dnf, X: x, Rstd: ws.frstd,
				Weight: m.finNorm.fwd(), DWeight: m.finNorm.Grad})
		})
	}

	for i := len(m.blocks) - 1; i >= 0; i-- {
		bp, la := &m.blocks[i], &ws.layers[i]
		xin := ws.xs[i]
		var gA, gM, dgA, dgM *ops.Tensor
		if c.TimeCond {
			gA, gM = la.chunksC[gateA], la.chunksC[gateM]
			dgA, dgM = ws.dchunks[gateA], ws.dchunks[gateM]
		}
		// out = x2 + gate_m ⊙ y
		e.do(func() error {
			return be.GateResidualBwd(&ops.GateResidualBwdParams{DY: ws.dy, DOut: dx, Y: la.y, Gate: gM, DGate: dgM, RowsPerGroup: L})
		})
		// y = W2·g;  g = act(a) ⊙ bm;  a = W1·n2, bm = W3·n2
		e.linearDX(ws.dgm, ws.dy, bp.w2.fwd(), false)
		e.linearDW(bp.w2.Grad, ws.dy, la.g)
		e.do(func() error {
			return be.GLUBwd(&ops.GLUBwdParams{Act: c.MLPAct, DA: ws.da, DB: ws.dbm, DOut: ws.dgm, A: la.a, B: la.bm})
		})
		e.linearDX(ws.dn, ws.da, bp.w1.fwd(), false)
		e.linearDX(ws.dn, ws.dbm, bp.w3.fwd(), true)
		e.linearDW(bp.w1.Grad, ws.da, la.n2)
		e.linearDW(bp.w3.Grad, ws.dbm, la.n2)
		// n2 = norm(x2); dx2 = dx (residual) + norm backward
		m.normBwd(&e, ws.dx2, ws.dn, la.x2, la.mean2, la.rstd2, bp.norm2, la, ws, shiftM, L)
		e.add(ws.dx2, dx)
		// x2 = x + gate_a ⊙ proj;  proj = Wo·o
		e.do(func() error {
			return be.GateResidualBwd(&ops.GateResidualBwdParams{DY: ws.dproj, DOut: ws.dx2, Y: la.proj, Gate: gA, DGate: dgA, RowsPerGroup: L})
		})
		e.linearDX(ws.do, ws.dproj, bp.o.fwd(), false)
		e.linearDW(bp.o.Grad, ws.dproj, la.o)
		dq4, dk4, dv4, do4 := reshape4(ws.dq, la.q4), reshape4(ws.dk, la.q4), reshape4(ws.dv, la.q4), reshape4(ws.do, la.q4)
		e.do(func() error {
			return be.AttnBwd(&ops.AttnBwdParams{DQ: dq4, DK: dk4, DV: dv4, DOut: do4, Q: la.q4, K: la.k4, V: la.v4,
				Out: la.o4, LSE: la.lse, SeqLens: lens, Scale: attnScale(c)})
		})
		// RoPE is orthogonal: its backward is the inverse rotation of the gradient.
		e.do(func() error { return be.RoPE(&ops.RoPEParams{Out: dq4, X: dq4, Theta: c.RoPETheta, Inverse: true}) })
		e.do(func() error { return be.RoPE(&ops.RoPEParams{Out: dk4, X: dk4, Theta: c.RoPETheta, Inverse: true}) })
		e.linearDX(ws.dn, ws.dq, bp.q.fwd(), false)
		e.linearDX(ws.dn, ws.dk, bp.k.fwd(), true)
		e.linearDX(ws.dn, ws.dv, bp.v.fwd(), true)
		e.linearDW(bp.q.Grad, ws.dq, la.n1)
		e.linearDW(bp.k.Grad, ws.dk, la.n1)
		e.linearDW(bp.v.Grad, ws.dv, la.n1)
		// n1 = norm(x); dx = dx2 + norm backward
		m.normBwd(&e, dx, ws.dn, xin, la.mean1, la.rstd1, bp.norm1, la, ws, shiftA, L)
		e.add(dx, ws.dx2)
		if c.TimeCond {
			for j := range ws.dchunks {
				e.copyCols(ws.dmod, ws.dchunks[j], j*D, 0, D, false)
			}
			m.adaLNBwd(&e, ws, bp.adaW, bp.adaB, ws.dmod)
		}
	}

	// Embedding.
	demb := dx
	if ws.emb != nil {
		e.linearDX(ws.demb, dx, m.projW.fwd(), false)
		e.linearDW(m.projW.Grad, dx, ws.emb)
		e.biasGrad(m.projB.Grad, dx)
		demb = ws.demb
	}
	e.do(func() error {
		return be.EmbedBwd(&ops.EmbedBwdParams{DTable: m.tokEmbed.Grad, DOut: demb, IDs: flat(ws.XT)})
	})
	if c.Pixels() {
		for k, p := range m.posEmbed {
			e.do(func() error {
				return be.EmbedBwd(&ops.EmbedBwdParams{DTable: p.Grad, DOut: demb, IDs: ws.posIDs[k]})
			})
		}
	}

	// Time conditioning: ca = act(c), c = fc2(a1) + b2, a1 = swish(h1), h1 = fc1(temb) + b1.
	if c.TimeCond {
		e.actBwd(c.MLPAct, ws.dc, ws.dca, ws.c)
		e.biasGrad(m.fc2B.Grad, ws.dc)
		e.linearDW(m.fc2W.Grad, ws.dc, ws.a1)
		e.linearDX(ws.da1, ws.dc, m.fc2W.fwd(), false)
		e.actBwd(ops.Swish, ws.dh1, ws.da1, ws.h1)
		e.biasGrad(m.fc1B.Grad, ws.dh1)
		e.linearDW(m.fc1W.Grad, ws.dh1, ws.temb)
	}
	return e.err
}

// adaLNBwd: mod = ca·Wᵀ + b. Accumulates dW, db and dca.
func (m *Model) adaLNBwd(e *exec, ws *Workspace, w, b *Param, dmod *ops.Tensor) {
	e.linearDW(w.Grad, dmod, ws.ca)
	e.biasGrad(b.Grad, dmod)
	e.linearDX(ws.dca, dmod, w.fwd(), true)
}

// normBwd is the backward of Model.norm; with time conditioning it writes the shift/scale
// gradients into ws.dchunks[first], ws.dchunks[first+1].
func (m *Model) normBwd(e *exec, dx, dout, x, mean, rstd *ops.Tensor, w *Param, la *layerActs, ws *Workspace, first, L int) {
	c := m.Cfg
	if c.TimeCond {
		e.do(func() error {
			return m.be.NormBwd(&ops.NormBwdParams{Kind: ops.LayerNorm, DX: dx, DOut: dout, X: x, Mean: mean, Rstd: rstd,
				Scale: la.chunksC[first+1], RowsPerGroup: L, DShift: ws.dchunks[first], DScale: ws.dchunks[first+1]})
		})
		return
	}
	e.do(func() error {
		return m.be.NormBwd(&ops.NormBwdParams{Kind: ops.RMSNorm, DX: dx, DOut: dout, X: x, Rstd: rstd, Weight: w.fwd(), DWeight: w.Grad})
	})
}

// reshape4 views an [N, D] buffer as [B, L, H, Dh] like `like` (same element count, so
// Reshape cannot fail).
func reshape4(t, like *ops.Tensor) *ops.Tensor {
	r, _ := t.Reshape(like.Shape()...)
	return r
}

func attnScale(c Config) float32 { return float32(1 / sqrtf(float64(c.HeadDim()))) }
