package diffusion

import (
	"fmt"
	"math"
	"strings"
)

// Grid is the time grid of the ancestral sampler (md4.md §5.1 step 2.2, §5.2; the md4
// code's sampling_grid).
type Grid uint8

const (
	// GridUniform: t = u.
	GridUniform Grid = iota + 1
	// GridCosine: t = sin(π·u/2) = cos(π/2·(1−u)) (the default of every md4 config). With
	// the linear schedule it reproduces the cosine schedule's α-discretisation on a
	// uniform grid (md4.md §5.2).
	GridCosine
)

// String returns "uniform" or "cosine" (the names ParseGrid accepts).
func (g Grid) String() string {
	switch g {
	case GridUniform:
		return "uniform"
	case GridCosine:
		return "cosine"
	}
	return fmt.Sprintf("Grid(%d)", uint8(g))
}

// ParseGrid parses "uniform" or "cosine".
func ParseGrid(s string) (Grid, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "uniform":
		return GridUniform, nil
	case "cosine":
		return GridCosine, nil
	}
	return 0, fmt.Errorf("diffusion: unknown sampling grid %q; valid: \"uniform\", \"cosine\"", s)
}

// Warp maps a grid coordinate u ∈ [0, 1] to a time: u itself (uniform) or sin(π·u/2)
// (cosine; exact at u = 0 and u = 1).
func (g Grid) Warp(u float64) float64 {
	if g == GridCosine {
		return math.Sin(math.Pi / 2 * u)
	}
	return u
}

// GridTimes returns the times (t, s), s < t, of sampler step i = 0..T−1 in the md4 code's
// indexing (md4.md §5.1 step 2.1): u_t = (T−i)/T and u_s = (T−i−1)/T (the spec's
// u_t − 1/T, computed without the subtraction so that the last step ends at s = 0
// exactly), then t = g.Warp(u_t), s = g.Warp(u_s). Step 0 starts at t = 1. It panics
// unless 0 ≤ i < T.
func GridTimes(g Grid, i, T int) (t, s float64) {
	if T < 1 || i < 0 || i >= T {
		panic(fmt.Sprintf("diffusion: GridTimes step %d of T=%d; want 0 ≤ i < T", i, T))
	}
	return g.Warp(float64(T-i) / float64(T)), g.Warp(float64(T-i-1) / float64(T))
}

// PUnmask returns (α_s − α_t)/(1 − α_t), the probability that a position masked at time t
// is unmasked at time s < t (md4.md §1.1 posterior, §5.1 step 2.3); what
// ops.SampleParams.PUnmask takes. It is computed as AlphaDiff(s, t)/MaskProb(t) and
// clamped to [0, 1]; where 1 − α_t = 0 (no position can be masked) it returns 1. The
// reverse step then gives the real tokens p_unmask·μ_j and the mask 1 − p_unmask, which
// sum to 1 (md4.md §8 item 8).
func PUnmask(sc Schedule, s, t float64) float64 {
	m := sc.MaskProb(t)
	if !(m > 0) {
		return 1
	}
	p := sc.AlphaDiff(s, t) / m
	switch {
	case p > 1:
		return 1
	case p >= 0:
		return p
	}
	return 0 // negative or NaN
}

// SamplerStep is one step of the ancestral sampler's plan.
type SamplerStep struct {
	I       int     // step index 0..T−1 (md4 code indexing); the rng step of its draws
	T, S    float64 // times t > s; the network is evaluated at (z, T)
	PUnmask float64 // (α_s−α_t)/(1−α_t), clamped to [0, 1]
}

// SamplerPlan returns the T steps of the ancestral sampler (md4.md §5.1, paper Alg. 2) for
// schedule sc on grid g, in execution order (t from 1 down to 1/T-warped, s down to 0).
// After the loop, positions still masked are decoded by argmax at FinalDecodeTime
// (MaskedRows, FinalDecodeRef; pitfalls B05). T must be ≥ 1.
func SamplerPlan(sc Schedule, g Grid, T int) ([]SamplerStep, error) {
	if T < 1 {
		return nil, fmt.Errorf("diffusion: sampler needs T ≥ 1 steps, got %d", T)
	}
	if g != GridUniform && g != GridCosine {
		return nil, fmt.Errorf("diffusion: unknown sampling grid %v; valid: uniform, cosine", g)
	}
	plan := make([]SamplerStep, T)
	for i := range plan {
		t, s := GridTimes(g, i, T)
		plan[i] = SamplerStep{I: i, T: t, S: s, PUnmask: PUnmask(sc, s, t)}
	}
	return plan, nil
}

// FinalDecodeTime is the time at which the final decode evaluates the network: positions
// still masked after the T-step loop (α_0 < 1 for shifted schedules, so on average
// L·(1−α_0)/(1−α_1) = L·ε/(1−ε) per sequence) are set to argmax μ_θ(z, t = 0) (md4.md §5.1
// step 3, the md4 code's decode; ops.SampleArgmax).
const FinalDecodeTime = 0.0

// MaskedRows appends to dst the flat indices b·L + l of every position of z [B, L] equal
// to maskID and returns it: the Rows of the final-decode ops.SampleParams (Mode
// ops.SampleArgmax).
func MaskedRows(dst []int32, z []int32, maskID int32) []int32 {
	for i, x := range z {
		if x == maskID {
			dst = append(dst, int32(i))
		}
	}
	return dst
}

// FinalDecodeRef is the host reference of the final decode: for each r, z[rows[r]] =
// argmax_j logits[r·V + j] (lowest index on ties; 0 if every logit is −∞), matching
// ops.SampleArgmax for finite or −∞ logits (backends reject NaN logits; here a NaN never
// wins). logits is [len(rows), V].
func FinalDecodeRef(z []int32, rows []int32, logits []float32, V int) {
	for r, pos := range rows {
		row := logits[r*V : (r+1)*V]
		best, bi := float32(math.Inf(-1)), -1
		for j, v := range row {
			if v > best || (bi < 0 && v == best) {
				best, bi = v, j
			}
		}
		if bi < 0 {
			bi = 0
		}
		z[pos] = int32(bi)
	}
}

// ExpectedReveals returns the expected number of positions of a length-L sequence that
// unmask in the sampler step from t to s when sampling starts all-masked at t = 1:
// L·(α_s − α_t)/(1 − α_1), i.e. L(α_s−α_t)/(1−ε) for shifted schedules (md4.md §5.2, §8
// item 9). It does not depend on the model.
func ExpectedReveals(sc Schedule, s, t float64, L int) float64 {
	return float64(L) * sc.AlphaDiff(s, t) / sc.MaskProb(1)
}

// ExpectedLeftover returns the expected number of positions of a length-L sequence still
// masked after the T-step loop (which ends at s = 0), for any grid and model:
// L·(1 − α_0)/(1 − α_1) = L·ε/(1−ε) for shifted schedules (≈ 0.1024 for L = 1024), 0
// unshifted (md4.md §8 item 9). The final decode fills them.
func ExpectedLeftover(sc Schedule, L int) float64 {
	return float64(L) * sc.MaskProb(0) / sc.MaskProb(1)
}
