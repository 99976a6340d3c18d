package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// The tiny odd shapes of the forward tests: B=2, L=7, H=3, Dh=4 (D=12), V=5, Hm=10.
const (
	tB  = 2
	tL  = 7
	tH  = 3
	tDh = 4
	tD  = tH * tDh
	tN  = tB * tL
	tV  = 5
	tHm = 10
)

func TestMatMulForward(t *testing.T) {
	r := newRand(1)
	for _, dc := range fwdTypes {
		for _, sh := range [][3]int{{7, 5, 3}, {1, 1, 1}, {13, 1, 9}, {3, 70, 65}} {
			for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				for _, ab := range [][2]float64{{1, 0}, {0.5, 0.25}, {-2, 1}, {0, 0}} {
					m, n, k := sh[0], sh[1], sh[2]
					name := fmt.Sprintf("%v/m=%d,n=%d,k=%d,tA=%v,tB=%v,alpha=%v,beta=%v", dc.dt, m, n, k, tr[0], tr[1], ab[0], ab[1])
					t.Run(name, func(t *testing.T) {
						b := testBackend(2)
						ar, ac := m, k
						if tr[0] {
							ar, ac = k, m
						}
						br, bc := k, n
						if tr[1] {
							br, bc = n, k
						}
						a := roundTo(dc.dt, randVec(r, ar*ac, 1))
						bb := roundTo(dc.dt, randVec(r, br*bc, 1))
						o := roundTo(dc.dt, randVec(r, m*n, 1))
						if ab[1] == 0 {
							for i := range o {
								o[i] = math.NaN() // Beta = 0 must not read Out
							}
						}
						A, B, O := mk(t, b, dc.dt, a, ar, ac), mk(t, b, dc.dt, bb, br, bc), mk(t, b, dc.dt, o, m, n)
						must(t, b.MatMul(&ops.MatMulParams{Out: O, A: A, B: B, TransA: tr[0], TransB: tr[1], Alpha: float32(ab[0]), Beta: float32(ab[1])}))
						want := refMatMul(a, ar, ac, bb, br, bc, tr[0], tr[1], ab[0], ab[1], o)
						closeTo(t, "Out", get(t, b, O), want, tol{dc.tol.rtol, dc.tol.atol * float64(k)})
					})
				}
			}
		}
	}
}

func TestEmbedForward(t *testing.T) {
	r := newRand(2)
	ids := []int32{0, 5, 3, 3, 1, 4, 2, 5, 0, 0, 1, 2, 3, 4}
	for _, dc := range fwdTypes {
		b := testBackend(3)
		table := roundTo(dc.dt, randVec(r, (tV+1)*tD, 1))
		out := zeros(t, b, dc.dt, tN, tD)
		must(t, b.EmbedFwd(&ops.EmbedParams{Out: out, Table: mk(t, b, dc.dt, table, tV+1, tD), IDs: mkI(t, b, ids, tN)}))
		closeTo(t, dc.dt.String()+" Out", get(t, b, out), refEmbed(table, tD, ids), tol{})
	}
}

func TestEmbedBwdForward(t *testing.T) {
	r := newRand(3)
	ids := []int32{0, 5, 3, 3, 1, 4, 2, 5, 0, 0, 1, 2, 3, 3}
	for _, dc := range fwdTypes {
		b := testBackend(2)
		d0 := roundTo(dc.dt, randVec(r, (tV+1)*tD, 1))
		dout := roundTo(dc.dt, randVec(r, tN*tD, 1))
		dt := mk(t, b, dc.dt, d0, tV+1, tD)
		must(t, b.EmbedBwd(&ops.EmbedBwdParams{DTable: dt, DOut: mk(t, b, dc.dt, dout, tN, tD), IDs: mkI(t, b, ids, tN)}))
		want := append([]float64(nil), d0...)
		for n, id := range ids {
			for c := 0; c < tD; c++ {
				want[int(id)*tD+c] += dout[n*tD+c]
			}
		}
		closeTo(t, dc.dt.String()+" DTable", get(t, b, dt), want, dc.tol)
	}
}

