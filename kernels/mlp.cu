// mlp.cu: the gated MLP's elementwise parts and the other per-element / per-row ops around it.
//
// Math:   GLU      Out = act(A) ⊙ B;   backward DA = DOut ⊙ B ⊙ act'(A), DB = DOut ⊙ act(A)
//         Act      Out = act(X);       backward DX = DOut ⊙ act'(X)
//         act ∈ {sigmoid σ(x) = 1/(1+e^−x), swish x·σ(x), gelu (tanh approximation) x·σ(2u) with
//         u = sqrt(2/π)·(x + 0.044715·x³)} (0.5·(1 + tanh u) = σ(2u), which keeps the negative tail accurate);
//         σ and 1 − σ are formed from e^−|x| so nothing overflows.
//         GateResidual  Out[r] = X[r] + Gate[g] ⊙ Y[r], g = r / RowsPerGroup (or X + Y without Gate);
//                  backward DY = Gate[g] ⊙ DOut (or DOut), DGate[g] = Σ_{rows of g} DOut ⊙ Y (overwritten).
//         BiasAdd  Out[n, :] += Bias;   BiasGrad  DBias += Σ_n DOut[n, :].
// Shapes: GLU/Act: any (flat, n elements); GateResidual: X, Y, Out, DOut, DY [N, D], Gate, DGate [B, D];
//         Bias/BiasAdd: Out [N, M], Bias [M]. Row-major, contiguous, any sizes.
// Dtypes: data tensors f32 or bf16 (one dtype per call), Bias, DBias, DGate f32; math in f32 (expf/tanh-free
//         σ; accurate expf, not __expf: these kernels are memory-bound, the accurate version costs nothing).
// Saved:  nothing (the backward passes take the forward inputs).
// Determinism: elementwise ops have no reductions. DGate and DBias are column sums with the two-stage
//         chunked scheme of common.cuh (ColChunks, combine_warps): no atomics, a fixed order that depends on
//         the shape only.
// In place: Act Out may be X, GateResidual Out may be X: those pointers are not __restrict__; each element is
//         read before it is written by the same thread.
//
// Launch contract (mirrored in cuda/mlp.go):
//   glu_fwd_<dt>, glu_bwd_<dt>, act_fwd_<dt>, act_bwd_<dt>
//                              grid min(ceil(packs / 256), 32·SMs), block 256, grid-stride over packs of
//                              V = 4 (f32) / 8 (bf16) elements; 128-bit accesses when every pointer is
//                              16-byte aligned, scalar otherwise (and for the tail pack). act: 1 sigmoid,
//                              2 swish, 3 gelu (ops.Activation values).
//   gateres_fwd_<dt>, gateres_bwd_<dt>, biasadd_fwd_<dt>
//                              grid ceil(rows / 8), block 256: one warp per row.
//   colsum_bwd_<dt>_partial    grid (B·cpg) · ceil(D / (32·V)), block 256, static smem 8·32·V floats:
//                              part[k, :] = Σ_{rows of chunk k} X (⊙ Y when Y is non-null).
//   colsum_bwd_f32_final       grid B · ceil(D / 32), block 256, static smem 1 KiB:
//                              out[g, :] (+)= Σ_j part[g·cpg + j, :].
//   No dynamic shared memory.
// Go launcher: cuda/mlp.go.
//
// Bandwidth (expected, H200): the elementwise and row kernels stream every operand once with 128-bit
// accesses and should reach ~85-90% of HBM bandwidth at production sizes (Hm·N ≥ 1M elements); the column
// sums read their input once plus ~D·4·(N/crows) bytes of partials: ~80%.
//
// Lab history: v1 (this file).
#include "common.cuh"

