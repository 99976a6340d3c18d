package diffusion

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// GenMD4 (md4.md §4, paper §6 and App. I; the md4 code's genmd4.py and
// LearnableVecMaskingSchedule): every token value i has its own schedule
// α_{t,i} = 1 − (1−ε)·t^{w_i} with power w_i = softplus(raw_i) > 0 learned, ε = DefaultEps,
// and t restricted to [t1, 1], t1 = GenDefaultT1. Powers are passed as a []float64 of length
// V (one per real token).

// GenDefaultT1 is GenMD4's lower time limit t1 (md4.md §4).
const GenDefaultT1 = 1e-3

// GenRawInit is the initial raw schedule parameter log(e − 1) ≈ 0.5413, for which
// softplus gives power 1: the schedule starts linear (md4.md §4).
var GenRawInit = math.Log(math.E - 1)

// Softplus returns log(1 + e^x), computed without overflow or cancellation.
func Softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// Sigmoid returns 1/(1 + e^(−x)) = d softplus(x)/dx, without overflow.
func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// GenPowers fills dst[i] = softplus(raw[i]), the schedule powers w from the raw
// parameters (checkpoint tensor schedule.w_raw [V]). It panics if the lengths differ.
func GenPowers(dst, raw []float64) {
	if len(dst) != len(raw) {
		panic(fmt.Sprintf("diffusion: GenPowers: len(dst)=%d != len(raw)=%d", len(dst), len(raw)))
	}
	for i, r := range raw {
		dst[i] = Softplus(r)
	}
}

// GenRawGrad converts a gradient with respect to the powers w into one with respect to
// the raw parameters: dst[i] = gradW[i]·sigmoid(raw[i]). dst may alias gradW.
func GenRawGrad(dst, gradW, raw []float64) {
	for i, r := range raw {
		dst[i] = gradW[i] * Sigmoid(r)
	}
}

// GenAlpha returns α_{t,i} = 1 − (1−ε)·t^w (md4.md §1.2 "GenMD4 schedule"): α_0 = 1
// exactly, α_1 = ε.
func GenAlpha(t, w, eps float64) float64 { return 1 - GenMaskProb(t, w, eps) }

// GenMaskProb returns 1 − α_{t,i} = (1−ε)·t^w, the probability that a token with power w
// is masked at time t.
func GenMaskProb(t, w, eps float64) float64 { return (1 - eps) * math.Pow(t, w) }

// GenDAlpha returns α'_{t,i} = −(1−ε)·w·t^(w−1).
func GenDAlpha(t, w, eps float64) float64 { return -(1 - eps) * w * math.Pow(t, w-1) }

// GenWeight returns w(t)_i = α'_{t,i}/(1−α_{t,i}) = −w/t exactly (md4.md §8 item 5: the
// (1−ε) factor cancels). Infinite at t = 0, which GenTimes never returns (t ≥ t1).
func GenWeight(t, w float64) float64 { return -w / t }

// GenTimes fills dst with GenMD4's training times t_b = t1 + (1−t1)·u_b ∈ [t1, 1], u_b
// from Times (antithetic or i.i.d. on [0, 1); md4.md §4 "Time range").
func GenTimes(dst []float64, t1 float64, seed, step uint64, antithetic bool) {
	Times(dst, seed, step, antithetic)
	for b, u := range dst {
		dst[b] = math.Min(t1+(1-t1)*u, 1)
	}
}

// GenMaskProbTable fills the [B, V] per-token masking table dst[b·V + i] =
// (1−ε)·ts[b]^powers[i] for ops.MaskParams.MaskProb (and MaskRef), B = len(ts),
// V = len(powers). It panics if len(dst) != B·V.
func GenMaskProbTable(dst, ts, powers []float64, eps float64) {
	V := len(powers)
	if len(dst) != len(ts)*V {
		panic(fmt.Sprintf("diffusion: GenMaskProbTable: len(dst)=%d, want B·V = %d·%d", len(dst), len(ts), V))
	}
	for b, t := range ts {
		row := dst[b*V : (b+1)*V]
		for i, w := range powers {
			row[i] = GenMaskProb(t, w, eps)
		}
	}
}