type normVariant struct {
	name             string
	rms, weight, mod bool
}

var normVariants = []normVariant{
	{"layernorm", false, false, false},
	{"layernorm+mod", false, false, true},
	{"rmsnorm", true, false, false},
	{"rmsnorm+weight", true, true, false},
	{"rmsnorm+weight+mod", true, true, true},
	{"rmsnorm+mod", true, false, true},
}

func TestNormForward(t *testing.T) {
	r := newRand(4)
	for _, dc := range fwdTypes {
		for _, v := range normVariants {
			for _, sh := range [][2]int{{tB, tL}, {1, 1}, {3, 1}} {
				bs, l := sh[0], sh[1]
				n := bs * l
				t.Run(fmt.Sprintf("%v/%s/B=%d,L=%d", dc.dt, v.name, bs, l), func(t *testing.T) {
					b := testBackend(2)
					x := roundTo(dc.dt, randVec(r, n*tD, 2))
					for i := range x {
						x[i] += 0.5 // a mean away from 0
					}
					x = roundTo(dc.dt, x)
					p := &ops.NormParams{Kind: ops.LayerNorm, Eps: 1e-5, X: mk(t, b, dc.dt, x, n, tD), Out: zeros(t, b, dc.dt, n, tD),
						Rstd: zeros(t, b, dc.dt, n)}
					var w, sh, sc []float64
					if v.rms {
						p.Kind = ops.RMSNorm
					} else {
						p.Mean = zeros(t, b, dc.dt, n)
					}
					if v.weight {
						w = roundTo(dc.dt, randVec(r, tD, 1.5))
						p.Weight = mk(t, b, dc.dt, w, tD)
					}
					if v.mod {
						sh, sc = roundTo(dc.dt, randVec(r, bs*tD, 1)), roundTo(dc.dt, randVec(r, bs*tD, 1))
						p.Shift, p.Scale, p.RowsPerGroup = mk(t, b, dc.dt, sh, bs, tD), mk(t, b, dc.dt, sc, bs, tD), l
					}
					must(t, b.NormFwd(p))
					out, mean, rstd := refNorm(v.rms, float64(float32(1e-5)), x, n, tD, w, sh, sc, l)
					closeTo(t, "Out", get(t, b, p.Out), out, dc.tol)
					closeTo(t, "Rstd", get(t, b, p.Rstd), rstd, dc.tol)
					if !v.rms {
						closeTo(t, "Mean", get(t, b, p.Mean), mean, dc.tol)
					}
				})
			}
		}
	}
}

func TestRoPEForward(t *testing.T) {
	r := newRand(5)
	for _, dc := range fwdTypes {
		for _, l := range []int{tL, 1} {
			for _, inv := range []bool{false, true} {
				for _, inPlace := range []bool{false, true} {
					t.Run(fmt.Sprintf("%v/L=%d,inverse=%v,inplace=%v", dc.dt, l, inv, inPlace), func(t *testing.T) {
						b := testBackend(3)
						x := roundTo(dc.dt, randVec(r, tB*l*tD, 1))
						X := mk(t, b, dc.dt, x, tB, l, tH, tDh)
						Out := X
						if !inPlace {
							Out = zeros(t, b, dc.dt, tB, l, tH, tDh)
						}
						must(t, b.RoPE(&ops.RoPEParams{Out: Out, X: X, Theta: 10000, Inverse: inv}))
						closeTo(t, "Out", get(t, b, Out), refRoPE(x, tB, l, tH, tDh, 10000, inv), dc.tol)
					})
				}
			}
		}
	}
}