namespace mdm {

enum : int { ACT_SIGMOID = 1, ACT_SWISH = 2, ACT_GELU = 3 };  // ops.Activation

// s = σ(x), sc = 1 − σ(x), without overflow for any x (NaN propagates).
__device__ __forceinline__ void sigmoid2(float x, float& s, float& sc) {
    if (x >= 0.0f) {
        const float e = expf(-x);
        s = 1.0f / (1.0f + e);
        sc = e * s;
    } else {
        const float e = expf(x);
        sc = 1.0f / (1.0f + e);
        s = e * sc;
    }
}

constexpr float GELU_C = 0.7978845608028654f;  // sqrt(2/π)
constexpr float GELU_A = 0.044715f;

template <int ACT>
__device__ __forceinline__ float act_f(float x) {
    float s, sc;
    if constexpr (ACT == ACT_SIGMOID) {
        sigmoid2(x, s, sc);
        return s;
    } else if constexpr (ACT == ACT_SWISH) {
        sigmoid2(x, s, sc);
        return x * s;
    } else {
        const float u = GELU_C * (x + GELU_A * x * x * x);
        sigmoid2(2.0f * u, s, sc);
        return x * s;
    }
}

// act(x) and act'(x).
template <int ACT>
__device__ __forceinline__ void act_df(float x, float& y, float& dy) {
    float s, sc;
    if constexpr (ACT == ACT_SIGMOID) {
        sigmoid2(x, s, sc);
        y = s;
        dy = s * sc;
    } else if constexpr (ACT == ACT_SWISH) {
        sigmoid2(x, s, sc);
        y = x * s;
        dy = s * (1.0f + x * sc);
    } else {
        const float x2 = x * x;
        const float u = GELU_C * (x + GELU_A * x2 * x);
        sigmoid2(2.0f * u, s, sc);
        y = x * s;
        // d/dx x·σ(2u) = σ(2u) + x·2σ(2u)(1 − σ(2u))·u'. For finite |x| > ~1.8e19, x² overflows while
        // σ(2u)(1 − σ(2u)) is already 0: skip the product then (0·∞ would give NaN); x = ±∞ still gives NaN,
        // as in the float64 reference.
        const float tx = (2.0f * s * sc) * x;
        dy = s + (tx == 0.0f ? 0.0f : tx * (GELU_C * (1.0f + 3.0f * GELU_A * x2)));
    }
}

// ---- flat elementwise kernels (grid-stride over packs) -------------------------------------------------------

// Calls f(pack start, valid elements, vec) for every pack of n elements owned by this thread.
template <int V, class F>
__device__ __forceinline__ void for_packs(long long n, F f) {
    const long long packs = (n + V - 1) / V;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride)
        f(p * V, n - p * V);
}

template <class T, int ACT>
__device__ __forceinline__ void glu_fwd_t(const T* a, const T* b, T* out, long long n) {
    constexpr int V = VecOf<T>::N;
    const bool vec = aligned16(a) && aligned16(b) && aligned16(out);
    for_packs<V>(n, [&](long long i, long long valid) {
        float x[V], y[V];
        load_pack_any<V>(a + i, valid, vec, x);
        load_pack_any<V>(b + i, valid, vec, y);
#pragma unroll
        for (int e = 0; e < V; e++) x[e] = act_f<ACT>(x[e]) * y[e];
        store_pack_any<V>(out + i, valid, vec, x);
    });
}

template <class T, int ACT>
__device__ __forceinline__ void glu_bwd_t(const T* a, const T* b, const T* dout, T* da, T* db, long long n) {
    constexpr int V = VecOf<T>::N;
    const bool vec = aligned16(a) && aligned16(b) && aligned16(dout) && aligned16(da) && aligned16(db);
    for_packs<V>(n, [&](long long i, long long valid) {
        float x[V], y[V], g[V], ga[V], gb[V];
        load_pack_any<V>(a + i, valid, vec, x);
        load_pack_any<V>(b + i, valid, vec, y);
        load_pack_any<V>(dout + i, valid, vec, g);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float f, df;
            act_df<ACT>(x[e], f, df);
            ga[e] = g[e] * y[e] * df;
            gb[e] = g[e] * f;
        }
        store_pack_any<V>(da + i, valid, vec, ga);
        store_pack_any<V>(db + i, valid, vec, gb);
    });
}

template <class T, int ACT>
__device__ __forceinline__ void act_fwd_t(const T* x, T* out, long long n) {
    constexpr int V = VecOf<T>::N;
    const bool vec = aligned16(x) && aligned16(out);
    for_packs<V>(n, [&](long long i, long long valid) {
        float v[V];
        load_pack_any<V>(x + i, valid, vec, v);
#pragma unroll
        for (int e = 0; e < V; e++) v[e] = act_f<ACT>(v[e]);
        store_pack_any<V>(out + i, valid, vec, v);
    });
}

