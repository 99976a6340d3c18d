package opstest

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Cases returns the parity table: every op of the contract with odd and production-like
// shapes, in F32 and (where the contract allows bf16 data) BF16. The table is rebuilt on
// each call; inputs are generated only when a case runs.
func Cases() []Case {
	var cs []Case
	cs = append(cs, matmulCases()...)
	cs = append(cs, embedCases()...)
	cs = append(cs, normCases()...)
	cs = append(cs, ropeCases()...)
	cs = append(cs, attnCases()...)
	cs = append(cs, gluActCases()...)
	cs = append(cs, biasCases()...)
	cs = append(cs, gateCases()...)
	cs = append(cs, rowColCases()...)
	cs = append(cs, maskedCECases()...)
	cs = append(cs, maskCases()...)
	cs = append(cs, sampleCases()...)
	cs = append(cs, optimCases()...)
	cs = append(cs, convertCases()...)
	cs = append(cs, timeEmbedCases()...)
	cs = append(cs, genMaskedCECases()...)
	for i := range cs {
		cs[i].finish()
	}
	return cs
}

// tensors is the argument map a case's call receives.
type tensors = map[string]*ops.Tensor

// a builds an argument.
func a(name string, k argKind, r role, shape ...int) arg {
	return arg{name: name, kind: k, role: r, shape: shape}
}

// mk builds a case; kv are the name's key/value pairs, to which dt is appended.
func mk(op ops.Op, dt ops.DType, size Size, flops int64, args []arg, fill func(*gen, data), call func(ops.Ops, tensors) error, kv ...any) Case {
	return Case{Name: name(op, append(kv, "dt", dt)...), Op: op, DType: dt, Size: size, FLOPs: flops,
		args: args, fill: fill, call: call}
}

// rnd rounds values in place to dt and returns them (for inputs from which other inputs
// are derived, e.g. X before its norm statistics).
func rnd(dt ops.DType, v []float64) []float64 {
	for i, x := range v {
		v[i] = RoundTo(dt, x)
	}
	return v
}

// withTol returns c with a tolerance derived from the default by f.
func withTol(c Case, f func(*Tolerance)) Case {
	t := DefaultTolerance
	f(&t)
	c.Tol = t
	return c
}

// sumTol widens the elementwise tolerance for outputs that are sums of k terms of order
// one: float32 rounding errors of such sums grow like sqrt(k) (random) up to k (worst).
func sumTol(k int) func(*Tolerance) {
	return func(t *Tolerance) {
		f := math.Max(1, math.Sqrt(float64(k))/4)
		t.ATol *= f
		t.RTol *= f
	}
}

var fdts = []ops.DType{ops.F32, ops.BF16}

// ---- MatMul ----

func matmulCases() []Case {
	type mm struct {
		m, n, k     int
		ta, tb      bool
		alpha, beta float32
		size        Size
	}
	var cs []Case
	for _, s := range []mm{
		{1, 1, 1, false, false, 1, 0, Small},
		{7, 13, 97, false, true, 1, 0, Small},      // linear layer y = x·Wᵀ
		{97, 33, 7, true, false, 1, 1, Small},      // weight gradient accumulated: dW += dYᵀ·X
		{65, 31, 129, false, false, 0.5, 1, Small}, // scaled, accumulated
		{3, 5, 1025, true, true, -2, 0, Small},     // long K, Out garbage (NaN) with Beta = 0
		{1025, 259, 384, false, true, 1, 0, Large},
	} {
		for _, dt := range fdts {
			outs := []argKind{kFloat}
			if dt == ops.BF16 {
				outs = append(outs, kAcc) // bf16 inputs, f32 output
			}
			for _, ok := range outs {
				cs = append(cs, matmulCase(s.m, s.n, s.k, s.ta, s.tb, s.alpha, s.beta, dt, ok, s.size))
			}
		}
	}
	return cs
}

