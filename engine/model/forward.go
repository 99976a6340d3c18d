package model

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Forward runs the network on ws.XT at times t (one per sequence, in [0, 1]; ignored
// without time conditioning) and computes the logits of the R positions listed in rows
// (flat indices b·L + l, distinct) into ws.Logits() [R, V]. seqLens, if non-nil, gives
// each sequence's number of real positions (keys beyond it are masked in attention).
// Every activation the backward pass needs is kept in ws. R = 0 is allowed.
func (m *Model) Forward(ws *Workspace, t []float64, seqLens []int32, rows []int32) error {
	c := m.Cfg
	B, L, D := ws.B, c.SeqLen, c.Dim
	if ws.m != m {
		return fmt.Errorf("model: workspace belongs to another model")
	}
	if c.TimeCond && len(t) != B {
		return fmt.Errorf("model: got %d times for a batch of %d sequences", len(t), B)
	}
	if len(rows) > ws.N {
		return fmt.Errorf("model: %d head rows exceed the %d positions of the batch", len(rows), ws.N)
	}
	for i, r := range rows {
		if r < 0 || int(r) >= ws.N {
			return fmt.Errorf("model: head row %d at index %d is outside [0, %d)", r, i, ws.N)
		}
	}
	for b, x := range t {
		if !(x >= 0 && x <= 1) {
			return fmt.Errorf("model: time %v of sequence %d is outside [0, 1]", x, b)
		}
	}
	e := exec{b: m.be}
	be := m.be
	var lens *ops.Tensor
	if seqLens != nil {
		if len(seqLens) != B {
			return fmt.Errorf("model: got %d sequence lengths for a batch of %d", len(seqLens), B)
		}
		e.do(func() error { return be.Upload(ws.seqLens, seqLens) })
		lens = ws.seqLens
	}
	ws.hasLens = lens != nil

	// Time conditioning: c = fc2(swish(fc1(sinusoid(1000 t)))); adaLN takes act(c).
	if c.TimeCond {
		e.do(func() error { return be.Upload(ws.tT, t) })
		e.do(func() error { return be.TimeEmbed(&ops.TimeEmbedParams{Out: ws.temb, T: ws.tT, Scale: c.TimeScale}) })
		e.linear(ws.h1, ws.temb, m.fc1W.fwd(), false)
		e.bias(ws.h1, m.fc1B.fwd())
		e.act(ops.Swish, ws.a1, ws.h1)
		e.linear(ws.c, ws.a1, m.fc2W.fwd(), false)
		e.bias(ws.c, m.fc2B.fwd())
		e.act(c.MLPAct, ws.ca, ws.c)
	}

	// Token embedding (plus row/column/channel embeddings for pixels; optionally E → D
	// projection).
	emb := ws.xs[0]
	if ws.emb != nil {
		emb = ws.emb
	}
	e.do(func() error {
		return be.EmbedFwd(&ops.EmbedParams{Out: emb, Table: m.tokEmbed.fwd(), IDs: flat(ws.XT)})
	})
	if c.Pixels() {
		for k, p := range m.posEmbed {
			e.do(func() error {
				return be.EmbedFwd(&ops.EmbedParams{Out: ws.posTmp, Table: p.fwd(), IDs: ws.posIDs[k]})
			})
			e.add(emb, ws.posTmp)
		}
	}
	if ws.emb != nil {
		e.linear(ws.xs[0], ws.emb, m.projW.fwd(), false)
		e.bias(ws.xs[0], m.projB.fwd())
	}

	scale := attnScale(c)
	for i := range m.blocks {
		bp, la := &m.blocks[i], &ws.layers[i]
		x, out := ws.xs[i], ws.xs[i+1]
		var gA, gM *ops.Tensor
		if c.TimeCond {
			e.linear(la.mod, ws.ca, bp.adaW.fwd(), false)
			e.bias(la.mod, bp.adaB.fwd())
			for j := range la.chunks {
				e.copyCols(la.chunks[j], la.mod, 0, j*D, D, false)
				e.convert(la.chunksC[j], la.chunks[j])
			}
			gA, gM = la.chunksC[gateA], la.chunksC[gateM]
		}
		m.norm(&e, la.n1, x, la.mean1, la.rstd1, bp.norm1, la, shiftA, B, L)
		e.linear(la.q, la.n1, bp.q.fwd(), false)
		e.linear(la.k, la.n1, bp.k.fwd(), false)
		e.linear(la.v, la.n1, bp.v.fwd(), false)
		e.do(func() error { return be.RoPE(&ops.RoPEParams{Out: la.q4, X: la.q4, Theta: c.RoPETheta}) })
		e.do(func() error { return be.RoPE(&ops.RoPEParams{Out: la.k4, X: la.k4, Theta: c.RoPETheta}) })
		e.do(func() error {
			return be.AttnFwd(&ops.AttnParams{Out: la.o4, LSE: la.lse, Q: la.q4, K: la.k4, V: la.v4, SeqLens: lens, Scale: scale})
		})
		e.linear(la.proj, la.o, bp.o.fwd(), false)
		e.do(func() error {
			return be.GateResidualFwd(&ops.GateResidualParams{Out: la.x2, X: x, Y: la.proj, Gate: gA, RowsPerGroup: L})
		})
		m.norm(&e, la.n2, la.x2, la.mean2, la.rstd2, bp.norm2, la, shiftM, B, L)
		e.linear(la.a, la.n2, bp.w1.fwd(), false)
		e.linear(la.bm, la.n2, bp.w3.fwd(), false)
		e.do(func() error { return be.GLUFwd(&ops.GLUParams{Act: c.MLPAct, Out: la.g, A: la.a, B: la.bm}) })
		e.linear(la.y, la.g, bp.w2.fwd(), false)
		e.do(func() error {
			return be.GateResidualFwd(&ops.GateResidualParams{Out: out, X: la.x2, Y: la.y, Gate: gM, RowsPerGroup: L})
		})
	}

	// Final norm (adaLN-modulated or RMSNorm) and the head on the listed rows only.
	x := ws.xs[len(ws.xs)-1]
	if c.TimeCond {
		e.linear(ws.fmod, ws.ca, m.finW.fwd(), false)
		e.bias(ws.fmod, m.finB.fwd())
		e.copyCols(ws.fshift, ws.fmod, 0, 0, D, false)
		e.copyCols(ws.fscale, ws.fmod, 0, D, D, false)
		e.convert(ws.fshiftC, ws.fshift)
		e.convert(ws.fscaleC, ws.fscale)
		e.do(func() error {
			return be.NormFwd(&ops.NormParams{Kind: ops.LayerNorm, Eps: c.NormEps, Out: ws.nf, X: x,
				Shift: ws.fshiftC, Scale: ws.fscaleC, RowsPerGroup: L, Mean: ws.fmean, Rstd: ws.frstd})
		})
	} else {
		e.do(func() error {
			return be.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: c.NormEps, Out: ws.nf, X: x,
				Weight: m.finNorm.fwd(), Rstd: ws.frstd})
		})
	}
	ws.haveLoss = false
	ws.r = len(rows)
	e.do(func() (err error) {
		if ws.rowsV, err = be.View(ws.rows, 0, ws.r); err != nil {
			return err
		}
		if ws.hrV, err = be.View(ws.hr, 0, ws.r); err != nil {
			return err
		}
		ws.logitsV, err = be.View(ws.logits, 0, ws.r)
		return err
	})
	if ws.r > 0 {
		e.do(func() error { return be.Upload(ws.rowsV, rows) })
		e.do(func() error { return be.GatherRows(&ops.GatherRowsParams{Out: ws.hrV, In: ws.nf, Rows: ws.rowsV}) })
		e.linear(ws.logitsV, ws.hrV, m.head.fwd(), false)
	}
	return e.err
}

