package opstest

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// ---- GenMaskedCE (GenMD4's fused masked diffusion loss) ----

func genMaskedCECases() []Case {
	type gs struct {
		r, v             int
		dlogits, dpowers bool
		lscale           float64
		equal            bool // every power equal (the MD4 poly-k special case)
		size             Size
	}
	var cs []Case
	for _, s := range []gs{
		{5, 27, true, true, 1, false, Small},
		{0, 27, true, true, 1, false, Small}, // nothing masked: DPowers unchanged
		{3, 1, true, true, 1, false, Small},  // one-token vocabulary: μ = 1, loss 0, DPowers += −c
		{97, 256, false, true, 1, false, Small},
		{31, 256, true, false, 30, false, Small}, // large logits: the max must be subtracted
		{130, 27, true, true, 1, true, Small},    // more than two row chunks; w_j = 2 for all j
		{64, 50257, true, true, 2, false, Large},
		{7, 50257, false, false, 2, false, Large},
	} {
		for _, dt := range fdts {
			cs = append(cs, genMaskedCECase(s.r, s.v, s.dlogits, s.dpowers, s.lscale, s.equal, dt, s.size))
		}
	}
	return cs
}

func genMaskedCECase(r, v int, dlogits, dpowers bool, lscale float64, equal bool, dt ops.DType, size Size) Case {
	args := []arg{a("Logits", kFloat, in, r, v), a("Targets", kI32, in, r), a("Scales", kF64, in, r),
		a("Powers", kF64, in, v), a("Loss", kF64, out, r)}
	if dlogits {
		args = append(args, a("DLogits", kFloat, out, r, v))
	}
	if dpowers {
		args = append(args, a("DPowers", kF64, inout, v))
	}
	kv := []any{"r", r, "v", v, "dlogits", yesno(dlogits), "dpowers", yesno(dpowers)}
	if lscale != 1 {
		kv = append(kv, "lscale", lscale)
	}
	if equal {
		kv = append(kv, "powers", "equal")
	}
	c := mk(ops.OpGenMaskedCE, dt, size, int64(8*r*v), args,
		func(g *gen, d data) {
			d.f["Scales"] = ceRows(g, d, r, v, lscale) // row 2: a zero scale
			if equal {
				d.f["Powers"] = fillConst(v, 2)
			} else {
				d.f["Powers"] = g.uniform(v, 0.2, 3)
			}
			d.f["Loss"] = nans(r)
			d.f["DLogits"] = nans(r * v)
			d.f["DPowers"] = g.normal(v, 0, 1)
		},
		func(o ops.Ops, t tensors) error {
			return o.GenMaskedCE(&ops.GenMaskedCEParams{Logits: t["Logits"], Targets: t["Targets"], Scales: t["Scales"],
				Powers: t["Powers"], Loss: t["Loss"], DLogits: t["DLogits"], DPowers: t["DPowers"]})
		},
		kv...)
	return withTol(c, sumTol(max(16, r)))
}
