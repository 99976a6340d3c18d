package ops

import (
	"fmt"
	"math"
)

// MaskedCEParams is the fused masked cross-entropy of MD4 (md4.md §2.3, architecture.md §3
// step 4). Each of the R rows of Logits [R, V] is one masked position (rows are gathered,
// so unmasked positions never appear). With LSE_r = log Σ_j exp(Logits[r, j]) computed
// stably (max-subtracted, float64 sums on the CPU):
//
//	Loss[r]       = Weights[r] · (LSE_r − Logits[r, Targets[r]])          (F64 [R])
//	DLogits[r, j] = Weights[r] · (softmax(Logits[r])_j − [j = Targets[r]]) (optional)
//
// For the MD4 NELBO in bits per token, Weights[r] = −w(t_b)/(L·ln 2)/B for a row of
// sequence b, with w(t) = α'_t/(1−α_t) < 0 (so weights are ≥ 0). R may be 0 (nothing
// masked): no output is written. A target outside [0, V) is an ErrValue naming the row
// (pitfalls B15). DLogits may alias Logits.
type MaskedCEParams struct {
	Logits, Targets, Weights *Tensor
	Loss                     *Tensor
	DLogits                  *Tensor
}

// Validate checks shapes and dtypes.
func (p *MaskedCEParams) Validate() error {
	c := checker{op: OpMaskedCE}
	if c.need("Logits", p.Logits, sFlt, -1, -1) {
		r := p.Logits.Dim(0)
		c.that(p.Logits.Dim(1) >= 1, "Logits", "vocabulary size must be ≥ 1")
		c.need("Targets", p.Targets, sI32, r)
		c.need("Weights", p.Weights, sF64, r)
		c.need("Loss", p.Loss, sF64, r)
		c.opt("DLogits", p.DLogits, sFlt, r, p.Logits.Dim(1))
	}
	return c.err
}

// MaskParams is forward masking x_t ~ q(x_t | x_0) (md4.md §1.1): for every position,
// with u = rng.Uniform64(Seed, Step, Purpose, IndexOffset + b·L + l),
//
//	XT[b, l] = MaskID  if l < SeqLens[b] and u < p,   else X0[b, l]
//
// where p = MaskProb[b] (MD4: p = 1 − α_{t_b}, MaskProb [B] F64) or p = MaskProb[b, X0[b, l]]
// (GenMD4's per-token schedules, MaskProb [B, V] F64). Padding positions (l ≥ SeqLens[b])
// are never masked (pitfalls B07). The comparison is made in float64 so that every backend
// produces bit-identical masks from the same address. X0 values must be in [0, V) where
// V = MaskID; a mask id in X0 is an ErrValue.
type MaskParams struct {
	XT, X0   *Tensor // [B, L] I32
	MaskProb *Tensor // [B] or [B, V] F64
	SeqLens  *Tensor // [B] I32, optional
	MaskID   int32
	Seed     uint64
	Step     uint64
	Purpose  uint8 // rng.PurposeMask, or rng.PurposeMask2 for GenMD4's second sample
	// IndexOffset is added to b·L + l in the Philox index (see above).
	IndexOffset uint64
}

// Validate checks shapes and the mask id.
func (p *MaskParams) Validate() error {
	c := checker{op: OpMaskTokens}
	c.that(p.MaskID > 0, "MaskID", "MaskID (= V) must be ≥ 1, got %d", p.MaskID)
	c.that(p.Step < 1<<56, "Step", "Step %d must be < 2^56", p.Step)
	if c.need("X0", p.X0, sI32, -1, -1) {
		b := p.X0.Dim(0)
		c.need("XT", p.XT, sI32, b, p.X0.Dim(1))
		c.opt("SeqLens", p.SeqLens, sI32, b)
		if c.need("MaskProb", p.MaskProb, sF64) {
			ok := (p.MaskProb.Rank() == 1 && p.MaskProb.Dim(0) == b) ||
				(p.MaskProb.Rank() == 2 && p.MaskProb.Dim(0) == b && p.MaskProb.Dim(1) == int(p.MaskID))
			c.that(ok, "MaskProb", "shape %v, want [%d] or [%d %d]", p.MaskProb.Shape(), b, b, p.MaskID)
		}
	}
	return c.err
}

// SampleMode selects how SampleStep draws a token.
type SampleMode uint8