func matmulCase(m, n, k int, ta, tb bool, alpha, beta float32, dt ops.DType, outKind argKind, size Size) Case {
	as, bs := []int{m, k}, []int{k, n}
	if ta {
		as = []int{k, m}
	}
	if tb {
		bs = []int{n, k}
	}
	outRole := inout
	if beta == 0 {
		outRole = out
	}
	outDT := dt
	if outKind == kAcc {
		outDT = ops.F32
	}
	flops := int64(2 * m * n * k)
	c := mk(ops.OpMatMul, dt, size, flops,
		[]arg{a("A", kFloat, in, as...), a("B", kFloat, in, bs...), a("Out", outKind, outRole, m, n)},
		func(g *gen, d data) {
			d.f["A"] = g.normal(m*k, 0, 1)
			d.f["B"] = g.normal(k*n, 0, 1)
			if beta == 0 {
				d.f["Out"] = nans(m * n)
			} else {
				d.f["Out"] = g.normal(m*n, 0, 1)
			}
		},
		func(o ops.Ops, t tensors) error {
			return o.MatMul(&ops.MatMulParams{Out: t["Out"], A: t["A"], B: t["B"], TransA: ta, TransB: tb, Alpha: alpha, Beta: beta})
		},
		"m", m, "n", n, "k", k, "ta", yesno(ta), "tb", yesno(tb), "alpha", alpha, "beta", beta, "out", outDT)
	return withTol(c, sumTol(k))
}

// ---- EmbedFwd / EmbedBwd ----

func embedCases() []Case {
	var cs []Case
	type es struct {
		n, v, d int
		size    Size
	}
	for _, s := range []es{{1, 27, 1, Small}, {97, 27, 33, Small}, {1025, 256, 64, Small}, {1025, 50257, 16, Large}} {
		for _, dt := range fdts {
			cs = append(cs, embedFwdCase(s.n, s.v, s.d, dt, s.size))
		}
	}
	for _, s := range []es{{1, 27, 1, Small}, {97, 27, 33, Small}, {1025, 256, 64, Small}, {1025, 50257, 16, Large}} {
		for _, dt := range fdts {
			cs = append(cs, embedBwdCase(s.n, s.v, s.d, false, dt, s.size))
		}
	}
	// Few distinct ids: every table row receives many gradient rows (accumulation order).
	cs = append(cs, embedBwdCase(1025, 27, 65, true, ops.F32, Small), embedBwdCase(1025, 27, 65, true, ops.BF16, Small))
	return cs
}

// ids returns n token ids in [0, v] (v is the mask id) with the first id the mask id and
// the second 0 when n allows.
func embedIDs(g *gen, n, v int, hot bool) []int32 {
	hi := v + 1
	if hot {
		hi = 4
	}
	ids := g.ints(n, 0, hi)
	if n > 0 {
		ids[0] = int32(v)
	}
	if n > 1 {
		ids[1] = 0
	}
	return ids
}

func embedFwdCase(n, v, d int, dt ops.DType, size Size) Case {
	c := mk(ops.OpEmbedFwd, dt, size, 0,
		[]arg{a("Table", kFloat, in, v+1, d), a("IDs", kI32, in, n), a("Out", kFloat, out, n, d)},
		func(g *gen, dd data) {
			dd.f["Table"] = g.normal((v+1)*d, 0, 1)
			dd.i["IDs"] = embedIDs(g, n, v, false)
			dd.f["Out"] = nans(n * d)
		},
		func(o ops.Ops, t tensors) error {
			return o.EmbedFwd(&ops.EmbedParams{Out: t["Out"], Table: t["Table"], IDs: t["IDs"]})
		},
		"n", n, "v", v, "d", d)
	c.Exact = true
	return c
}

func embedBwdCase(n, v, d int, hot bool, dt ops.DType, size Size) Case {
	c := mk(ops.OpEmbedBwd, dt, size, int64(n*d),
		[]arg{a("DTable", kAcc, inout, v+1, d), a("DOut", kFloat, in, n, d), a("IDs", kI32, in, n)},
		func(g *gen, dd data) {
			dd.f["DTable"] = g.normal((v+1)*d, 0, 1)
			dd.f["DOut"] = g.normal(n*d, 0, 1)
			dd.i["IDs"] = embedIDs(g, n, v, hot)
		},
		func(o ops.Ops, t tensors) error {
			return o.EmbedBwd(&ops.EmbedBwdParams{DTable: t["DTable"], DOut: t["DOut"], IDs: t["IDs"]})
		},
		"n", n, "v", v, "d", d, "ids", map[bool]string{true: "4-distinct", false: "uniform"}[hot])
	if hot {
		return withTol(c, sumTol(n/3))
	}
	return withTol(c, sumTol(8))
}

// ---- NormFwd / NormBwd ----

type normSpec struct {
	kind   ops.NormKind
	b, l   int // rows N = b·l; modulation rows b, RowsPerGroup l
	d      int
	mod    bool // Shift/Scale (adaLN)
	weight bool // RMSNorm Weight
	size   Size
}