func TestAttnForward(t *testing.T) {
	r := newRand(6)
	for _, dc := range fwdTypes {
		for _, c := range []struct {
			l    int
			lens []int32
		}{{tL, nil}, {tL, []int32{7, 3}}, {tL, []int32{1, 6}}, {1, nil}, {1, []int32{1, 1}}} {
			t.Run(fmt.Sprintf("%v/L=%d,SeqLens=%v", dc.dt, c.l, c.lens), func(t *testing.T) {
				b := testBackend(2)
				n := tB * c.l * tD
				q, k, v := roundTo(dc.dt, randVec(r, n, 1.5)), roundTo(dc.dt, randVec(r, n, 1.5)), roundTo(dc.dt, randVec(r, n, 1))
				sh := []int{tB, c.l, tH, tDh}
				p := &ops.AttnParams{Q: mk(t, b, dc.dt, q, sh...), K: mk(t, b, dc.dt, k, sh...), V: mk(t, b, dc.dt, v, sh...),
					Out: zeros(t, b, dc.dt, sh...), LSE: zeros(t, b, dc.dt, tB, tH, c.l), Scale: 0.5}
				if c.lens != nil {
					p.SeqLens = mkI(t, b, c.lens, tB)
				}
				must(t, b.AttnFwd(p))
				out, lse := refAttn(q, k, v, tB, c.l, tH, tDh, 0.5, c.lens)
				closeTo(t, "Out", get(t, b, p.Out), out, dc.tol)
				closeTo(t, "LSE", get(t, b, p.LSE), lse, dc.tol)
			})
		}
	}
}

var acts = []struct {
	a    ops.Activation
	kind int
}{{ops.Sigmoid, 1}, {ops.Swish, 2}, {ops.GELU, 3}}

func TestGLUAndActForward(t *testing.T) {
	r := newRand(7)
	for _, dc := range fwdTypes {
		for _, ac := range acts {
			t.Run(fmt.Sprintf("%v/%v", dc.dt, ac.a), func(t *testing.T) {
				b := testBackend(2)
				a, bb := roundTo(dc.dt, randVec(r, tN*tHm, 4)), roundTo(dc.dt, randVec(r, tN*tHm, 2))
				out := zeros(t, b, dc.dt, tN, tHm)
				must(t, b.GLUFwd(&ops.GLUParams{Act: ac.a, Out: out, A: mk(t, b, dc.dt, a, tN, tHm), B: mk(t, b, dc.dt, bb, tN, tHm)}))
				want := make([]float64, len(a))
				for i := range a {
					want[i] = refAct(ac.kind, a[i]) * bb[i]
				}
				closeTo(t, "GLU Out", get(t, b, out), want, dc.tol)

				// ActFwd in place on a 3-D shape.
				x := mk(t, b, dc.dt, a, 2, 7, 10)
				must(t, b.ActFwd(&ops.ActParams{Act: ac.a, Out: x, X: x}))
				for i := range a {
					want[i] = refAct(ac.kind, a[i])
				}
				closeTo(t, "Act Out", get(t, b, x), want, dc.tol)

				// GLUBwd and ActBwd against central differences of the reference activation.
				dout := roundTo(dc.dt, randVec(r, len(a), 1))
				da, db := zeros(t, b, dc.dt, tN, tHm), zeros(t, b, dc.dt, tN, tHm)
				A, B := mk(t, b, dc.dt, a, tN, tHm), mk(t, b, dc.dt, bb, tN, tHm)
				must(t, b.GLUBwd(&ops.GLUBwdParams{Act: ac.a, DA: da, DB: db, DOut: mk(t, b, dc.dt, dout, tN, tHm), A: A, B: B}))
				wantDA, wantDB, wantDX := make([]float64, len(a)), make([]float64, len(a)), make([]float64, len(a))
				for i := range a {
					h := 1e-6
					deriv := (refAct(ac.kind, a[i]+h) - refAct(ac.kind, a[i]-h)) / (2 * h)
					wantDA[i] = dout[i] * bb[i] * deriv
					wantDB[i] = dout[i] * refAct(ac.kind, a[i])
					wantDX[i] = dout[i] * deriv
				}
				fdTol := tol{max(dc.tol.rtol, 1e-8), max(dc.tol.atol, 1e-9)}
				closeTo(t, "GLUBwd DA", get(t, b, da), wantDA, fdTol)
				closeTo(t, "GLUBwd DB", get(t, b, db), wantDB, dc.tol)
				dx := zeros(t, b, dc.dt, tN, tHm)
				must(t, b.ActBwd(&ops.ActBwdParams{Act: ac.a, DX: dx, DOut: mk(t, b, dc.dt, dout, tN, tHm), X: A}))
				closeTo(t, "ActBwd DX", get(t, b, dx), wantDX, fdTol)
			})
		}
	}
}

