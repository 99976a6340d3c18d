package diffusion

import (
	"errors"
	"fmt"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"math"
	"strings"
)

// ErrEstimator is wrapped by Estimator.Validate errors.
var ErrEstimator = errors.New("diffusion: invalid estimator")

// Bound selects which negative ELBO a loss or an evaluation optimises or reports.
type Bound uint8

const (
	// BoundPaperCode is the md4 code's objective: diffusion term + reconstruction term,
	// without the App. E prior term L·α_1·ln V, and for GenMD4 without the (1−t1) factor
	// (md4.md §2.3 step 6, §4). It matches the paper's reported numbers.
	BoundPaperCode Bound = iota + 1
	// BoundExact is the true bound: diffusion term (GenMD4: times (1−t1)) +
	// reconstruction + prior. For MD4 it exceeds BoundPaperCode by exactly L·α_1·ln V nats
	// per sequence (εL·ln V for the shifted schedules).
	BoundExact
)

// String returns "paper-code" or "exact" (the names ParseBound accepts).
func (b Bound) String() string {
	switch b {
	case BoundPaperCode:
		return "paper-code"
	case BoundExact:
		return "exact"
	}
	return fmt.Sprintf("Bound(%d)", uint8(b))
}

// ParseBound parses "paper-code" or "exact".
func ParseBound(s string) (Bound, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "paper-code":
		return BoundPaperCode, nil
	case "exact":
		return BoundExact, nil
	}
	return 0, fmt.Errorf("diffusion: unknown bound %q; valid: \"paper-code\", \"exact\"", s)
}

// ContinuousWeight returns −w(t) = −α'_t/(1−α_t) ≥ 0, the continuous-time weight of the
// MD4 single-sample estimator (md4.md §2.3 step 5, cont_time = True): the diffusion term is
// −w(t)·Σ_masked CE nats per sequence, with CE = −log μ_θ(x0) in nats.
func ContinuousWeight(s Schedule, t float64) float64 {
	return -s.Weight(t) + 0 // + 0 turns −0 into 0
}

// DiscreteWeight returns T·(α_s − α_t)/(1 − α_t) ≥ 0 for the grid times s = (i−1)/T and
// t = i/T of the T-step discrete-time bound (SnapDiscrete; md4.md §2.3 step 5,
// cont_time = False): the diffusion term of the discrete-time bound is this times
// Σ_masked CE nats per sequence (the mask drawn at t), an unbiased single-term estimate of
// the sum of the T KL terms. It equals −T·expm1(γ_t − γ_s)·α_s of the md4 code (md4.md §8
// item 18) but is computed as T·AlphaDiff(s, t)/MaskProb(t), which has no cancellation.
// Returns 0 where 1 − α_t = 0 (nothing can be masked there).
func DiscreteWeight(sc Schedule, s, t float64, T int) float64 {
	m := sc.MaskProb(t)
	if !(m > 0) {
		return 0
	}
	return float64(T) * sc.AlphaDiff(s, t) / m
}

// ReconNats returns the reconstruction term L·(1 − α_0)·ln V in nats per sequence of L
// real tokens and vocabulary size V (md4.md §2.1, §2.3 step 6, §8 item 14): a position
// still masked at t = 0 is decoded uniformly over the V real tokens. 0 for unshifted
// schedules; εL·ln V = 0.08437 nats on text8 (L = 256, V = 27) for shifted ones.
func ReconNats(s Schedule, L, V int) float64 {
	return float64(L) * s.MaskProb(0) * math.Log(float64(V))
}

// PriorNats returns the App. E prior term KL(q(x_1|x_0) ‖ p(x_1)) = L·α_1·ln V in nats per
// sequence (md4.md §2.1), with p(x_1) = (α_1/V)Σ_j δ_j + (1−α_1)δ_mask. The md4 code omits
// it (BoundPaperCode); 0 for unshifted linear, poly and cosine.
func PriorNats(s Schedule, L, V int) float64 {
	return float64(L) * s.Alpha(1) * math.Log(float64(V))
}

