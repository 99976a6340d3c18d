package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// A gradient case: a forward computation of differentiable float inputs and the
// backend's backward for the probe loss Σ R ⊙ forward(inputs).
type gradCase struct {
	name   string
	inputs []gradInput
	// fwd returns the forward outputs, flattened.
	fwd func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64
	// bwd returns d(Σ R ⊙ fwd)/d input for each input (nil where not checked).
	bwd func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, r []float64) [][]float64
}

type gradInput struct {
	data  []float64
	shape []int
}

func (c *gradCase) tensors(t testing.TB, b *Backend, dt ops.DType, data [][]float64) []*ops.Tensor {
	out := make([]*ops.Tensor, len(c.inputs))
	for i, in := range c.inputs {
		out[i] = mk(t, b, dt, data[i], in.shape...)
	}
	return out
}

// checkGrad compares the float64 backward with central finite differences of the float64
// forward, then the float32 backward with the float64 backward.
func checkGrad(t *testing.T, c gradCase) {
	t.Helper()
	b := testBackend(2)
	r := newRand(uint64(len(c.name)) * 977)
	data := make([][]float64, len(c.inputs))
	for i, in := range c.inputs {
		data[i] = roundTo(ops.F32, in.data) // representable in both dtypes
	}
	out := c.fwd(t, b, ops.F64, c.tensors(t, b, ops.F64, data))
	probe := roundTo(ops.F32, randVec(r, len(out), 1))
	loss := func(d [][]float64) float64 {
		o := c.fwd(t, b, ops.F64, c.tensors(t, b, ops.F64, d))
		s := 0.0
		for i := range o {
			s += probe[i] * o[i]
		}
		return s
	}
	g64 := c.bwd(t, b, ops.F64, c.tensors(t, b, ops.F64, data), probe)
	const h = 1e-5
	for i := range c.inputs {
		if g64[i] == nil {
			continue
		}
		fd := make([]float64, len(data[i]))
		for k := range data[i] {
			x := data[i][k]
			data[i][k] = x + h
			lp := loss(data)
			data[i][k] = x - h
			lm := loss(data)
			data[i][k] = x
			fd[k] = (lp - lm) / (2 * h)
		}
		scale := maxAbs(fd)
		closeTo(t, fmt.Sprintf("%s: input %d: f64 backward vs finite differences", c.name, i), g64[i], fd, tol{1e-6, 1e-6 * scale})
	}
	g32 := c.bwd(t, b, ops.F32, c.tensors(t, b, ops.F32, data), probe)
	for i := range c.inputs {
		if g64[i] == nil {
			continue
		}
		closeTo(t, fmt.Sprintf("%s: input %d: f32 backward vs f64 backward", c.name, i), g32[i], g64[i], tol{1e-4, 1e-4*maxAbs(g64[i]) + 1e-6})
	}
}

