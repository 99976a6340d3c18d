// masked_ce.cu: fused masked cross-entropy of MD4 (md4.md §2.3 steps 3-5, architecture.md §3 step 4;
// ops.MaskedCEParams): log-softmax + CE at the target + the MD4 weight + dlogits, for the gathered
// masked rows only.
//
// Math, per row r of Logits [R, V], with M = max_j l_j, S = Σ_j exp(l_j − M), LSE = M + log S:
//   Loss[r]       = W[r] · (LSE − l_t)                          (float64)
//   DLogits[r, j] = W[r] · (exp(l_j − M)/S − [j = t])           (optional; may alias Logits)
// with t = Targets[r], W = Weights (≥ 0 for the NELBO: −w(t_b)/(L·ln 2)/B).
//
// Shapes: Logits, DLogits [R, V] f32 or bf16 (row-major, contiguous; V is the real vocabulary, no
// padding columns: nothing at or past V is read or written, pitfalls B15); Targets [R] I32; Weights,
// Loss [R] F64.
// Dtype policy: logits/dlogits in the call's dtype (bf16 storage in a bf16 call); exp in float32
// (expf, full precision — not __expf: its ftz/2-ulp error would show in the gradient of rare
// classes), the sum S in float64, LSE and Loss in float64, dlogits in float32 rounded once to the
// storage type. Versus the CPU reference (float64 exp and sums): Loss ≈ 1e-7 relative, DLogits
// ≈ 3e-7 relative (tolerance 1e-5). Huge logits (±1e4) stay finite: everything is max-subtracted.
// Saved tensors: none (Loss and DLogits are the outputs; nothing for a later backward).
//
// Passes: (1) one read of the row: every thread keeps an online (max m, float64 sum s) over its
// elements — when a larger value arrives, s is rescaled by exp(m_old − m_new) —, then a block
// reduction combines the (m, s) pairs; (2) with DLogits, a second read (from L2 on the GPU) writes
// the gradient. The target logit is read before the reduction's barriers, so DLogits may alias
// Logits (each element is then read and written by the same thread, in that order).
//
// Work split: elements are taken in groups of 16 bytes (4 f32 / 8 bf16) by index — group g = elements
// [gW, gW + W) goes to thread g mod blockDim — and a group is loaded with one 128-bit load when its
// address is 16-byte aligned, element by element otherwise (e.g. odd V, where row starts are not
// aligned). The reduction order depends only on indices and blockDim, never on addresses, so equal
// rows give equal bits wherever they live. Determinism: fixed per-thread order, fixed butterfly and
// fixed cross-warp order; no float atomics.
//
// Errors: a target outside [0, V) is an ErrValue naming the row (pitfalls B15): masked_ce_check_i32
// stores the smallest such row in flags[0] (0x7F..7F = none) and masked_ce_fwdbwd_* then writes
// nothing, so outputs are untouched on error as on the CPU.
//
// Launch contract (mirrored in cuda/masked_ce.go):
//   masked_ce_check_i32:       grid ceil(R/256) capped at 65535, block CE_CHECK_THREADS = 256.
//   masked_ce_fwdbwd_{f32,bf16}: grid (R), block T a multiple of 32 in [32, CE_THREADS = 256]
//                               (launcher: min(256, max(32, round_up(ceil(V/8), 32)))), no dynamic
//                               smem, static smem 408 bytes. R = 0 launches nothing.
// Go launcher: cuda/masked_ce.go (Backend.MaskedCE); tests cuda/masked_ce_test.go.
// Lab history: v1 (this).
#include "compat.cuh"
#include "common.cuh"  // mdm::f32_to_bf16_bits (round to nearest even, the CPU's NaN encoding)

#define CE_THREADS 256
#define CE_CHECK_THREADS 256
#define CE_CHECK_MAX_BLOCKS 65535
#define CE_FLAG_NONE 0x7F7F7F7F7F7F7F7FLL
#define CE_FLAG_TARGET 0

