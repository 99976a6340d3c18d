package opstest

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// Seeds and steps of the random ops use both 32-bit halves of the Philox key and of the
// step counter, so a backend that drops the high half is caught.
const (
	caseSeed = 0x9E3779B97F4A7C15
	caseStep = 0x0000_0123_4567_89AB
)

// MaskDType is the DType of the MaskTokens cases, passed to Backend.Supports: the op's
// only floating tensor is MaskProb, which is always F64 (its token tensors are I32).
const MaskDType = ops.F64

// ---- MaskedCE ----

func maskedCECases() []Case {
	type ms struct {
		r, v    int
		dlogits bool
		lscale  float64
		size    Size
	}
	var cs []Case
	for _, s := range []ms{
		{5, 27, true, 1, Small},
		{0, 27, true, 1, Small}, // nothing masked
		{3, 1, true, 1, Small},  // a one-token vocabulary: loss and gradient exactly 0
		{97, 256, false, 1, Small},
		{31, 256, true, 30, Small}, // large logits: the max must be subtracted
		{64, 50257, true, 2, Large},
		{7, 50257, false, 2, Large},
	} {
		for _, dt := range fdts {
			cs = append(cs, maskedCECase(s.r, s.v, s.dlogits, s.lscale, dt, s.size))
		}
	}
	return cs
}

func maskedCECase(r, v int, dlogits bool, lscale float64, dt ops.DType, size Size) Case {
	args := []arg{a("Logits", kFloat, in, r, v), a("Targets", kI32, in, r), a("Weights", kF64, in, r), a("Loss", kF64, out, r)}
	if dlogits {
		args = append(args, a("DLogits", kFloat, out, r, v))
	}
	kv := []any{"r", r, "v", v, "dlogits", yesno(dlogits)}
	if lscale != 1 {
		kv = append(kv, "lscale", lscale)
	}
	c := mk(ops.OpMaskedCE, dt, size, int64(5*r*v), args,
		func(g *gen, d data) {
			d.f["Weights"] = ceRows(g, d, r, v, lscale) // row 2: a zero weight (t = 0 rows of some schedules)
			d.f["Loss"] = nans(r)
			d.f["DLogits"] = nans(r * v)
		},
		func(o ops.Ops, t tensors) error {
			return o.MaskedCE(&ops.MaskedCEParams{Logits: t["Logits"], Targets: t["Targets"], Weights: t["Weights"], Loss: t["Loss"], DLogits: t["DLogits"]})
		},
		kv...)
	return withTol(c, sumTol(16))
}

// ---- MaskTokens ----

func maskCases() []Case {
	type ms struct {
		b, l, v  int
		perToken bool
		pad      bool
		purpose  rng.Purpose
		size     Size
	}
	var cs []Case
	for _, s := range []ms{
		{1, 1, 27, false, false, rng.PurposeMask, Small},
		{4, 97, 27, false, true, rng.PurposeMask, Small},  // rows with p = 0, 1, 0.3, 0.77
		{3, 33, 256, true, false, rng.PurposeMask, Small}, // GenMD4 per-token probabilities
		{2, 65, 27, true, true, rng.PurposeMask2, Small},
		{8, 1025, 50257, false, true, rng.PurposeMask, Large},
	} {
		cs = append(cs, maskCase(s.b, s.l, s.v, s.perToken, s.pad, s.purpose, s.size))
	}
	return cs
}