func TestGradEmbed(t *testing.T) {
	r := newRand(21)
	ids := []int32{0, 5, 3, 3, 1, 4, 2, 5, 0, 0, 1, 2, 3, 3}
	checkGrad(t, gradCase{
		name:   "EmbedBwd",
		inputs: []gradInput{{randVec(r, (tV+1)*tD, 1), []int{tV + 1, tD}}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := zeros(t, b, dt, tN, tD)
			must(t, b.EmbedFwd(&ops.EmbedParams{Out: out, Table: in[0], IDs: mkI(t, b, ids, tN)}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			dtab := zeros(t, b, dt, tV+1, tD)
			must(t, b.EmbedBwd(&ops.EmbedBwdParams{DTable: dtab, DOut: mk(t, b, dt, rr, tN, tD), IDs: mkI(t, b, ids, tN)}))
			return [][]float64{get(t, b, dtab)}
		},
	})
}

func TestGradNorm(t *testing.T) {
	for _, v := range normVariants {
		r := newRand(22)
		x := randVec(r, tN*tD, 2)
		for i := range x {
			x[i] += 0.3
		}
		inputs := []gradInput{{x, []int{tN, tD}}}
		wIdx, shIdx, scIdx := -1, -1, -1
		if v.weight {
			wIdx = len(inputs)
			inputs = append(inputs, gradInput{randVec(r, tD, 1.5), []int{tD}})
		}
		if v.mod {
			shIdx = len(inputs)
			inputs = append(inputs, gradInput{randVec(r, tB*tD, 1), []int{tB, tD}})
			scIdx = len(inputs)
			inputs = append(inputs, gradInput{randVec(r, tB*tD, 1), []int{tB, tD}})
		}
		kind := ops.LayerNorm
		if v.rms {
			kind = ops.RMSNorm
		}
		fwdP := func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) *ops.NormParams {
			p := &ops.NormParams{Kind: kind, Eps: 1e-5, X: in[0], Out: zeros(t, b, dt, tN, tD), Rstd: zeros(t, b, dt, tN)}
			if !v.rms {
				p.Mean = zeros(t, b, dt, tN)
			}
			if wIdx >= 0 {
				p.Weight = in[wIdx]
			}
			if v.mod {
				p.Shift, p.Scale, p.RowsPerGroup = in[shIdx], in[scIdx], tL
			}
			must(t, b.NormFwd(p))
			return p
		}
		checkGrad(t, gradCase{
			name:   "NormBwd/" + v.name,
			inputs: inputs,
			fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
				return get(t, b, fwdP(t, b, dt, in).Out)
			},
			bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
				f := fwdP(t, b, dt, in)
				p := &ops.NormBwdParams{Kind: kind, DX: zeros(t, b, dt, tN, tD), DOut: mk(t, b, dt, rr, tN, tD), X: in[0],
					Mean: f.Mean, Rstd: f.Rstd, Weight: f.Weight, Scale: f.Scale, RowsPerGroup: f.RowsPerGroup}
				// DWeight accumulates: start from a known value and subtract it.
				const w0 = 0.75
				if f.Weight != nil {
					p.DWeight = mk(t, b, dt, fill(tD, w0), tD)
				}
				if f.Scale != nil {
					p.DShift, p.DScale = mk(t, b, dt, fill(tB*tD, math.NaN()), tB, tD), mk(t, b, dt, fill(tB*tD, math.NaN()), tB, tD)
				}
				must(t, b.NormBwd(p))
				g := make([][]float64, len(inputs))
				g[0] = get(t, b, p.DX)
				if wIdx >= 0 {
					g[wIdx] = get(t, b, p.DWeight)
					for i := range g[wIdx] {
						g[wIdx][i] -= w0
					}
				}
				if v.mod {
					g[shIdx], g[scIdx] = get(t, b, p.DShift), get(t, b, p.DScale)
				}
				return g
			},
		})
	}
}