func TestBiasForward(t *testing.T) {
	r := newRand(8)
	for _, dc := range fwdTypes {
		b := testBackend(3)
		x, bias := roundTo(dc.dt, randVec(r, tN*tD, 1)), roundTo(dc.dt, randVec(r, tD, 1))
		out := mk(t, b, dc.dt, x, tN, tD)
		must(t, b.BiasAdd(&ops.BiasAddParams{Out: out, Bias: mk(t, b, dc.dt, bias, tD)}))
		want := make([]float64, len(x))
		for i := range x {
			want[i] = x[i] + bias[i%tD]
		}
		closeTo(t, dc.dt.String()+" BiasAdd", get(t, b, out), want, dc.tol)

		d0 := roundTo(dc.dt, randVec(r, tD, 1))
		db := mk(t, b, dc.dt, d0, tD)
		must(t, b.BiasGrad(&ops.BiasGradParams{DBias: db, DOut: mk(t, b, dc.dt, x, tN, tD)}))
		wantG := append([]float64(nil), d0...)
		for i := range x {
			wantG[i%tD] += x[i]
		}
		closeTo(t, dc.dt.String()+" BiasGrad", get(t, b, db), wantG, dc.tol)
	}
}

func TestGateResidualForward(t *testing.T) {
	r := newRand(9)
	for _, dc := range fwdTypes {
		for _, gated := range []bool{true, false} {
			for _, inPlace := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/gate=%v,inplace=%v", dc.dt, gated, inPlace), func(t *testing.T) {
					b := testBackend(2)
					x, y, g := roundTo(dc.dt, randVec(r, tN*tD, 1)), roundTo(dc.dt, randVec(r, tN*tD, 1)), roundTo(dc.dt, randVec(r, tB*tD, 1))
					X := mk(t, b, dc.dt, x, tN, tD)
					out := X
					if !inPlace {
						out = zeros(t, b, dc.dt, tN, tD)
					}
					p := &ops.GateResidualParams{Out: out, X: X, Y: mk(t, b, dc.dt, y, tN, tD)}
					if gated {
						p.Gate, p.RowsPerGroup = mk(t, b, dc.dt, g, tB, tD), tL
					}
					must(t, b.GateResidualFwd(p))
					want := make([]float64, len(x))
					for i := range x {
						gv := 1.0
						if gated {
							gv = g[(i/tD/tL)*tD+i%tD]
						}
						want[i] = x[i] + gv*y[i]
					}
					closeTo(t, "Out", get(t, b, out), want, dc.tol)

					// Backward formulas.
					dout := roundTo(dc.dt, randVec(r, tN*tD, 1))
					bp := &ops.GateResidualBwdParams{DY: zeros(t, b, dc.dt, tN, tD), DOut: mk(t, b, dc.dt, dout, tN, tD), Y: p.Y}
					if gated {
						bp.Gate, bp.DGate, bp.RowsPerGroup = p.Gate, mk(t, b, dc.dt, randVec(r, tB*tD, 1), tB, tD), tL
					}
					must(t, b.GateResidualBwd(bp))
					wantDY := make([]float64, len(x))
					wantDG := make([]float64, tB*tD)
					for i := range x {
						gv := 1.0
						gi := (i/tD/tL)*tD + i%tD
						if gated {
							gv = g[gi]
						}
						wantDY[i] = gv * dout[i]
						wantDG[gi] += dout[i] * y[i]
					}
					closeTo(t, "DY", get(t, b, bp.DY), wantDY, dc.tol)
					if gated {
						closeTo(t, "DGate", get(t, b, bp.DGate), wantDG, dc.tol)
					}
				})
			}
		}
	}
}