func maskCase(b, l, v int, perToken, pad bool, purpose rng.Purpose, size Size) Case {
	args := []arg{a("X0", kI32, in, b, l), a("XT", kI32, out, b, l)}
	if perToken {
		args = append(args, a("MaskProb", kF64, in, b, v))
	} else {
		args = append(args, a("MaskProb", kF64, in, b))
	}
	if pad {
		args = append(args, a("SeqLens", kI32, in, b))
	}
	prob := "per-seq"
	if perToken {
		prob = "per-token"
	}
	c := mk(ops.OpMaskTokens, MaskDType, size, 0, args,
		func(g *gen, d data) {
			x0 := g.ints(b*l, 0, v)
			x0[0] = int32(v - 1)
			d.i["X0"] = x0
			d.i["XT"] = garbage(b * l)
			if perToken {
				p := g.uniform(b*v, 0, 1)
				for j := 0; j < v; j++ {
					p[j] = 0 // sequence 0: nothing may be masked
				}
				d.f["MaskProb"] = p
			} else {
				p := g.uniform(b, 0, 1)
				for i, fixed := range []float64{0, 1, 0.3, 0.77} {
					if i < b {
						p[i] = fixed
					}
				}
				if b == 1 {
					p[0] = 0.5
				}
				d.f["MaskProb"] = p
			}
			d.i["SeqLens"] = seqLens(b, l)
		},
		func(o ops.Ops, t tensors) error {
			return o.MaskTokens(&ops.MaskParams{XT: t["XT"], X0: t["X0"], MaskProb: t["MaskProb"], SeqLens: t["SeqLens"],
				MaskID: int32(v), Seed: caseSeed, Step: caseStep, Purpose: uint8(purpose)})
		},
		"b", b, "l", l, "v", v, "prob", prob, "pad", yesno(pad), "purpose", int(purpose))
	c.Name = name(ops.OpMaskTokens, "b", b, "l", l, "v", v, "prob", prob, "pad", yesno(pad), "purpose", int(purpose))
	return c
}

// ---- SampleStep ----

type sampleSpec struct {
	b, l, v    int
	mode       ops.SampleMode
	punmask    float64
	topP       float64
	subset     bool // list only some of the masked positions
	inplace    bool // Out = Z
	ties       bool // integer logits: many ties for argmax
	noneMasked bool // R = 0
	class      bool // GenMD4 per-class unmask probabilities (ClassUnmask)
	size       Size
}

func sampleCases() []Case {
	var cs []Case
	for _, s := range []sampleSpec{
		{b: 2, l: 97, v: 27, mode: ops.SampleExact, punmask: 0.37},
		{b: 2, l: 33, v: 27, mode: ops.SampleExact, punmask: 0},                // nothing unmasks
		{b: 2, l: 33, v: 27, mode: ops.SampleExact, punmask: 1, inplace: true}, // everything unmasks
		{b: 3, l: 33, v: 256, mode: ops.SampleExact, punmask: 0.6, topP: 0.9, subset: true},
		{b: 2, l: 33, v: 27, mode: ops.SampleJAXCompat, punmask: 0.5},
		{b: 1, l: 33, v: 27, mode: ops.SampleArgmax, punmask: 1, ties: true},
		{b: 1, l: 7, v: 27, mode: ops.SampleExact, punmask: 0.5, noneMasked: true},
		{b: 1, l: 64, v: 50257, mode: ops.SampleExact, punmask: 0.5, size: Large},
		{b: 1, l: 64, v: 50257, mode: ops.SampleExact, punmask: 1, topP: 0.95, size: Large},
		{b: 2, l: 97, v: 27, mode: ops.SampleExact, class: true}, // GenMD4 reverse step
		{b: 3, l: 33, v: 256, mode: ops.SampleExact, topP: 0.9, subset: true, class: true},
		{b: 1, l: 33, v: 27, mode: ops.SampleArgmax, class: true, ties: true}, // argmax ignores ClassUnmask
		{b: 1, l: 64, v: 50257, mode: ops.SampleExact, class: true, size: Large},
	} {
		for _, dt := range fdts {
			cs = append(cs, sampleCase(s, dt))
		}
	}
	return cs
}

// sampleZ returns a state with about half the positions masked (all of them in sequence
// 1 when it exists, none when noneMasked) and the rows to sample: the masked positions in
// a shuffled order (only half of them with subset).
func sampleZ(g *gen, s sampleSpec) (z, rows []int32) {
	z = g.ints(s.b*s.l, 0, s.v)
	u := g.uniform(s.b*s.l, 0, 1)
	var masked []int32
	for i := range z {
		if !s.noneMasked && (u[i] < 0.5 || i/s.l == 1) {
			z[i] = int32(s.v)
			masked = append(masked, int32(i))
		}
	}
	p := g.perm(len(masked))
	rows = make([]int32, len(masked))
	for i, j := range p {
		rows[i] = masked[j]
	}
	if s.subset {
		rows = rows[:len(rows)/2]
	}
	return z, rows
}

