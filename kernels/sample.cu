// sample.cu: one MD4 ancestral sampling step (md4.md §5.1, §5.4; ops.SampleParams / SampleMode).
//
// Math, per listed row i (flat position r = Rows[i] of Z, Philox index pos = IndexOffset + r), with
// m = max_j l_j and e_j = exp(l_j − m) in float64 (0 for tokens removed by top-p):
//   exact  : u1 = U64(UNMASK, pos); stay masked unless u1 < PUnmask; else u2 = U64(TOKEN, pos) and the
//            token is the inverse CDF of e at u2·Σe, Σ in the reference order of ops.SampleCDFChunk.
//   jax    : float32 Gumbel-max over [log(pu·μ_j) + g_j, log(1 − pu) + g_V], u_j = U32JAX(TOKEN,
//            pos·(V+1) + j); index V = stay masked (biased on purpose: reproduces the paper's code).
//   argmax : first index of the largest logit.
//   exact with class_unmask (GenMD4, ops.SampleParams.ClassUnmask; q = class_unmask [V] F64): the token j
//            is drawn first (inverse CDF at u2, as above), then the position takes j iff u1 < q[j] and
//            stays masked otherwise: P(j) = μ_j·q_j, P(mask) = Σ_j μ_j·(1 − q_j) (md4.md §4 reverse step).
//            Values of q outside [0, 1] (or NaN) are an error (flags[2] = 0, found by block 0).
// Reference algorithm: engine/cpu/sample.go; every float64 sum below is computed in exactly its
// order — sequentially within chunks of SAMPLE_CHUNK = 256 (= ops.SampleCDFChunk), then sequentially
// over the chunk sums — so that draws are bit-identical to the CPU. One thread owns a chunk (threads
// loop over chunks when there are more chunks than threads); thread 0
// adds the chunk sums and walks the CDF. Top-p is the md4 code's greedy search over bits 30..0 of
// the float32 threshold τ (31 masses, each in the same chunk order); μ_j = float32(e_j / Σe) is
// recomputed in every pass instead of being stored (no O(V) scratch; top-p is only used at sampling
// time and only by rows that unmask, or by every row in jax mode).
//
// Bit-identity caveat (documented in the Go launcher too): the reference uses Go's math.Exp/Log,
// the simulator glibc's exp/log and the GPU CUDA's exp/log. All are accurate to < 1 ulp but are not
// correctly rounded, so an e_j can differ in its last bit between backends. A draw can then differ
// only if u2·Σe falls within a few ulps of a CDF boundary (or a float32 rounding of μ_j, or a
// top-p mass, sits exactly on a boundary): probability ~1e-13 per draw. Exact cross-backend identity
// would need one shared, explicitly-rounded exp/log in Go and CUDA (reported to the contract owner).
// Contractions cannot change anything: every float op whose rounding matters is written with an
// explicit _rn intrinsic (nvcc would otherwise fuse u2·Σe − P into an FMA).
//
// Shapes: Z, Out [B, L] I32; Logits [R, V] f32 or bf16 (row-major, contiguous); Rows [R] I32.
// Scratch (owned by the launcher): tokens [R] I32, stamp [B·L] I32 zeroed (stamp[r] = i + 1 claims
// position r for row i, which also detects repeated rows), flags [2] I64 (SAMPLE_FLAG_*).
// Saved tensors: none. Determinism: every float sum has one fixed order (above); the max/argmax
// reductions are over integer keys (exact and order-free); the only atomics are integer (atomicCAS on
// stamp, atomicMin on flags). The result does not depend on the block size or the thread order.
// Errors (the CPU's, reported by the launcher): a row out of range, repeated or not masked
// (flags[0] = smallest such i; the launcher re-derives the CPU's message on the host), a row whose
// logits contain NaN/+Inf or only −Inf where they are read (flags[1] = smallest i), or a class_unmask
// value outside [0, 1] (flags[2] = smallest such token). On any error sample_commit_i32 writes nothing,
// so Out is unchanged, as on the CPU.
//
// Launch contract (mirrored in cuda/sample.go):
//   sample_step_{f32,bf16}: grid (R), block (T) with T a multiple of 32 in [32, SAMPLE_THREADS = 256]
//                           (the launcher uses min(256, max(32, round_up(ceil(V/16), 32))): one warp
//                           for small vocabularies, 8 for V >= 4096), dynamic smem ceil(V/256)·8 bytes
//                           (the chunk sums), static smem 272 bytes. Any such T gives the same draws.
//   sample_commit_i32:      grid ceil(B·L/256) capped at 65535, block 256, no smem. Out may alias Z.
// Go launcher: cuda/sample.go (Backend.SampleStep); tests cuda/sample_test.go.
// Lab history: v1 (this).
#include "compat.cuh"
#include "philox.cuh"

