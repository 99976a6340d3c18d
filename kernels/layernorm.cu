// layernorm.cu: LayerNorm (no affine) and RMSNorm (optional weight) with the fused adaLN modulation,
// forward and backward.
//
// Math:   x̂ = (x − mean)·rstd, rstd = 1/sqrt(var + eps) (LayerNorm, biased variance), or
//         x̂ = x·rstd·w, rstd = 1/sqrt(mean(x²) + eps) (RMSNorm; w = 1 without Weight);
//         Out[r] = x̂[r]·(1 + Scale[g]) + Shift[g] with g = r / RowsPerGroup, or Out = x̂ without modulation.
//         Backward, with n̂ = (x − mean)·rstd (mean = 0 for RMSNorm) and g = DOut·(1 + Scale)·w:
//         DX = rstd·(g − mean(g) − n̂·mean(g·n̂)) (RMSNorm: no mean(g) term); DShift[g] = Σ_{rows of g} DOut;
//         DScale[g] = w·Σ_{rows of g} DOut·n̂; DWeight += Σ_g (1 + Scale[g])·Σ_{rows of g} DOut·n̂.
// Shapes: X, Out, DOut, DX [N, D]; Shift, Scale, DShift, DScale [B, D] with N = B·RowsPerGroup; Weight,
//         DWeight [D]; Mean, Rstd [N]. Row-major, contiguous; any D (1, 7, 97, 768, 1025, ...).
// Dtypes: X, Out, DOut, DX, Shift, Scale: f32 or bf16 (one dtype per call); Weight, DWeight, DShift,
//         DScale, Mean, Rstd: f32. Computation in f32; the row statistics are finished in f64 (mean with a
//         correction pass: mean0 = Σx/D, then mean = mean0 + Σ(x − mean0)/D and var = Σ(x − mean0)²/D −
//         (Σ(x − mean0)/D)²), and x − mean is formed with mean split into two floats (hi + lo).
// Saved:  Mean (LayerNorm) and Rstd, f32, for the backward pass.
// Determinism: no atomics. Row sums: fixed per-lane order over the lane's packs, then warp_sum. Column
//         sums (DShift, DScale, DWeight): the two-stage chunked scheme of common.cuh (ColChunks): partials
//         per chunk of rows (rows split over 8 warps, warps added in order), then chunks added in order.
//         The chunking depends on the shape only (not on the SM count), so every run gives the same bits.
//         Vector and scalar paths read the same packs in the same order (pack ownership), so a misaligned
//         view gives the same bits as an aligned copy.
//
// Launch contract (mirrored in cuda/layernorm.go):
//   layernorm_fwd_<dt>         grid ceil(N / 8), block 256: one warp per row (ROW_WARPS = 8).
//   layernorm_bwd_<dt>_dx      same.
//   layernorm_bwd_<dt>_cols    grid (B·cpg) · ceil(D / (32·V)), block 256 (COLSUM_WARPS = 8); static smem
//                              8·32·2V floats (8 KiB f32, 16 KiB bf16); V = 4 (f32) or 8 (bf16). Writes the
//                              chunk partials part1 = Σ DOut (if non-null) and part2 = Σ DOut·n̂, [B·cpg, D] f32.
//   layernorm_bwd_f32_groups   grid B · ceil(D / 32), block 256, static smem 2 KiB: DShift, DScale (overwritten).
//   layernorm_bwd_<dt>_weight  grid ceil(D / 32), block 256, static smem 1 KiB: DWeight (accumulated).
//   No dynamic shared memory. The backward launches cols, groups, weight, then dx (DX may alias DOut or X).
// Go launcher: cuda/layernorm.go (Backend.NormFwd, Backend.NormBwd).
//
// Bandwidth (expected, H200): forward reads X three times (the second and third from L1/L2: a warp's row is
// ≤ a few KiB) and writes Out once: ~80% of HBM bandwidth counting one read + one write. Backward: dx reads
// X and DOut twice (second from cache), writes DX; cols reads X and DOut once more: ~5 passes of N·D where a
// fused kernel needs 3, so expect ~50-60% of the fused ideal. Fusing the column partials into the dx kernel
// is the next step if NormBwd shows up in profiles.
//
// Lab history: v1 (this file).
#include "common.cuh"

