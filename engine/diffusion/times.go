package diffusion

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// Times fills dst with one diffusion time per sequence of a batch of B = len(dst)
// sequences for training step step (md4.md §2.3 step 1), all in [0, 1):
//
//   - antithetic (the md4 default, paper Alg. 1): u = rng.Uniform64(seed, step,
//     rng.PurposeTime, 0) and t_b = (u + b/B) mod 1, exactly one time in each stratum
//     [k/B, (k+1)/B);
//   - otherwise i.i.d.: t_b = rng.Uniform64(seed, step, rng.PurposeTime, b).
//
// Times can return exactly 0; use SampleTimes when the schedule's weight is infinite at 0.
func Times(dst []float64, seed, step uint64, antithetic bool) {
	TimesFor(dst, seed, step, rng.PurposeTime, antithetic)
}

// TimesFor is Times drawing from the given random stream instead of rng.PurposeTime
// (e.g. rng.PurposeEvalTime for evaluation), with the same index layout.
func TimesFor(dst []float64, seed, step uint64, purpose rng.Purpose, antithetic bool) {
	if antithetic {
		u := rng.Uniform64(seed, step, purpose, 0)
		for b := range dst {
			dst[b] = antitheticTime(u, b, len(dst))
		}
		return
	}
	for b := range dst {
		dst[b] = rng.Uniform64(seed, step, purpose, uint64(b))
	}
}

// antitheticTime returns (u + b/B) mod 1 in [0, 1) for u ∈ [0, 1) and 0 ≤ b < B. The
// wrapped branch computes (u − 1) + b/B, where u − 1 is exact, so for B a power of two and
// u on the 2⁻⁵³ grid every time is exact and the sorted times are spaced exactly 1/B apart.
// Rounding can still land on 1 (or just below 0) when B is not a power of two; both cases
// are mapped to 0, the same point of the circle [0, 1).
func antitheticTime(u float64, b, B int) float64 {
	off := float64(b) / float64(B)
	var t float64
	if u < 1-off {
		t = u + off
	} else {
		t = (u - 1) + off
	}
	if t >= 1 || t < 0 {
		t = 0
	}
	return t
}

// SampleTimes is Times for training or evaluating with schedule s: if s.Weight(0) is not
// finite (the unshifted linear, poly<k> and cosine schedules, where w(0) = −∞), a time of
// exactly 0 is replaced by MinTime = 2⁻⁵³, the next point of the uniform's grid, so the
// loss weight is always finite (pitfalls B06). The change has probability 2⁻⁵³ per
// draw. Shifted schedules and geometric are left untouched.
func SampleTimes(dst []float64, s Schedule, seed, step uint64, antithetic bool) {
	Times(dst, seed, step, antithetic)
	GuardTimes(dst, s)
}

// GuardTimes replaces t = 0 by MinTime in ts when s.Weight(0) is not finite (see
// SampleTimes).
func GuardTimes(ts []float64, s Schedule) {
	w0 := s.Weight(0)
	if !math.IsInf(w0, 0) && !math.IsNaN(w0) {
		return
	}
	for i, t := range ts {
		if t <= 0 {
			ts[i] = MinTime
		}
	}
}

// SnapDiscrete maps a continuous time t ∈ [0, 1] to the discrete-time grid of T steps
// (md4.md §2.3 step 5, §8 item 12): i = ⌊t·T⌋ + 1 (clamped to [1, T] against rounding),
// returning tt = i/T ∈ {1/T, …, 1} and s = (i−1)/T = tt − 1/T ≥ 0 (s = 0 exactly for
// i = 1). T must be ≥ 1; it panics otherwise (a programming error).
func SnapDiscrete(t float64, T int) (s, tt float64) {
	if T < 1 {
		panic(fmt.Sprintf("diffusion: SnapDiscrete with T=%d steps; T must be ≥ 1", T))
	}
	i := int(math.Floor(t*float64(T))) + 1
	if i > T {
		i = T
	}
	if i < 1 {
		i = 1
	}
	return float64(i-1) / float64(T), float64(i) / float64(T)
}