func fill(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestGradRoPE(t *testing.T) {
	r := newRand(23)
	checkGrad(t, gradCase{
		name:   "RoPE inverse",
		inputs: []gradInput{{randVec(r, tN*tD, 1), []int{tB, tL, tH, tDh}}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := zeros(t, b, dt, tB, tL, tH, tDh)
			must(t, b.RoPE(&ops.RoPEParams{Out: out, X: in[0], Theta: 10000}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			d := mk(t, b, dt, rr, tB, tL, tH, tDh)
			must(t, b.RoPE(&ops.RoPEParams{Out: d, X: d, Theta: 10000, Inverse: true}))
			return [][]float64{get(t, b, d)}
		},
	})
}

func attnGradCase(name string, lens []int32) gradCase {
	r := newRand(24)
	sh := []int{tB, tL, tH, tDh}
	n := tN * tD
	run := func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) *ops.AttnParams {
		p := &ops.AttnParams{Q: in[0], K: in[1], V: in[2], Out: zeros(t, b, dt, sh...), LSE: zeros(t, b, dt, tB, tH, tL), Scale: 0.5}
		if lens != nil {
			p.SeqLens = mkI(t, b, lens, tB)
		}
		must(t, b.AttnFwd(p))
		return p
	}
	return gradCase{
		name:   name,
		inputs: []gradInput{{randVec(r, n, 1.5), sh}, {randVec(r, n, 1.5), sh}, {randVec(r, n, 1), sh}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			return get(t, b, run(t, b, dt, in).Out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			f := run(t, b, dt, in)
			nan := fill(n, math.NaN()) // outputs are overwritten
			p := &ops.AttnBwdParams{DQ: mk(t, b, dt, nan, sh...), DK: mk(t, b, dt, nan, sh...), DV: mk(t, b, dt, nan, sh...),
				DOut: mk(t, b, dt, rr, sh...), Q: in[0], K: in[1], V: in[2], Out: f.Out, LSE: f.LSE, SeqLens: f.SeqLens, Scale: 0.5}
			must(t, b.AttnBwd(p))
			return [][]float64{get(t, b, p.DQ), get(t, b, p.DK), get(t, b, p.DV)}
		},
	}
}

func TestGradAttn(t *testing.T) {
	checkGrad(t, attnGradCase("AttnBwd", nil))
	checkGrad(t, attnGradCase("AttnBwd/SeqLens", []int32{4, 7}))
}

// TestAttnPadding checks that padded keys get exactly zero DK and DV and that their
// contents have no influence on any output.
func TestAttnPadding(t *testing.T) {
	for _, dc := range fwdTypes {
		b := testBackend(3)
		c := attnGradCase("pad", []int32{4, 7})
		data := [][]float64{roundTo(dc.dt, c.inputs[0].data), roundTo(dc.dt, c.inputs[1].data), roundTo(dc.dt, c.inputs[2].data)}
		rr := roundTo(dc.dt, randVec(newRand(5), tN*tD, 1))
		g := c.bwd(t, b, dc.dt, c.tensors(t, b, dc.dt, data), rr)
		out := c.fwd(t, b, dc.dt, c.tensors(t, b, dc.dt, data))
		for pos := 4; pos < tL; pos++ { // padded keys of sequence 0
			for i := pos * tD; i < (pos+1)*tD; i++ {
				if g[1][i] != 0 || g[2][i] != 0 {
					t.Fatalf("%v: padded key at position %d: got DK %v, DV %v, want exactly 0", dc.dt, pos, g[1][i], g[2][i])
				}
			}
		}
		// Garbage (huge values) in the padded keys and values changes nothing.
		for pos := 4; pos < tL; pos++ {
			for i := pos * tD; i < (pos+1)*tD; i++ {
				data[1][i], data[2][i] = 1e4, -1e4
			}
		}
		out2 := c.fwd(t, b, dc.dt, c.tensors(t, b, dc.dt, data))
		g2 := c.bwd(t, b, dc.dt, c.tensors(t, b, dc.dt, data), rr)
		closeTo(t, dc.dt.String()+" Out with padded garbage", out2, out, tol{})
		for k := range g {
			closeTo(t, fmt.Sprintf("%v grad %d with padded garbage", dc.dt, k), g2[k], g[k], tol{})
		}
	}
}

func TestGradGLUAndAct(t *testing.T) {
	for _, ac := range acts {
		r := newRand(25)
		sh := []int{tN, tHm}
		checkGrad(t, gradCase{
			name:   "GLUBwd/" + ac.a.String(),
			inputs: []gradInput{{randVec(r, tN*tHm, 3), sh}, {randVec(r, tN*tHm, 2), sh}},
			fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
				out := zeros(t, b, dt, sh...)
				must(t, b.GLUFwd(&ops.GLUParams{Act: ac.a, Out: out, A: in[0], B: in[1]}))
				return get(t, b, out)
			},
			bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
				da, db := zeros(t, b, dt, sh...), zeros(t, b, dt, sh...)
				must(t, b.GLUBwd(&ops.GLUBwdParams{Act: ac.a, DA: da, DB: db, DOut: mk(t, b, dt, rr, sh...), A: in[0], B: in[1]}))
				return [][]float64{get(t, b, da), get(t, b, db)}
			},
		})
		checkGrad(t, gradCase{
			name:   "ActBwd/" + ac.a.String(),
			inputs: []gradInput{{randVec(r, 3*5*7, 4), []int{3, 5, 7}}},
			fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
				out := zeros(t, b, dt, 3, 5, 7)
				must(t, b.ActFwd(&ops.ActParams{Act: ac.a, Out: out, X: in[0]}))
				return get(t, b, out)
			},
			bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
				dx := zeros(t, b, dt, 3, 5, 7)
				must(t, b.ActBwd(&ops.ActBwdParams{Act: ac.a, DX: dx, DOut: mk(t, b, dt, rr, 3, 5, 7), X: in[0]}))
				return [][]float64{get(t, b, dx)}
			},
		})
	}
}

