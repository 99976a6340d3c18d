// gen_masked_ce.cu: GenMD4's fused masked diffusion loss (md4.md §4 eq. 12; ops.GenMaskedCEParams):
// softmax + the state-dependent-schedule integrand + dlogits + the pathwise gradient w.r.t. the
// schedule powers w, for the gathered masked rows only.
//
// Math, per row r of Logits [R, V] (clean token x = Targets[r], factor c = Scales[r]), with
// μ = softmax(l), CE = LSE − l_x, w̄ = Σ_j w_j μ_j:
//   Loss[r]       = c · (w_x·CE + w̄ − w_x)                                  (float64)
//   DLogits[r, k] = c · (μ_k·(w_x + w_k − w̄) − w_x·[k = x])                 (optional; may alias Logits)
//   DPowers[j]   += Σ_r c_r · (μ_{r,j} + [j = x_r]·(CE_r − 1))              (optional, float64)
//
// Shapes: Logits, DLogits [R, V] f32 or bf16 (row-major, contiguous; nothing at or past V is read or
// written); Targets [R] I32; Scales, Loss [R] F64; Powers, DPowers [V] F64.
// Dtype policy: logits in the call's dtype, read as float; exp in float32 (expf, full precision),
// every sum and the statistics in float64, dlogits computed in float64 and rounded once to the storage
// type. Versus the CPU reference (float64 exp): ~1e-7 relative.
// Scratch (owned by the launcher): stats [R, 4] F64 (max, Σexp, w̄, CE per row), partial [nchunks, V] F64
// (DPowers column sums per row chunk), flags [1] I64.
// Saved tensors: none.
//
// Kernels, in launch order (one stream, so each sees the previous one's writes):
//   gen_ce_check_i32      targets in [0, V), else the smallest bad row in flags[0] — every later kernel
//                         then returns at once, so nothing is written on error (as on the CPU).
//   gen_ce_fwd_<dt>       one block per row: block max (float, order-free), then Σexp and Σ w_j·exp in
//                         float64 (mdm::block_sum: fixed order), then Loss and stats.
//   gen_ce_dpow_<dt>      grid (ceil(V/256), nchunks): thread = column j, rows of chunk y in order:
//                         partial[y, j] = Σ_r c_r·(μ_rj + [j = x_r](CE_r − 1)). Coalesced: a warp reads 32
//                         consecutive columns of one row.
//   gen_ce_dpow_reduce_f64 per column: DPowers[j] += Σ_y partial[y, j] in chunk order.
//   gen_ce_bwd_<dt>       one block per row: DLogits. Last, because it may overwrite the logits; each
//                         element is read and written by the same thread.
// Determinism: the row chunking depends only on (R, V) (launcher: rows per chunk = max(64,
// ceil(R / max(1, 1024 / ceil(V/256))))), every sum has a fixed order, packs are owned by index (never by
// address: kernels/common.cuh), the only atomic is the integer atomicMin of the flag. Bit-identical from
// run to run and independent of where the rows live; not bit-identical to the CPU (other chunking, expf).
//
// Launch contract (mirrored in cuda/gen_masked_ce.go):
//   gen_ce_check_i32:      grid ceil(R/256) capped at 65535, block GCE_CHECK_THREADS = 256.
//   gen_ce_fwd_*, gen_ce_bwd_*: grid (R), block T a multiple of 32 in [32, GCE_THREADS = 256] (launcher:
//                         min(256, max(32, round_up(ceil(V/8), 32)))), static smem 384 bytes.
//   gen_ce_dpow_*:         grid (ceil(V/GCE_COL_THREADS), nchunks ≤ 1024), block GCE_COL_THREADS = 256.
//   gen_ce_dpow_reduce_f64: grid ceil(V/256), block 256.
//   R = 0 launches nothing.
// Go launcher: cuda/gen_masked_ce.go (Backend.GenMaskedCE); tests cuda/gen_masked_ce_test.go.
// Lab history: v1 (this).
#include "compat.cuh"
#include "common.cuh"  // mdm::load_pack_any / store_pack_any (128-bit packs), block_sum, load_f

#define GCE_THREADS 256
#define GCE_CHECK_THREADS 256
#define GCE_CHECK_MAX_BLOCKS 65535
#define GCE_COL_THREADS 256
#define GCE_FLAG_NONE 0x7F7F7F7F7F7F7F7FLL
#define GCE_FLAG_TARGET 0
#define GCE_NSTAT 4  // stats per row: max, Σexp, w̄, CE