const (
	// SampleExact is the default two-stage float64 draw (md4.md §5.4): u1 =
	// Uniform64(Seed, Step, PurposeSampleUnmask, IndexOffset+pos); the position unmasks iff
	// u1 < PUnmask; then u2 = Uniform64(Seed, Step, PurposeSampleToken, IndexOffset+pos) and
	// the token is the inverse
	// CDF of softmax(logits) at u2, with probabilities exp(l_j − max) summed in float64 in
	// the reference order (see SampleCDFChunk). Precisely, with e_j = exp(l_j − max) in
	// float64 (0 for tokens removed by top-p), chunk sums C_c and prefixes P_c = C_0 + … +
	// C_{c−1} (all sequential): t = u2·(total), the draw lies in the first chunk with
	// P_c + C_c > t, at its first j whose sequential in-chunk partial sum exceeds t − P_c;
	// where rounding leaves no such j (or chunk), it is the last j with e_j > 0 there (or
	// overall).
	SampleExact SampleMode = iota + 1
	// SampleJAXCompat reproduces the paper code's float32 Gumbel-max over the V+1 scaled
	// log-probabilities [log(PUnmask·μ_j), log(1−PUnmask)] with rng.Uniform32JAX noise. It
	// is biased (an implicit top-p, pitfalls B01) and exists only to reproduce the paper.
	// In float32: μ_j = float32(e_j/total) (e_j as for SampleExact, after top-p), scores
	// log(float32(PUnmask)·μ_j) + g_j and log(1 − float32(PUnmask)) + g_V with g_j =
	// −log(−log u_j), u_j = rng.Uniform32JAX(Seed, Step, PurposeSampleToken,
	// (IndexOffset+pos)·(V+1) + j) for j = 0..V; entries of probability 0 never win; the
	// lowest index wins ties; index V means the position stays masked.
	SampleJAXCompat
	// SampleArgmax sets every listed row to argmax(logits) (lowest index on ties): the final
	// decode of masks left after the last step (md4.md §5.1 step 3).
	SampleArgmax
)

func (m SampleMode) String() string {
	switch m {
	case SampleExact:
		return "exact-f64"
	case SampleJAXCompat:
		return "jax-compat-f32-gumbel"
	case SampleArgmax:
		return "argmax"
	}
	return fmt.Sprintf("SampleMode(%d)", uint8(m))
}

// SampleCDFChunk is the chunk width of the reference summation order of SampleExact: the
// probabilities exp(l_j − max) are summed sequentially within chunks of this many
// vocabulary entries, and the chunk sums sequentially, all in float64. Kernels follow the
// same order so that draws are bit-identical across backends.
const SampleCDFChunk = 256

// SampleParams is one ancestral sampling step (md4.md §5.1, paper Alg. 2) for the rows of
// Logits [R, V], where row i belongs to flat position Rows[i] = b·L + l of Z [B, L] and
// every listed position must currently hold MaskID (random draws are addressed by
// IndexOffset + Rows[i], so that a batch split across devices samples identically).
// Out [B, L] receives Z with the listed
// positions replaced by their draw (a token in [0, V), or MaskID when the position stays
// masked). Out may be Z. PUnmask = (α_s − α_t)/(1 − α_t) is the probability that a masked
// position unmasks in this step; it must be in [0, 1]. TopP in (0, 1) applies nucleus
// filtering to softmax(logits) first (the md4 code's binary search: the largest threshold
// τ with Σ_{μ_j ≥ τ} μ_j ≥ TopP; ties at τ are kept); 0 or 1 disables it. Reference
// order: μ_j = float32(e_j/total) with e_j and the total as for SampleExact; τ is a
// non-negative float32 found greedily over bits 30..0 of its bit pattern (a bit is kept
// when the mass Σ_{μ_j ≥ τ} μ_j, summed in float64 in SampleCDFChunk order, is ≥ TopP),
// so the most probable token always survives.
//
// ClassUnmask [V] F64 (optional, SampleExact only) is GenMD4's per-token reverse step
// (md4.md §4; package sample derives it): with per-class stay factors r_j = (s/t)^{w_j}, a
// masked position goes to token j with probability μ_j·(1 − r_j) and stays masked with
// probability Σ_j μ_j·r_j, a categorical over V+1 outcomes. ClassUnmask[j] = 1 − r_j ∈ [0, 1]
// (computed as −expm1(w_j·ln(s/t)) on the host, without cancellation) replaces PUnmask,
// which is then not used. The draw is exact in float64 and takes the same two uniforms in
// the other order: j is the inverse CDF of softmax(logits) (after top-p) at u2 exactly as
// for SampleExact, then the position takes j iff u1 < ClassUnmask[j] and stays masked
// otherwise, so P(j) = μ_j·(1 − r_j) and P(mask) = Σ_j μ_j·r_j. The vocabulary is read for
// every listed row.
type SampleParams struct {
	Out, Z  *Tensor // [B, L] I32
	Logits  *Tensor // [R, V]
	Rows    *Tensor // [R] I32
	PUnmask float64
	TopP    float64
	Mode    SampleMode
	MaskID  int32
	Seed    uint64
	Step    uint64
	// IndexOffset is added to the flat position in the Philox index (see above).
	IndexOffset uint64
	// ClassUnmask [V] F64, optional: GenMD4's per-token unmask probabilities (see above).
	ClassUnmask *Tensor
}