namespace mdm {

// ---- forward -------------------------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ void norm_fwd(const T* x, T* out, const float* weight, const T* shift, const T* scale,
                                         float* mean, float* rstd, long long n, long long d, long long per, int rms,
                                         float eps) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= n) return;  // whole warp
    const int lane = threadIdx.x & 31;
    const T* xr = x + r * d;
    T* orow = out + r * d;
    const T* sh = nullptr;
    const T* sc = nullptr;
    if (shift != nullptr) {
        sh = shift + (r / per) * d;
        sc = scale + (r / per) * d;
    }
    const bool vec = aligned16(xr) && aligned16(orow) && aligned16(weight) && aligned16(sh) && aligned16(sc);
    const long long c_begin = static_cast<long long>(lane) * V, c_step = 32 * V;

    // pass 1 (LayerNorm): provisional mean
    float mean0 = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (long long c = c_begin; c < d; c += c_step) {
            float v[V];
            load_pack_any<V>(xr + c, d - c, vec, v);
#pragma unroll
            for (int e = 0; e < V; e++) s += v[e];
        }
        mean0 = warp_sum(s) / static_cast<float>(d);
    }
    // pass 2: Σ(x − mean0) and Σ(x − mean0)² (RMSNorm: mean0 = 0, only Σx²)
    float s1 = 0.0f, s2 = 0.0f;
    for (long long c = c_begin; c < d; c += c_step) {
        float v[V];
        load_pack_any<V>(xr + c, d - c, vec, v);
#pragma unroll
        for (int e = 0; e < V; e++) {
            if (e < d - c) {
                const float dv = v[e] - mean0;
                s1 += dv;
                s2 += dv * dv;
            }
        }
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    const double dd = static_cast<double>(d);
    double mean_d = 0.0, var_d;
    if (rms) {
        var_d = static_cast<double>(s2) / dd;
    } else {
        const double m1 = static_cast<double>(s1) / dd;
        mean_d = static_cast<double>(mean0) + m1;
        var_d = static_cast<double>(s2) / dd - m1 * m1;
        if (var_d < 0.0) var_d = 0.0;
    }
    const double rstd_d = 1.0 / sqrt(var_d + static_cast<double>(eps));
    const float rs = static_cast<float>(rstd_d);
    const float mhi = static_cast<float>(mean_d);
    const float mlo = static_cast<float>(mean_d - static_cast<double>(mhi));
    if (lane == 0) {
        rstd[r] = rs;
        if (!rms) mean[r] = mhi;
    }
    // pass 3: normalise, weight, modulate
    for (long long c = c_begin; c < d; c += c_step) {
        const long long valid = d - c;
        float v[V];
        load_pack_any<V>(xr + c, valid, vec, v);
#pragma unroll
        for (int e = 0; e < V; e++) v[e] = ((v[e] - mhi) - mlo) * rs;
        if (weight != nullptr) {
            float w[V];
            load_pack_any<V>(weight + c, valid, vec, w);
#pragma unroll
            for (int e = 0; e < V; e++) v[e] *= w[e];
        }
        if (sh != nullptr) {
            float a[V], b[V];
            load_pack_any<V>(sc + c, valid, vec, a);
            load_pack_any<V>(sh + c, valid, vec, b);
#pragma unroll
            for (int e = 0; e < V; e++) v[e] = fmaf(v[e], 1.0f + a[e], b[e]);
        }
        store_pack_any<V>(orow + c, valid, vec, v);
    }
}

// ---- backward: DX (one warp per row) -------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ void norm_bwd_dx(const T* dout, const T* x, const float* mean, const float* rstd,
                                            const float* weight, const T* scale, T* dx, long long n, long long d,
                                            long long per, int rms) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= n) return;
    const int lane = threadIdx.x & 31;
    const T* xr = x + r * d;
    const T* dyr = dout + r * d;
    T* dxr = dx + r * d;
    const T* sc = scale != nullptr ? scale + (r / per) * d : nullptr;
    const bool vec = aligned16(xr) && aligned16(dyr) && aligned16(dxr) && aligned16(weight) && aligned16(sc);
    const float m = rms ? 0.0f : mean[r];
    const float rs = rstd[r];
    const long long c_begin = static_cast<long long>(lane) * V, c_step = 32 * V;

    // g = dy·(1 + sc)·w and n̂ for one pack (missing elements give g = 0)
    auto pack = [&](long long c, float* g, float* nh) {
        const long long valid = d - c;
        load_pack_any<V>(dyr + c, valid, vec, g);
        load_pack_any<V>(xr + c, valid, vec, nh);
#pragma unroll
        for (int e = 0; e < V; e++) nh[e] = (nh[e] - m) * rs;
        if (sc != nullptr) {
            float a[V];
            load_pack_any<V>(sc + c, valid, vec, a);
#pragma unroll
            for (int e = 0; e < V; e++) g[e] *= 1.0f + a[e];
        }
        if (weight != nullptr) {
            float w[V];
            load_pack_any<V>(weight + c, valid, vec, w);
#pragma unroll
            for (int e = 0; e < V; e++) g[e] *= w[e];
        }
    };
    float sg = 0.0f, sgn = 0.0f;
    for (long long c = c_begin; c < d; c += c_step) {
        float g[V], nh[V];
        pack(c, g, nh);
#pragma unroll
        for (int e = 0; e < V; e++) {
            sg += g[e];
            sgn += g[e] * nh[e];
        }
    }
    sg = warp_sum(sg);
    sgn = warp_sum(sgn);
    const float mg = rms ? 0.0f : sg / static_cast<float>(d);
    const float mgn = sgn / static_cast<float>(d);
    for (long long c = c_begin; c < d; c += c_step) {
        float g[V], nh[V];
        pack(c, g, nh);
#pragma unroll
        for (int e = 0; e < V; e++) g[e] = rs * (g[e] - mg - nh[e] * mgn);
        store_pack_any<V>(dxr + c, d - c, vec, g);
    }
}

