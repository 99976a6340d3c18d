package ops

// GenCERowChunk is the row-chunk height of the reference summation order of
// GenMaskedCEParams.DPowers: the per-row terms of a column are summed sequentially within
// consecutive chunks of this many rows, and the chunk sums sequentially (all in float64).
// Backends may choose another fixed chunking (the result is compared with a tolerance), but
// it must depend only on the shapes, so that results are bit-identical from run to run.
const GenCERowChunk = 64

// GenMaskedCEParams is GenMD4's fused masked diffusion loss (md4.md §4, eq. 12): the
// per-position integrand (1/t)·(Σ_j w_j μ_j − w_x·(1 + log μ_x)) of the state-dependent
// schedule α_{t,i} = 1 − (1−ε)t^{w_i}, its gradient with respect to the logits, and its
// (pathwise) gradient with respect to the schedule powers w. Each of the R rows of Logits
// [R, V] is one masked position with clean token x = Targets[r] and per-row factor
// c = Scales[r] (1/t_b times the batch normalisation, e.g. ½·(1/t_b)/(L·ln 2)/B for the
// RLOO average of two samples in bits per token). With μ = softmax(Logits[r]) (max-subtracted,
// float64 sums on the CPU), LSE its log-normaliser, CE = LSE − Logits[r, x] = −log μ_x and
// w̄_r = Σ_j w_j μ_j:
//
//	Loss[r]        = c · ( w_x·CE + w̄_r − w_x )                              (F64 [R], ≥ 0)
//	DLogits[r, k]  = c · ( μ_k·(w_x + w_k − w̄_r) − w_x·[k = x] )              (optional)
//	DPowers[j]    += Σ_r c_r · ( μ_{r,j} + [j = x_r]·(CE_r − 1) )             (optional, F64 [V])
//
// (w_x·CE + w̄ − w_x = Σ_j w_j μ_j − w_x(1 + log μ_x): each component of md4.md's bracket
// x0_j(1 + log μ_x0) − μ_j is ≤ 0, so the loss is ≥ 0 for c ≥ 0 and w > 0.) With every
// w_j = k the loss is k·c·CE: MaskedCE with weight k·c, the MD4 poly-k integrand, and
// Σ_j of the DPowers increment is Σ_r c_r·CE_r, the derivative with respect to k.
//
// DPowers is accumulated (+=), summed per column in the order of GenCERowChunk (CPU),
// deterministically on every backend; it holds the pathwise part of the gradient with
// respect to w only — the score-function part (the masks depend on w) is RLOO's, computed
// on the host (diffusion.GenLogQ). Powers [V] F64 must be finite and > 0 where used;
// Scales [R] F64. R may be 0 (nothing masked): nothing is written and DPowers is unchanged.
// A target outside [0, V) is an ErrValue naming the row; then nothing is written.
// DLogits may alias Logits.
type GenMaskedCEParams struct {
	Logits, Targets *Tensor
	Scales          *Tensor // [R] F64
	Powers          *Tensor // [V] F64
	Loss            *Tensor // [R] F64
	DLogits         *Tensor // [R, V], optional
	DPowers         *Tensor // [V] F64, optional, accumulated
}

// Validate checks shapes and dtypes.
func (p *GenMaskedCEParams) Validate() error {
	c := checker{op: OpGenMaskedCE}
	if c.need("Logits", p.Logits, sFlt, -1, -1) {
		r, v := p.Logits.Dim(0), p.Logits.Dim(1)
		c.that(v >= 1, "Logits", "vocabulary size must be ≥ 1")
		c.need("Targets", p.Targets, sI32, r)
		c.need("Scales", p.Scales, sF64, r)
		c.need("Powers", p.Powers, sF64, v)
		c.need("Loss", p.Loss, sF64, r)
		c.opt("DLogits", p.DLogits, sFlt, r, v)
		c.opt("DPowers", p.DPowers, sF64, v)
	}
	return c.err
}
