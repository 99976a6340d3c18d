// Package rng is mdm-gpu's counter-based random number generator: Philox4x32-10
// (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011),
// bit-identical to kernels/philox.cuh so that the Go reference and the CUDA kernels draw
// the same masks, times and samples.
//
// # Addressing
//
// Every draw is addressed by (seed, step, purpose, index) and nothing else; there is no
// hidden state. Resume is therefore exact, and results do not depend on how work is split
// across threads or GPUs. The 64-bit seed is the Philox key and the other three fields
// form the 128-bit counter:
//
//	key     = (k0, k1)          = (seed mod 2^32, seed >> 32)
//	counter = (c0, c1, c2, c3)  = (index mod 2^32, index >> 32,
//	                               step mod 2^32, (step >> 32) mod 2^24 | purpose << 24)
//
// so step must be below 2^56 and purpose below 256. One Philox call gives four 32-bit
// words w0..w3. A float64 uniform uses 53 bits, taken from (w0, w1) for the first value
// and (w2, w3) for the second (see Uniform64 and Uniform64Pair).
package rng

import "math"

// Philox4x32-10 constants (Random123 philox.h).
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// Philox4x32 applies the 10-round Philox4x32 bijection to counter ctr under key.
// It matches the Random123 known-answer vectors (see philox_test.go).
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := ctr[0], ctr[1], ctr[2], ctr[3]
	k0, k1 := key[0], key[1]
	for r := 0; r < 10; r++ {
		if r > 0 {
			k0 += philoxW0
			k1 += philoxW1
		}
		p0 := uint64(philoxM0) * uint64(c0)
		p1 := uint64(philoxM1) * uint64(c2)
		hi0, lo0 := uint32(p0>>32), uint32(p0)
		hi1, lo1 := uint32(p1>>32), uint32(p1)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
	}
	return [4]uint32{c0, c1, c2, c3}
}

// Purpose separates independent random streams that share a seed and step. Values are
// part of the on-disk reproducibility contract (checkpoints resume with them) and of the
// kernel ABI (kernels/philox.cuh): never renumber them.
type Purpose uint8

// Random streams used by mdm-gpu.
const (
	PurposeTime         Purpose = 1  // antithetic time offset u per step (index = 0) or i.i.d. times (index = b)
	PurposeMask         Purpose = 2  // forward masking q(x_t|x_0): index = b*L + l
	PurposeData         Purpose = 3  // training window offsets: index = b
	PurposeSampleUnmask Purpose = 4  // ancestral sampler: unmask decision, index = b*L + l
	PurposeSampleToken  Purpose = 5  // ancestral sampler: token draw, index = b*L + l
	PurposeMask2        Purpose = 6  // GenMD4 second (RLOO) mask sample: index = b*L + l
	PurposeInit         Purpose = 7  // parameter initialisation: step = tensor id, index = element
	PurposeDropout      Purpose = 8  // dropout masks
	PurposeEvalTime     Purpose = 9  // evaluation time samples
	PurposeSampleEvent  Purpose = 10 // first-hitting sampler: next event time and position, step = event, index = b*L
)

// Words returns the four Philox output words at address (seed, step, purpose, index).
// It panics if step ≥ 2^56, which would overflow the counter layout (a programming error;
// a run of 2^56 steps is not possible).
func Words(seed, step uint64, purpose Purpose, index uint64) [4]uint32 {
	if step>>56 != 0 {
		panic("rng: step out of range (must be < 2^56)")
	}
	ctr := [4]uint32{
		uint32(index), uint32(index >> 32),
		uint32(step), uint32(step>>32)&0xFFFFFF | uint32(purpose)<<24,
	}
	return Philox4x32(ctr, [2]uint32{uint32(seed), uint32(seed >> 32)})
}

// u53 maps two words to a float64 uniform on the grid {k·2^-53 : 0 ≤ k < 2^53} ⊂ [0, 1).
func u53(hi, lo uint32) float64 {
	return float64((uint64(hi)<<32|uint64(lo))>>11) * 0x1p-53
}

// Uniform64 returns a float64 uniform in [0, 1) with 53 random bits, from words (w0, w1)
// at the given address. 0 is possible, 1 is not.
func Uniform64(seed, step uint64, purpose Purpose, index uint64) float64 {
	w := Words(seed, step, purpose, index)
	return u53(w[0], w[1])
}

// Uniform64Pair returns two independent float64 uniforms in [0, 1) from one Philox call:
// the first from (w0, w1) (equal to Uniform64 at the same address), the second from (w2, w3).
func Uniform64Pair(seed, step uint64, purpose Purpose, index uint64) (float64, float64) {
	w := Words(seed, step, purpose, index)
	return u53(w[0], w[1]), u53(w[2], w[3])
}

// Uniform32JAX returns the float32 uniform that JAX's
// jax.random.uniform(minval=finfo(float32).tiny, maxval=1) would produce from the 32-bit
// word w0 at this address: 23 mantissa bits, i.e. the grid {k·2^-23}, with 0 replaced by
// the smallest normal float32. It exists only for the labelled jax-compat sampler
// (md4.md §5.4), whose Gumbel noise is capped at −ln(−ln(1−2^-23)) ≈ 15.94.
func Uniform32JAX(seed, step uint64, purpose Purpose, index uint64) float32 {
	w := Words(seed, step, purpose, index)
	x := math.Float32frombits(w[0]>>9|0x3F800000) - 1
	if x == 0 {
		return math.SmallestNonzeroFloat32 * (1 << 23) // 2^-126, float32 tiny
	}
	return x
}

// Normal64 returns a standard normal float64 at the address, by the Box–Muller transform of
// Uniform64Pair (log1p keeps the smallest uniform finite: 1−u1 ∈ (0, 1]).
func Normal64(seed, step uint64, purpose Purpose, index uint64) float64 {
	u1, u2 := Uniform64Pair(seed, step, purpose, index)
	return math.Sqrt(-2*math.Log1p(-u1)) * math.Cos(2*math.Pi*u2)
}
