package opstest

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

var acts = []ops.Activation{ops.Sigmoid, ops.Swish, ops.GELU}

// actInput spreads values over the interesting range of the activations, with a few
// saturating ones (±30).
func actInput(g *gen, n int) []float64 {
	x := g.normal(n, 0, 2.5)
	for i := 0; i < n; i += 17 {
		x[i] = 30 * math.Copysign(1, x[i])
	}
	return x
}

// ---- GLUFwd / GLUBwd / ActFwd / ActBwd ----

func gluActCases() []Case {
	var cs []Case
	type gs struct {
		n, m int
		size Size
	}
	for _, s := range []gs{{1, 1, Small}, {97, 129, Small}, {1025, 1031, Large}} {
		for _, act := range acts {
			for _, dt := range fdts {
				if s.size == Large && act != ops.Sigmoid {
					continue
				}
				cs = append(cs, gluFwdCase(s.n, s.m, act, dt, s.size), gluBwdCase(s.n, s.m, act, dt, s.size))
			}
		}
	}
	type as struct {
		shape   []int
		inplace bool
		size    Size
	}
	for _, s := range []as{{[]int{1}, false, Small}, {[]int{2, 7, 13}, false, Small}, {[]int{97, 33}, true, Small}, {[]int{1025, 1031}, false, Large}} {
		for _, act := range acts {
			for _, dt := range fdts {
				if s.size == Large && act != ops.GELU {
					continue
				}
				cs = append(cs, actFwdCase(s.shape, s.inplace, act, dt, s.size))
				if !s.inplace {
					cs = append(cs, actBwdCase(s.shape, act, dt, s.size))
				}
			}
		}
	}
	return cs
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func gluFwdCase(n, m int, act ops.Activation, dt ops.DType, size Size) Case {
	return mk(ops.OpGLUFwd, dt, size, int64(6*n*m),
		[]arg{a("A", kFloat, in, n, m), a("B", kFloat, in, n, m), a("Out", kFloat, out, n, m)},
		func(g *gen, d data) {
			d.f["A"] = actInput(g, n*m)
			d.f["B"] = g.normal(n*m, 0, 1)
			d.f["Out"] = nans(n * m)
		},
		func(o ops.Ops, t tensors) error {
			return o.GLUFwd(&ops.GLUParams{Act: act, Out: t["Out"], A: t["A"], B: t["B"]})
		},
		"n", n, "hm", m, "act", act)
}

func gluBwdCase(n, m int, act ops.Activation, dt ops.DType, size Size) Case {
	return mk(ops.OpGLUBwd, dt, size, int64(10*n*m),
		[]arg{a("A", kFloat, in, n, m), a("B", kFloat, in, n, m), a("DOut", kFloat, in, n, m),
			a("DA", kFloat, out, n, m), a("DB", kFloat, out, n, m)},
		func(g *gen, d data) {
			d.f["A"] = actInput(g, n*m)
			d.f["B"] = g.normal(n*m, 0, 1)
			d.f["DOut"] = g.normal(n*m, 0, 1)
			d.f["DA"], d.f["DB"] = nans(n*m), nans(n*m)
		},
		func(o ops.Ops, t tensors) error {
			return o.GLUBwd(&ops.GLUBwdParams{Act: act, DA: t["DA"], DB: t["DB"], DOut: t["DOut"], A: t["A"], B: t["B"]})
		},
		"n", n, "hm", m, "act", act)
}

func actFwdCase(shape []int, inplace bool, act ops.Activation, dt ops.DType, size Size) Case {
	n := numel(shape)
	args := []arg{a("X", kFloat, in, shape...), a("Out", kFloat, out, shape...)}
	if inplace {
		args = []arg{a("X", kFloat, inout, shape...)}
	}
	return mk(ops.OpActFwd, dt, size, int64(5*n), args,
		func(g *gen, d data) {
			d.f["X"] = actInput(g, n)
			d.f["Out"] = nans(n)
		},
		func(o ops.Ops, t tensors) error {
			p := &ops.ActParams{Act: act, Out: t["Out"], X: t["X"]}
			if inplace {
				p.Out = p.X
			}
			return o.ActFwd(p)
		},
		"shape", shapeStr(shape), "act", act, "inplace", yesno(inplace))
}

func actBwdCase(shape []int, act ops.Activation, dt ops.DType, size Size) Case {
	n := numel(shape)
	return mk(ops.OpActBwd, dt, size, int64(8*n),
		[]arg{a("X", kFloat, in, shape...), a("DOut", kFloat, in, shape...), a("DX", kFloat, out, shape...)},
		func(g *gen, d data) {
			d.f["X"] = actInput(g, n)
			d.f["DOut"] = g.normal(n, 0, 1)
			d.f["DX"] = nans(n)
		},
		func(o ops.Ops, t tensors) error {
			return o.ActBwd(&ops.ActBwdParams{Act: act, DX: t["DX"], DOut: t["DOut"], X: t["X"]})
		},
		"shape", shapeStr(shape), "act", act)
}

// shapeStr formats a shape for case names: "2x7x13".
func shapeStr(shape []int) string {
	s := ""
	for i, d := range shape {
		if i > 0 {
			s += "x"
		}
		s += itoa(d)
	}
	return s
}

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}

