// Package diffusion is the host-side mathematics of MD4 and GenMD4 masked diffusion
// (Shi et al. 2024, arXiv 2406.04329; the spec is docs/md4.md): masking schedules α(t) and
// their ELBO weights, time sampling, forward-masking probabilities and a bit-exact host
// reference of forward masking, the per-row weights of the fused masked cross-entropy, the
// reconstruction and prior terms of the bound, unit conversions and an evaluation
// accumulator, the ancestral sampler's time grid and unmask probabilities, and GenMD4's
// per-token schedules.
//
// It has no tensors and no backend: it computes the float64 scalars and small host arrays
// that parameterise the device ops of package ops (ops.MaskParams.MaskProb,
// ops.MaskedCEParams.Weights, ops.SampleParams.PUnmask), and reference implementations
// that backends are compared with.
//
// # Conventions
//
//   - t ∈ [0, 1] is diffusion time: t = 0 is data, t = 1 is all-mask. α_t is the
//     probability that a token is still unmasked at t (md4.md §0).
//   - w(t) = α'_t/(1−α_t) ≤ 0 is the ELBO weight (the md4 code's dgamma_times_alpha). The
//     loss multiplies −w(t) ≥ 0 by a sum of cross-entropies CE = −log μ_θ(x0) ≥ 0 in nats.
//   - "nats per sequence" is the natural unit of the single-sample NELBO estimator; "bits
//     per token" divides it by L·ln 2 (md4.md §2.3 step 7; utils.loss2bpt in the md4 code).
//   - V is the number of real tokens; the mask id is V (md4.md §0).
//   - Random numbers come from package rng, addressed by (seed, step, purpose, index).
//
// # Bounds
//
// The md4 code omits the prior term KL(q(x_1|x_0) ‖ p(x_1)) = L·α_1·ln V of App. E, and its
// GenMD4 diffusion term lacks the (1−t1) factor of the integral over [t1, 1] (md4.md §2.3
// step 6, §4). BoundPaperCode reproduces the code; BoundExact is the true bound. Result
// types always carry both.
package diffusion