func genCheckTokens(name string, x []int32, V int, allow int32) error {
	for n, v := range x {
		if (v < 0 || int(v) >= V) && v != allow {
			return ops.Errorf(ops.OpMaskTokens, name, ops.ErrValue, "%d at index %d is not in [0, %d)", v, n, V)
		}
	}
	return nil
}

// GenRecon returns GenMD4's reconstruction term for one sequence x0 (its real tokens
// only), in nats per sequence (md4.md §4, the md4 code's recon_loss):
//
//	recon = Σ_n (1−ε)·t1^{w_{x_n}}·( −w_{x_n}·ln t1 + logsumexp_j(w_j·ln t1) )
//
// (a position is still masked at t1 with probability (1−ε)t1^{w_{x_n}} and is then decoded
// with p(j | mask) ∝ t1^{w_j}). If grad is not nil (length V) it adds ∂recon/∂w_k to
// grad[k]. At w = 1 it equals (1−ε)·t1·L·ln V (md4.md §8 item 5). Errors wrap ops.ErrValue
// for a token outside [0, V).
func GenRecon(x0 []int32, powers []float64, eps, t1 float64, grad []float64) (float64, error) {
	V := len(powers)
	if err := genCheckTokens("X0", x0, V, -1); err != nil {
		return 0, err
	}
	if grad != nil && len(grad) != V {
		return 0, ops.Errorf(ops.OpMaskTokens, "grad", ops.ErrShape, "len %d, want V = %d", len(grad), V)
	}
	a := math.Log(t1)
	mx := math.Inf(-1)
	for _, w := range powers {
		mx = math.Max(mx, a*w)
	}
	var z float64
	for _, w := range powers {
		z += math.Exp(a*w - mx)
	}
	lse := mx + math.Log(z)
	keep := math.Log1p(-eps)
	var val, sumM float64
	for _, x := range x0 {
		w := powers[x]
		m := math.Exp(keep + a*w) // (1−ε)·t1^w
		g := -a*w + lse
		val += m * g
		if grad != nil {
			grad[x] += a * m * (g - 1)
			sumM += m
		}
	}
	if grad != nil {
		for k, w := range powers {
			grad[k] += a * math.Exp(a*w-lse) * sumM
		}
	}
	return val, nil
}

// GenPositionTerm returns the GenMD4 diffusion integrand of one masked position with clean
// token x at time t, in nats (md4.md §4, eq. 12):
//
//	(1/t)·( Σ_j w_j·μ_j − w_x·(1 + log μ_x) ) ≥ 0,
//
// where μ [V] is the model's distribution over real tokens. The diffusion term of a
// sequence is the sum over its masked positions. If all w_j = c it is (c/t)·CE_x, MD4 with
// the poly-c schedule; at w = 1 and uniform μ it is ln V/t. If grad is not nil (length V) it
// adds ∂/∂w_j = (μ_j − [j = x]·(1 + log μ_x))/t to grad[j] (the pathwise part of the
// gradient; the score-function part is RLOO's).
func GenPositionTerm(mu []float64, x int32, powers []float64, t float64, grad []float64) float64 {
	var wmu float64
	for j, w := range powers {
		wmu += w * mu[j]
	}
	c := 1 + math.Log(mu[x])
	if grad != nil {
		for j, m := range mu[:len(powers)] {
			grad[j] += m / t
		}
		grad[x] -= c / t
	}
	return (wmu - powers[x]*c) / t
}