// ---- BiasAdd / BiasGrad ----

func biasCases() []Case {
	var cs []Case
	type bs struct {
		n, m int
		size Size
	}
	for _, s := range []bs{{1, 1, Small}, {97, 129, Small}, {1025, 769, Large}} {
		for _, dt := range fdts {
			n, m := s.n, s.m
			cs = append(cs, mk(ops.OpBiasAdd, dt, s.size, int64(n*m),
				[]arg{a("Out", kFloat, inout, n, m), a("Bias", kAcc, in, m)},
				func(g *gen, d data) {
					d.f["Out"] = g.normal(n*m, 0, 1)
					d.f["Bias"] = g.normal(m, 0, 1)
				},
				func(o ops.Ops, t tensors) error {
					return o.BiasAdd(&ops.BiasAddParams{Out: t["Out"], Bias: t["Bias"]})
				},
				"n", n, "m", m))
			cs = append(cs, withTol(mk(ops.OpBiasGrad, dt, s.size, int64(n*m),
				[]arg{a("DBias", kAcc, inout, m), a("DOut", kFloat, in, n, m)},
				func(g *gen, d data) {
					d.f["DBias"] = g.normal(m, 0, 1)
					d.f["DOut"] = g.normal(n*m, 0, 1)
				},
				func(o ops.Ops, t tensors) error {
					return o.BiasGrad(&ops.BiasGradParams{DBias: t["DBias"], DOut: t["DOut"]})
				},
				"n", n, "m", m), sumTol(n)))
		}
	}
	return cs
}

// ---- GateResidualFwd / GateResidualBwd ----

func gateCases() []Case {
	var cs []Case
	type gs struct {
		b, l, d       int
		gate, inplace bool
		size          Size
	}
	for _, s := range []gs{
		{1, 1, 1, true, false, Small},
		{2, 97, 33, true, false, Small},
		{3, 7, 65, false, false, Small},
		{2, 7, 31, true, true, Small},
		{1, 1025, 768, true, false, Large},
	} {
		for _, dt := range fdts {
			cs = append(cs, gateFwdCase(s.b, s.l, s.d, s.gate, s.inplace, dt, s.size))
			if !s.inplace {
				cs = append(cs, gateBwdCase(s.b, s.l, s.d, s.gate, dt, s.size))
			}
		}
	}
	return cs
}

func gateFwdCase(b, l, dd int, gate, inplace bool, dt ops.DType, size Size) Case {
	n := b * l
	args := []arg{a("X", kFloat, in, n, dd), a("Y", kFloat, in, n, dd), a("Out", kFloat, out, n, dd)}
	if inplace {
		args = []arg{a("X", kFloat, inout, n, dd), a("Y", kFloat, in, n, dd)}
	}
	if gate {
		args = append(args, a("Gate", kFloat, in, b, dd))
	}
	return mk(ops.OpGateResidualFwd, dt, size, int64(2*n*dd), args,
		func(g *gen, d data) {
			d.f["X"] = g.normal(n*dd, 0, 1)
			d.f["Y"] = g.normal(n*dd, 0, 1)
			d.f["Gate"] = g.normal(b*dd, 0, 1)
			d.f["Out"] = nans(n * dd)
		},
		func(o ops.Ops, t tensors) error {
			p := &ops.GateResidualParams{Out: t["Out"], X: t["X"], Y: t["Y"], Gate: t["Gate"], RowsPerGroup: l}
			if inplace {
				p.Out = p.X
			}
			return o.GateResidualFwd(p)
		},
		"b", b, "l", l, "d", dd, "gate", yesno(gate), "inplace", yesno(inplace))
}