// ---- backward: column partials (stage 1) ---------------------------------------------------------------------

// Block: chunk k = blockIdx.x / tiles, column tile t = blockIdx.x % tiles (32 lanes × V columns).
// part1 (may be null) [k, :] = Σ_rows DOut; part2 [k, :] = Σ_rows DOut·n̂.
template <class T>
__device__ __forceinline__ void norm_bwd_cols(const T* dout, const T* x, const float* mean, const float* rstd,
                                              float* part1, float* part2, long long d, long long per, long long cpg,
                                              long long crows, int rms) {
    constexpr int V = VecOf<T>::N;
    __shared__ float smem[COLSUM_WARPS * 32 * 2 * V];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long tiles = (d + 32 * V - 1) / (32 * V);
    const long long k = blockIdx.x / tiles, t = blockIdx.x % tiles;
    const ColChunks ch{per, cpg, crows};
    long long r0, r1;
    ch.rows(k, r0, r1);
    const long long c0 = (t * 32 + lane) * V;
    const long long valid = d - c0;
    float acc[2 * V];
#pragma unroll
    for (int e = 0; e < 2 * V; e++) acc[e] = 0.0f;
    if (valid > 0) {
        for (long long r = r0 + warp; r < r1; r += COLSUM_WARPS) {
            const T* dyr = dout + r * d;
            const T* xr = x + r * d;
            const bool vec = aligned16(dyr) && aligned16(xr);
            float dy[V], xv[V];
            load_pack_any<V>(dyr + c0, valid, vec, dy);
            load_pack_any<V>(xr + c0, valid, vec, xv);
            const float m = rms ? 0.0f : mean[r];
            const float rs = rstd[r];
#pragma unroll
            for (int e = 0; e < V; e++) {
                acc[e] += dy[e];
                acc[V + e] += dy[e] * ((xv[e] - m) * rs);
            }
        }
    }
    combine_warps<2 * V>(acc, smem);
    if (warp == 0 && valid > 0) {
        const bool vec = aligned16(part2 + k * d) && aligned16(part1 != nullptr ? part1 + k * d : nullptr);
        if (part1 != nullptr) store_pack_any<V>(part1 + k * d + c0, valid, vec, acc);
        store_pack_any<V>(part2 + k * d + c0, valid, vec, acc + V);
    }
}

// ---- backward: finalisation (stage 2) ------------------------------------------------------------------------

// Block: group g = blockIdx.x / ctiles, columns c = (blockIdx.x % ctiles)·32 + lane. Warp w adds the chunks
// j ≡ w (mod 8) of group g in increasing j; the warps are added in order.
__device__ __forceinline__ void norm_bwd_groups(const float* part1, const float* part2, const float* weight,
                                                float* dshift, float* dscale, long long d, long long cpg) {
    __shared__ float smem[COLSUM_WARPS * 32 * 2];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long ctiles = (d + 31) / 32;
    const long long g = blockIdx.x / ctiles;
    const long long c = (blockIdx.x % ctiles) * 32 + lane;
    float acc[2] = {0.0f, 0.0f};
    if (c < d) {
        for (long long j = warp; j < cpg; j += COLSUM_WARPS) {
            acc[0] += part1[(g * cpg + j) * d + c];
            acc[1] += part2[(g * cpg + j) * d + c];
        }
    }
    combine_warps<2>(acc, smem);
    if (warp == 0 && c < d) {
        dshift[g * d + c] = acc[0];
        dscale[g * d + c] = weight != nullptr ? acc[1] * weight[c] : acc[1];
    }
}

