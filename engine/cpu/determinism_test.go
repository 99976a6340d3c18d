package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// suiteShape is an odd shape for the whole-contract runs.
type suiteShape struct{ b, l, h, dh, v, hm int }

// runSuite runs every op of the contract on b with element type dt and returns each
// output's bits (float64 bits of the downloaded values, or the int32 values).
func runSuite(t testing.TB, b *Backend, dt ops.DType, s suiteShape) map[string][]uint64 {
	r := newRand(99)
	d := s.h * s.dh
	n := s.b * s.l
	res := map[string][]uint64{}
	rec := func(name string, x *ops.Tensor) {
		var bits []uint64
		switch x.DType() {
		case ops.I32:
			for _, v := range getI(t, b, x) {
				bits = append(bits, uint64(uint32(v)))
			}
		case ops.BF16:
			h := make([]uint16, x.Len())
			must(t, b.Download(h, x))
			for _, v := range h {
				bits = append(bits, uint64(v))
			}
		default:
			for _, v := range get(t, b, x) {
				bits = append(bits, math.Float64bits(v))
			}
		}
		res[name] = bits
	}
	rnd := func(scale float64, shape ...int) *ops.Tensor {
		k := 1
		for _, v := range shape {
			k *= v
		}
		return mk(t, b, dt, randVec(r, k, scale), shape...)
	}
	z := func(shape ...int) *ops.Tensor { return zeros(t, b, dt, shape...) }
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(s.v + 1))
	}
	seqLens := make([]int32, s.b)
	for i := range seqLens {
		seqLens[i] = int32(1 + r.IntN(s.l))
	}
	seqLens[0] = int32(s.l)

	// MatMul (gonum's parallel path at this size).
	out := z(n, s.hm)
	must(t, b.MatMul(&ops.MatMulParams{Out: out, A: rnd(1, n, d), B: rnd(1, s.hm, d), TransB: true, Alpha: 1}))
	rec("MatMul", out)
	// Embedding.
	table := rnd(1, s.v+1, d)
	x := z(n, d)
	must(t, b.EmbedFwd(&ops.EmbedParams{Out: x, Table: table, IDs: mkI(t, b, ids, n)}))
	rec("EmbedFwd", x)
	dtab := rnd(1, s.v+1, d)
	must(t, b.EmbedBwd(&ops.EmbedBwdParams{DTable: dtab, DOut: rnd(1, n, d), IDs: mkI(t, b, ids, n)}))
	rec("EmbedBwd", dtab)
	// Norms, with modulation and RMS weight.
	xin := rnd(2, n, d)
	for _, kind := range []ops.NormKind{ops.LayerNorm, ops.RMSNorm} {
		p := &ops.NormParams{Kind: kind, Eps: 1e-5, X: xin, Out: z(n, d), Rstd: z(n), Shift: rnd(1, s.b, d), Scale: rnd(1, s.b, d), RowsPerGroup: s.l}
		if kind == ops.LayerNorm {
			p.Mean = z(n)
		} else {
			p.Weight = rnd(1, d)
		}
		must(t, b.NormFwd(p))
		rec("NormFwd/"+kind.String(), p.Out)
		bp := &ops.NormBwdParams{Kind: kind, DX: z(n, d), DOut: rnd(1, n, d), X: xin, Mean: p.Mean, Rstd: p.Rstd, Weight: p.Weight,
			Scale: p.Scale, RowsPerGroup: s.l, DShift: z(s.b, d), DScale: z(s.b, d)}
		if p.Weight != nil {
			bp.DWeight = rnd(1, d)
		}
		must(t, b.NormBwd(bp))
		rec("NormBwd/DX/"+kind.String(), bp.DX)
		rec("NormBwd/DShift/"+kind.String(), bp.DShift)
		rec("NormBwd/DScale/"+kind.String(), bp.DScale)
		if bp.DWeight != nil {
			rec("NormBwd/DWeight", bp.DWeight)
		}
	}
	// RoPE and attention.
	sh := []int{s.b, s.l, s.h, s.dh}
	q, k, v := rnd(1.5, sh...), rnd(1.5, sh...), rnd(1, sh...)
	must(t, b.RoPE(&ops.RoPEParams{Out: q, X: q, Theta: 10000}))
	rec("RoPE", q)
	for _, padded := range []bool{false, true} {
		ap := &ops.AttnParams{Q: q, K: k, V: v, Out: z(sh...), LSE: z(s.b, s.h, s.l), Scale: 0.4}
		if padded {
			ap.SeqLens = mkI(t, b, seqLens, s.b)
		}
		must(t, b.AttnFwd(ap))
		rec(fmt.Sprintf("AttnFwd/Out/pad=%v", padded), ap.Out)
		rec(fmt.Sprintf("AttnFwd/LSE/pad=%v", padded), ap.LSE)
		bp := &ops.AttnBwdParams{DQ: z(sh...), DK: z(sh...), DV: z(sh...), DOut: rnd(1, sh...), Q: q, K: k, V: v, Out: ap.Out, LSE: ap.LSE,
			SeqLens: ap.SeqLens, Scale: 0.4}
		must(t, b.AttnBwd(bp))
		rec(fmt.Sprintf("AttnBwd/DQ/pad=%v", padded), bp.DQ)
		rec(fmt.Sprintf("AttnBwd/DK/pad=%v", padded), bp.DK)
		rec(fmt.Sprintf("AttnBwd/DV/pad=%v", padded), bp.DV)
	}
	// MLP pieces.
	a, bb := rnd(3, n, s.hm), rnd(2, n, s.hm)
	for _, ac := range acts {
		o := z(n, s.hm)
		must(t, b.GLUFwd(&ops.GLUParams{Act: ac.a, Out: o, A: a, B: bb}))
		rec("GLUFwd/"+ac.a.String(), o)
		da, db := z(n, s.hm), z(n, s.hm)
		must(t, b.GLUBwd(&ops.GLUBwdParams{Act: ac.a, DA: da, DB: db, DOut: o, A: a, B: bb}))
		rec("GLUBwd/DA/"+ac.a.String(), da)
		rec("GLUBwd/DB/"+ac.a.String(), db)
		must(t, b.ActFwd(&ops.ActParams{Act: ac.a, Out: o, X: a}))
		rec("ActFwd/"+ac.a.String(), o)
		must(t, b.ActBwd(&ops.ActBwdParams{Act: ac.a, DX: da, DOut: o, X: a}))
		rec("ActBwd/"+ac.a.String(), da)
	}
	bias := rnd(1, d)
	ba := rnd(1, n, d)
	must(t, b.BiasAdd(&ops.BiasAddParams{Out: ba, Bias: bias}))
	rec("BiasAdd", ba)
	must(t, b.BiasGrad(&ops.BiasGradParams{DBias: bias, DOut: ba}))
	rec("BiasGrad", bias)
	gate, y := rnd(1, s.b, d), rnd(1, n, d)
	gr := z(n, d)
	must(t, b.GateResidualFwd(&ops.GateResidualParams{Out: gr, X: ba, Y: y, Gate: gate, RowsPerGroup: s.l}))
	rec("GateResidualFwd", gr)
	dg, dy := z(s.b, d), z(n, d)
	must(t, b.GateResidualBwd(&ops.GateResidualBwdParams{DY: dy, DOut: gr, Y: y, Gate: gate, DGate: dg, RowsPerGroup: s.l}))
	rec("GateResidualBwd/DY", dy)
	rec("GateResidualBwd/DGate", dg)
	cc := rnd(1, s.b, 6*d)
	must(t, b.CopyCols(&ops.CopyColsParams{Dst: cc, Src: gate, DstOff: d + 1, Width: d - 1, SrcOff: 1, Accumulate: true}))
	rec("CopyCols", cc)
	rowIdx := make([]int32, 0, n)
	for _, i := range r.Perm(n)[:n/2+1] {
		rowIdx = append(rowIdx, int32(i))
	}
	rows := mkI(t, b, rowIdx, len(rowIdx))
	gath := z(len(rowIdx), d)
	must(t, b.GatherRows(&ops.GatherRowsParams{Out: gath, In: gr, Rows: rows}))
	rec("GatherRows", gath)
	must(t, b.ScatterRows(&ops.ScatterRowsParams{Out: gr, In: gath, Rows: rows, Accumulate: true}))
	rec("ScatterRows", gr)
	// Loss, masking, sampling.
	logits := rnd(6, len(rowIdx), s.v)
	targets := make([]int32, len(rowIdx))
	weights := make([]float64, len(rowIdx))
	for i := range targets {
		targets[i] = int32(r.IntN(s.v))
		weights[i] = r.Float64()
	}
	loss := zeros(t, b, ops.F64, len(rowIdx))
	dl := z(len(rowIdx), s.v)
	must(t, b.MaskedCE(&ops.MaskedCEParams{Logits: logits, Targets: mkI(t, b, targets, len(targets)), Weights: mk(t, b, ops.F64, weights, len(weights)),
		Loss: loss, DLogits: dl}))
	rec("MaskedCE/Loss", loss)
	rec("MaskedCE/DLogits", dl)
	x0 := make([]int32, n)
	for i := range x0 {
		x0[i] = int32(r.IntN(s.v))
	}
	xt := zeros(t, b, ops.I32, s.b, s.l)
	must(t, b.MaskTokens(&ops.MaskParams{XT: xt, X0: mkI(t, b, x0, s.b, s.l), MaskProb: mk(t, b, ops.F64, fill(s.b, 0.45), s.b),
		SeqLens: mkI(t, b, seqLens, s.b), MaskID: int32(s.v), Seed: 5, Step: 6, Purpose: 2}))
	for i := range x0 { // make the gathered rows masked for the sampler
		x0[i] = int32(s.v)
	}
	zt := mkI(t, b, x0, s.b, s.l)
	for _, mode := range []ops.SampleMode{ops.SampleExact, ops.SampleJAXCompat, ops.SampleArgmax} {
		o := zeros(t, b, ops.I32, s.b, s.l)
		must(t, b.SampleStep(&ops.SampleParams{Out: o, Z: zt, Logits: logits, Rows: rows, PUnmask: 0.6, TopP: 0.8, Mode: mode,
			MaskID: int32(s.v), Seed: 3, Step: 4}))
		rec("SampleStep/"+mode.String(), o)
	}
	rec("MaskTokens", xt)
	// Optimiser and reductions.
	param, grad, m, vv, ema := rnd(1, n, d), rnd(1, n, d), rnd(0.1, n, d), z(n, d), rnd(1, n, d)
	shadow := zeros(t, b, ops.BF16, n, d)
	must(t, b.AdamW(&ops.AdamWParams{Param: param, Grad: grad, M: m, V: vv, EMA: ema, Shadow: shadow, LR: 1e-3, Beta1: 0.9, Beta2: 0.99,
		Eps: 1e-8, WeightDecay: 0.1, EMADecay: 0.999, GradScale: 1, Step: 5}))
	for name, x := range map[string]*ops.Tensor{"AdamW/Param": param, "AdamW/M": m, "AdamW/V": vv, "AdamW/EMA": ema, "AdamW/Shadow": shadow} {
		rec(name, x)
	}
	ss := zeros(t, b, ops.F64, 1)
	must(t, b.SumSquares(&ops.SumSquaresParams{Out: ss, X: param}))
	rec("SumSquares", ss)
	must(t, b.Axpy(&ops.AxpyParams{Y: grad, X: param, Alpha: 0.5, Beta: -1}))
	rec("Axpy", grad)
	cv := zeros(t, b, ops.BF16, n, d)
	must(t, b.Convert(&ops.ConvertParams{Out: cv, In: grad}))
	rec("Convert", cv)
	te := z(s.b, 10)
	must(t, b.TimeEmbed(&ops.TimeEmbedParams{Out: te, T: mk(t, b, ops.F64, roundTo(ops.F64, fill(s.b, 0.37)), s.b), Scale: 1000}))
	rec("TimeEmbed", te)
	return res
}