namespace gce_detail {

struct Shared {
    float mx[32];
    double sc[32];
};

// block_max returns the block-wide max of m in every thread (fmaxf: exact and order-free; NaN is
// ignored by fmaxf, but then reaches the sums through expf and makes the row's outputs NaN, as on the
// CPU). Contains barriers: call from block-uniform control flow.
__device__ __forceinline__ float block_max(float m, Shared& sh) {
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh.mx[warp] = m;
    __syncthreads();
    m = lane < nw ? sh.mx[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    __syncthreads();
    return m;
}

template <class T>
__device__ __forceinline__ void fwd(const T* __restrict__ logits, const int* __restrict__ targets,
                                    const double* __restrict__ scales, const double* __restrict__ powers,
                                    double* __restrict__ loss, double* __restrict__ stats,
                                    const long long* __restrict__ flags, long long V) {
    constexpr int W = mdm::VecOf<T>::N;
    __shared__ Shared sh;
    if (flags[GCE_FLAG_TARGET] != GCE_FLAG_NONE) return;  // a bad target somewhere: write nothing
    const long long r = blockIdx.x;
    const T* row = logits + r * V;
    const bool vec = mdm::aligned16(row);
    const long long npacks = (V + W - 1) / W;

    float m = -INFINITY;
    for (long long g = threadIdx.x; g < npacks; g += blockDim.x) {
        const long long j0 = g * W, n = V - j0;
        float x[W];
        mdm::load_pack_any<W>(row + j0, n, vec, x);
#pragma unroll
        for (int k = 0; k < W; ++k)
            if (k < n) m = fmaxf(m, x[k]);
    }
    m = block_max(m, sh);

    double s = 0.0, sw = 0.0;
    for (long long g = threadIdx.x; g < npacks; g += blockDim.x) {
        const long long j0 = g * W, n = V - j0;
        float x[W];
        mdm::load_pack_any<W>(row + j0, n, vec, x);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            if (k < n) {
                const double e = (double)expf(x[k] - m);
                s = __dadd_rn(s, e);
                sw = __dadd_rn(sw, __dmul_rn(powers[j0 + k], e));
            }
        }
    }
    s = mdm::block_sum(s, sh.sc);
    sw = mdm::block_sum(sw, sh.sc);
    if (threadIdx.x == 0) {
        const int t = targets[r];  // in [0, V): checked by gen_ce_check_i32
        const double ce = __dsub_rn(__dadd_rn((double)m, log(s)), (double)mdm::load_f(row + t));
        const double wbar = __ddiv_rn(sw, s), wx = powers[t];
        double* st = stats + r * GCE_NSTAT;
        st[0] = (double)m;
        st[1] = s;
        st[2] = wbar;
        st[3] = ce;
        loss[r] = __dmul_rn(scales[r], __dsub_rn(__dadd_rn(__dmul_rn(wx, ce), wbar), wx));
    }
}

template <class T>
__device__ __forceinline__ void dpow(const T* __restrict__ logits, const int* __restrict__ targets,
                                     const double* __restrict__ scales, const double* __restrict__ stats,
                                     double* __restrict__ partial, const long long* __restrict__ flags, long long R,
                                     long long V, long long rows_per_chunk) {
    if (flags[GCE_FLAG_TARGET] != GCE_FLAG_NONE) return;
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= V) return;
    const long long c = blockIdx.y;
    const long long r0 = c * rows_per_chunk, r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
    double acc = 0.0;
    for (long long r = r0; r < r1; ++r) {
        const double* st = stats + r * GCE_NSTAT;
        double term = __ddiv_rn((double)expf(mdm::load_f(logits + r * V + j) - (float)st[0]), st[1]);
        if (targets[r] == j) term = __dadd_rn(term, __dsub_rn(st[3], 1.0));
        acc = __dadd_rn(acc, __dmul_rn(scales[r], term));
    }
    partial[c * V + j] = acc;
}