template <class T, int ACT>
__device__ __forceinline__ void act_bwd_t(const T* x, const T* dout, T* dx, long long n) {
    constexpr int V = VecOf<T>::N;
    const bool vec = aligned16(x) && aligned16(dout) && aligned16(dx);
    for_packs<V>(n, [&](long long i, long long valid) {
        float v[V], g[V];
        load_pack_any<V>(x + i, valid, vec, v);
        load_pack_any<V>(dout + i, valid, vec, g);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float f, df;
            act_df<ACT>(v[e], f, df);
            g[e] *= df;
        }
        store_pack_any<V>(dx + i, valid, vec, g);
    });
}

// Dispatch on the runtime activation (uniform over the grid) to a specialised loop.
#define MDM_ACT_DISPATCH(act, CALL)          \
    switch (act) {                           \
        case ACT_SIGMOID: CALL(ACT_SIGMOID); \
            break;                           \
        case ACT_SWISH: CALL(ACT_SWISH);     \
            break;                           \
        default: CALL(ACT_GELU);             \
            break;                           \
    }

template <class T>
__device__ __forceinline__ void glu_fwd(const T* a, const T* b, T* out, long long n, int act) {
#define MDM_CALL(A) glu_fwd_t<T, A>(a, b, out, n)
    MDM_ACT_DISPATCH(act, MDM_CALL)
#undef MDM_CALL
}
template <class T>
__device__ __forceinline__ void glu_bwd(const T* a, const T* b, const T* dout, T* da, T* db, long long n, int act) {
#define MDM_CALL(A) glu_bwd_t<T, A>(a, b, dout, da, db, n)
    MDM_ACT_DISPATCH(act, MDM_CALL)
#undef MDM_CALL
}
template <class T>
__device__ __forceinline__ void act_fwd(const T* x, T* out, long long n, int act) {
#define MDM_CALL(A) act_fwd_t<T, A>(x, out, n)
    MDM_ACT_DISPATCH(act, MDM_CALL)
#undef MDM_CALL
}
template <class T>
__device__ __forceinline__ void act_bwd(const T* x, const T* dout, T* dx, long long n, int act) {
#define MDM_CALL(A) act_bwd_t<T, A>(x, dout, dx, n)
    MDM_ACT_DISPATCH(act, MDM_CALL)
#undef MDM_CALL
}
#undef MDM_ACT_DISPATCH

// ---- row kernels (one warp per row) ------------------------------------------------------------------------

// Out[r] = X[r] + Gate[r / per] ⊙ Y[r] (gate null: X + Y).
template <class T>
__device__ __forceinline__ void gateres_fwd(const T* x, const T* y, const T* gate, T* out, long long n, long long d,
                                            long long per) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= n) return;
    const int lane = threadIdx.x & 31;
    const T* xr = x + r * d;
    const T* yr = y + r * d;
    T* orow = out + r * d;
    const T* gr = gate != nullptr ? gate + (r / per) * d : nullptr;
    const bool vec = aligned16(xr) && aligned16(yr) && aligned16(orow) && aligned16(gr);
    for (long long c = static_cast<long long>(lane) * V; c < d; c += 32 * V) {
        const long long valid = d - c;
        float a[V], b[V];
        load_pack_any<V>(xr + c, valid, vec, a);
        load_pack_any<V>(yr + c, valid, vec, b);
        if (gr != nullptr) {
            float g[V];
            load_pack_any<V>(gr + c, valid, vec, g);
#pragma unroll
            for (int e = 0; e < V; e++) a[e] = fmaf(g[e], b[e], a[e]);
        } else {
#pragma unroll
            for (int e = 0; e < V; e++) a[e] += b[e];
        }
        store_pack_any<V>(orow + c, valid, vec, a);
    }
}