func sampleCase(s sampleSpec, dt ops.DType) Case {
	// The row count is data-dependent; draw the state once to size the arguments.
	z, rows := sampleZ(newGen(sampleName(s, dt)), s)
	r := len(rows)
	args := []arg{a("Z", kI32, in, s.b, s.l), a("Out", kI32, out, s.b, s.l), a("Logits", kFloat, in, r, s.v), a("Rows", kI32, in, r)}
	if s.inplace {
		args = []arg{a("Z", kI32, inout, s.b, s.l), a("Logits", kFloat, in, r, s.v), a("Rows", kI32, in, r)}
	}
	if s.class {
		args = append(args, a("ClassUnmask", kF64, in, s.v))
	}
	c := mk(ops.OpSampleStep, dt, s.size, int64(4*r*s.v), args,
		func(g *gen, d data) {
			d.i["Z"], d.i["Rows"] = z, rows
			d.i["Out"] = garbage(s.b * s.l)
			if s.ties {
				l := g.ints(r*s.v, 0, 4)
				f := make([]float64, len(l))
				for i, x := range l {
					f[i] = float64(x)
				}
				d.f["Logits"] = f
			} else {
				d.f["Logits"] = g.normal(r*s.v, 0, 2)
			}
			if s.class {
				q := g.uniform(s.v, 0, 1)
				q[0], q[s.v-1] = 0, 1 // never / always unmasks
				d.f["ClassUnmask"] = q
			}
		},
		func(o ops.Ops, t tensors) error {
			p := &ops.SampleParams{Out: t["Out"], Z: t["Z"], Logits: t["Logits"], Rows: t["Rows"], PUnmask: s.punmask, TopP: s.topP,
				Mode: s.mode, MaskID: int32(s.v), Seed: caseSeed, Step: caseStep, ClassUnmask: t["ClassUnmask"]}
			if s.inplace {
				p.Out = p.Z
			}
			return o.SampleStep(p)
		})
	c.Name = sampleName(s, dt)
	return c
}

func sampleName(s sampleSpec, dt ops.DType) string {
	kv := []any{"b", s.b, "l", s.l, "v", s.v, "mode", s.mode, "punmask", s.punmask}
	if s.topP != 0 {
		kv = append(kv, "topp", s.topP)
	}
	if s.subset {
		kv = append(kv, "rows", "subset")
	}
	if s.noneMasked {
		kv = append(kv, "rows", "none")
	}
	if s.ties {
		kv = append(kv, "logits", "ties")
	}
	if s.inplace {
		kv = append(kv, "inplace", "yes")
	}
	if s.class {
		kv = append(kv, "class", "yes")
	}
	return name(ops.OpSampleStep, append(kv, "dt", dt)...)
}

// ---- AdamW / SumSquares / Axpy ----