template <class T>
__device__ __forceinline__ void bwd(const T* logits, const int* __restrict__ targets, const double* __restrict__ scales,
                                    const double* __restrict__ powers, const double* __restrict__ stats, T* dlogits,
                                    const long long* __restrict__ flags, long long V) {
    constexpr int W = mdm::VecOf<T>::N;
    if (flags[GCE_FLAG_TARGET] != GCE_FLAG_NONE) return;
    const long long r = blockIdx.x;
    const T* row = logits + r * V;
    T* drow = dlogits + r * V;
    const bool vec = mdm::aligned16(row) && mdm::aligned16(drow);
    const double* st = stats + r * GCE_NSTAT;
    const float m = (float)st[0];
    const double inv = __ddiv_rn(1.0, st[1]), wbar = st[2];
    const int t = targets[r];
    const double c = scales[r], wx = powers[t];
    const long long npacks = (V + W - 1) / W;
    for (long long g = threadIdx.x; g < npacks; g += blockDim.x) {
        const long long j0 = g * W, n = V - j0;
        float x[W];
        mdm::load_pack_any<W>(row + j0, n, vec, x);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            if (k < n) {
                const double mu = __dmul_rn((double)expf(x[k] - m), inv);
                double d = __dmul_rn(c, __dmul_rn(mu, __dsub_rn(__dadd_rn(wx, powers[j0 + k]), wbar)));
                if (j0 + k == t) d = __dsub_rn(d, __dmul_rn(c, wx));
                x[k] = __double2float_rn(d);
            }
        }
        mdm::store_pack_any<W>(drow + j0, n, vec, x);
    }
}

}  // namespace gce_detail

// Targets in [0, V), or the smallest offending row in flags[0].
KERNEL void __launch_bounds__(GCE_CHECK_THREADS)
    gen_ce_check_i32(long long* __restrict__ flags, const int* __restrict__ targets, long long R, long long V) {
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < R; r += (long long)gridDim.x * blockDim.x) {
        const int t = targets[r];
        if (t < 0 || t >= V) atomicMin(&flags[GCE_FLAG_TARGET], r);
    }
}

KERNEL void __launch_bounds__(GCE_THREADS)
    gen_ce_fwd_f32(const float* __restrict__ logits, const int* __restrict__ targets, const double* __restrict__ scales,
                   const double* __restrict__ powers, double* __restrict__ loss, double* __restrict__ stats,
                   const long long* __restrict__ flags, long long V) {
    gce_detail::fwd(logits, targets, scales, powers, loss, stats, flags, V);
}

KERNEL void __launch_bounds__(GCE_THREADS)
    gen_ce_fwd_bf16(const __nv_bfloat16* __restrict__ logits, const int* __restrict__ targets,
                    const double* __restrict__ scales, const double* __restrict__ powers, double* __restrict__ loss,
                    double* __restrict__ stats, const long long* __restrict__ flags, long long V) {
    gce_detail::fwd(logits, targets, scales, powers, loss, stats, flags, V);
}

KERNEL void __launch_bounds__(GCE_COL_THREADS)
    gen_ce_dpow_f32(const float* __restrict__ logits, const int* __restrict__ targets, const double* __restrict__ scales,
                    const double* __restrict__ stats, double* __restrict__ partial, const long long* __restrict__ flags,
                    long long R, long long V, long long rows_per_chunk) {
    gce_detail::dpow(logits, targets, scales, stats, partial, flags, R, V, rows_per_chunk);
}

KERNEL void __launch_bounds__(GCE_COL_THREADS)
    gen_ce_dpow_bf16(const __nv_bfloat16* __restrict__ logits, const int* __restrict__ targets,
                     const double* __restrict__ scales, const double* __restrict__ stats, double* __restrict__ partial,
                     const long long* __restrict__ flags, long long R, long long V, long long rows_per_chunk) {
    gce_detail::dpow(logits, targets, scales, stats, partial, flags, R, V, rows_per_chunk);
}

KERNEL void __launch_bounds__(GCE_COL_THREADS)
    gen_ce_dpow_reduce_f64(const double* __restrict__ partial, double* __restrict__ dpowers,
                           const long long* __restrict__ flags, long long nchunks, long long V) {
    if (flags[GCE_FLAG_TARGET] != GCE_FLAG_NONE) return;
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= V) return;
    double t = 0.0;
    for (long long c = 0; c < nchunks; ++c) t = __dadd_rn(t, partial[c * V + j]);
    dpowers[j] = __dadd_rn(dpowers[j], t);
}

KERNEL void __launch_bounds__(GCE_THREADS)
    gen_ce_bwd_f32(const float* logits, const int* __restrict__ targets, const double* __restrict__ scales,
                   const double* __restrict__ powers, const double* __restrict__ stats, float* dlogits,
                   const long long* __restrict__ flags, long long V) {
    gce_detail::bwd(logits, targets, scales, powers, stats, dlogits, flags, V);
}

KERNEL void __launch_bounds__(GCE_THREADS)
    gen_ce_bwd_bf16(const __nv_bfloat16* logits, const int* __restrict__ targets, const double* __restrict__ scales,
                    const double* __restrict__ powers, const double* __restrict__ stats, __nv_bfloat16* dlogits,
                    const long long* __restrict__ flags, long long V) {
    gce_detail::bwd(logits, targets, scales, powers, stats, dlogits, flags, V);
}