func compareRuns(t *testing.T, what string, got, want map[string][]uint64) {
	t.Helper()
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Errorf("%s: %s: got %d values, want %d", what, name, len(g), len(w))
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("%s: %s[%d]: got bits %#x, want %#x", what, name, i, g[i], w[i])
				break
			}
		}
	}
}

// TestWorkerCountInvariance checks that results are bit-identical for 1, 2 and 3 workers,
// with tiny chunks (every parallel path active) and with the default chunk size on a
// larger shape, and that every op covered by the suite is deterministic run to run.
func TestWorkerCountInvariance(t *testing.T) {
	shapes := []struct {
		s      suiteShape
		parMin int
	}{
		{suiteShape{b: 3, l: 13, h: 3, dh: 6, v: 37, hm: 29}, 5},
		{suiteShape{b: 3, l: 67, h: 2, dh: 8, v: 301, hm: 130}, defaultParMin},
	}
	for _, sc := range shapes {
		for _, dt := range []ops.DType{ops.F32, ops.F64} {
			var ref map[string][]uint64
			for _, w := range []int{1, 2, 3} {
				b := New(WithWorkers(w))
				b.parMin = sc.parMin
				got := runSuite(t, b, dt, sc.s)
				if len(got) < 40 {
					t.Fatalf("suite recorded only %d outputs", len(got))
				}
				if ref == nil {
					ref = got
					compareRuns(t, fmt.Sprintf("%v %+v run twice", dt, sc.s), runSuite(t, b, dt, sc.s), ref)
					continue
				}
				compareRuns(t, fmt.Sprintf("%v %+v workers=%d vs 1", dt, sc.s, w), got, ref)
			}
		}
	}
}