func optimCases() []Case {
	var cs []Case
	type as struct {
		shape       []int
		step        int
		ema, shadow bool
		zeroMoments bool
		wd          float64
		size        Size
	}
	for _, s := range []as{
		{[]int{1}, 1, false, false, true, 0.1, Small},
		{[]int{97, 33}, 1000, true, true, false, 0.1, Small},
		{[]int{7}, 3, true, false, false, 0, Small},
		{[]int{1025, 768}, 20000, true, true, false, 0.1, Large},
	} {
		cs = append(cs, adamwCase(s.shape, s.step, s.ema, s.shadow, s.zeroMoments, s.wd, s.size))
	}
	type ss struct {
		shape []int
		size  Size
	}
	for _, s := range []ss{{[]int{1}, Small}, {[]int{97, 33}, Small}, {[]int{2, 7, 13}, Small}, {[]int{1025, 1031}, Large}} {
		for _, dt := range fdts {
			s := s
			n := numel(s.shape)
			cs = append(cs, withTol(mk(ops.OpSumSquares, dt, s.size, int64(2*n),
				[]arg{a("X", kFloat, in, s.shape...), a("Out", kF64, inout, 1)},
				func(g *gen, d data) {
					d.f["X"] = g.normal(n, 0, 1)
					d.f["Out"] = []float64{0.25}
				},
				func(o ops.Ops, t tensors) error {
					return o.SumSquares(&ops.SumSquaresParams{Out: t["Out"], X: t["X"]})
				},
				"shape", shapeStr(s.shape)), sumTol(16)))
		}
	}
	type xs struct {
		shape       []int
		alpha, beta float32
		x           bool
		size        Size
	}
	for _, s := range []xs{
		{[]int{97, 33}, 0.5, 1, true, Small},
		{[]int{7}, 0, 0, false, Small}, // zero-fill a tensor holding NaN
		{[]int{13}, 0, 0.9, false, Small},
		{[]int{1}, -1.5, 0, true, Small}, // Y is overwritten without being read
		{[]int{1025, 257}, 1, -0.25, true, Large},
	} {
		for _, dt := range fdts {
			s := s
			n := numel(s.shape)
			yRole := inout
			if s.beta == 0 {
				yRole = out
			}
			args := []arg{a("Y", kFloat, yRole, s.shape...)}
			if s.x {
				args = append(args, a("X", kFloat, in, s.shape...))
			}
			cs = append(cs, mk(ops.OpAxpy, dt, s.size, int64(3*n), args,
				func(g *gen, d data) {
					d.f["X"] = g.normal(n, 0, 1)
					if s.beta == 0 {
						d.f["Y"] = nans(n)
					} else {
						d.f["Y"] = g.normal(n, 0, 1)
					}
				},
				func(o ops.Ops, t tensors) error {
					return o.Axpy(&ops.AxpyParams{Y: t["Y"], X: t["X"], Alpha: s.alpha, Beta: s.beta})
				},
				"shape", shapeStr(s.shape), "alpha", s.alpha, "beta", s.beta, "x", yesno(s.x)))
		}
	}
	return cs
}

// shadowTol accepts one bf16 ulp of difference in AdamW's bf16 shadow copy, which
// rounds a Param that may itself differ by a float32 ulp. (That the shadow is exactly
// the device's own Param rounded to bf16 is checked separately.)
var shadowTol = Tolerance{NMSE: 1e-5, RTol: 1.0 / 64, ATol: 1e-30}

func adamwCase(shape []int, step int, ema, shadow, zeroMoments bool, wd float64, size Size) Case {
	n := numel(shape)
	args := []arg{a("Param", kAcc, inout, shape...), a("Grad", kAcc, in, shape...), a("M", kAcc, inout, shape...), a("V", kAcc, inout, shape...)}
	if ema {
		args = append(args, a("EMA", kAcc, inout, shape...))
	}
	if shadow {
		sh := a("Shadow", kBF16, out, shape...)
		sh.tol = &shadowTol
		args = append(args, sh)
	}
	c := mk(ops.OpAdamW, ops.F32, size, int64(20*n), args,
		func(g *gen, d data) {
			d.f["Param"] = g.normal(n, 0, 0.1)
			d.f["Grad"] = g.normal(n, 0, 1)
			if zeroMoments {
				d.f["M"], d.f["V"] = make([]float64, n), make([]float64, n)
			} else {
				d.f["M"] = g.normal(n, 0, 0.1)
				d.f["V"] = g.uniform(n, 0, 0.01)
			}
			d.f["EMA"] = g.normal(n, 0, 0.1)
			d.f["Shadow"] = nans(n)
		},
		func(o ops.Ops, t tensors) error {
			return o.AdamW(&ops.AdamWParams{Param: t["Param"], Grad: t["Grad"], M: t["M"], V: t["V"], EMA: t["EMA"], Shadow: t["Shadow"],
				LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: wd, EMADecay: 0.9999, GradScale: 0.5, Step: step})
		},
		"shape", shapeStr(shape), "step", step, "ema", yesno(ema), "shadow", yesno(shadow), "wd", wd)
	if shadow {
		c.verify = func(got map[string]*host) error {
			p, sh := got["Param"], got["Shadow"]
			for k, n := 0, p.len(); k < n; k++ {
				if want := BF16Bits(float32(p.at(k))); sh.u16[k] != want {
					return fmt.Errorf("output Shadow at %s is %s, but bf16(Param) = %#04x (Param %v)",
						Index(shape, k), sh.fmtBits(k), want, p.at(k))
				}
			}
			return nil
		}
	}
	return c
}