func TestCopyColsForward(t *testing.T) {
	r := newRand(10)
	for _, dc := range fwdTypes {
		for _, accum := range []bool{false, true} {
			b := testBackend(2)
			src, dst := roundTo(dc.dt, randVec(r, tB*6*tD, 1)), roundTo(dc.dt, randVec(r, tB*tD, 1))
			D := mk(t, b, dc.dt, dst, tB, tD)
			must(t, b.CopyCols(&ops.CopyColsParams{Dst: D, Src: mk(t, b, dc.dt, src, tB, 6*tD), DstOff: 3, SrcOff: 2 * tD, Width: 7, Accumulate: accum}))
			want := append([]float64(nil), dst...)
			for rr := 0; rr < tB; rr++ {
				for j := 0; j < 7; j++ {
					v := src[rr*6*tD+2*tD+j]
					if accum {
						want[rr*tD+3+j] += v
					} else {
						want[rr*tD+3+j] = v
					}
				}
			}
			closeTo(t, fmt.Sprintf("%v accumulate=%v Dst", dc.dt, accum), get(t, b, D), want, dc.tol)
		}
	}
}

func TestGatherScatterForward(t *testing.T) {
	r := newRand(11)
	rows := []int32{13, 0, 5, 6, 2}
	for _, dc := range fwdTypes {
		b := testBackend(3)
		in := roundTo(dc.dt, randVec(r, tN*tD, 1))
		out := zeros(t, b, dc.dt, len(rows), tD)
		must(t, b.GatherRows(&ops.GatherRowsParams{Out: out, In: mk(t, b, dc.dt, in, tN, tD), Rows: mkI(t, b, rows, len(rows))}))
		want := make([]float64, len(rows)*tD)
		for i, rr := range rows {
			copy(want[i*tD:(i+1)*tD], in[int(rr)*tD:])
		}
		closeTo(t, dc.dt.String()+" Gather", get(t, b, out), want, tol{})

		for _, accum := range []bool{false, true} {
			base := roundTo(dc.dt, randVec(r, tN*tD, 1))
			src := roundTo(dc.dt, randVec(r, len(rows)*tD, 1))
			O := mk(t, b, dc.dt, base, tN, tD)
			must(t, b.ScatterRows(&ops.ScatterRowsParams{Out: O, In: mk(t, b, dc.dt, src, len(rows), tD), Rows: mkI(t, b, rows, len(rows)), Accumulate: accum}))
			want := append([]float64(nil), base...)
			for i, rr := range rows {
				for c := 0; c < tD; c++ {
					if accum {
						want[int(rr)*tD+c] += src[i*tD+c]
					} else {
						want[int(rr)*tD+c] = src[i*tD+c]
					}
				}
			}
			closeTo(t, fmt.Sprintf("%v Scatter accumulate=%v", dc.dt, accum), get(t, b, O), want, dc.tol)
		}
	}
}