// TestNoAllocations checks that the hot ops allocate nothing beyond what the contract's
// Validate itself allocates.
func TestNoAllocations(t *testing.T) {
	b := New(WithWorkers(2))
	b.parMin = 64 // several chunks, so the pool is used
	const bs, l, h, dh, v = 2, 16, 2, 8, 50
	n, d := bs*l, h*dh
	r := newRand(1)
	f := func(scale float64, shape ...int) *ops.Tensor {
		k := 1
		for _, s := range shape {
			k *= s
		}
		return mk(t, b, ops.F32, randVec(r, k, scale), shape...)
	}
	x := f(1, n, d)
	norm := &ops.NormParams{Kind: ops.LayerNorm, Eps: 1e-5, X: x, Out: f(0, n, d), Mean: f(0, n), Rstd: f(0, n), Shift: f(1, bs, d), Scale: f(1, bs, d), RowsPerGroup: l}
	must(t, b.NormFwd(norm))
	normBwd := &ops.NormBwdParams{Kind: ops.LayerNorm, DX: f(0, n, d), DOut: f(1, n, d), X: x, Mean: norm.Mean, Rstd: norm.Rstd, Scale: norm.Scale,
		RowsPerGroup: l, DShift: f(0, bs, d), DScale: f(0, bs, d)}
	sh := []int{bs, l, h, dh}
	attn := &ops.AttnParams{Q: f(1, sh...), K: f(1, sh...), V: f(1, sh...), Out: f(0, sh...), LSE: f(0, bs, h, l), SeqLens: mkI(t, b, []int32{16, 9}, bs), Scale: 0.3}
	must(t, b.AttnFwd(attn))
	attnBwd := &ops.AttnBwdParams{DQ: f(0, sh...), DK: f(0, sh...), DV: f(0, sh...), DOut: f(1, sh...), Q: attn.Q, K: attn.K, V: attn.V, Out: attn.Out,
		LSE: attn.LSE, SeqLens: attn.SeqLens, Scale: 0.3}
	targets := make([]int32, n)
	for i := range targets {
		targets[i] = int32(i % v)
	}
	ce := &ops.MaskedCEParams{Logits: f(3, n, v), Targets: mkI(t, b, targets, n), Weights: mk(t, b, ops.F64, fill(n, 1), n), Loss: zeros(t, b, ops.F64, n), DLogits: f(0, n, v)}
	embed := &ops.EmbedBwdParams{DTable: f(0, v+1, d), DOut: f(1, n, d), IDs: mkI(t, b, targets, n)}
	glu := &ops.GLUParams{Act: ops.GELU, Out: f(0, n, d), A: x, B: x}
	ss := &ops.SumSquaresParams{Out: zeros(t, b, ops.F64, 1), X: ce.Logits}
	for _, c := range []struct {
		name     string
		op       func() error
		validate func() error
	}{
		{"NormFwd", func() error { return b.NormFwd(norm) }, norm.Validate},
		{"NormBwd", func() error { return b.NormBwd(normBwd) }, normBwd.Validate},
		{"AttnFwd", func() error { return b.AttnFwd(attn) }, attn.Validate},
		{"AttnBwd", func() error { return b.AttnBwd(attnBwd) }, attnBwd.Validate},
		{"MaskedCE", func() error { return b.MaskedCE(ce) }, ce.Validate},
		{"EmbedBwd", func() error { return b.EmbedBwd(embed) }, embed.Validate},
		{"GLUFwd", func() error { return b.GLUFwd(glu) }, glu.Validate},
		{"SumSquares", func() error { return b.SumSquares(ss) }, ss.Validate},
	} {
		must(t, c.op()) // warm-up: scratch and jobs are created here
		got := testing.AllocsPerRun(50, func() { _ = c.op() })
		base := testing.AllocsPerRun(50, func() { _ = c.validate() })
		if got > base {
			t.Errorf("%s: %v allocations per call, want at most the %v of its Validate", c.name, got, base)
		}
	}
}