namespace ce_detail {

// Per-type loads and stores of one 16-byte group.
template <class T>
struct Group;
template <>
struct Group<float> {
    static constexpr int W = 4;
    __device__ static float get(const float* p, long long j) { return p[j]; }
    __device__ static void put(float* p, long long j, float x) { p[j] = x; }
    __device__ static void load_vec(const float* p, float x[W]) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        x[0] = v.x;
        x[1] = v.y;
        x[2] = v.z;
        x[3] = v.w;
    }
    __device__ static void store_vec(float* p, const float x[W]) {
        *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
    }
};
template <>
struct Group<__nv_bfloat16> {
    static constexpr int W = 8;
    __device__ static float get(const __nv_bfloat16* p, long long j) { return __bfloat162float(p[j]); }
    __device__ static void put(__nv_bfloat16* p, long long j, float x) { p[j] = __ushort_as_bfloat16(mdm::f32_to_bf16_bits(x)); }
    __device__ static void load_vec(const __nv_bfloat16* p, float x[W]) {
        const uint4 v = *reinterpret_cast<const uint4*>(p);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            x[2 * k] = __uint_as_float(w[k] << 16);             // low half: the lower-indexed element
            x[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
        }
    }
    __device__ static void store_vec(__nv_bfloat16* p, const float x[W]) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t lo = mdm::f32_to_bf16_bits(x[2 * k]);
            const uint32_t hi = mdm::f32_to_bf16_bits(x[2 * k + 1]);
            w[k] = lo | (hi << 16);
        }
        *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    }
};

// load_group reads the n <= W elements of the group starting at element j0 of row into x (one 128-bit
// load when the group is whole and 16-byte aligned).
template <class T>
__device__ __forceinline__ void load_group(const T* row, long long j0, int n, float x[Group<T>::W]) {
    const T* p = row + j0;
    if (n == Group<T>::W && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
        Group<T>::load_vec(p, x);
    } else {
#pragma unroll
        for (int k = 0; k < Group<T>::W; ++k) x[k] = k < n ? Group<T>::get(row, j0 + k) : -INFINITY;
    }
}

template <class T>
__device__ __forceinline__ void store_group(T* row, long long j0, int n, const float x[Group<T>::W]) {
    T* p = row + j0;
    if (n == Group<T>::W && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
        Group<T>::store_vec(p, x);
    } else {
        for (int k = 0; k < n; ++k) Group<T>::put(row, j0 + k, x[k]);
    }
}

// combine merges the online pair (m2, s2) into (m, s): s·exp(m − M) + s2·exp(m2 − M), M = max. A side
// whose max is −Inf holds s = 0 and contributes nothing (no exp(−Inf + Inf) = NaN).
__device__ __forceinline__ void combine(float& m, double& s, float m2, double s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    if (m2 > m) {
        s = __dadd_rn(__dmul_rn(s, exp(__dsub_rn((double)m, (double)m2))), s2);
        m = m2;
    } else {
        s = __dadd_rn(s, __dmul_rn(s2, exp(__dsub_rn((double)m2, (double)m))));
    }
}

struct Shared {
    float m[32];
    double s[32];
    float mb;
    double sb;
    float xt;
};