func TestGradBias(t *testing.T) {
	r := newRand(26)
	checkGrad(t, gradCase{
		name:   "BiasGrad",
		inputs: []gradInput{{randVec(r, tN*tD, 1), []int{tN, tD}}, {randVec(r, tD, 1), []int{tD}}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := mk(t, b, dt, get(t, b, in[0]), tN, tD)
			must(t, b.BiasAdd(&ops.BiasAddParams{Out: out, Bias: in[1]}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			db := zeros(t, b, dt, tD)
			must(t, b.BiasGrad(&ops.BiasGradParams{DBias: db, DOut: mk(t, b, dt, rr, tN, tD)}))
			return [][]float64{rr, get(t, b, db)}
		},
	})
}

func TestGradGateResidual(t *testing.T) {
	for _, gated := range []bool{true, false} {
		r := newRand(27)
		inputs := []gradInput{{randVec(r, tN*tD, 1), []int{tN, tD}}, {randVec(r, tN*tD, 1), []int{tN, tD}}}
		if gated {
			inputs = append(inputs, gradInput{randVec(r, tB*tD, 1), []int{tB, tD}})
		}
		checkGrad(t, gradCase{
			name:   fmt.Sprintf("GateResidualBwd/gate=%v", gated),
			inputs: inputs,
			fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
				out := zeros(t, b, dt, tN, tD)
				p := &ops.GateResidualParams{Out: out, X: in[0], Y: in[1]}
				if gated {
					p.Gate, p.RowsPerGroup = in[2], tL
				}
				must(t, b.GateResidualFwd(p))
				return get(t, b, out)
			},
			bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
				p := &ops.GateResidualBwdParams{DY: zeros(t, b, dt, tN, tD), DOut: mk(t, b, dt, rr, tN, tD), Y: in[1]}
				if gated {
					p.Gate, p.DGate, p.RowsPerGroup = in[2], mk(t, b, dt, fill(tB*tD, math.NaN()), tB, tD), tL
				}
				must(t, b.GateResidualBwd(p))
				g := [][]float64{roundTo(dt, rr), get(t, b, p.DY)}
				if gated {
					g = append(g, get(t, b, p.DGate))
				}
				return g
			},
		})
	}
}

func TestGradCopyCols(t *testing.T) {
	r := newRand(28)
	const w = 7
	checkGrad(t, gradCase{
		name:   "CopyCols accumulate",
		inputs: []gradInput{{randVec(r, tB*6*tD, 1), []int{tB, 6 * tD}}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := zeros(t, b, dt, tB, tD)
			must(t, b.CopyCols(&ops.CopyColsParams{Dst: out, Src: in[0], DstOff: 2, SrcOff: 3 * tD, Width: w}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			d := zeros(t, b, dt, tB, 6*tD)
			// Two accumulations of the same gradient, then half of it back out via Axpy.
			for range 2 {
				must(t, b.CopyCols(&ops.CopyColsParams{Dst: d, Src: mk(t, b, dt, rr, tB, tD), DstOff: 3 * tD, SrcOff: 2, Width: w, Accumulate: true}))
			}
			must(t, b.Axpy(&ops.AxpyParams{Y: d, Beta: 0.5}))
			return [][]float64{get(t, b, d)}
		},
	})
}

func TestGradGatherScatter(t *testing.T) {
	r := newRand(29)
	rows := []int32{13, 0, 5, 6, 2}
	checkGrad(t, gradCase{
		name:   "ScatterRows",
		inputs: []gradInput{{randVec(r, tN*tD, 1), []int{tN, tD}}},
		fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
			out := zeros(t, b, dt, len(rows), tD)
			must(t, b.GatherRows(&ops.GatherRowsParams{Out: out, In: in[0], Rows: mkI(t, b, rows, len(rows))}))
			return get(t, b, out)
		},
		bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
			d := zeros(t, b, dt, tN, tD)
			must(t, b.ScatterRows(&ops.ScatterRowsParams{Out: d, In: mk(t, b, dt, rr, len(rows), tD), Rows: mkI(t, b, rows, len(rows)), Accumulate: true}))
			return [][]float64{get(t, b, d)}
		},
	})
}

func TestGradMaskedCE(t *testing.T) {
	for _, v := range []int{tV, 2} {
		r := newRand(30)
		const rows = 9
		targets := make([]int32, rows)
		weights := make([]float64, rows)
		for i := range targets {
			targets[i] = int32(r.IntN(v))
			weights[i] = r.Float64()*2 + 0.1
		}
		run := func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, withGrad bool) *ops.MaskedCEParams {
			p := &ops.MaskedCEParams{Logits: in[0], Targets: mkI(t, b, targets, rows), Weights: mk(t, b, ops.F64, weights, rows),
				Loss: zeros(t, b, ops.F64, rows)}
			if withGrad {
				p.DLogits = zeros(t, b, dt, rows, v)
			}
			must(t, b.MaskedCE(p))
			return p
		}
		checkGrad(t, gradCase{
			name:   fmt.Sprintf("MaskedCE/V=%d", v),
			inputs: []gradInput{{randVec(r, rows*v, 4), []int{rows, v}}},
			fwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor) []float64 {
				return get(t, b, run(t, b, dt, in, false).Loss)
			},
			bwd: func(t testing.TB, b *Backend, dt ops.DType, in []*ops.Tensor, rr []float64) [][]float64 {
				d := get(t, b, run(t, b, dt, in, true).DLogits)
				for i := range d {
					d[i] *= rr[i/v]
				}
				return [][]float64{d}
			},
		})
	}
}
