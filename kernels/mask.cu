// mask.cu: MD4 forward masking x_t ~ q(x_t | x_0) (md4.md §1.1, §2.3 step 2; ops.MaskParams), plus the
// Philox self-check kernel used by the tests of philox.cuh.
//
// Math: for every position i = b·L + l, with u = Uniform64(Seed, Step, Purpose, IndexOffset + i),
//   XT[b, l] = MaskID  if l < SeqLens[b] and u < p,   else X0[b, l]
// where p = MaskProb[b] (MD4: 1 − α_{t_b}) or p = MaskProb[b, X0[b, l]] (GenMD4 per-token α),
// compared in float64. The uniform is the exact 53-bit grid value of engine/rng, so the mask is
// bit-identical to the CPU backend and to diffusion.MaskRef for the same address.
//
// Shapes: X0, XT [B, L] I32 (row-major, contiguous); MaskProb [B] or [B, V] F64 (V = MaskID);
// SeqLens [B] I32 or null (then every row has length L).
// Dtype policy: integers and float64 only (no float32 math at all), so there is nothing to round.
// Saved tensors: none. Determinism: every output element depends only on its own inputs and address;
// the only atomics are integer atomicMin on the error slots.
//
// Invalid data (pitfalls B15/B16 style: refuse, never guess): a token of X0 outside [0, V) (including
// the mask id V), a length outside [1, L], a probability that is NaN or outside [0, 1]. mask_check_i32
// records the smallest offending index of each kind in flags[0..2] (flags start at 0x7F7F7F7F7F7F7F7F,
// "none"); mask_fwd_i32 then writes nothing when any is set, so XT is untouched on error exactly as on
// the CPU, and the launcher turns the flags into the CPU's *ops.OpError messages.
//
// Launch contract (mirrored in cuda/mask.go, maskThreads): 1-D blocks of MASK_THREADS = 256 threads,
// grid = ceil(n / 256) capped at MASK_MAX_BLOCKS (grid-stride loops cover the rest), no shared memory.
//   mask_check_i32: n = max(B·L, B, numel(MaskProb));  mask_fwd_i32: n = B·L.
//   philox_check_u32: n = count (test kernel: Philox words and uniforms at consecutive indices).
// Go launcher: cuda/mask.go (Backend.MaskTokens); tests cuda/mask_test.go.
// Lab history: v1 (this) — one thread per position; bound by the Philox ALU work (~60 integer ops per
// position), far below memory bandwidth for any realistic B·L.
#include "compat.cuh"
#include "philox.cuh"

#define MASK_THREADS 256
#define MASK_MAX_BLOCKS 65535
#define MASK_FLAG_NONE 0x7F7F7F7F7F7F7F7FLL  // memset 0x7F of the error slots: "no error"

// Error slots (long long each, smallest offending flat index): X0, SeqLens, MaskProb.
#define MASK_FLAG_X0 0
#define MASK_FLAG_SEQLENS 1
#define MASK_FLAG_PROB 2

KERNEL void __launch_bounds__(MASK_THREADS)
    mask_check_i32(long long* __restrict__ flags, const int* __restrict__ x0, const double* __restrict__ prob,
                   const int* __restrict__ seqlens, long long B, long long L, long long V, long long nprob) {
    const long long npos = B * L;
    long long n = npos > nprob ? npos : nprob;
    n = n > B ? n : B;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (long long)gridDim.x * blockDim.x) {
        if (k < npos) {
            const int x = x0[k];
            if (x < 0 || x >= V) atomicMin(&flags[MASK_FLAG_X0], k);
        }
        if (seqlens != nullptr && k < B) {
            const int s = seqlens[k];
            if (s < 1 || s > L) atomicMin(&flags[MASK_FLAG_SEQLENS], k);
        }
        if (k < nprob) {
            const double q = prob[k];
            if (!(q >= 0.0 && q <= 1.0)) atomicMin(&flags[MASK_FLAG_PROB], k);  // NaN fails both
        }
    }
}

// per_token != 0: MaskProb is [B, V] and indexed by the clean token; otherwise [B].
KERNEL void __launch_bounds__(MASK_THREADS)
    mask_fwd_i32(int* __restrict__ xt, const int* __restrict__ x0, const double* __restrict__ prob,
                 const int* __restrict__ seqlens, const long long* __restrict__ flags, long long B, long long L,
                 long long V, int per_token, int mask_id, unsigned long long seed, unsigned long long step,
                 unsigned purpose, unsigned long long index_offset) {
    if (flags[MASK_FLAG_X0] != MASK_FLAG_NONE || flags[MASK_FLAG_SEQLENS] != MASK_FLAG_NONE ||
        flags[MASK_FLAG_PROB] != MASK_FLAG_NONE)
        return;  // invalid input: leave XT untouched (the launcher reports the error)
    const long long npos = B * L;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < npos; i += (long long)gridDim.x * blockDim.x) {
        const long long b = i / L, l = i - b * L;
        const int x = x0[i];
        int out = x;
        const long long len = seqlens != nullptr ? (long long)seqlens[b] : L;
        if (l < len) {
            const double p = per_token ? prob[b * V + x] : prob[b];
            const double u = philox_uniform64(seed, step, purpose, index_offset + (unsigned long long)i);
            if (u < p) out = mask_id;
        }
        xt[i] = out;
    }
}

// Test kernel for philox.cuh (cuda/mask_test.go compares it with engine/rng): for k < count and
// index = index0 + k, words[4k..4k+3] = rng.Words, pair[2k], pair[2k+1] = rng.Uniform64Pair, jax[k] =
// rng.Uniform32JAX, all at (seed, step, purpose, index). Any output may be null.
KERNEL void __launch_bounds__(MASK_THREADS)
    philox_check_u32(unsigned* __restrict__ words, double* __restrict__ pair, float* __restrict__ jax,
                     unsigned long long seed, unsigned long long step, unsigned purpose, unsigned long long index0,
                     long long count) {
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += (long long)gridDim.x * blockDim.x) {
        const unsigned long long index = index0 + (unsigned long long)k;
        if (words != nullptr) {
            const PhiloxWords w = philox_words(seed, step, purpose, index);
            words[4 * k + 0] = w.w0;
            words[4 * k + 1] = w.w1;
            words[4 * k + 2] = w.w2;
            words[4 * k + 3] = w.w3;
        }
        if (pair != nullptr) philox_uniform64_pair(seed, step, purpose, index, &pair[2 * k], &pair[2 * k + 1]);
        if (jax != nullptr) jax[k] = philox_uniform32_jax(seed, step, purpose, index);
    }
}