// DWeight[c] += Σ_k (1 + Scale[g(k), c])·part2[k, c] over all chunks k = g·cpg + j (Scale null: factor 1).
template <class T>
__device__ __forceinline__ void norm_bwd_weight(const float* part2, const T* scale, float* dweight, long long d,
                                                long long groups, long long cpg) {
    __shared__ float smem[COLSUM_WARPS * 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long c = static_cast<long long>(blockIdx.x) * 32 + lane;
    float acc[1] = {0.0f};
    if (c < d) {
        for (long long k = warp; k < groups * cpg; k += COLSUM_WARPS) {
            float v = part2[k * d + c];
            if (scale != nullptr) v *= 1.0f + load_f(scale + (k / cpg) * d + c);
            acc[0] += v;
        }
    }
    combine_warps<1>(acc, smem);
    if (warp == 0 && c < d) dweight[c] += acc[0];
}

}  // namespace mdm

// ---- entry points -------------------------------------------------------------------------------------------
// rms: 0 = LayerNorm (mean saved), 1 = RMSNorm (mean null). shift/scale null without modulation; weight null
// without an RMSNorm weight. per = RowsPerGroup (ignored without modulation).

KERNEL void __launch_bounds__(256) layernorm_fwd_f32(const float* x, float* out, const float* weight,
                                                     const float* shift, const float* scale, float* mean, float* rstd,
                                                     long long n, long long d, long long per, int rms, float eps) {
    mdm::norm_fwd<float>(x, out, weight, shift, scale, mean, rstd, n, d, per, rms, eps);
}
KERNEL void __launch_bounds__(256) layernorm_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* out, const float* weight,
                                                      const __nv_bfloat16* shift, const __nv_bfloat16* scale,
                                                      float* mean, float* rstd, long long n, long long d, long long per,
                                                      int rms, float eps) {
    mdm::norm_fwd<__nv_bfloat16>(x, out, weight, shift, scale, mean, rstd, n, d, per, rms, eps);
}

KERNEL void __launch_bounds__(256) layernorm_bwd_f32_dx(const float* dout, const float* x, const float* mean,
                                                        const float* rstd, const float* weight, const float* scale,
                                                        float* dx, long long n, long long d, long long per, int rms) {
    mdm::norm_bwd_dx<float>(dout, x, mean, rstd, weight, scale, dx, n, d, per, rms);
}
KERNEL void __launch_bounds__(256) layernorm_bwd_bf16_dx(const __nv_bfloat16* dout, const __nv_bfloat16* x,
                                                         const float* mean, const float* rstd, const float* weight,
                                                         const __nv_bfloat16* scale, __nv_bfloat16* dx, long long n,
                                                         long long d, long long per, int rms) {
    mdm::norm_bwd_dx<__nv_bfloat16>(dout, x, mean, rstd, weight, scale, dx, n, d, per, rms);
}

KERNEL void __launch_bounds__(256) layernorm_bwd_f32_cols(const float* dout, const float* x, const float* mean,
                                                          const float* rstd, float* part1, float* part2, long long d,
                                                          long long per, long long cpg, long long crows, int rms) {
    mdm::norm_bwd_cols<float>(dout, x, mean, rstd, part1, part2, d, per, cpg, crows, rms);
}
KERNEL void __launch_bounds__(256) layernorm_bwd_bf16_cols(const __nv_bfloat16* dout, const __nv_bfloat16* x,
                                                           const float* mean, const float* rstd, float* part1,
                                                           float* part2, long long d, long long per, long long cpg,
                                                           long long crows, int rms) {
    mdm::norm_bwd_cols<__nv_bfloat16>(dout, x, mean, rstd, part1, part2, d, per, cpg, crows, rms);
}

KERNEL void __launch_bounds__(256) layernorm_bwd_f32_groups(const float* part1, const float* part2,
                                                            const float* weight, float* dshift, float* dscale,
                                                            long long d, long long cpg) {
    mdm::norm_bwd_groups(part1, part2, weight, dshift, dscale, d, cpg);
}

KERNEL void __launch_bounds__(256) layernorm_bwd_f32_weight(const float* part2, const float* scale, float* dweight,
                                                            long long d, long long groups, long long cpg) {
    mdm::norm_bwd_weight<float>(part2, scale, dweight, d, groups, cpg);
}
KERNEL void __launch_bounds__(256) layernorm_bwd_bf16_weight(const float* part2, const __nv_bfloat16* scale,
                                                             float* dweight, long long d, long long groups,
                                                             long long cpg) {
    mdm::norm_bwd_weight<__nv_bfloat16>(part2, scale, dweight, d, groups, cpg);
}
