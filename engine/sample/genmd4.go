package sample

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
)

// GenMD4's reverse step (the md4 code has no GenMD4 sampler; md4.md §4 and open question 7).
//
// Derivation. The forward process masks a token of value i by time t with probability
// 1 − α_{t,i} = (1−ε)·t^{w_i}, independently per position, and the mask is absorbing. For
// s < t the two-time posterior of one position given its clean value i is, when x_t = m,
//
//	q(x_s = m | x_t = m, x0 = i) = (1 − α_{s,i})/(1 − α_{t,i}) = (s/t)^{w_i} =: r_i(s, t)
//	q(x_s = i | x_t = m, x0 = i) = 1 − r_i(s, t)
//
// (the (1−ε) factor cancels), and an unmasked position keeps its value. The reverse model
// replaces the unknown x0 by the network's μ = μ_θ(x_t, t) over the V real tokens
// (md4.md §4, with E[x0 x0ᵀ | x_t] ≈ diag(μ)): summing the posterior over x0 ~ μ,
//
//	p(x_s = i | x_t = m) = μ_i·(1 − r_i(s, t))          for each real token i,
//	p(x_s = m | x_t = m) = Σ_i μ_i·r_i(s, t),
//
// a categorical over V+1 outcomes that sums to 1. With every w_i = 1 it is MD4's
// linear-schedule step (p_unmask = 1 − s/t, unshifted). At s = 0 every r_i is 0, so the last
// step of the grid unmasks every position (the final argmax decode finds nothing left).
//
// Implementation: ops.SampleParams.ClassUnmask carries q_i = 1 − r_i = −expm1(w_i·ln(s/t))
// (no cancellation when s ≈ t), and SampleStep draws exactly in float64: j ~ μ by inverse CDF
// (top-p applied to μ first), then the position takes j iff u1 < q_j, otherwise it stays
// masked. So P(j) = μ_j·q_j and P(mask) = Σ_j μ_j·(1 − q_j): exactly the categorical above.
//
// Validation (sample_test.go): if μ is the exact posterior of i.i.d. tokens with marginal π,
// μ_i(t) = π_i·t^{w_i}/Σ_j π_j·t^{w_j}, then by induction over the grid P(masked at t) =
// Σ_j π_j·t^{w_j} and P(token i is revealed in (s, t]) = π_i·(t^{w_i} − s^{w_i}): each token
// ends with value i ~ π and its unmask time τ has P(τ ≤ t | i) = t^{w_i} = (1 − α_{t,i})/(1 − ε),
// the learned schedule. The test checks these frequencies with a χ² test.

// GenClassUnmask fills dst[i] = 1 − (s/t)^{w_i}, the probability that a position masked at
// time t whose token will be i unmasks by time s < t (ops.SampleParams.ClassUnmask), computed
// as −expm1(w_i·ln(s/t)). s = 0 gives 1. It panics if the lengths differ or unless
// 0 ≤ s < t ≤ 1.
func GenClassUnmask(dst, powers []float64, s, t float64) {
	if len(dst) != len(powers) {
		panic(fmt.Sprintf("sample: GenClassUnmask: len(dst)=%d != len(powers)=%d", len(dst), len(powers)))
	}
	if !(s >= 0 && s < t && t <= 1) {
		panic(fmt.Sprintf("sample: GenClassUnmask: times s=%v, t=%v; want 0 ≤ s < t ≤ 1", s, t))
	}
	lr := math.Log(s / t) // −Inf at s = 0
	for i, w := range powers {
		q := -math.Expm1(w * lr)
		dst[i] = math.Min(math.Max(q, 0), 1)
	}
}

// GenPlan returns the T steps of the GenMD4 ancestral sampler on grid g: the times (t, s) of
// diffusion.GridTimes (t from 1 down, s down to 0), step I = i. PUnmask is 0: the per-class
// probabilities GenClassUnmask(s, t) replace it.
func GenPlan(g diffusion.Grid, T int) ([]diffusion.SamplerStep, error) {
	if T < 1 {
		return nil, fmt.Errorf("diffusion: sampler needs T ≥ 1 steps, got %d", T)
	}
	if g != diffusion.GridUniform && g != diffusion.GridCosine {
		return nil, fmt.Errorf("sample: unknown sampling grid %v; valid: uniform, cosine", g)
	}
	plan := make([]diffusion.SamplerStep, T)
	for i := range plan {
		t, s := diffusion.GridTimes(g, i, T)
		plan[i] = diffusion.SamplerStep{I: i, T: t, S: s}
	}
	return plan, nil
}

// ModelPowers returns a GenMD4 model's schedule powers w = softplus(schedule.w_raw) (use the
// EMA weights for sampling, model.WithWeights).
func ModelPowers(m *model.Model) ([]float64, error) {
	p := m.GenSchedule()
	if p == nil {
		return nil, fmt.Errorf("sample: this is an MD4 model; it has no GenMD4 schedule (schedule.w_raw)")
	}
	raw, err := m.GetParam(p)
	if err != nil {
		return nil, err
	}
	w := make([]float64, len(raw))
	diffusion.GenPowers(w, raw)
	return w, nil
}