func TestMaskedCEForward(t *testing.T) {
	r := newRand(12)
	for _, dc := range fwdTypes {
		for _, c := range []struct{ r, v int }{{9, tV}, {4, 2}, {1, 1}, {3, 300}} {
			for _, alias := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/R=%d,V=%d,alias=%v", dc.dt, c.r, c.v, alias), func(t *testing.T) {
					b := testBackend(2)
					logits := roundTo(dc.dt, randVec(r, c.r*c.v, 5))
					targets := make([]int32, c.r)
					weights := make([]float64, c.r)
					for i := range targets {
						targets[i] = int32(r.IntN(c.v))
						weights[i] = r.Float64() * 2
					}
					L := mk(t, b, dc.dt, logits, c.r, c.v)
					D := L
					if !alias {
						D = zeros(t, b, dc.dt, c.r, c.v)
					}
					loss := zeros(t, b, ops.F64, c.r)
					must(t, b.MaskedCE(&ops.MaskedCEParams{Logits: L, Targets: mkI(t, b, targets, c.r), Weights: mk(t, b, ops.F64, weights, c.r), Loss: loss, DLogits: D}))
					wl, wd := refMaskedCE(logits, c.r, c.v, targets, weights)
					closeTo(t, "Loss", get(t, b, loss), wl, tol{1e-12, 1e-12})
					closeTo(t, "DLogits", get(t, b, D), wd, dc.tol)
				})
			}
		}
	}
}

func TestMaskTokensForward(t *testing.T) {
	r := newRand(13)
	const bs, l, v = 3, 37, 11
	x0 := make([]int32, bs*l)
	for i := range x0 {
		x0[i] = int32(r.IntN(v))
	}
	for _, perToken := range []bool{false, true} {
		for _, lens := range [][]int32{nil, {37, 1, 20}} {
			t.Run(fmt.Sprintf("perToken=%v,SeqLens=%v", perToken, lens), func(t *testing.T) {
				b := testBackend(2)
				var prob []float64
				var P *ops.Tensor
				if perToken {
					prob = make([]float64, bs*v)
					for i := range prob {
						prob[i] = r.Float64()
					}
					P = mk(t, b, ops.F64, prob, bs, v)
				} else {
					prob = []float64{0.3, 0.9, 0.55}
					P = mk(t, b, ops.F64, prob, bs)
				}
				p := &ops.MaskParams{XT: zeros(t, b, ops.I32, bs, l), X0: mkI(t, b, x0, bs, l), MaskProb: P, MaskID: v,
					Seed: 0xfeedbeef12345, Step: 77, Purpose: uint8(rng.PurposeMask2), IndexOffset: 1000}
				if lens != nil {
					p.SeqLens = mkI(t, b, lens, bs)
				}
				must(t, b.MaskTokens(p))
				want := make([]int32, bs*l)
				for bi := 0; bi < bs; bi++ {
					for li := 0; li < l; li++ {
						i := bi*l + li
						q := 0.0
						if perToken {
							q = prob[bi*v+int(x0[i])]
						} else {
							q = prob[bi]
						}
						want[i] = x0[i]
						inSeq := lens == nil || li < int(lens[bi])
						if inSeq && rng.Uniform64(p.Seed, p.Step, rng.PurposeMask2, 1000+uint64(i)) < q {
							want[i] = v
						}
					}
				}
				equalI(t, "XT", getI(t, b, p.XT), want)

				// A batch split in two (the second part with IndexOffset advanced by its first
				// row) masks identically.
				if perToken || lens != nil {
					return
				}
				x0v, err := b.View(p.X0, 1, bs)
				must(t, err)
				xtv := zeros(t, b, ops.I32, bs-1, l)
				pv := *p
				pv.XT, pv.X0, pv.MaskProb, pv.IndexOffset = xtv, x0v, mk(t, b, ops.F64, prob[1:], bs-1), p.IndexOffset+l
				must(t, b.MaskTokens(&pv))
				equalI(t, "XT of the split batch", getI(t, b, xtv), want[l:])
			})
		}
	}
}

