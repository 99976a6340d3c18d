package checked

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// MatMul checks A, B (and Out when Beta ≠ 0) and runs the op.
func (c *Backend) MatMul(p *ops.MatMulParams) error {
	return c.run(ops.OpMatMul, p, func(s *scan) {
		s.finite("A", p.A)
		s.finite("B", p.B)
		if p.Beta != 0 {
			s.finite("Out", p.Out)
		}
	}, func() error { return c.Backend.MatMul(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// EmbedFwd checks the table and that IDs are in [0, V+1) and runs the op.
func (c *Backend) EmbedFwd(p *ops.EmbedParams) error {
	return c.run(ops.OpEmbedFwd, p, func(s *scan) {
		s.finite("Table", p.Table)
		rows := p.Table.Dim(0)
		s.inRange("IDs", p.IDs, 0, rows, fmt.Sprintf(" (the table has V+1 = %d rows; row V embeds the mask)", rows))
	}, func() error { return c.Backend.EmbedFwd(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// EmbedBwd checks DOut, DTable and that IDs are in [0, V+1) and runs the op.
func (c *Backend) EmbedBwd(p *ops.EmbedBwdParams) error {
	return c.run(ops.OpEmbedBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("DTable", p.DTable)
		rows := p.DTable.Dim(0)
		s.inRange("IDs", p.IDs, 0, rows, fmt.Sprintf(" (the table has V+1 = %d rows)", rows))
	}, func() error { return c.Backend.EmbedBwd(p) }, func(s *scan) { s.finite("DTable", p.DTable) })
}

// NormFwd checks X, Weight, Shift and Scale and runs the op.
func (c *Backend) NormFwd(p *ops.NormParams) error {
	return c.run(ops.OpNormFwd, p, func(s *scan) {
		s.finite("X", p.X)
		s.finite("Weight", p.Weight)
		s.finite("Shift", p.Shift)
		s.finite("Scale", p.Scale)
	}, func() error { return c.Backend.NormFwd(p) }, func(s *scan) {
		s.finite("Out", p.Out)
		s.finite("Mean", p.Mean)
		s.finite("Rstd", p.Rstd)
	})
}

// NormBwd checks its inputs (DWeight is accumulated, so read) and runs the op.
func (c *Backend) NormBwd(p *ops.NormBwdParams) error {
	return c.run(ops.OpNormBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("X", p.X)
		s.finite("Mean", p.Mean)
		s.finite("Rstd", p.Rstd)
		s.finite("Weight", p.Weight)
		s.finite("Scale", p.Scale)
		s.finite("DWeight", p.DWeight)
	}, func() error { return c.Backend.NormBwd(p) }, func(s *scan) {
		s.finite("DX", p.DX)
		s.finite("DWeight", p.DWeight)
		s.finite("DShift", p.DShift)
		s.finite("DScale", p.DScale)
	})
}

// RoPE checks X and runs the op.
func (c *Backend) RoPE(p *ops.RoPEParams) error {
	return c.run(ops.OpRoPE, p, func(s *scan) { s.finite("X", p.X) },
		func() error { return c.Backend.RoPE(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// AttnFwd checks Q, K, V and SeqLens in [1, L] and runs the op.
func (c *Backend) AttnFwd(p *ops.AttnParams) error {
	return c.run(ops.OpAttnFwd, p, func(s *scan) {
		s.finite("Q", p.Q)
		s.finite("K", p.K)
		s.finite("V", p.V)
		s.seqLens(p.SeqLens, p.Q.Dim(1))
	}, func() error { return c.Backend.AttnFwd(p) }, func(s *scan) {
		s.finite("Out", p.Out)
		s.finite("LSE", p.LSE)
	})
}

// AttnBwd checks its inputs and SeqLens in [1, L] and runs the op.
func (c *Backend) AttnBwd(p *ops.AttnBwdParams) error {
	return c.run(ops.OpAttnBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("Q", p.Q)
		s.finite("K", p.K)
		s.finite("V", p.V)
		s.finite("Out", p.Out)
		s.finite("LSE", p.LSE)
		s.seqLens(p.SeqLens, p.Q.Dim(1))
	}, func() error { return c.Backend.AttnBwd(p) }, func(s *scan) {
		s.finite("DQ", p.DQ)
		s.finite("DK", p.DK)
		s.finite("DV", p.DV)
	})
}

// GLUFwd checks A and B and runs the op.
func (c *Backend) GLUFwd(p *ops.GLUParams) error {
	return c.run(ops.OpGLUFwd, p, func(s *scan) {
		s.finite("A", p.A)
		s.finite("B", p.B)
	}, func() error { return c.Backend.GLUFwd(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// GLUBwd checks DOut, A and B and runs the op.
func (c *Backend) GLUBwd(p *ops.GLUBwdParams) error {
	return c.run(ops.OpGLUBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("A", p.A)
		s.finite("B", p.B)
	}, func() error { return c.Backend.GLUBwd(p) }, func(s *scan) {
		s.finite("DA", p.DA)
		s.finite("DB", p.DB)
	})
}

// ActFwd checks X and runs the op.
func (c *Backend) ActFwd(p *ops.ActParams) error {
	return c.run(ops.OpActFwd, p, func(s *scan) { s.finite("X", p.X) },
		func() error { return c.Backend.ActFwd(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// ActBwd checks DOut and X and runs the op.
func (c *Backend) ActBwd(p *ops.ActBwdParams) error {
	return c.run(ops.OpActBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("X", p.X)
	}, func() error { return c.Backend.ActBwd(p) }, func(s *scan) { s.finite("DX", p.DX) })
}

// BiasAdd checks Out (added to in place) and Bias and runs the op.
func (c *Backend) BiasAdd(p *ops.BiasAddParams) error {
	return c.run(ops.OpBiasAdd, p, func(s *scan) {
		s.finite("Out", p.Out)
		s.finite("Bias", p.Bias)
	}, func() error { return c.Backend.BiasAdd(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// BiasGrad checks DOut and the accumulator DBias and runs the op.
func (c *Backend) BiasGrad(p *ops.BiasGradParams) error {
	return c.run(ops.OpBiasGrad, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("DBias", p.DBias)
	}, func() error { return c.Backend.BiasGrad(p) }, func(s *scan) { s.finite("DBias", p.DBias) })
}

// GateResidualFwd checks X, Y and Gate and runs the op.
func (c *Backend) GateResidualFwd(p *ops.GateResidualParams) error {
	return c.run(ops.OpGateResidualFwd, p, func(s *scan) {
		s.finite("X", p.X)
		s.finite("Y", p.Y)
		s.finite("Gate", p.Gate)
	}, func() error { return c.Backend.GateResidualFwd(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// GateResidualBwd checks DOut, Y and Gate and runs the op.
func (c *Backend) GateResidualBwd(p *ops.GateResidualBwdParams) error {
	return c.run(ops.OpGateResidualBwd, p, func(s *scan) {
		s.finite("DOut", p.DOut)
		s.finite("Y", p.Y)
		s.finite("Gate", p.Gate)
	}, func() error { return c.Backend.GateResidualBwd(p) }, func(s *scan) {
		s.finite("DY", p.DY)
		s.finite("DGate", p.DGate)
	})
}

// CopyCols checks the copied columns of Src (and of Dst when accumulating) and runs the
// op.
func (c *Backend) CopyCols(p *ops.CopyColsParams) error {
	return c.run(ops.OpCopyCols, p, func(s *scan) {
		s.finiteCols("Src", p.Src, p.SrcOff, p.Width)
		if p.Accumulate {
			s.finiteCols("Dst", p.Dst, p.DstOff, p.Width)
		}
	}, func() error { return c.Backend.CopyCols(p) }, func(s *scan) { s.finiteCols("Dst", p.Dst, p.DstOff, p.Width) })
}

// GatherRows checks In and that Rows are in [0, N) and runs the op.
func (c *Backend) GatherRows(p *ops.GatherRowsParams) error {
	return c.run(ops.OpGatherRows, p, func(s *scan) {
		s.finite("In", p.In)
		s.inRange("Rows", p.Rows, 0, p.In.Dim(0), fmt.Sprintf(" (In has %d rows)", p.In.Dim(0)))
	}, func() error { return c.Backend.GatherRows(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// ScatterRows checks In (and Out when accumulating) and that Rows are distinct and in
// [0, N), and runs the op.
func (c *Backend) ScatterRows(p *ops.ScatterRowsParams) error {
	return c.run(ops.OpScatterRows, p, func(s *scan) {
		s.finite("In", p.In)
		if p.Accumulate {
			s.finite("Out", p.Out)
		}
		rows := s.inRange("Rows", p.Rows, 0, p.Out.Dim(0), fmt.Sprintf(" (Out has %d rows)", p.Out.Dim(0)))
		s.distinct("Rows", p.Rows, rows)
	}, func() error { return c.Backend.ScatterRows(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// MaskedCE checks Logits and Weights and that Targets are in [0, V), and runs the op.
func (c *Backend) MaskedCE(p *ops.MaskedCEParams) error {
	return c.run(ops.OpMaskedCE, p, func(s *scan) {
		s.finite("Logits", p.Logits)
		s.finite("Weights", p.Weights)
		v := p.Logits.Dim(1)
		s.inRange("Targets", p.Targets, 0, v, fmt.Sprintf(" (V = %d; a target is never the mask id or a padding column)", v))
	}, func() error { return c.Backend.MaskedCE(p) }, func(s *scan) {
		s.finite("Loss", p.Loss)
		s.finite("DLogits", p.DLogits)
	})
}

// MaskTokens checks that X0 holds clean tokens in [0, MaskID), MaskProb probabilities
// and SeqLens in [1, L], and runs the op.
func (c *Backend) MaskTokens(p *ops.MaskParams) error {
	return c.run(ops.OpMaskTokens, p, func(s *scan) {
		for k, x := range s.ints("X0", p.X0) {
			if x == p.MaskID {
				s.fail("X0", ops.ErrValue, "%d at %s is the mask id; x0 must hold clean tokens in [0, %d)", x, index(p.X0.Shape(), k), p.MaskID)
				break
			}
			if x < 0 || x > p.MaskID {
				s.fail("X0", ops.ErrValue, "%d at %s is not in [0, %d)", x, index(p.X0.Shape(), k), p.MaskID)
				break
			}
		}
		s.prob("MaskProb", p.MaskProb, "a masking probability")
		s.seqLens(p.SeqLens, p.X0.Dim(1))
	}, func() error { return c.Backend.MaskTokens(p) }, nil)
}

// SampleStep checks Z in [0, MaskID], that Rows are in [0, B·L), distinct and masked in
// Z, and that Logits hold no NaN or +Inf and at least one finite value per row (−Inf
// marks a suppressed token), and runs the op.
func (c *Backend) SampleStep(p *ops.SampleParams) error {
	return c.run(ops.OpSampleStep, p, func(s *scan) {
		z := s.ints("Z", p.Z)
		for k, x := range z {
			if x < 0 || x > p.MaskID {
				s.fail("Z", ops.ErrValue, "%d at %s is neither a token in [0, %d) nor the mask id %d", x, index(p.Z.Shape(), k), p.MaskID, p.MaskID)
				return
			}
		}
		rows := s.inRange("Rows", p.Rows, 0, p.Z.Len(), fmt.Sprintf(" (Z has B·L = %d positions)", p.Z.Len()))
		s.distinct("Rows", p.Rows, rows)
		for k, r := range rows {
			if s.err == nil && z[r] != p.MaskID {
				s.fail("Rows", ops.ErrValue, "position %d (Rows%s) holds token %d in Z, not the mask id %d; only masked positions may be sampled",
					r, index(p.Rows.Shape(), k), z[r], p.MaskID)
			}
		}
		if p.ClassUnmask != nil {
			s.prob("ClassUnmask", p.ClassUnmask, "a per-class unmask probability")
		}
		v := s.floats("Logits", p.Logits)
		cols := p.Logits.Dim(1)
		for i := 0; v != nil && i < p.Logits.Dim(0) && s.err == nil; i++ {
			finite := false
			for j, x := range v[i*cols : (i+1)*cols] {
				if math.IsNaN(x) || math.IsInf(x, 1) {
					s.nonFinite("Logits", p.Logits, i*cols+j, x)
					break
				}
				finite = finite || !math.IsInf(x, -1)
			}
			if s.err == nil && !finite {
				s.fail("Logits", ops.ErrNonFinite, "row %d is −Inf everywhere: no token can be drawn", i)
			}
		}
	}, func() error { return c.Backend.SampleStep(p) }, nil)
}

// AdamW checks Param, Grad, M, V (≥ 0) and EMA and runs the op.
func (c *Backend) AdamW(p *ops.AdamWParams) error {
	return c.run(ops.OpAdamW, p, func(s *scan) {
		s.finite("Param", p.Param)
		s.finite("Grad", p.Grad)
		s.finite("M", p.M)
		for k, x := range s.floats("V", p.V) {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				s.nonFinite("V", p.V, k, x)
				break
			}
			if x < 0 {
				s.fail("V", ops.ErrValue, "%s at %s is negative; second moments are ≥ 0", val(p.V, x), index(p.V.Shape(), k))
				break
			}
		}
		s.finite("EMA", p.EMA)
	}, func() error { return c.Backend.AdamW(p) }, func(s *scan) {
		s.finite("Param", p.Param)
		s.finite("M", p.M)
		s.finite("V", p.V)
		s.finite("EMA", p.EMA)
		s.finite("Shadow", p.Shadow)
	})
}

// SumSquares checks X and the accumulator Out and runs the op.
func (c *Backend) SumSquares(p *ops.SumSquaresParams) error {
	return c.run(ops.OpSumSquares, p, func(s *scan) {
		s.finite("X", p.X)
		s.finite("Out", p.Out)
	}, func() error { return c.Backend.SumSquares(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// Axpy checks X (if given) and Y (when Beta ≠ 0) and runs the op.
func (c *Backend) Axpy(p *ops.AxpyParams) error {
	return c.run(ops.OpAxpy, p, func(s *scan) {
		s.finite("X", p.X)
		if p.Beta != 0 {
			s.finite("Y", p.Y)
		}
	}, func() error { return c.Backend.Axpy(p) }, func(s *scan) { s.finite("Y", p.Y) })
}

// Convert checks In and runs the op. (The op itself keeps NaN as NaN; in a training
// run a NaN reaching a conversion is a bug, so the wrapper reports it.)
func (c *Backend) Convert(p *ops.ConvertParams) error {
	return c.run(ops.OpConvert, p, func(s *scan) { s.finite("In", p.In) },
		func() error { return c.Backend.Convert(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// TimeEmbed checks that T holds times in [0, 1] and runs the op.
func (c *Backend) TimeEmbed(p *ops.TimeEmbedParams) error {
	return c.run(ops.OpTimeEmbed, p, func(s *scan) { s.prob("T", p.T, "a time") },
		func() error { return c.Backend.TimeEmbed(p) }, func(s *scan) { s.finite("Out", p.Out) })
}

// GenMaskedCE checks Logits, Scales, Powers (finite and > 0), the accumulator DPowers and
// that Targets are in [0, V), and runs the op.
func (c *Backend) GenMaskedCE(p *ops.GenMaskedCEParams) error {
	return c.run(ops.OpGenMaskedCE, p, func(s *scan) {
		s.finite("Logits", p.Logits)
		s.finite("Scales", p.Scales)
		for k, x := range s.floats("Powers", p.Powers) {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				s.nonFinite("Powers", p.Powers, k, x)
				break
			}
			if !(x > 0) {
				s.fail("Powers", ops.ErrValue, "%s at %s is not a schedule power > 0", val(p.Powers, x), index(p.Powers.Shape(), k))
				break
			}
		}
		s.finite("DPowers", p.DPowers)
		v := p.Logits.Dim(1)
		s.inRange("Targets", p.Targets, 0, v, fmt.Sprintf(" (V = %d; a target is never the mask id or a padding column)", v))
	}, func() error { return c.Backend.GenMaskedCE(p) }, func(s *scan) {
		s.finite("Loss", p.Loss)
		s.finite("DLogits", p.DLogits)
		s.finite("DPowers", p.DPowers)
	})
}