// DY[r] = Gate[r / per] ⊙ DOut[r] (gate null: a copy of DOut).
template <class T>
__device__ __forceinline__ void gateres_bwd(const T* dout, const T* gate, T* dy, long long n, long long d,
                                            long long per) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= n) return;
    const int lane = threadIdx.x & 31;
    const T* dr = dout + r * d;
    T* yr = dy + r * d;
    const T* gr = gate != nullptr ? gate + (r / per) * d : nullptr;
    const bool vec = aligned16(dr) && aligned16(yr) && aligned16(gr);
    for (long long c = static_cast<long long>(lane) * V; c < d; c += 32 * V) {
        const long long valid = d - c;
        if (gr == nullptr) {
            copy_pack_any<V>(yr + c, dr + c, valid, vec);
            continue;
        }
        float a[V], g[V];
        load_pack_any<V>(dr + c, valid, vec, a);
        load_pack_any<V>(gr + c, valid, vec, g);
#pragma unroll
        for (int e = 0; e < V; e++) a[e] *= g[e];
        store_pack_any<V>(yr + c, valid, vec, a);
    }
}

// Out[r, :] += Bias (f32).
template <class T>
__device__ __forceinline__ void biasadd(T* out, const float* bias, long long n, long long d) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= n) return;
    const int lane = threadIdx.x & 31;
    T* orow = out + r * d;
    const bool vec = aligned16(orow) && aligned16(bias);
    for (long long c = static_cast<long long>(lane) * V; c < d; c += 32 * V) {
        const long long valid = d - c;
        float a[V], b[V];
        load_pack_any<V>(orow + c, valid, vec, a);
        load_pack_any<V>(bias + c, valid, vec, b);
#pragma unroll
        for (int e = 0; e < V; e++) a[e] += b[e];
        store_pack_any<V>(orow + c, valid, vec, a);
    }
}

// ---- column sums (DBias, DGate) ------------------------------------------------------------------------------

// Stage 1: part[k, :] = Σ_{rows of chunk k} X (⊙ Y). Block: chunk k = blockIdx.x / tiles, tile t.
template <class T>
__device__ __forceinline__ void colsum_partial(const T* x, const T* y, float* part, long long d, long long per,
                                               long long cpg, long long crows) {
    constexpr int V = VecOf<T>::N;
    __shared__ float smem[COLSUM_WARPS * 32 * V];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long tiles = (d + 32 * V - 1) / (32 * V);
    const long long k = blockIdx.x / tiles, t = blockIdx.x % tiles;
    const ColChunks ch{per, cpg, crows};
    long long r0, r1;
    ch.rows(k, r0, r1);
    const long long c0 = (t * 32 + lane) * V;
    const long long valid = d - c0;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; e++) acc[e] = 0.0f;
    if (valid > 0) {
        for (long long r = r0 + warp; r < r1; r += COLSUM_WARPS) {
            const T* xr = x + r * d;
            const T* yr = y != nullptr ? y + r * d : nullptr;
            const bool vec = aligned16(xr) && aligned16(yr);
            float a[V];
            load_pack_any<V>(xr + c0, valid, vec, a);
            if (yr != nullptr) {
                float b[V];
                load_pack_any<V>(yr + c0, valid, vec, b);
#pragma unroll
                for (int e = 0; e < V; e++) acc[e] += a[e] * b[e];
            } else {
#pragma unroll
                for (int e = 0; e < V; e++) acc[e] += a[e];
            }
        }
    }
    combine_warps<V>(acc, smem);
    if (warp == 0 && valid > 0) store_pack_any<V>(part + k * d + c0, valid, aligned16(part + k * d), acc);
}

// Stage 2: out[g, c] = (accumulate ? out[g, c] : 0) + Σ_j part[g·cpg + j, c]; warp w adds j ≡ w (mod 8) in
// increasing j, the warps in order. Block: g = blockIdx.x / ctiles, c = (blockIdx.x % ctiles)·32 + lane.
__device__ __forceinline__ void colsum_final(const float* part, float* out, long long d, long long cpg, int accumulate) {
    __shared__ float smem[COLSUM_WARPS * 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long ctiles = (d + 31) / 32;
    const long long g = blockIdx.x / ctiles;
    const long long c = (blockIdx.x % ctiles) * 32 + lane;
    float acc[1] = {0.0f};
    if (c < d)
        for (long long j = warp; j < cpg; j += COLSUM_WARPS) acc[0] += part[(g * cpg + j) * d + c];
    combine_warps<1>(acc, smem);
    if (warp == 0 && c < d) out[g * d + c] = accumulate ? out[g * d + c] + acc[0] : acc[0];
}

}  // namespace mdm