// ---- Convert ----

// convertSpecials are values whose conversion is easy to get wrong: signed zeros, ties
// of bf16 round-to-nearest-even, overflow to Inf, subnormals, NaN and infinities.
var convertSpecials = []float64{
	0, math.Copysign(0, -1), 1, -1,
	1 + 1.0/256, 1 + 3.0/256, -(1 + 1.0/256), 1 + 1.0/256 + 1.0/65536, // bf16 ties and just above
	math.MaxFloat32, -math.MaxFloat32, 3.3961e38, 1e39, -1e39, 1e-39, -1e-39, 1e-45, 1e-46,
	math.Inf(1), math.Inf(-1), math.NaN(), 65504, 1.0 / 3, 2.0 / 3,
	1 + 1.0/256 + 0x1p-30, -(1 + 3.0/256 - 0x1p-30), // float64 → bf16 must round once, not through float32
}

func convertCases() []Case {
	var cs []Case
	type cv struct{ from, to argKind }
	kinds := map[argKind]ops.DType{kF32: ops.F32, kBF16: ops.BF16, kF64: ops.F64}
	for _, s := range []cv{{kF32, kBF16}, {kBF16, kF32}, {kF32, kF64}, {kF64, kF32}, {kBF16, kF64}, {kF64, kBF16}, {kF32, kF32}} {
		for _, n := range []int{len(convertSpecials), 1031} {
			s, n := s, n
			from, to := kinds[s.from], kinds[s.to]
			dt := ops.F32
			if from == ops.F64 || to == ops.F64 {
				dt = ops.F64
			}
			if from == ops.BF16 || to == ops.BF16 {
				dt = ops.BF16
			}
			c := mk(ops.OpConvert, dt, Small, int64(n),
				[]arg{a("In", s.from, in, n), a("Out", s.to, out, n)},
				func(g *gen, d data) {
					x := g.normal(n, 0, 10)
					copy(x, convertSpecials)
					d.f["In"] = x
					d.f["Out"] = fillConst(n, 7)
				},
				func(o ops.Ops, t tensors) error {
					return o.Convert(&ops.ConvertParams{Out: t["Out"], In: t["In"]})
				})
			c.Name = name(ops.OpConvert, "n", n, "from", from, "to", to)
			c.Exact = true
			cs = append(cs, c)
		}
	}
	return cs
}

// ---- TimeEmbed ----

func timeEmbedCases() []Case {
	var cs []Case
	type ts struct{ b, dc int }
	for _, s := range []ts{{1, 4}, {7, 6}, {97, 130}, {1025, 256}} {
		for _, dt := range fdts {
			s := s
			cs = append(cs, mk(ops.OpTimeEmbed, dt, Small, int64(20*s.b*s.dc),
				[]arg{a("T", kF64, in, s.b), a("Out", kFloat, out, s.b, s.dc)},
				func(g *gen, d data) {
					t := g.uniform(s.b, 0, 1)
					t[0] = 0
					if s.b > 1 {
						t[1] = 1
					}
					d.f["T"] = t
					d.f["Out"] = nans(s.b * s.dc)
				},
				func(o ops.Ops, t tensors) error {
					return o.TimeEmbed(&ops.TimeEmbedParams{Out: t["Out"], T: t["T"], Scale: 1000})
				},
				"b", s.b, "dc", s.dc))
		}
	}
	return cs
}

// ceRows draws the common inputs of the cross-entropy cases (MaskedCE, GenMaskedCE): logits
// [r, v] ~ N(0, lscale²) and targets into d, with the edge targets v−1 (row 0) and 0 (row
// 1), and returns per-row factors in [0, 2) with a zero at row 2.
func ceRows(g *gen, d data, r, v int, lscale float64) []float64 {
	d.f["Logits"] = g.normal(r*v, 0, lscale)
	t := g.ints(r, 0, v)
	if r > 0 {
		t[0] = int32(v - 1)
	}
	if r > 1 {
		t[1] = 0
	}
	d.i["Targets"] = t
	f := g.uniform(r, 0, 2)
	if r > 2 {
		f[2] = 0
	}
	return f
}