// norm applies the block's pre-norm: LayerNorm modulated by the adaLN chunks starting at
// chunk index first (shift, scale) with time conditioning, else RMSNorm with weight w.
func (m *Model) norm(e *exec, out, x, mean, rstd *ops.Tensor, w *Param, la *layerActs, first, B, L int) {
	c := m.Cfg
	if c.TimeCond {
		e.do(func() error {
			return m.be.NormFwd(&ops.NormParams{Kind: ops.LayerNorm, Eps: c.NormEps, Out: out, X: x,
				Shift: la.chunksC[first], Scale: la.chunksC[first+1], RowsPerGroup: L, Mean: mean, Rstd: rstd})
		})
		return
	}
	e.do(func() error {
		return m.be.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: c.NormEps, Out: out, X: x, Weight: w.fwd(), Rstd: rstd})
	})
}

// flat views a [B, L] id tensor as [B·L]. Reshape to the same element count cannot fail.
func flat(t *ops.Tensor) *ops.Tensor {
	f, _ := t.Reshape(t.Len())
	return f
}

// Loss runs the fused masked cross-entropy on the logits of the last Forward: row i has
// target token targets[i] and weight weights[i] (see ops.MaskedCEParams; for the MD4 NELBO
// in bits per token the weight is −w(t_b)/(L·ln 2)/B). It returns the weighted loss of
// each row (float64). With grad it also writes dlogits (in place of the logits) for
// Backward.
func (m *Model) Loss(ws *Workspace, targets []int32, weights []float64, grad bool) ([]float64, error) {
	return m.headLoss(ws, "Loss", "weights", targets, weights, grad, func(tg, wt, ls *ops.Tensor) error {
		p := &ops.MaskedCEParams{Logits: ws.logitsV, Targets: tg, Weights: wt, Loss: ls}
		if grad {
			p.DLogits = ws.logitsV
		}
		return m.be.MaskedCE(p)
	})
}

// headLoss is the common part of Loss and GenLoss: it checks one target and one per-row
// factor per head row, uploads them into the workspace, runs the cross-entropy op (ce, on
// views of the targets, the factors and the [r] loss) and returns each row's loss. what and
// factors name the method and its factor argument in errors.
func (m *Model) headLoss(ws *Workspace, what, factors string, targets []int32, rowFactors []float64, grad bool,
	ce func(tg, wt, ls *ops.Tensor) error) ([]float64, error) {
	if len(targets) != ws.r || len(rowFactors) != ws.r {
		return nil, fmt.Errorf("model: %s got %d targets and %d %s for %d head rows", what, len(targets), len(rowFactors), factors, ws.r)
	}
	out := make([]float64, ws.r)
	if ws.r == 0 {
		ws.haveLoss = grad
		return out, nil
	}
	be := m.be
	e := exec{b: be}
	var tg, wt, ls *ops.Tensor
	e.do(func() (err error) {
		if tg, err = be.View(ws.targets, 0, ws.r); err != nil {
			return err
		}
		if wt, err = be.View(ws.weights, 0, ws.r); err != nil {
			return err
		}
		ls, err = be.View(ws.loss, 0, ws.r)
		return err
	})
	e.do(func() error { return be.Upload(tg, targets) })
	e.do(func() error { return be.Upload(wt, rowFactors) })
	e.do(func() error { return ce(tg, wt, ls) })
	e.do(func() error { return be.Download(out, ls) })
	if e.err != nil {
		return nil, e.err
	}
	ws.haveLoss = grad
	return out, nil
}