// Validate checks shapes, the mode and the probability parameters.
func (p *SampleParams) Validate() error {
	c := checker{op: OpSampleStep}
	c.that(p.Mode >= SampleExact && p.Mode <= SampleArgmax, "Mode", "unknown sample mode %v", p.Mode)
	c.that(p.PUnmask >= 0 && p.PUnmask <= 1, "PUnmask", "PUnmask must be in [0, 1], got %v", p.PUnmask)
	c.that(p.TopP >= 0 && p.TopP <= 1, "TopP", "TopP must be in [0, 1], got %v", p.TopP)
	c.that(p.Step < 1<<56, "Step", "Step %d must be < 2^56", p.Step)
	if c.need("Z", p.Z, sI32, -1, -1) && c.need("Logits", p.Logits, sFlt, -1, -1) {
		c.need("Out", p.Out, sI32, p.Z.Shape()...)
		c.need("Rows", p.Rows, sI32, p.Logits.Dim(0))
		c.that(int(p.MaskID) == p.Logits.Dim(1), "MaskID", "MaskID %d must equal the vocabulary size %d", p.MaskID, p.Logits.Dim(1))
		if p.ClassUnmask != nil {
			c.that(p.Mode != SampleJAXCompat, "ClassUnmask", "GenMD4's per-class unmask probabilities need the exact (or argmax) mode, not %v", p.Mode)
			c.need("ClassUnmask", p.ClassUnmask, sF64, p.Logits.Dim(1))
		}
	}
	return c.err
}

// AdamWParams is one fused AdamW + EMA update of one parameter tensor (decoupled weight
// decay as in optax.adamw, md4.md §6.3), in float32 with the bias corrections computed in
// float64 on the host side of the call:
//
//	g = GradScale·Grad
//	M = Beta1·M + (1−Beta1)·g;  V = Beta2·V + (1−Beta2)·g²
//	Param −= LR·( (M/(1−Beta1^Step)) / (sqrt(V/(1−Beta2^Step)) + Eps) + WeightDecay·Param )
//	EMA   += (1−EMADecay)·(Param − EMA)          (if EMA != nil)
//	Shadow = bf16(Param)                          (if Shadow != nil, BF16 copy for GPU forward)
//
// Step counts updates from 1. Param, Grad, M, V and EMA share one shape and one dtype (F32;
// F64 in float64 runs).
type AdamWParams struct {
	Param, Grad, M, V *Tensor
	EMA               *Tensor
	Shadow            *Tensor
	LR, Beta1, Beta2  float64
	Eps, WeightDecay  float64
	EMADecay          float64
	GradScale         float32
	Step              int
}