func TestAdamWForward(t *testing.T) {
	r := newRand(14)
	const n = 23
	for _, dc := range fwdTypes {
		for _, step := range []int{1, 3} {
			b := testBackend(2)
			param, grad := roundTo(dc.dt, randVec(r, n, 1)), roundTo(dc.dt, randVec(r, n, 1))
			m, v, ema := roundTo(dc.dt, randVec(r, n, 0.1)), roundTo(dc.dt, randVec(r, n, 0.1)), roundTo(dc.dt, randVec(r, n, 1))
			for i := range v {
				v[i] = math.Abs(v[i])
			}
			p := &ops.AdamWParams{Param: mk(t, b, dc.dt, param, n), Grad: mk(t, b, dc.dt, grad, n), M: mk(t, b, dc.dt, m, n),
				V: mk(t, b, dc.dt, v, n), EMA: mk(t, b, dc.dt, ema, n), Shadow: zeros(t, b, ops.BF16, n),
				LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.03, EMADecay: 0.9999, GradScale: 0.5, Step: step}
			must(t, b.AdamW(p))
			wp, wm, wv, we := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
			bc1, bc2 := 1-math.Pow(0.9, float64(step)), 1-math.Pow(0.999, float64(step))
			for i := range param {
				g := 0.5 * grad[i]
				wm[i] = 0.9*m[i] + 0.1*g
				wv[i] = 0.999*v[i] + 0.001*g*g
				wp[i] = param[i] - 3e-3*((wm[i]/bc1)/(math.Sqrt(wv[i]/bc2)+1e-8)+0.03*param[i])
				we[i] = ema[i] + (1-0.9999)*(wp[i]-ema[i])
			}
			name := fmt.Sprintf("%v step %d ", dc.dt, step)
			tl := dc.tol
			closeTo(t, name+"Param", get(t, b, p.Param), wp, tl)
			closeTo(t, name+"M", get(t, b, p.M), wm, tl)
			closeTo(t, name+"V", get(t, b, p.V), wv, tl)
			closeTo(t, name+"EMA", get(t, b, p.EMA), we, tl)
			sh := make([]uint16, n)
			must(t, b.Download(sh, p.Shadow))
			gotP := get(t, b, p.Param)
			for i := range sh {
				if want := refBF16(gotP[i]); sh[i] != want {
					t.Errorf("%sShadow[%d]: got %#04x, want %#04x (bf16 of %v)", name, i, sh[i], want, gotP[i])
				}
			}
		}
	}
}

func TestSumSquaresAxpyForward(t *testing.T) {
	r := newRand(15)
	for _, dc := range fwdTypes {
		for _, n := range []int{1, 7, 20001} {
			b := testBackend(3)
			x := roundTo(dc.dt, randVec(r, n, 1))
			out := mk(t, b, ops.F64, []float64{1.25}, 1)
			must(t, b.SumSquares(&ops.SumSquaresParams{Out: out, X: mk(t, b, dc.dt, x, n)}))
			want := 1.25
			for _, v := range x {
				want += v * v
			}
			closeTo(t, fmt.Sprintf("%v SumSquares n=%d", dc.dt, n), get(t, b, out), []float64{want}, tol{1e-13, 0})
		}
		for _, c := range []struct {
			alpha, beta float32
			withX       bool
		}{{2, 0.5, true}, {-1.5, 0, true}, {0, 0, false}, {0, 3, false}, {1, 1, true}} {
			b := testBackend(2)
			x, y := roundTo(dc.dt, randVec(r, 13, 1)), roundTo(dc.dt, randVec(r, 13, 1))
			if c.beta == 0 {
				for i := range y {
					y[i] = math.NaN() // Beta = 0 must not read Y
				}
			}
			Y := mk(t, b, dc.dt, y, 13)
			p := &ops.AxpyParams{Y: Y, Alpha: c.alpha, Beta: c.beta}
			if c.withX {
				p.X = mk(t, b, dc.dt, x, 13)
			}
			must(t, b.Axpy(p))
			want := make([]float64, 13)
			for i := range want {
				if c.beta != 0 {
					want[i] = float64(c.beta) * y[i]
				}
				if c.withX {
					want[i] += float64(c.alpha) * x[i]
				}
			}
			closeTo(t, fmt.Sprintf("%v Axpy %+v", dc.dt, c), get(t, b, Y), want, dc.tol)
		}
	}
}

