// philox.cuh: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2,
// 3", SC 2011) and mdm-gpu's (seed, step, purpose, index) addressing, bit-identical to the Go
// reference engine/rng (philox.go): the same masks, times and samples on the CPU, the simulator and
// the GPU. Checked word for word against engine/rng by cuda/mask_test.go (kernel philox_check_u32 in
// mask.cu), including the Random123 known-answer vectors.
//
// Addressing (engine/rng, "Addressing"): the 64-bit seed is the key, the rest the 128-bit counter
//
//   key     = (k0, k1)         = (seed mod 2^32, seed >> 32)
//   counter = (c0, c1, c2, c3) = (index mod 2^32, index >> 32,
//                                 step mod 2^32, (step >> 32) mod 2^24 | purpose << 24)
//
// step must be below 2^56 (the Go side panics; launchers reject larger steps through Params.Validate)
// and purpose below 256. Purpose values are the ABI of engine/rng.Purpose* (mirrored below).
//
// Uniforms: philox_uniform64 uses (w0, w1) -> 53 bits -> {k·2^-53} ⊂ [0, 1); philox_uniform64_pair
// adds (w2, w3) as the second value; philox_uniform32_jax is JAX's float32 uniform on [tiny, 1)
// from w0 (23 mantissa bits, 0 replaced by FLT_MIN = 2^-126). All conversions are exact (integer to
// double of < 2^53, scaling by a power of two, float subtraction of 1 from [1, 2)), so no compiler
// contraction or rounding mode can change the bits.
//
// Only integer multiply-high is needed: __umulhi exists on the GPU and in the simulator (cudasim.h).
#pragma once

#include "compat.cuh"

// engine/rng.Purpose values (never renumber: checkpoints and kernels depend on them).
#define PHILOX_PURPOSE_TIME 1u
#define PHILOX_PURPOSE_MASK 2u
#define PHILOX_PURPOSE_DATA 3u
#define PHILOX_PURPOSE_SAMPLE_UNMASK 4u
#define PHILOX_PURPOSE_SAMPLE_TOKEN 5u
#define PHILOX_PURPOSE_MASK2 6u
#define PHILOX_PURPOSE_INIT 7u
#define PHILOX_PURPOSE_DROPOUT 8u
#define PHILOX_PURPOSE_EVAL_TIME 9u

// The four output words of one Philox call.
struct PhiloxWords {
    uint32_t w0, w1, w2, w3;
};

// philox4x32_10 applies the 10-round Philox4x32 bijection to counter (c0..c3) under key (k0, k1)
// (Random123 philox.h constants and round structure; engine/rng.Philox4x32).
__device__ __forceinline__ PhiloxWords philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                     uint32_t k0, uint32_t k1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += W0;
            k1 += W1;
        }
        const uint32_t hi0 = __umulhi(M0, c0), lo0 = M0 * c0;
        const uint32_t hi1 = __umulhi(M1, c2), lo1 = M1 * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    return PhiloxWords{c0, c1, c2, c3};
}

// philox_words returns the four words at address (seed, step, purpose, index) (engine/rng.Words).
__device__ __forceinline__ PhiloxWords philox_words(unsigned long long seed, unsigned long long step, uint32_t purpose,
                                                    unsigned long long index) {
    return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), static_cast<uint32_t>(step),
                         (static_cast<uint32_t>(step >> 32) & 0xFFFFFFu) | (purpose << 24),
                         static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// philox_u53 maps (hi, lo) to the float64 grid {k·2^-53 : 0 <= k < 2^53} (engine/rng.u53). Exact.
__device__ __forceinline__ double philox_u53(uint32_t hi, uint32_t lo) {
    const unsigned long long k = ((static_cast<unsigned long long>(hi) << 32) | lo) >> 11;
    return static_cast<double>(k) * 0x1p-53;
}

// philox_uniform64: float64 uniform in [0, 1) from (w0, w1) at the address (engine/rng.Uniform64).
__device__ __forceinline__ double philox_uniform64(unsigned long long seed, unsigned long long step, uint32_t purpose,
                                                   unsigned long long index) {
    const PhiloxWords w = philox_words(seed, step, purpose, index);
    return philox_u53(w.w0, w.w1);
}

// philox_uniform64_pair: two float64 uniforms from one call, (w0, w1) and (w2, w3)
// (engine/rng.Uniform64Pair; the first equals philox_uniform64 at the same address).
__device__ __forceinline__ void philox_uniform64_pair(unsigned long long seed, unsigned long long step, uint32_t purpose,
                                                      unsigned long long index, double* u0, double* u1) {
    const PhiloxWords w = philox_words(seed, step, purpose, index);
    *u0 = philox_u53(w.w0, w.w1);
    *u1 = philox_u53(w.w2, w.w3);
}

// philox_uniform32_jax: JAX's float32 uniform on [tiny, 1) from w0 (engine/rng.Uniform32JAX): the
// grid {k·2^-23}, 0 replaced by FLT_MIN (2^-126). Used only by the jax-compat sampler (md4.md §5.4).
__device__ __forceinline__ float philox_uniform32_jax(unsigned long long seed, unsigned long long step, uint32_t purpose,
                                                      unsigned long long index) {
    const PhiloxWords w = philox_words(seed, step, purpose, index);
    const float x = __uint_as_float((w.w0 >> 9) | 0x3F800000u) - 1.0f;  // exact: [1, 2) - 1
    return x == 0.0f ? __uint_as_float(0x00800000u) : x;
}