// Estimator is MD4's single-sample NELBO estimator for one sequence length and
// vocabulary (md4.md §2.3): one time t_b and one mask per sequence, the masked
// cross-entropies summed per sequence and weighted, plus the constant reconstruction
// (and, for BoundExact, prior) term. The zero value is not usable; see Validate.
type Estimator struct {
	Sched Schedule
	L     int // tokens per sequence: the bits-per-token normaliser (md4.md §2.3 step 7)
	V     int // real vocabulary size (the mask id is V)
	// T is 0 for the continuous-time bound (every md4 config) or the number of steps of
	// the discrete-time bound (md4.md §2.3 step 5).
	T int
	// Bound is the objective Objective and ConstBits use; results carry both.
	Bound Bound
}

// Validate checks the fields.
func (e *Estimator) Validate() error {
	switch {
	case e.Sched == nil:
		return fmt.Errorf("%w: no schedule", ErrEstimator)
	case e.L < 1:
		return fmt.Errorf("%w: sequence length L=%d must be ≥ 1", ErrEstimator, e.L)
	case e.V < 1:
		return fmt.Errorf("%w: vocabulary size V=%d must be ≥ 1", ErrEstimator, e.V)
	case e.T < 0:
		return fmt.Errorf("%w: discrete steps T=%d must be ≥ 0 (0 = continuous time)", ErrEstimator, e.T)
	case e.Bound != BoundPaperCode && e.Bound != BoundExact:
		return fmt.Errorf("%w: bound %v; valid: paper-code, exact", ErrEstimator, e.Bound)
	}
	return nil
}

// SampleTimes fills dst with one time per sequence for training step step: SampleTimes
// of the package (antithetic or i.i.d., t = 0 guarded for unshifted schedules), then, for
// the discrete-time bound (T > 0), each t snapped to its grid point i/T (SnapDiscrete).
// Draw the masks (MaskProbs, MaskRef) and compute the weights (RowWeights, Seq) at these
// times.
func (e *Estimator) SampleTimes(dst []float64, seed, step uint64, antithetic bool) {
	e.SampleTimesFor(dst, seed, step, rng.PurposeTime, antithetic)
}

// SampleTimesFor is SampleTimes drawing from another Philox purpose (evaluation uses
// rng.PurposeEvalTime so that its times never coincide with training's).
func (e *Estimator) SampleTimesFor(dst []float64, seed, step uint64, purpose rng.Purpose, antithetic bool) {
	TimesFor(dst, seed, step, purpose, antithetic)
	GuardTimes(dst, e.Sched)
	if e.T > 0 {
		for b, t := range dst {
			_, dst[b] = SnapDiscrete(t, e.T)
		}
	}
}

// SeqWeight returns the weight c(t) ≥ 0 of one sequence: the diffusion term is c(t)·Σ
// masked CE, in nats per sequence. Continuous time: c = −w(t) (ContinuousWeight; at t = 0
// on an unshifted schedule, where w = −∞, the value at MinTime, so that a sequence with
// nothing masked still contributes exactly 0 rather than ∞·0 = NaN). Discrete
// time: t must be a grid point i/T (as from SampleTimes; it is rounded to the nearest one)
// and c = T·(α_s−α_t)/(1−α_t) with s = (i−1)/T (DiscreteWeight).
func (e *Estimator) SeqWeight(t float64) float64 {
	if e.T > 0 {
		i := int(math.Round(t * float64(e.T)))
		i = max(1, min(e.T, i))
		return DiscreteWeight(e.Sched, float64(i-1)/float64(e.T), float64(i)/float64(e.T), e.T)
	}
	c := ContinuousWeight(e.Sched, t)
	if math.IsInf(c, 0) { // t = 0 on an unshifted schedule: weight as at MinTime (see SampleTimes)
		c = ContinuousWeight(e.Sched, MinTime)
	}
	return c
}

// RowWeights fills dst[b] = c(ts[b])/(L·ln 2)/B for a batch of B = len(ts) sequences:
// the ops.MaskedCEParams.Weights value for every masked row of sequence b (md4.md §2.3,
// architecture.md §3 step 4). The sum of the MaskedCE losses over all masked rows of the
// batch is then the batch-mean diffusion term in bits per token; add ConstBits for the
// full objective. A batch with no masked rows has diffusion term exactly 0 (pitfalls B08).
// It panics if len(dst) != len(ts).
func (e *Estimator) RowWeights(dst, ts []float64) {
	if len(dst) != len(ts) {
		panic(fmt.Sprintf("diffusion: RowWeights: len(dst)=%d != len(ts)=%d", len(dst), len(ts)))
	}
	norm := 1 / (float64(e.L) * math.Ln2 * float64(len(ts)))
	for b, t := range ts {
		dst[b] = e.SeqWeight(t) * norm
	}
}