#define SAMPLE_THREADS 256
#define SAMPLE_CHUNK 256  // ops.SampleCDFChunk
#define SAMPLE_COMMIT_THREADS 256
#define SAMPLE_COMMIT_MAX_BLOCKS 65535
#define SAMPLE_FLAG_NONE 0x7F7F7F7F7F7F7F7FLL
#define SAMPLE_FLAG_ROWS 0    // a row out of range, repeated, or not masked
#define SAMPLE_FLAG_LOGITS 1  // non-finite logits
#define SAMPLE_FLAG_CLASS 2   // a class_unmask probability outside [0, 1]
#define SAMPLE_MODE_EXACT 1   // ops.SampleExact
#define SAMPLE_MODE_JAX 2     // ops.SampleJAXCompat
#define SAMPLE_MODE_ARGMAX 3  // ops.SampleArgmax

namespace sample_detail {

__device__ __forceinline__ float load_logit(const float* p, long long j) { return p[j]; }
__device__ __forceinline__ float load_logit(const __nv_bfloat16* p, long long j) { return __bfloat162float(p[j]); }

// Block-shared scratch of the reductions (static shared memory).
struct Shared {
    unsigned long long k[32];
    unsigned long long kb;
    double bd;
};

// Reductions use one 64-bit key per thread, so each warp stage is a single shuffle:
//   ord_f64 / ord_f32 map floats (not NaN) to unsigned integers of the same order (−0 is first made +0,
//   so that equal values compare equal as in the CPU's `x > best`);
//   argmax keys are ord_f32(v) << 32 | (0xFFFFFFFF − index): the largest key is the lowest index among
//   the largest values, the CPU's sequential "first strictly greater" scan; 0 = no candidate (every
//   non-NaN float has ord_f32 > 0);
//   KEY_BAD (all ones) marks NaN (and +Inf for the float64 max): it beats every valid key.
#define KEY_BAD 0xFFFFFFFFFFFFFFFFull
__device__ __forceinline__ unsigned long long ord_f64(double x) {
    const unsigned long long b = (unsigned long long)__double_as_longlong(x == 0.0 ? 0.0 : x);
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}
__device__ __forceinline__ double unord_f64(unsigned long long k) {
    const unsigned long long b = (k >> 63) ? (k & 0x7FFFFFFFFFFFFFFFull) : ~k;
    return __longlong_as_double((long long)b);
}
__device__ __forceinline__ unsigned ord_f32(float x) {
    const unsigned b = __float_as_uint(x == 0.0f ? 0.0f : x);
    return (b >> 31) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ unsigned long long argmax_key(float v, long long j) {
    return ((unsigned long long)ord_f32(v) << 32) | (unsigned long long)(0xFFFFFFFFu - (unsigned)j);
}
__device__ __forceinline__ long long argmax_index(unsigned long long k) { return (long long)(0xFFFFFFFFu - (unsigned)k); }

// block_max_u64 returns the block-wide maximum of k in every thread: a butterfly within each warp,
// then (with more than one warp) warp 0 over the per-warp maxima. Contains barriers when
// blockDim.x > 32: call it from block-uniform control flow.
__device__ __forceinline__ unsigned long long block_max_u64(unsigned long long k, Shared& sh) {
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long ok = __shfl_xor_sync(0xffffffffu, k, o);
        k = ok > k ? ok : k;
    }
    const int nwarps = blockDim.x >> 5;
    if (nwarps == 1) return k;  // the butterfly left the maximum in every lane
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh.k[warp] = k;
    __syncthreads();
    if (warp == 0) {
        k = lane < nwarps ? sh.k[lane] : 0ull;
        for (int o = 16; o > 0; o >>= 1) {
            const unsigned long long ok = __shfl_xor_sync(0xffffffffu, k, o);
            k = ok > k ? ok : k;
        }
        if (lane == 0) sh.kb = k;
    }
    __syncthreads();
    k = sh.kb;
    __syncthreads();  // the next reduction may overwrite sh
    return k;
}

// chunk_total computes, in the reference order, Σ_j f(j) over j < V: csum[c] = sequential sum of chunk
// c (one thread per chunk), then thread 0 adds csum[0..] sequentially. Every thread gets the total;
// csum keeps the chunk sums. f(j) must be a pure function of j (recomputed values are identical).
template <class F>
__device__ __forceinline__ double chunk_total(F f, long long V, double* csum, Shared& sh) {
    const long long nchunks = (V + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK;
    for (long long c = threadIdx.x; c < nchunks; c += blockDim.x) {
        const long long lo = c * SAMPLE_CHUNK, hi = lo + SAMPLE_CHUNK < V ? lo + SAMPLE_CHUNK : V;
        double s = 0.0;
        for (long long j = lo; j < hi; ++j) s = __dadd_rn(s, f(j));
        csum[c] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (long long c = 0; c < nchunks; ++c) t = __dadd_rn(t, csum[c]);
        sh.bd = t;
    }
    __syncthreads();
    const double t = sh.bd;
    __syncthreads();
    return t;
}

// inverse_cdf (thread 0 only) draws from the weights e (e(j) >= 0, pure in j) at the uniform u, exactly
// as engine/cpu inverseCDF (ops.SampleExact): t = u·total; the first chunk c whose running total
// P_c + C_c exceeds t; in it the first j whose in-chunk partial sum exceeds t − P_c; where rounding
// leaves none, the last j with e_j > 0 there, or else overall. csum holds the chunk sums C_c of e and
// total their sequential sum (chunk_total).
template <class F>
__device__ long long inverse_cdf(F e, double u, double total, const double* csum, long long V) {
    const double t = __dmul_rn(u, total);
    const long long nchunks = (V + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK;
    double prefix = 0.0;
    for (long long c = 0; c < nchunks; ++c) {
        const double cs = csum[c];
        if (__dadd_rn(prefix, cs) > t) {
            const double rem = __dsub_rn(t, prefix);
            const long long lo = c * SAMPLE_CHUNK, hi = lo + SAMPLE_CHUNK < V ? lo + SAMPLE_CHUNK : V;
            double s = 0.0;
            long long last = -1;
            for (long long j = lo; j < hi; ++j) {
                const double x = e(j);
                s = __dadd_rn(s, x);
                if (x > 0.0) last = j;
                if (s > rem && x > 0.0) return j;
            }
            if (last >= 0) return last;
        }
        prefix = __dadd_rn(prefix, cs);
    }
    for (long long k = V - 1; k > 0; --k)
        if (e(k) > 0.0) return k;
    return 0;
}

template <class T>
__device__ __forceinline__ void sample_step(int* __restrict__ tokens, int* __restrict__ stamp, long long* __restrict__ flags,
                                            const int* __restrict__ z, const T* __restrict__ logits,
                                            const int* __restrict__ rows, long long V, long long npos, double punmask,
                                            double topp, int mode, int mask_id, unsigned long long seed,
                                            unsigned long long step, unsigned long long index_offset,
                                            const double* __restrict__ class_unmask) {
    __shared__ Shared sh;
    DYNAMIC_SMEM(double, csum);  // [ceil(V / SAMPLE_CHUNK)] chunk sums
    const long long i = blockIdx.x;
    const T* row = logits + i * V;
    if (mode != SAMPLE_MODE_EXACT) class_unmask = nullptr;  // argmax ignores it (jax is refused by Validate)
    if (class_unmask != nullptr && i == 0) {
        for (long long j = threadIdx.x; j < V; j += blockDim.x) {
            const double q = class_unmask[j];
            if (!(q >= 0.0 && q <= 1.0)) atomicMin(&flags[SAMPLE_FLAG_CLASS], j);
        }
    }

    // Structure: the row must name an in-range, masked position that no other row names. Every
    // thread reads the same values, so bad_row (and the early return) is block-uniform.
    const long long r = rows[i];
    const bool bad_row = r < 0 || r >= npos || z[r] != mask_id;
    if (threadIdx.x == 0) {
        if (bad_row) {
            atomicMin(&flags[SAMPLE_FLAG_ROWS], i);
        } else if (atomicCAS(&stamp[r], 0, (int)(i + 1)) != 0) {
            atomicMin(&flags[SAMPLE_FLAG_ROWS], i);  // repeated row
        }
    }
    if (bad_row) return;
    const unsigned long long pos = index_offset + (unsigned long long)r;

    if (mode == SAMPLE_MODE_ARGMAX) {
        unsigned long long key = 0;  // no candidate yet
        for (long long j = threadIdx.x; j < V; j += blockDim.x) {
            const float x = load_logit(row, j);
            const unsigned long long kj = x != x ? KEY_BAD : argmax_key(x, j);
            key = kj > key ? kj : key;
        }
        key = block_max_u64(key, sh);
        if (threadIdx.x == 0) {
            if (key == KEY_BAD || key == 0)
                atomicMin(&flags[SAMPLE_FLAG_LOGITS], i);  // a NaN, or an empty vocabulary
            else
                tokens[i] = (int)argmax_index(key);
        }
        return;
    }

    if (mode == SAMPLE_MODE_EXACT && class_unmask == nullptr) {
        const double u1 = philox_uniform64(seed, step, PHILOX_PURPOSE_SAMPLE_UNMASK, pos);
        if (!(u1 < punmask)) {  // stays masked; the logits are not read (as on the CPU)
            if (threadIdx.x == 0) tokens[i] = mask_id;
            return;
        }
    }

    // m = max_j l_j in float64; NaN or +Inf anywhere, or only −Inf, is an error.
    unsigned long long mkey = 0;
    for (long long j = threadIdx.x; j < V; j += blockDim.x) {
        const double x = (double)load_logit(row, j);
        const unsigned long long kj = (x != x || x == INFINITY) ? KEY_BAD : ord_f64(x);
        mkey = kj > mkey ? kj : mkey;
    }
    mkey = block_max_u64(mkey, sh);
    if (mkey == KEY_BAD || mkey <= ord_f64(-INFINITY)) {
        if (threadIdx.x == 0) atomicMin(&flags[SAMPLE_FLAG_LOGITS], i);
        return;
    }
    const double m = unord_f64(mkey);
    // e_j = exp(l_j − m) in float64 (l_j − m is exact: both are floats widened to double).
    auto e_raw = [&](long long j) -> double { return exp(__dsub_rn((double)load_logit(row, j), m)); };

    // Top-p (ops.SampleParams): μ_j = float32(e_j / s) with s = Σ e_j (chunk order); τ = the largest
    // non-negative float32 with Σ_{μ_j ≥ τ} μ_j ≥ TopP (float64, chunk order), greedily over the bits
    // 30..0 of its pattern; tokens with μ_j < τ get e_j = 0.
    const bool use_topp = topp > 0.0 && topp < 1.0;
    double s_raw = 1.0;
    float tau = 0.0f;
    if (use_topp) {
        s_raw = chunk_total(e_raw, V, csum, sh);
        unsigned bits = 0;
        for (int bit = 30; bit >= 0; --bit) {
            const unsigned cand = bits | (1u << bit);
            if (cand > 0x7F800000u) continue;  // beyond +Inf: NaN patterns (block-uniform)
            const float t = __uint_as_float(cand);
            const double mass = chunk_total(
                [&](long long j) -> double {
                    const float mu = __double2float_rn(__ddiv_rn(e_raw(j), s_raw));
                    return mu >= t ? (double)mu : 0.0;
                },
                V, csum, sh);
            if (mass >= topp) bits = cand;
        }
        tau = __uint_as_float(bits);
    }
    auto e = [&](long long j) -> double {
        const double x = e_raw(j);
        return use_topp && __double2float_rn(__ddiv_rn(x, s_raw)) < tau ? 0.0 : x;
    };
    const double total = chunk_total(e, V, csum, sh);

    if (mode == SAMPLE_MODE_EXACT) {
        if (threadIdx.x == 0) {
            const double u2 = philox_uniform64(seed, step, PHILOX_PURPOSE_SAMPLE_TOKEN, pos);
            const long long tok = inverse_cdf(e, u2, total, csum, V);
            bool take = true;
            if (class_unmask != nullptr) {  // GenMD4: unmask with the drawn token's probability
                const double u1 = philox_uniform64(seed, step, PHILOX_PURPOSE_SAMPLE_UNMASK, pos);
                take = u1 < class_unmask[tok];
            }
            tokens[i] = take ? (int)tok : mask_id;
        }
        return;
    }

    // jax-compat: float32 Gumbel-max over the V + 1 scaled log-probabilities. Each float32 log is the
    // float64 log rounded once (as the reference computes it); entries of probability 0 never win.
    const float pu = __double2float_rn(punmask);
    const float pm = __fsub_rn(1.0f, pu);
    const unsigned long long base = pos * (unsigned long long)(V + 1);
    unsigned long long key = 0;
    for (long long j = threadIdx.x; j <= V; j += blockDim.x) {
        const float prob = j < V ? __fmul_rn(pu, __double2float_rn(__ddiv_rn(e(j), total))) : pm;
        if (!(prob > 0.0f)) continue;
        const float u = philox_uniform32_jax(seed, step, PHILOX_PURPOSE_SAMPLE_TOKEN, base + (unsigned long long)j);
        const float lu = __double2float_rn(log((double)u));
        const float g = -__double2float_rn(log((double)(-lu)));
        const float score = __fadd_rn(__double2float_rn(log((double)prob)), g);
        const unsigned long long kj = argmax_key(score, j);
        key = kj > key ? kj : key;
    }
    key = block_max_u64(key, sh);
    if (threadIdx.x == 0) {
        const long long bi = key == 0 ? -1 : argmax_index(key);
        tokens[i] = (bi < 0 || bi == V) ? mask_id : (int)bi;
    }
}

}  // namespace sample_detail

KERNEL void __launch_bounds__(SAMPLE_THREADS)
    sample_step_f32(int* __restrict__ tokens, int* __restrict__ stamp, long long* __restrict__ flags,
                    const int* __restrict__ z, const float* __restrict__ logits, const int* __restrict__ rows, long long V,
                    long long npos, double punmask, double topp, int mode, int mask_id, unsigned long long seed,
                    unsigned long long step, unsigned long long index_offset, const double* __restrict__ class_unmask) {
    sample_detail::sample_step(tokens, stamp, flags, z, logits, rows, V, npos, punmask, topp, mode, mask_id, seed, step,
                               index_offset, class_unmask);
}

KERNEL void __launch_bounds__(SAMPLE_THREADS)
    sample_step_bf16(int* __restrict__ tokens, int* __restrict__ stamp, long long* __restrict__ flags,
                     const int* __restrict__ z, const __nv_bfloat16* __restrict__ logits, const int* __restrict__ rows,
                     long long V, long long npos, double punmask, double topp, int mode, int mask_id,
                     unsigned long long seed, unsigned long long step, unsigned long long index_offset,
                     const double* __restrict__ class_unmask) {
    sample_detail::sample_step(tokens, stamp, flags, z, logits, rows, V, npos, punmask, topp, mode, mask_id, seed, step,
                               index_offset, class_unmask);
}

// Out[k] = the draw of the row that claimed position k (stamp[k] = row + 1), else Z[k]; nothing is
// written when an error slot is set. Out may alias Z (each element is read and written by one thread).
KERNEL void __launch_bounds__(SAMPLE_COMMIT_THREADS)
    sample_commit_i32(int* out, const int* z, const int* __restrict__ stamp, const int* __restrict__ tokens,
                      const long long* __restrict__ flags, long long npos) {
    if (flags[SAMPLE_FLAG_ROWS] != SAMPLE_FLAG_NONE || flags[SAMPLE_FLAG_LOGITS] != SAMPLE_FLAG_NONE ||
        flags[SAMPLE_FLAG_CLASS] != SAMPLE_FLAG_NONE)
        return;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < npos; k += (long long)gridDim.x * blockDim.x) {
        const int s = stamp[k];
        out[k] = s != 0 ? tokens[s - 1] : z[k];
    }
}