func TestConvertForward(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 1.00390625, 1.005859375, 1.0078125 + 1.0/512, 3.14159265358979,
		1e-40, -1e-42, 3.3895313892515355e38, 3.4e38, 1e39, -1e300, math.Inf(1), math.Inf(-1), 65504, 1.0 / 3, 2.5e-8,
		1.0039062500000002, 1.0039062499999998}
	r := newRand(16)
	for i := 0; i < 200; i++ {
		vals = append(vals, math.Ldexp(r.Float64()*2-1, r.IntN(60)-30))
	}
	n := len(vals)
	b := testBackend(2)
	for _, in := range []ops.DType{ops.F32, ops.F64} {
		src := roundTo(in, vals)
		I := mk(t, b, in, src, n)
		// To BF16: round to nearest even from the input value.
		o := zeros(t, b, ops.BF16, n)
		must(t, b.Convert(&ops.ConvertParams{Out: o, In: I}))
		got := make([]uint16, n)
		must(t, b.Download(got, o))
		for i := range got {
			if want := refBF16(src[i]); got[i] != want {
				t.Errorf("%v→bf16 of %v: got %#04x, want %#04x", in, src[i], got[i], want)
			}
		}
		// Back from BF16 is exact.
		for _, out := range []ops.DType{ops.F32, ops.F64} {
			back := zeros(t, b, out, n)
			must(t, b.Convert(&ops.ConvertParams{Out: back, In: o}))
			gb := get(t, b, back)
			for i := range gb {
				if want := float64(math.Float32frombits(uint32(got[i]) << 16)); gb[i] != want {
					t.Errorf("bf16 %#04x→%v: got %v, want %v", got[i], out, gb[i], want)
				}
			}
			// Between F32 and F64.
			o2 := zeros(t, b, out, n)
			must(t, b.Convert(&ops.ConvertParams{Out: o2, In: I}))
			closeTo(t, fmt.Sprintf("%v→%v", in, out), get(t, b, o2), roundTo(out, src), tol{})
		}
	}
	// NaN stays NaN.
	I := mk(t, b, ops.F32, []float64{math.NaN()}, 1)
	o := zeros(t, b, ops.BF16, 1)
	must(t, b.Convert(&ops.ConvertParams{Out: o, In: I}))
	got := make([]uint16, 1)
	must(t, b.Download(got, o))
	if f := math.Float32frombits(uint32(got[0]) << 16); f == f {
		t.Errorf("bf16 of NaN: got %#04x (%v), want a NaN", got[0], f)
	}
}

func TestTimeEmbedForward(t *testing.T) {
	ts := []float64{0, 0.25, 1, 0.123456789}
	for _, dc := range fwdTypes {
		for _, dcw := range []int{4, 10} {
			b := testBackend(2)
			out := zeros(t, b, dc.dt, len(ts), dcw)
			must(t, b.TimeEmbed(&ops.TimeEmbedParams{Out: out, T: mk(t, b, ops.F64, ts, len(ts)), Scale: 1000}))
			half := dcw / 2
			want := make([]float64, len(ts)*dcw)
			for i, tv := range ts {
				for k := 0; k < half; k++ {
					f := math.Exp(-float64(k) * math.Log(10000) / float64(half-1))
					want[i*dcw+k] = math.Sin(1000 * tv * f)
					want[i*dcw+half+k] = math.Cos(1000 * tv * f)
				}
			}
			closeTo(t, fmt.Sprintf("%v Dc=%d", dc.dt, dcw), get(t, b, out), want, tol{dc.tol.rtol, max(dc.tol.atol, 1e-12)})
		}
	}
}