func normSpecs() []normSpec {
	return []normSpec{
		{ops.LayerNorm, 1, 1, 1, false, false, Small},
		{ops.LayerNorm, 1, 7, 7, false, false, Small},
		{ops.LayerNorm, 2, 97, 129, true, false, Small},
		{ops.RMSNorm, 3, 7, 33, false, true, Small},
		{ops.RMSNorm, 1, 97, 65, false, false, Small},
		{ops.RMSNorm, 2, 7, 31, true, true, Small},
		{ops.LayerNorm, 1, 1025, 768, true, false, Large},
		{ops.RMSNorm, 1, 1025, 769, false, true, Large},
	}
}

func normCases() []Case {
	var cs []Case
	for _, s := range normSpecs() {
		for _, dt := range fdts {
			cs = append(cs, normFwdCase(s, dt), normBwdCase(s, dt))
		}
	}
	return cs
}

// normX returns rows with different offsets and spreads (LayerNorm must subtract large
// means accurately).
func normX(g *gen, n, d int) []float64 {
	x := g.normal(n*d, 0, 1)
	off := g.uniform(n, -4, 4)
	sc := g.uniform(n, 0.1, 3)
	for r := 0; r < n; r++ {
		for j := 0; j < d; j++ {
			x[r*d+j] = off[r] + sc[r]*x[r*d+j]
		}
	}
	return x
}

const normEps = 1e-5

func normName(s normSpec) []any {
	return []any{"kind", s.kind, "b", s.b, "l", s.l, "d", s.d, "mod", yesno(s.mod), "weight", yesno(s.weight)}
}

func normFwdCase(s normSpec, dt ops.DType) Case {
	n := s.b * s.l
	args := []arg{a("X", kFloat, in, n, s.d), a("Out", kFloat, out, n, s.d), a("Rstd", kAcc, out, n)}
	if s.kind == ops.LayerNorm {
		args = append(args, a("Mean", kAcc, out, n))
	}
	if s.weight {
		args = append(args, a("Weight", kAcc, in, s.d))
	}
	if s.mod {
		args = append(args, a("Shift", kFloat, in, s.b, s.d), a("Scale", kFloat, in, s.b, s.d))
	}
	c := mk(ops.OpNormFwd, dt, s.size, int64(8*n*s.d), args,
		func(g *gen, d data) {
			d.f["X"] = normX(g, n, s.d)
			d.f["Out"], d.f["Rstd"], d.f["Mean"] = nans(n*s.d), nans(n), nans(n)
			d.f["Weight"] = g.normal(s.d, 1, 0.3)
			d.f["Shift"] = g.normal(s.b*s.d, 0, 0.5)
			d.f["Scale"] = g.normal(s.b*s.d, 0, 0.5)
		},
		func(o ops.Ops, t tensors) error {
			return o.NormFwd(&ops.NormParams{Kind: s.kind, Eps: normEps, Out: t["Out"], X: t["X"], Weight: t["Weight"],
				Shift: t["Shift"], Scale: t["Scale"], RowsPerGroup: s.l, Mean: t["Mean"], Rstd: t["Rstd"]})
		},
		normName(s)...)
	return withTol(c, sumTol(8))
}

func normBwdCase(s normSpec, dt ops.DType) Case {
	n := s.b * s.l
	args := []arg{a("X", kFloat, in, n, s.d), a("DOut", kFloat, in, n, s.d), a("DX", kFloat, out, n, s.d), a("Rstd", kAcc, in, n)}
	if s.kind == ops.LayerNorm {
		args = append(args, a("Mean", kAcc, in, n))
	}
	if s.weight {
		args = append(args, a("Weight", kAcc, in, s.d), a("DWeight", kAcc, inout, s.d))
	}
	if s.mod {
		args = append(args, a("Scale", kFloat, in, s.b, s.d), a("DShift", kAcc, out, s.b, s.d), a("DScale", kAcc, out, s.b, s.d))
	}
	c := mk(ops.OpNormBwd, dt, s.size, int64(14*n*s.d), args,
		func(g *gen, d data) {
			x := rnd(dt, normX(g, n, s.d))
			d.f["X"] = x
			d.f["DOut"] = g.normal(n*s.d, 0, 1)
			d.f["DX"] = nans(n * s.d)
			mean, rstd := make([]float64, n), make([]float64, n)
			for r := 0; r < n; r++ {
				row := x[r*s.d : (r+1)*s.d]
				var sum, sq float64
				for _, v := range row {
					sum += v
				}
				if s.kind == ops.LayerNorm {
					mean[r] = sum / float64(s.d)
				}
				for _, v := range row {
					sq += (v - mean[r]) * (v - mean[r])
				}
				rstd[r] = 1 / math.Sqrt(sq/float64(s.d)+normEps)
			}
			d.f["Mean"], d.f["Rstd"] = mean, rstd
			d.f["Weight"] = g.normal(s.d, 1, 0.3)
			d.f["DWeight"] = g.normal(s.d, 0, 1)
			d.f["Scale"] = g.normal(s.b*s.d, 0, 0.5)
			d.f["DShift"], d.f["DScale"] = nans(s.b*s.d), nans(s.b*s.d)
		},
		func(o ops.Ops, t tensors) error {
			return o.NormBwd(&ops.NormBwdParams{Kind: s.kind, DX: t["DX"], DOut: t["DOut"], X: t["X"], Mean: t["Mean"], Rstd: t["Rstd"],
				Weight: t["Weight"], Scale: t["Scale"], RowsPerGroup: s.l, DWeight: t["DWeight"], DShift: t["DShift"], DScale: t["DScale"]})
		},
		normName(s)...)
	return withTol(c, sumTol(max(s.d, n)))
}