// ---- entry points -------------------------------------------------------------------------------------------

KERNEL void __launch_bounds__(256) glu_fwd_f32(const float* a, const float* b, float* out, long long n, int act) {
    mdm::glu_fwd<float>(a, b, out, n, act);
}
KERNEL void __launch_bounds__(256) glu_fwd_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out,
                                                long long n, int act) {
    mdm::glu_fwd<__nv_bfloat16>(a, b, out, n, act);
}
KERNEL void __launch_bounds__(256) glu_bwd_f32(const float* a, const float* b, const float* dout, float* da, float* db,
                                               long long n, int act) {
    mdm::glu_bwd<float>(a, b, dout, da, db, n, act);
}
KERNEL void __launch_bounds__(256) glu_bwd_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b,
                                                const __nv_bfloat16* dout, __nv_bfloat16* da, __nv_bfloat16* db,
                                                long long n, int act) {
    mdm::glu_bwd<__nv_bfloat16>(a, b, dout, da, db, n, act);
}
KERNEL void __launch_bounds__(256) act_fwd_f32(const float* x, float* out, long long n, int act) {
    mdm::act_fwd<float>(x, out, n, act);
}
KERNEL void __launch_bounds__(256) act_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* out, long long n, int act) {
    mdm::act_fwd<__nv_bfloat16>(x, out, n, act);
}
KERNEL void __launch_bounds__(256) act_bwd_f32(const float* x, const float* dout, float* dx, long long n, int act) {
    mdm::act_bwd<float>(x, dout, dx, n, act);
}
KERNEL void __launch_bounds__(256) act_bwd_bf16(const __nv_bfloat16* x, const __nv_bfloat16* dout, __nv_bfloat16* dx,
                                                long long n, int act) {
    mdm::act_bwd<__nv_bfloat16>(x, dout, dx, n, act);
}

KERNEL void __launch_bounds__(256) gateres_fwd_f32(const float* x, const float* y, const float* gate, float* out,
                                                   long long n, long long d, long long per) {
    mdm::gateres_fwd<float>(x, y, gate, out, n, d, per);
}
KERNEL void __launch_bounds__(256) gateres_fwd_bf16(const __nv_bfloat16* x, const __nv_bfloat16* y,
                                                    const __nv_bfloat16* gate, __nv_bfloat16* out, long long n,
                                                    long long d, long long per) {
    mdm::gateres_fwd<__nv_bfloat16>(x, y, gate, out, n, d, per);
}
KERNEL void __launch_bounds__(256) gateres_bwd_f32(const float* dout, const float* gate, float* dy, long long n,
                                                   long long d, long long per) {
    mdm::gateres_bwd<float>(dout, gate, dy, n, d, per);
}
KERNEL void __launch_bounds__(256) gateres_bwd_bf16(const __nv_bfloat16* dout, const __nv_bfloat16* gate,
                                                    __nv_bfloat16* dy, long long n, long long d, long long per) {
    mdm::gateres_bwd<__nv_bfloat16>(dout, gate, dy, n, d, per);
}
KERNEL void __launch_bounds__(256) biasadd_fwd_f32(float* out, const float* bias, long long n, long long d) {
    mdm::biasadd<float>(out, bias, n, d);
}
KERNEL void __launch_bounds__(256) biasadd_fwd_bf16(__nv_bfloat16* out, const float* bias, long long n, long long d) {
    mdm::biasadd<__nv_bfloat16>(out, bias, n, d);
}

KERNEL void __launch_bounds__(256) colsum_bwd_f32_partial(const float* x, const float* y, float* part, long long d,
                                                          long long per, long long cpg, long long crows) {
    mdm::colsum_partial<float>(x, y, part, d, per, cpg, crows);
}
KERNEL void __launch_bounds__(256) colsum_bwd_bf16_partial(const __nv_bfloat16* x, const __nv_bfloat16* y, float* part,
                                                           long long d, long long per, long long cpg, long long crows) {
    mdm::colsum_partial<__nv_bfloat16>(x, y, part, d, per, cpg, crows);
}
KERNEL void __launch_bounds__(256) colsum_bwd_f32_final(const float* part, float* out, long long d, long long cpg,
                                                        int accumulate) {
    mdm::colsum_final(part, out, d, cpg, accumulate);
}