func gateBwdCase(b, l, dd int, gate bool, dt ops.DType, size Size) Case {
	n := b * l
	args := []arg{a("DOut", kFloat, in, n, dd), a("Y", kFloat, in, n, dd), a("DY", kFloat, out, n, dd)}
	if gate {
		args = append(args, a("Gate", kFloat, in, b, dd), a("DGate", kAcc, out, b, dd))
	}
	c := mk(ops.OpGateResidualBwd, dt, size, int64(3*n*dd), args,
		func(g *gen, d data) {
			d.f["DOut"] = g.normal(n*dd, 0, 1)
			d.f["Y"] = g.normal(n*dd, 0, 1)
			d.f["Gate"] = g.normal(b*dd, 0, 1)
			d.f["DY"], d.f["DGate"] = nans(n*dd), nans(b*dd)
		},
		func(o ops.Ops, t tensors) error {
			return o.GateResidualBwd(&ops.GateResidualBwdParams{DY: t["DY"], DOut: t["DOut"], Y: t["Y"], Gate: t["Gate"],
				DGate: t["DGate"], RowsPerGroup: l})
		},
		"b", b, "l", l, "d", dd, "gate", yesno(gate))
	return withTol(c, sumTol(l))
}

// ---- CopyCols / GatherRows / ScatterRows ----

func rowColCases() []Case {
	var cs []Case
	type cc struct {
		r, cd, cs, dOff, sOff, w int
		acc                      bool
	}
	for _, s := range []cc{
		{1, 1, 1, 0, 0, 1, false},
		{3, 7, 42, 0, 14, 7, false},  // split one chunk out of adaLN's [B, 6D]
		{3, 42, 7, 35, 0, 7, true},   // assemble its gradient
		{5, 131, 97, 3, 1, 95, true}, // odd offsets and widths
		{2, 13, 13, 5, 2, 8, false},
	} {
		for _, dt := range fdts {
			s := s
			c := mk(ops.OpCopyCols, dt, Small, int64(s.r*s.w),
				[]arg{a("Src", kFloat, in, s.r, s.cs), a("Dst", kFloat, inout, s.r, s.cd)},
				func(g *gen, d data) {
					d.f["Src"] = g.normal(s.r*s.cs, 0, 1)
					d.f["Dst"] = g.normal(s.r*s.cd, 0, 1)
				},
				func(o ops.Ops, t tensors) error {
					return o.CopyCols(&ops.CopyColsParams{Dst: t["Dst"], Src: t["Src"], DstOff: s.dOff, SrcOff: s.sOff, Width: s.w, Accumulate: s.acc})
				},
				"r", s.r, "dst", s.cd, "src", s.cs, "dstoff", s.dOff, "srcoff", s.sOff, "w", s.w, "acc", yesno(s.acc))
			c.Exact = !s.acc
			cs = append(cs, c)
		}
	}
	type rs struct {
		n, d, r int
		acc     bool
		size    Size
	}
	for _, s := range []rs{{1, 1, 1, false, Small}, {97, 33, 0, false, Small}, {194, 65, 97, false, Small}, {194, 65, 97, true, Small},
		{2050, 768, 1025, false, Large}} {
		for _, dt := range fdts {
			s := s
			if !s.acc {
				c := mk(ops.OpGatherRows, dt, s.size, 0,
					[]arg{a("In", kFloat, in, s.n, s.d), a("Rows", kI32, in, s.r), a("Out", kFloat, out, s.r, s.d)},
					func(g *gen, d data) {
						d.f["In"] = g.normal(s.n*s.d, 0, 1)
						d.i["Rows"] = g.ints(s.r, 0, s.n) // repeats allowed
						if s.r > 0 {
							d.i["Rows"][s.r-1] = int32(s.n - 1)
						}
						d.f["Out"] = nans(s.r * s.d)
					},
					func(o ops.Ops, t tensors) error {
						return o.GatherRows(&ops.GatherRowsParams{Out: t["Out"], In: t["In"], Rows: t["Rows"]})
					},
					"n", s.n, "d", s.d, "r", s.r)
				c.Exact = true
				cs = append(cs, c)
			}
			c := mk(ops.OpScatterRows, dt, s.size, int64(s.r*s.d),
				[]arg{a("In", kFloat, in, s.r, s.d), a("Rows", kI32, in, s.r), a("Out", kFloat, inout, s.n, s.d)},
				func(g *gen, d data) {
					d.f["In"] = g.normal(s.r*s.d, 0, 1)
					d.i["Rows"] = g.perm(s.n)[:s.r] // distinct
					d.f["Out"] = g.normal(s.n*s.d, 0, 1)
				},
				func(o ops.Ops, t tensors) error {
					return o.ScatterRows(&ops.ScatterRowsParams{Out: t["Out"], In: t["In"], Rows: t["Rows"], Accumulate: s.acc})
				},
				"n", s.n, "d", s.d, "r", s.r, "acc", yesno(s.acc))
			c.Exact = !s.acc
			cs = append(cs, c)
		}
	}
	return cs
}