// ---- RoPE ----

func ropeCases() []Case {
	type rs struct {
		b, l, h, dh      int
		inverse, inplace bool
		size             Size
	}
	var cs []Case
	for _, s := range []rs{
		{1, 1, 1, 2, false, false, Small},
		{2, 97, 3, 64, false, false, Small},
		{2, 97, 3, 64, true, true, Small},
		{1, 7, 2, 6, true, false, Small},
		{1, 1025, 2, 128, false, true, Large},
	} {
		for _, dt := range fdts {
			cs = append(cs, ropeCase(s.b, s.l, s.h, s.dh, s.inverse, s.inplace, dt, s.size))
		}
	}
	return cs
}

func ropeCase(b, l, h, dh int, inverse, inplace bool, dt ops.DType, size Size) Case {
	shape := []int{b, l, h, dh}
	n := b * l * h * dh
	args := []arg{a("X", kFloat, in, shape...), a("Out", kFloat, out, shape...)}
	if inplace {
		args = []arg{a("X", kFloat, inout, shape...)}
	}
	return mk(ops.OpRoPE, dt, size, int64(3*n), args,
		func(g *gen, d data) {
			d.f["X"] = g.normal(n, 0, 1)
			d.f["Out"] = nans(n)
		},
		func(o ops.Ops, t tensors) error {
			p := &ops.RoPEParams{Out: t["Out"], X: t["X"], Theta: 10000, Inverse: inverse}
			if inplace {
				p.Out = p.X
			}
			return o.RoPE(p)
		},
		"b", b, "l", l, "h", h, "dh", dh, "inverse", yesno(inverse), "inplace", yesno(inplace))
}

// ---- AttnFwd / AttnBwd ----

type attnSpec struct {
	b, l, h, dh int
	pad         bool
	qscale      float64 // spread of Q (large values stress the softmax)
	size        Size
}

func attnSpecs() []attnSpec {
	return []attnSpec{
		{2, 97, 4, 64, true, 1, Small},
		{1, 7, 1, 128, false, 1, Small},
		{3, 1, 2, 64, true, 1, Small},
		{2, 33, 2, 64, false, 4, Small},
		{2, 5, 3, 7, true, 1, Small}, // odd head dim: the CPU reference only
		{1, 1025, 2, 64, true, 1, Large},
		{1, 257, 2, 128, true, 1, Large},
	}
}

func attnCases() []Case {
	var cs []Case
	for _, s := range attnSpecs() {
		for _, dt := range fdts {
			cs = append(cs, attnFwdCase(s, dt), attnBwdCase(s, dt))
		}
	}
	return cs
}

// seqLens gives sequence b a length: full, 1, and values in between.
func seqLens(b, l int) []int32 {
	out := make([]int32, b)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = int32(max(1, l*2/5))
		case 1:
			out[i] = int32(l)
		case 2:
			out[i] = 1
		}
	}
	return out
}

func attnName(s attnSpec) []any {
	kv := []any{"b", s.b, "l", s.l, "h", s.h, "dh", s.dh, "pad", yesno(s.pad)}
	if s.qscale != 1 {
		kv = append(kv, "qscale", s.qscale)
	}
	return kv
}

func attnArgs(s attnSpec) []arg {
	shape := []int{s.b, s.l, s.h, s.dh}
	args := []arg{a("Q", kFloat, in, shape...), a("K", kFloat, in, shape...), a("V", kFloat, in, shape...)}
	if s.pad {
		args = append(args, a("SeqLens", kI32, in, s.b))
	}
	return args
}