// ReconNats is ReconNats(e.Sched, e.L, e.V): nats per sequence.
func (e *Estimator) ReconNats() float64 { return ReconNats(e.Sched, e.L, e.V) }

// PriorNats is PriorNats(e.Sched, e.L, e.V): nats per sequence.
func (e *Estimator) PriorNats() float64 { return PriorNats(e.Sched, e.L, e.V) }

// ConstBits returns the constant part of the objective in bits per token: the
// reconstruction term, plus the prior term for BoundExact, divided by L·ln 2. The training
// loss in bits per token is Σ_rows MaskedCE loss + ConstBits.
func (e *Estimator) ConstBits() float64 {
	c := e.ReconNats()
	if e.Bound == BoundExact {
		c += e.PriorNats()
	}
	return c / (float64(e.L) * math.Ln2)
}

// Seq returns the estimate for one sequence evaluated at time t whose masked
// cross-entropies sum to ceSum nats (≥ 0): the diffusion term c(t)·ceSum and the constant
// terms, all in nats per sequence, with Tokens = L. (For a padded sequence with n < L real
// tokens, build the SeqNLL with ReconNats(e.Sched, n, e.V), PriorNats(e.Sched, n, e.V) and
// Tokens = n.)
func (e *Estimator) Seq(t, ceSum float64) SeqNLL {
	d := e.SeqWeight(t) * ceSum
	return SeqNLL{Tokens: e.L, Diffusion: d, DiffusionExact: d, Recon: e.ReconNats(), Prior: e.PriorNats()}
}

// SeqNLL is one sequence's single-sample NELBO estimate, every term in nats per sequence
// (md4.md §2.3).
type SeqNLL struct {
	Tokens int // real tokens in the sequence (the per-token normaliser)
	// Diffusion is the diffusion term of BoundPaperCode (weight·Σ masked CE).
	Diffusion float64
	// DiffusionExact is the diffusion term of BoundExact: equal to Diffusion for MD4,
	// (1−t1)·Diffusion for GenMD4 (md4.md §4).
	DiffusionExact float64
	Recon          float64 // reconstruction term
	Prior          float64 // App. E prior term (BoundExact only)
}

// Nats returns the sequence's NELBO estimate under bound b, in nats per sequence:
// Diffusion + Recon for BoundPaperCode, DiffusionExact + Recon + Prior for BoundExact.
func (s SeqNLL) Nats(b Bound) float64 {
	if b == BoundExact {
		return s.DiffusionExact + s.Recon + s.Prior
	}
	return s.Diffusion + s.Recon
}

// Objective returns e's selected bound for one sequence, in nats per sequence.
func (e *Estimator) Objective(s SeqNLL) float64 { return s.Nats(e.Bound) }

// ---------------------------------------------------------------------------------------
// Unit conversions (md4.md §2.3 step 7, §8 item 13). Perplexity = e^(nats/token) =
// 2^(bits/token).

// BitsFromNats converts nats to bits (÷ ln 2), per token or per sequence alike.
func BitsFromNats(nats float64) float64 { return nats / math.Ln2 }

// NatsFromBits converts bits to nats (× ln 2).
func NatsFromBits(bits float64) float64 { return bits * math.Ln2 }

// PerplexityFromNats returns e^(nats per token).
func PerplexityFromNats(natsPerToken float64) float64 { return math.Exp(natsPerToken) }

// PerplexityFromBits returns 2^(bits per token).
func PerplexityFromBits(bitsPerToken float64) float64 { return math.Exp2(bitsPerToken) }

// NatsFromPerplexity returns ln(perplexity), in nats per token.
func NatsFromPerplexity(ppl float64) float64 { return math.Log(ppl) }

// BitsFromPerplexity returns log2(perplexity), in bits per token.
func BitsFromPerplexity(ppl float64) float64 { return math.Log2(ppl) }

// BitsPerToken converts nats per sequence of L tokens to bits per token: nats/(L·ln 2)
// (the md4 code's utils.loss2bpt).
func BitsPerToken(natsPerSeq float64, L int) float64 { return natsPerSeq / (float64(L) * math.Ln2) }