template <class T>
__device__ __forceinline__ void masked_ce(const T* logits, const int* __restrict__ targets,
                                          const double* __restrict__ weights, double* __restrict__ loss, T* dlogits,
                                          const long long* __restrict__ flags, long long V) {
    constexpr int W = Group<T>::W;
    __shared__ Shared sh;
    if (flags[CE_FLAG_TARGET] != CE_FLAG_NONE) return;  // a bad target somewhere: write nothing
    const long long r = blockIdx.x;
    const T* row = logits + r * V;
    const int t = targets[r];  // in [0, V): checked by masked_ce_check_i32
    const double w = weights[r];
    if (threadIdx.x == 0) sh.xt = Group<T>::get(row, t);  // before any write through an aliased DLogits

    // Pass 1: online (max, sum) per thread over its groups.
    const long long ngroups = (V + W - 1) / W;
    float m = -INFINITY;
    double s = 0.0;
    for (long long g = threadIdx.x; g < ngroups; g += blockDim.x) {
        const long long j0 = g * W;
        const int n = (int)(V - j0 < W ? V - j0 : W);
        float x[W];
        load_group(row, j0, n, x);
        float gm = x[0];
#pragma unroll
        for (int k = 1; k < W; ++k) gm = x[k] > gm ? x[k] : gm;
        if (gm == -INFINITY) continue;  // contributes exp(−Inf − M) = 0 (or the row is all −Inf)
        if (gm > m) {
            if (m != -INFINITY) s = __dmul_rn(s, exp(__dsub_rn((double)m, (double)gm)));
            m = gm;
        }
        double gs = 0.0;
#pragma unroll
        for (int k = 0; k < W; ++k) gs = __dadd_rn(gs, (double)expf(x[k] - m));
        s = __dadd_rn(s, gs);
    }
    // NaN logits: x > gm is false for NaN, so a NaN is not the max; expf(NaN − m) = NaN reaches s,
    // and Loss/DLogits come out NaN as on the CPU.

    // Block reduction of (m, s): butterfly within warps, then warp 0 in lane order.
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const double s2 = __shfl_xor_sync(0xffffffffu, s, o);
        // Both lanes must end with the same pair: combine the lower lane's pair into the higher's
        // value in a fixed role order (the lane with the lower index is always "first").
        const bool lower = (threadIdx.x & o) == 0;
        float ma = lower ? m : m2, mb = lower ? m2 : m;
        double sa = lower ? s : s2, sb = lower ? s2 : s;
        combine(ma, sa, mb, sb);
        m = ma;
        s = sa;
    }
    const int nwarps = blockDim.x >> 5, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (nwarps > 1) {
        if (lane == 0) {
            sh.m[warp] = m;
            sh.s[warp] = s;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int k = 1; k < nwarps; ++k) combine(m, s, sh.m[k], sh.s[k]);
            sh.mb = m;
            sh.sb = s;
        }
    }
    __syncthreads();  // also publishes sh.xt
    if (nwarps > 1) {
        m = sh.mb;
        s = sh.sb;
    }
    const double lse = __dadd_rn((double)m, log(s));
    if (threadIdx.x == 0) loss[r] = __dmul_rn(w, __dsub_rn(lse, (double)sh.xt));
    if (dlogits == nullptr) return;

    // Pass 2: DLogits[r, j] = w·exp(l_j − M)/S − w·[j = t].
    T* drow = dlogits + r * V;
    const double scale = __ddiv_rn(w, s);
    const float fscale = __double2float_rn(scale);
    for (long long g = threadIdx.x; g < ngroups; g += blockDim.x) {
        const long long j0 = g * W;
        const int n = (int)(V - j0 < W ? V - j0 : W);
        float x[W];
        load_group(row, j0, n, x);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            const float p = expf(x[k] - m);
            x[k] = j0 + k == t ? __double2float_rn(__dsub_rn(__dmul_rn((double)p, scale), w)) : __fmul_rn(p, fscale);
        }
        store_group(drow, j0, n, x);
    }
}

}  // namespace ce_detail

// Targets in [0, V) or the smallest offending row in flags[0].
KERNEL void __launch_bounds__(CE_CHECK_THREADS)
    masked_ce_check_i32(long long* __restrict__ flags, const int* __restrict__ targets, long long R, long long V) {
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < R; r += (long long)gridDim.x * blockDim.x) {
        const int t = targets[r];
        if (t < 0 || t >= V) atomicMin(&flags[CE_FLAG_TARGET], r);
    }
}

KERNEL void __launch_bounds__(CE_THREADS)
    masked_ce_fwdbwd_f32(const float* logits, const int* __restrict__ targets, const double* __restrict__ weights,
                         double* __restrict__ loss, float* dlogits, const long long* __restrict__ flags, long long V) {
    ce_detail::masked_ce(logits, targets, weights, loss, dlogits, flags, V);
}

KERNEL void __launch_bounds__(CE_THREADS)
    masked_ce_fwdbwd_bf16(const __nv_bfloat16* logits, const int* __restrict__ targets,
                          const double* __restrict__ weights, double* __restrict__ loss, __nv_bfloat16* dlogits,
                          const long long* __restrict__ flags, long long V) {
    ce_detail::masked_ce(logits, targets, weights, loss, dlogits, flags, V);
}