func attnFwdCase(s attnSpec, dt ops.DType) Case {
	shape := []int{s.b, s.l, s.h, s.dh}
	n := s.b * s.l * s.h * s.dh
	args := append(attnArgs(s), a("Out", kFloat, out, shape...), a("LSE", kAcc, out, s.b, s.h, s.l))
	scale := float32(1 / math.Sqrt(float64(s.dh)))
	c := mk(ops.OpAttnFwd, dt, s.size, int64(4*s.b*s.l*s.l*s.h*s.dh), args,
		func(g *gen, d data) {
			d.f["Q"] = g.normal(n, 0, s.qscale)
			d.f["K"] = g.normal(n, 0, 1)
			d.f["V"] = g.normal(n, 0, 1)
			d.i["SeqLens"] = seqLens(s.b, s.l)
			d.f["Out"], d.f["LSE"] = nans(n), nans(s.b*s.h*s.l)
		},
		func(o ops.Ops, t tensors) error {
			return o.AttnFwd(&ops.AttnParams{Out: t["Out"], LSE: t["LSE"], Q: t["Q"], K: t["K"], V: t["V"], SeqLens: t["SeqLens"], Scale: scale})
		},
		attnName(s)...)
	return withTol(c, sumTol(max(s.dh, s.l)))
}

// hostAttn computes Out and LSE in float64 (the inputs of the backward cases).
func hostAttn(s attnSpec, q, k, v []float64, lens []int32, scale float64) (o, lse []float64) {
	o = make([]float64, len(q))
	lse = make([]float64, s.b*s.h*s.l)
	idx := func(b, l, h int) int { return ((b*s.l+l)*s.h + h) * s.dh }
	sc := make([]float64, s.l)
	for b := 0; b < s.b; b++ {
		nk := s.l
		if lens != nil {
			nk = int(lens[b])
		}
		for h := 0; h < s.h; h++ {
			for i := 0; i < s.l; i++ {
				qi := q[idx(b, i, h):][:s.dh]
				m := math.Inf(-1)
				for j := 0; j < nk; j++ {
					kj := k[idx(b, j, h):][:s.dh]
					var dot float64
					for c := range qi {
						dot += qi[c] * kj[c]
					}
					sc[j] = dot * scale
					m = math.Max(m, sc[j])
				}
				var sum float64
				for j := 0; j < nk; j++ {
					sum += math.Exp(sc[j] - m)
				}
				ls := m + math.Log(sum)
				lse[(b*s.h+h)*s.l+i] = ls
				oi := o[idx(b, i, h):][:s.dh]
				for j := 0; j < nk; j++ {
					p := math.Exp(sc[j] - ls)
					vj := v[idx(b, j, h):][:s.dh]
					for c := range oi {
						oi[c] += p * vj[c]
					}
				}
			}
		}
	}
	return o, lse
}

func attnBwdCase(s attnSpec, dt ops.DType) Case {
	shape := []int{s.b, s.l, s.h, s.dh}
	n := s.b * s.l * s.h * s.dh
	args := append(attnArgs(s),
		a("Out", kFloat, in, shape...), a("LSE", kAcc, in, s.b, s.h, s.l), a("DOut", kFloat, in, shape...),
		a("DQ", kFloat, out, shape...), a("DK", kFloat, out, shape...), a("DV", kFloat, out, shape...))
	scale := float32(1 / math.Sqrt(float64(s.dh)))
	c := mk(ops.OpAttnBwd, dt, s.size, int64(10*s.b*s.l*s.l*s.h*s.dh), args,
		func(g *gen, d data) {
			q := rnd(dt, g.normal(n, 0, s.qscale))
			k := rnd(dt, g.normal(n, 0, 1))
			v := rnd(dt, g.normal(n, 0, 1))
			d.f["Q"], d.f["K"], d.f["V"] = q, k, v
			var lens []int32
			if s.pad {
				lens = seqLens(s.b, s.l)
				d.i["SeqLens"] = lens
			}
			d.f["Out"], d.f["LSE"] = hostAttn(s, q, k, v, lens, float64(scale))
			d.f["DOut"] = g.normal(n, 0, 1)
			d.f["DQ"], d.f["DK"], d.f["DV"] = nans(n), nans(n), nans(n)
		},
		func(o ops.Ops, t tensors) error {
			return o.AttnBwd(&ops.AttnBwdParams{DQ: t["DQ"], DK: t["DK"], DV: t["DV"], DOut: t["DOut"], Q: t["Q"], K: t["K"], V: t["V"],
				Out: t["Out"], LSE: t["LSE"], SeqLens: t["SeqLens"], Scale: scale})
		},
		attnName(s)...)
	return withTol(c, sumTol(max(s.dh, s.l)))
}