// Validate checks shapes and hyperparameter ranges.
func (p *AdamWParams) Validate() error {
	c := checker{op: OpAdamW}
	if c.need("Param", p.Param, sAcc) {
		s := p.Param.Shape()
		c.need("Grad", p.Grad, sAcc, s...)
		c.need("M", p.M, sAcc, s...)
		c.need("V", p.V, sAcc, s...)
		c.opt("EMA", p.EMA, sAcc, s...)
		c.opt("Shadow", p.Shadow, sBF16, s...)
		for _, t := range []struct {
			n string
			t *Tensor
		}{{"Grad", p.Grad}, {"M", p.M}, {"V", p.V}, {"EMA", p.EMA}} {
			c.same("Param", p.Param, t.n, t.t)
		}
	}
	for _, v := range []struct {
		name string
		v    float64
	}{{"LR", p.LR}, {"Beta1", p.Beta1}, {"Beta2", p.Beta2}, {"Eps", p.Eps}, {"WeightDecay", p.WeightDecay}, {"EMADecay", p.EMADecay}, {"GradScale", float64(p.GradScale)}} {
		c.finite(v.name, v.v)
	}
	c.that(p.LR >= 0, "LR", "LR must be ≥ 0, got %v", p.LR)
	c.that(p.Beta1 >= 0 && p.Beta1 < 1, "Beta1", "Beta1 must be in [0, 1), got %v", p.Beta1)
	c.that(p.Beta2 >= 0 && p.Beta2 < 1, "Beta2", "Beta2 must be in [0, 1), got %v", p.Beta2)
	c.that(p.Eps > 0, "Eps", "Eps must be > 0, got %v", p.Eps)
	c.that(p.WeightDecay >= 0, "WeightDecay", "WeightDecay must be ≥ 0, got %v", p.WeightDecay)
	c.that(p.EMADecay >= 0 && p.EMADecay <= 1, "EMADecay", "EMADecay must be in [0, 1], got %v", p.EMADecay)
	c.that(p.Step >= 1, "Step", "Step counts updates from 1, got %d", p.Step)
	return c.err
}

// BiasCorrections returns 1−Beta1^Step and 1−Beta2^Step in float64 (shared by backends so
// that they apply identical factors).
func (p *AdamWParams) BiasCorrections() (bc1, bc2 float64) {
	return 1 - math.Pow(p.Beta1, float64(p.Step)), 1 - math.Pow(p.Beta2, float64(p.Step))
}

// SumSquaresParams: Out[0] += Σ X² (float64 accumulation; a deterministic order on every
// backend). Used for the global gradient norm (sum over tensors, then sqrt).
type SumSquaresParams struct {
	Out, X *Tensor
}

// Validate checks that Out is an F64 scalar [1].
func (p *SumSquaresParams) Validate() error {
	c := checker{op: OpSumSquares}
	c.need("X", p.X, sFlt)
	c.need("Out", p.Out, sF64, 1)
	return c.err
}

// AxpyParams: Y = Alpha·X + Beta·Y elementwise; with X nil, Y = Beta·Y. Beta = 0 overwrites
// Y without reading it (so Alpha = 0, Beta = 0, X = nil zero-fills Y even if it held NaN).
type AxpyParams struct {
	Y, X        *Tensor
	Alpha, Beta float32
}

// Validate checks that X (if given) matches Y.
func (p *AxpyParams) Validate() error {
	c := checker{op: OpAxpy}
	if c.need("Y", p.Y, sFlt) {
		c.opt("X", p.X, sFlt, p.Y.Shape()...)
		c.same("Y", p.Y, "X", p.X)
	}
	c.finite("Alpha", float64(p.Alpha))
	c.finite("Beta", float64(p.Beta))
	return c.err
}

// ConvertParams: Out = In converted elementwise between F32, BF16 and F64 (to BF16 with
// round-to-nearest-even, NaN kept NaN).
type ConvertParams struct {
	Out, In *Tensor
}

// Validate checks that the shapes agree.
func (p *ConvertParams) Validate() error {
	c := checker{op: OpConvert}
	if c.need("In", p.In, sFlt) {
		c.need("Out", p.Out, sFlt, p.In.Shape()...)
	}
	return c.err
}

// TimeEmbedParams writes the sinusoidal time features of md4.md §3 (backward.CondEmbedding):
// with half = Dc/2 and f_k = exp(−k·ln(10⁴)/(half−1)), k = 0..half−1,
//
//	Out[b, k] = sin(Scale·T[b]·f_k),  Out[b, half+k] = cos(Scale·T[b]·f_k)
//
// computed in float64. T [B] F64 holds times in [0, 1]; Scale is 1000 in MD4; Out [B, Dc]
// with Dc even and ≥ 4.
type TimeEmbedParams struct {
	Out, T *Tensor
	Scale  float64
}

// Validate checks shapes.
func (p *TimeEmbedParams) Validate() error {
	c := checker{op: OpTimeEmbed}
	if c.need("T", p.T, sF64, -1) && c.need("Out", p.Out, sFlt, p.T.Dim(0), -1) {
		dc := p.Out.Dim(1)
		c.that(dc >= 4 && dc%2 == 0, "Out", "feature width Dc=%d must be even and ≥ 4", dc)
	}
	c.finite("Scale", p.Scale)
	return c.err
}