// GenLogQ returns log q(z | x0) of one mask sample z given x0 at time t (both the real
// positions of one sequence), in nats (md4.md §4 step 3): the sum over positions of
//
//	masked (z_n = maskID):  ln(1−ε) + w_{x_n}·ln t
//	unmasked (z_n = x_n):   ln(1 − (1−ε)·t^{w_{x_n}})   (computed as ln(−expm1(·)))
//
// If grad is not nil (length V) it adds ∂/∂w_k: ln t per masked position of value k and
// −ln t/expm1(−y) per unmasked one, y = ln(1−ε) + w_k·ln t. Errors wrap ops.ErrValue (a
// token outside [0, V), or z_n neither the mask nor x_n, which has probability 0) or
// ops.ErrShape.
func GenLogQ(z, x0 []int32, maskID int32, powers []float64, t, eps float64, grad []float64) (float64, error) {
	V := len(powers)
	if len(z) != len(x0) {
		return 0, ops.Errorf(ops.OpMaskTokens, "XT", ops.ErrShape, "len(z)=%d != len(x0)=%d", len(z), len(x0))
	}
	if int(maskID) != V {
		return 0, ops.Errorf(ops.OpMaskTokens, "MaskID", ops.ErrValue, "MaskID %d must equal V = %d", maskID, V)
	}
	if grad != nil && len(grad) != V {
		return 0, ops.Errorf(ops.OpMaskTokens, "grad", ops.ErrShape, "len %d, want V = %d", len(grad), V)
	}
	if err := genCheckTokens("X0", x0, V, -1); err != nil {
		return 0, err
	}
	lt := math.Log(t)
	keep := math.Log1p(-eps)
	var lq float64
	for n, x := range x0 {
		w := powers[x]
		y := keep + w*lt
		switch z[n] {
		case maskID:
			lq += y
			if grad != nil {
				grad[x] += lt
			}
		case x:
			lq += math.Log(-math.Expm1(y))
			if grad != nil {
				grad[x] -= lt / math.Expm1(-y)
			}
		default:
			return 0, ops.Errorf(ops.OpMaskTokens, "XT", ops.ErrValue,
				"z[%d] = %d is neither the mask %d nor x0[%d] = %d", n, z[n], maskID, n, x)
		}
	}
	return lq, nil
}

// RLOO returns GenMD4's 2-sample REINFORCE leave-one-out term for one sequence (md4.md
// §4 step 4): r = ½·(loss1 − loss2)·(logq1 − logq2), where loss_k are the two samples'
// diffusion terms (nats per sequence) and logq_k = GenLogQ of their masks. The factor
// (loss1 − loss2) is a stop-gradient: the gradient of r with respect to w is
// c1·∇logq1 + c2·∇logq2 with (c1, c2) = RLOOCoefs(loss1, loss2). The surrogate to
// differentiate per sequence is ½(loss1 + loss2) + r + recon; the reported NELBO
// (loss_nelbo) excludes r.
func RLOO(loss1, loss2, logq1, logq2 float64) float64 {
	return 0.5 * (loss1 - loss2) * (logq1 - logq2)
}

// RLOOCoefs returns the coefficients (c1, c2) = (½(loss1−loss2), −½(loss1−loss2)) that
// multiply ∇_w log q(z¹|x0) and ∇_w log q(z²|x0) in the gradient of RLOO.
func RLOOCoefs(loss1, loss2 float64) (c1, c2 float64) {
	d := 0.5 * (loss1 - loss2)
	return d, -d
}

// GenPriorNats returns GenMD4's App. E prior term L·ε·ln V in nats per sequence
// (α_{1,i} = ε for every i); the md4 code omits it.
func GenPriorNats(L, V int, eps float64) float64 {
	return float64(L) * eps * math.Log(float64(V))
}

// GenDiffusionScale returns the factor applied to the mean of the GenMD4 diffusion term
// (an average over t ~ U[t1, 1)): 1 for BoundPaperCode (the md4 code, which therefore
// estimates (1/(1−t1))∫_{t1}^1, ~0.1% high) and 1 − t1 for BoundExact (the integral
// ∫_{t1}^1 itself; md4.md §4).
func GenDiffusionScale(b Bound, t1 float64) float64 {
	if b == BoundExact {
		return 1 - t1
	}
	return 1
}

// GenSeq assembles one GenMD4 sequence's estimate, in nats per sequence: the diffusion
// term (Σ over masked positions of GenPositionTerm; for RLOO the mean of the two
// samples), the reconstruction term (GenRecon), and the prior term over the sequence's tokens
// (GenPriorNats). DiffusionExact = (1 − t1)·diffusion.
func GenSeq(diffusion, recon float64, tokens, V int, eps, t1 float64) SeqNLL {
	return SeqNLL{
		Tokens:         tokens,
		Diffusion:      diffusion,
		DiffusionExact: GenDiffusionScale(BoundExact, t1) * diffusion,
		Recon:          recon,
		Prior:          GenPriorNats(tokens, V, eps),
	}
}
