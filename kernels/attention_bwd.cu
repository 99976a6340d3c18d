// attention_bwd.cu: non-causal multi-head attention, backward (the attention family: attention_fwd.cu
// has the forward and the shapes; helpers in attention_common.cuh; Go launcher cuda/attention.go).
//
// Math, per (b, h), with P recomputed from the saved LSE: P = exp(Scale·Q Kᵀ − LSE) (keys >= n: 0),
//   Δ_i = Σ_c dO_ic·O_ic,  dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − Δ),  dQ = Scale·dS K,  dK = Scale·dSᵀ Q.
// Shapes: Q, K, V, Out, dOut, dQ, dK, dV [B, L, H, Dh]; LSE [B, H, L] f32; SeqLens [B] int32 (optional,
//   clamped to [0, L]); Delta [B, H, L] f32 is a scratch buffer of the launcher. Keys >= n get exactly
//   zero dK and dV (their K/V rows are zero-filled and their P is forced to 0).
//
// Determinism: no atomics at all. dQ would need a reduction over key tiles (FlashAttention-2 uses
//   float atomicAdd, whose order varies); instead each direction has its own kernel, launched in order:
//     1. attn_bwd_<dt>_dq:   one block per query tile, loops over key tiles; writes Δ (from dO and O,
//                           fixed-order sums) and dQ.
//     2. attn_bwd_<dt>_dkdv: one block per key tile, loops over query tiles; reads Δ; writes dK, dV.
//   Cost: S = Q Kᵀ and dP = dO Vᵀ are computed twice: 7 instead of 5 GEMM-sized products (1.4x the
//   FLOPs of an atomic FA2 backward), no extra memory beyond Δ (4·B·H·L bytes).
// Precision (bf16 kernels): the left operands that are computed in f32 (P for dV = Pᵀ dO, dS for
//   dQ = dS K and dK = dSᵀ Q) are split into two bf16 parts, x ≈ hi + lo (16 significant bits), and
//   multiplied twice. With a single bf16 rounding, as in FA2, the error is up to ~2.1x (dS; measured on
//   the parity shapes with Q spread 4) and ~1.8x (P; L = 7) that of an f32 reference with bf16
//   outputs, at or above the harness's 2x rule; split, it is ~1.0x. Cost: 3 more mma-sized products
//   per tile pair, 10 instead of 7 units of mma work in total (Q Kᵀ x2, dO Vᵀ x2, dV x2, dQ x2, dK x2).
//
// Kernels:
//   attn_bwd_bf16_d{64,128}_dq    grid (ceil(L/64), H, B), 128 threads (4 warps x 16 query rows);
//     smem (2·64 + 2·BK)·Dh·2 bytes: Q, dO tiles + K, V tiles of BK keys (BK = 64 for Dh 64, 32 for
//     Dh 128): 32 KiB / 48 KiB. Q and dO fragments stay in registers. Per key tile: S = Q Kᵀ,
//     dP = dO Vᵀ, P and dS in registers, dQ += dS K; the next V tile is fetched during dS / dQ.
//   attn_bwd_bf16_d{64,128}_dkdv  grid (ceil(L/64), H, B), 128 threads (4 warps x 16 keys); smem
//     (2·64 + 2·BQ)·Dh·2 bytes: K, V tiles + Q, dO tiles of BQ queries (BQ = 64 for Dh 64, 16 for
//     Dh 128, where 32 would need more than 255 registers): 32 KiB / 40 KiB. Computes Sᵀ = K Qᵀ and
//     dPᵀ = V dOᵀ directly, so Pᵀ and dSᵀ come out in the A-operand layout of dV += Pᵀ dO and
//     dK += dSᵀ Q without a transpose; K and V fragments are re-read from shared memory per tile.
//     Key tiles made only of padding keys write zeros and return.
//   attn_bwd_f32_dq, attn_bwd_f32_dkdv  f32, any Dh <= 128: 128 threads = 32 rows x 4 threads, inner
//     tiles of 8 keys / queries, scalar FMAs; smem (64·(Dh|1) + 16·(Dh|1) + 2·32·9)·4 bytes (<= 44 KiB).
// Registers (nvcc 11.8, sm_80 / sm_90, no spills): d64_dq 177/170, d128_dq 234/235, d64_dkdv 223/223,
//   d128_dkdv 232/233, f32 96-102. Expected speed on H100: well below FA2's backward (~2x its mma work
//   from the recomputation and the splits, 8 warps per SM); a first version to be tuned on the GPU.
// Launch contract: blockDim = 128 (__launch_bounds__); grid.y = H, grid.z = B; the dq kernel before the
//   dkdv kernel (same stream). Pointers 16-byte aligned for the bf16 kernels. Checked by the launcher.
// Lab history: v1 (this).
#include "compat.cuh"
#include "ptx.cuh"
#include "attention_common.cuh"

namespace attn {

// dQ and Δ for 64 query rows of (b, h).
template <int D>
__device__ __forceinline__ void bwd_dq_bf16(bf16* __restrict__ dq, float* __restrict__ delta, const bf16* __restrict__ q,
                                            const bf16* __restrict__ k, const bf16* __restrict__ v,
                                            const bf16* __restrict__ o, const bf16* __restrict__ dout,
                                            const float* __restrict__ lse, const int* __restrict__ seqlens,
                                            long long L, long long H, float scale) {
    constexpr int BQ = kRows, BK = Tiles<D>::kDqKeys;
    constexpr int NS = BK / 8, NO = D / 8;
    DYNAMIC_SMEM(bf16, smem);
    bf16* sQ = smem;
    bf16* sdO = sQ + BQ * D;
    bf16* sK = sdO + BQ * D;
    bf16* sV = sK + BK * D;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const long long b = blockIdx.z, h = blockIdx.y, q0 = static_cast<long long>(blockIdx.x) * BQ;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;
    const long long srow = (b * H + h) * L + q0;  // LSE / Δ index of tile row 0
    const int nk = seq_keys(seqlens, b, L);
    const int nkt = static_cast<int>(ceil_div(nk, BK));
    const int qrows = static_cast<int>(L - q0 < BQ ? L - q0 : BQ);
    const float sl2 = scale * kLog2e;

    load_tile<BQ, D, kThreads>(sQ, q + base, q0, stride, qrows, tid);
    load_tile<BQ, D, kThreads>(sdO, dout + base, q0, stride, qrows, tid);
    if (nkt > 0) {
        load_tile<BK, D, kThreads>(sK, k + base, 0, stride, nk < BK ? nk : BK, tid);
        load_tile<BK, D, kThreads>(sV, v + base, 0, stride, nk < BK ? nk : BK, tid);
    }
    cp_async_commit();

    // Δ of tile row tid/2 from global memory, half of the channels per thread, in a fixed order. The two
    // threads of a row are lanes 2r' and 2r'+1 of the warp that owns the row (rows 16w..16w+15).
    float dsum = 0.0f;
    {
        const int r = tid >> 1, c0 = (tid & 1) * (D / 2);
        if (r < qrows) {
            const bf16* dr = dout + base + (q0 + r) * stride + c0;
            const bf16* orow = o + base + (q0 + r) * stride + c0;
#pragma unroll 8
            for (int c = 0; c < D / 2; c += 2) {
                const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dr + c));
                const float2 bb = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(orow + c));
                dsum = fmaf(a.x, bb.x, dsum);
                dsum = fmaf(a.y, bb.y, dsum);
            }
        }
        dsum += __shfl_xor_sync(0xffffffffu, dsum, 1);
        if (r < qrows && (tid & 1) == 0) delta[srow + r] = dsum;
    }
    const int r = 16 * warp + g;  // tile row of c[.][0..1]; r + 8 of c[.][2..3]
    const float dl0 = __shfl_sync(0xffffffffu, dsum, 2 * g), dl1 = __shfl_sync(0xffffffffu, dsum, 2 * g + 16);
    const float lb0 = r < qrows ? lse[srow + r] * kLog2e : 0.0f;
    const float lb1 = r + 8 < qrows ? lse[srow + r + 8] * kLog2e : 0.0f;

    cp_async_wait_all();
    __syncthreads();
    uint32_t qf[D / 16][4], df[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        frag_a<D>(qf[kk], sQ, 16 * warp, 16 * kk, lane);
        frag_a<D>(df[kk], sdO, 16 * warp, 16 * kk, lane);
    }
    float acc[NO][4];
    zero_acc<NO>(acc);

    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        float s[NS][4], dp[NS][4];
        zero_acc<NS>(s);
        zero_acc<NS>(dp);
        mma_abt<D, NS, D / 16>(s, qf, sK, 0, 0, lane);   // S = Q Kᵀ
        mma_abt<D, NS, D / 16>(dp, df, sV, 0, 0, lane);  // dP = dO Vᵀ
        __syncthreads();  // every warp is done with the V tile
        if (kt + 1 < nkt) {
            const int n1 = nk - k0 - BK;
            load_tile<BK, D, kThreads>(sV, v + base, k0 + BK, stride, n1 < BK ? n1 : BK, tid);
        }
        cp_async_commit();
        // dS = P ⊙ (dP − Δ), P = exp2(S·Scale·log2 e − LSE·log2 e); keys >= n: P = 0.
#pragma unroll
        for (int nt = 0; nt < NS; nt++) {
            const int key = k0 + 8 * nt + 2 * t;
            const bool ok0 = key < nk, ok1 = key + 1 < nk;
            const float p0 = ok0 ? exp2f(fmaf(s[nt][0], sl2, -lb0)) : 0.0f;
            const float p1 = ok1 ? exp2f(fmaf(s[nt][1], sl2, -lb0)) : 0.0f;
            const float p2 = ok0 ? exp2f(fmaf(s[nt][2], sl2, -lb1)) : 0.0f;
            const float p3 = ok1 ? exp2f(fmaf(s[nt][3], sl2, -lb1)) : 0.0f;
            s[nt][0] = p0 * (dp[nt][0] - dl0);
            s[nt][1] = p1 * (dp[nt][1] - dl0);
            s[nt][2] = p2 * (dp[nt][2] - dl1);
            s[nt][3] = p3 * (dp[nt][3] - dl1);
        }
        uint32_t dsh[NS / 2][4], dsl[NS / 2][4];
        c_to_a_split<NS>(dsh, dsl, s);
        mma_ab<D, NO, BK / 16, true>(acc, dsh, dsl, sK, 0, 0, lane);  // dQ += dS K
        __syncthreads();  // every warp is done with the K tile
        if (kt + 1 < nkt) {
            const int n1 = nk - k0 - BK;
            load_tile<BK, D, kThreads>(sK, k + base, k0 + BK, stride, n1 < BK ? n1 : BK, tid);
        }
        cp_async_commit();
        cp_async_wait_all();
        __syncthreads();  // next K and V tiles visible
    }
    store_rows_bf16<NO>(dq + base + q0 * stride, stride, r, qrows, acc, scale, scale, t);
}

// dK and dV for 64 keys of (b, h): warp w owns keys 16w..16w+15 of the tile.
template <int D>
__device__ __forceinline__ void bwd_dkdv_bf16(bf16* __restrict__ dk, bf16* __restrict__ dv, const bf16* __restrict__ q,
                                              const bf16* __restrict__ k, const bf16* __restrict__ v,
                                              const bf16* __restrict__ dout, const float* __restrict__ lse,
                                              const float* __restrict__ delta, const int* __restrict__ seqlens,
                                              long long L, long long H, float scale) {
    constexpr int BKV = kRows, BQ = Tiles<D>::kDkdvQueries;
    constexpr int NS = BQ / 8, NO = D / 8;
    DYNAMIC_SMEM(bf16, smem);
    bf16* sK = smem;
    bf16* sV = sK + BKV * D;
    bf16* sQ = sV + BKV * D;
    bf16* sdO = sQ + BQ * D;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const long long b = blockIdx.z, h = blockIdx.y, k0 = static_cast<long long>(blockIdx.x) * BKV;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;
    const float* lse_bh = lse + (b * H + h) * L;
    const float* delta_bh = delta + (b * H + h) * L;
    const int nk = seq_keys(seqlens, b, L);
    const int krows = static_cast<int>(L - k0 < BKV ? L - k0 : BKV);  // rows of the tile inside [0, L)
    const int kvalid = static_cast<int>(nk - k0 < 0 ? 0 : (nk - k0 < BKV ? nk - k0 : BKV));  // real keys
    const int nqt = static_cast<int>(ceil_div(L, BQ));
    const float sl2 = scale * kLog2e;
    const int r = 16 * warp + g;  // tile row (key) of c[.][0..1]; r + 8 of c[.][2..3]

    float adk[NO][4], adv[NO][4];
    zero_acc<NO>(adk);
    zero_acc<NO>(adv);
    if (kvalid > 0) {  // uniform over the block: a tile of padding keys only writes zeros
        load_tile<BKV, D, kThreads>(sK, k + base, k0, stride, kvalid, tid);
        load_tile<BKV, D, kThreads>(sV, v + base, k0, stride, kvalid, tid);
        load_tile<BQ, D, kThreads>(sQ, q + base, 0, stride, L < BQ ? static_cast<int>(L) : BQ, tid);
        load_tile<BQ, D, kThreads>(sdO, dout + base, 0, stride, L < BQ ? static_cast<int>(L) : BQ, tid);
        cp_async_commit();
        cp_async_wait_all();
        __syncthreads();
        const bool key0 = r < kvalid, key1 = r + 8 < kvalid;

        for (int qt = 0; qt < nqt; qt++) {
            const long long c0 = static_cast<long long>(qt) * BQ;
            float st[NS][4], dpt[NS][4];
            zero_acc<NS>(st);
            mma_abt_sa<D, NS, D / 16>(st, sK, 16 * warp, sQ, 0, 0, lane);  // Sᵀ = K Qᵀ
            // Pᵀ = exp2(Sᵀ·Scale·log2 e − LSE·log2 e) with this lane's query columns c0 + 8nt + 2t (+1);
            // keys >= n and queries >= L: 0.
#pragma unroll
            for (int nt = 0; nt < NS; nt++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const long long qi = c0 + 8 * nt + 2 * t + e;
                    const float lb = qi < L ? lse_bh[qi] * kLog2e : INFINITY;
                    st[nt][e] = key0 ? exp2f(fmaf(st[nt][e], sl2, -lb)) : 0.0f;
                    st[nt][e + 2] = key1 ? exp2f(fmaf(st[nt][e + 2], sl2, -lb)) : 0.0f;
                }
            }
            {
                uint32_t pa[NS / 2][4], plo[NS / 2][4];
                c_to_a_split<NS>(pa, plo, st);
                mma_ab<D, NO, BQ / 16, true>(adv, pa, plo, sdO, 0, 0, lane);  // dV += Pᵀ dO
            }
            zero_acc<NS>(dpt);
            mma_abt_sa<D, NS, D / 16>(dpt, sV, 16 * warp, sdO, 0, 0, lane);  // dPᵀ = V dOᵀ
            __syncthreads();  // every warp is done with the dO tile
            if (qt + 1 < nqt) {
                const long long n1 = L - c0 - BQ;
                load_tile<BQ, D, kThreads>(sdO, dout + base, c0 + BQ, stride, n1 < BQ ? static_cast<int>(n1) : BQ, tid);
            }
            cp_async_commit();
            // dSᵀ = Pᵀ ⊙ (dPᵀ − Δ)
#pragma unroll
            for (int nt = 0; nt < NS; nt++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const long long qi = c0 + 8 * nt + 2 * t + e;
                    const float dl = qi < L ? delta_bh[qi] : 0.0f;
                    st[nt][e] *= dpt[nt][e] - dl;
                    st[nt][e + 2] *= dpt[nt][e + 2] - dl;
                }
            }
            {
                uint32_t dsh[NS / 2][4], dsl[NS / 2][4];
                c_to_a_split<NS>(dsh, dsl, st);
                mma_ab<D, NO, BQ / 16, true>(adk, dsh, dsl, sQ, 0, 0, lane);  // dK += dSᵀ Q
            }
            __syncthreads();  // every warp is done with the Q tile
            if (qt + 1 < nqt) {
                const long long n1 = L - c0 - BQ;
                load_tile<BQ, D, kThreads>(sQ, q + base, c0 + BQ, stride, n1 < BQ ? static_cast<int>(n1) : BQ, tid);
            }
            cp_async_commit();
            cp_async_wait_all();
            __syncthreads();  // next Q and dO tiles visible
        }
    }
    store_rows_bf16<NO>(dk + base + k0 * stride, stride, r, krows, adk, scale, scale, t);
    store_rows_bf16<NO>(dv + base + k0 * stride, stride, r, krows, adv, 1.0f, 1.0f, t);
}

// ---- f32 -----------------------------------------------------------------------------------------------
// Loads rows [row0, row0 + R) of a [*, stride] f32 matrix (D columns) into s with row stride ss; rows
// >= nvalid are zero-filled.
template <int R>
__device__ __forceinline__ void load_rows_f32(float* s, int ss, const float* g, long long row0, long long stride,
                                              int d, int nvalid, int tid) {
    for (int i = tid; i < R * d; i += kF32Threads) {
        const int rr = i / d, c = i % d;
        s[rr * ss + c] = rr < nvalid ? g[(row0 + rr) * stride + c] : 0.0f;
    }
}

// dQ and Δ for 32 query rows; thread (row i = tid/4, part p = tid%4) handles keys p and p + 4 of each
// 8-key tile and owns the dQ channels c = p + 4v.
__device__ __forceinline__ void bwd_dq_f32(float* __restrict__ dq, float* __restrict__ delta, const float* __restrict__ q,
                                           const float* __restrict__ k, const float* __restrict__ v,
                                           const float* __restrict__ o, const float* __restrict__ dout,
                                           const float* __restrict__ lse, const int* __restrict__ seqlens, long long L,
                                           long long H, long long D, float scale) {
    constexpr int BQ = kF32Rows, BK = kF32BwdInner, KPT = BK / 4;
    const int d = static_cast<int>(D), SD = static_cast<int>(D | 1);
    DYNAMIC_SMEM(float, smem);
    float* sQ = smem;             // [BQ][SD]
    float* sdO = sQ + BQ * SD;    // [BQ][SD]
    float* sK = sdO + BQ * SD;    // [BK][SD]
    float* sV = sK + BK * SD;     // [BK][SD]
    float* sS = sV + BK * SD;     // [BQ][BK + 1]

    const int tid = threadIdx.x, row = tid >> 2, part = tid & 3;
    const long long b = blockIdx.z, h = blockIdx.y, q0 = static_cast<long long>(blockIdx.x) * BQ;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;
    const long long srow = (b * H + h) * L + q0;
    const int nk = seq_keys(seqlens, b, L);
    const int qrows = static_cast<int>(L - q0 < BQ ? L - q0 : BQ);
    const bool live = row < qrows;

    load_rows_f32<BQ>(sQ, SD, q + base, q0, stride, d, qrows, tid);
    load_rows_f32<BQ>(sdO, SD, dout + base, q0, stride, d, qrows, tid);
    // Δ of this row: the quad's channel parts, then a butterfly.
    float dsum = 0.0f;
    if (live) {
        const float* dr = dout + base + (q0 + row) * stride;
        const float* orow = o + base + (q0 + row) * stride;
        for (int c = part; c < d; c += 4) dsum += dr[c] * orow[c];
    }
    dsum = quad_sum(dsum);
    if (live && part == 0) delta[srow + row] = dsum;
    const float lrow = live ? lse[srow + row] : 0.0f;

    float acc[kF32Acc];
#pragma unroll
    for (int j = 0; j < kF32Acc; j++) acc[j] = 0.0f;

    for (int k0 = 0; k0 < nk; k0 += BK) {
        const int kv = nk - k0 < BK ? nk - k0 : BK;
        load_rows_f32<BK>(sK, SD, k + base, k0, stride, d, kv, tid);
        load_rows_f32<BK>(sV, SD, v + base, k0, stride, d, kv, tid);
        __syncthreads();
        float s[KPT], dp[KPT];
#pragma unroll
        for (int u = 0; u < KPT; u++) s[u] = dp[u] = 0.0f;
        const float* qr = sQ + row * SD;
        const float* dr = sdO + row * SD;
        for (int c = 0; c < d; c++) {
            const float x = qr[c], y = dr[c];
#pragma unroll
            for (int u = 0; u < KPT; u++) {
                s[u] += x * sK[(part + 4 * u) * SD + c];
                dp[u] += y * sV[(part + 4 * u) * SD + c];
            }
        }
#pragma unroll
        for (int u = 0; u < KPT; u++) {
            const int j = part + 4 * u;
            const float p = j < kv ? expf(s[u] * scale - lrow) : 0.0f;
            sS[row * (BK + 1) + j] = p * (dp[u] - dsum);
        }
        __syncwarp();
        for (int j = 0; j < BK; j++) {
            const float ds = sS[row * (BK + 1) + j];
            const float* kr = sK + j * SD;
#pragma unroll
            for (int u = 0; u < kF32Acc; u++) {
                const int c = part + 4 * u;
                if (c < d) acc[u] += ds * kr[c];
            }
        }
        __syncthreads();
    }
    if (live) {
        float* out = dq + base + (q0 + row) * stride;
#pragma unroll
        for (int u = 0; u < kF32Acc; u++) {
            const int c = part + 4 * u;
            if (c < d) out[c] = acc[u] * scale;
        }
    }
}

// dK and dV for 32 keys; thread (key i = tid/4, part p) handles queries p and p + 4 of each 8-query
// tile and owns the channels c = p + 4v of dK and dV.
__device__ __forceinline__ void bwd_dkdv_f32(float* __restrict__ dk, float* __restrict__ dv, const float* __restrict__ q,
                                             const float* __restrict__ k, const float* __restrict__ v,
                                             const float* __restrict__ dout, const float* __restrict__ lse,
                                             const float* __restrict__ delta, const int* __restrict__ seqlens,
                                             long long L, long long H, long long D, float scale) {
    constexpr int BKV = kF32Rows, BQ = kF32BwdInner, QPT = BQ / 4;
    const int d = static_cast<int>(D), SD = static_cast<int>(D | 1);
    DYNAMIC_SMEM(float, smem);
    float* sK = smem;             // [BKV][SD]
    float* sV = sK + BKV * SD;    // [BKV][SD]
    float* sQ = sV + BKV * SD;    // [BQ][SD]
    float* sdO = sQ + BQ * SD;    // [BQ][SD]
    float* sP = sdO + BQ * SD;    // [BKV][BQ + 1]
    float* sS = sP + BKV * (BQ + 1);

    const int tid = threadIdx.x, row = tid >> 2, part = tid & 3;
    const long long b = blockIdx.z, h = blockIdx.y, k0 = static_cast<long long>(blockIdx.x) * BKV;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;
    const float* lse_bh = lse + (b * H + h) * L;
    const float* delta_bh = delta + (b * H + h) * L;
    const int nk = seq_keys(seqlens, b, L);
    const int krows = static_cast<int>(L - k0 < BKV ? L - k0 : BKV);
    const int kvalid = static_cast<int>(nk - k0 < 0 ? 0 : (nk - k0 < BKV ? nk - k0 : BKV));
    const bool key = row < kvalid;

    float adk[kF32Acc], adv[kF32Acc];
#pragma unroll
    for (int j = 0; j < kF32Acc; j++) adk[j] = adv[j] = 0.0f;
    if (kvalid > 0) {  // uniform over the block
        load_rows_f32<BKV>(sK, SD, k + base, k0, stride, d, kvalid, tid);
        load_rows_f32<BKV>(sV, SD, v + base, k0, stride, d, kvalid, tid);
        for (long long c0 = 0; c0 < L; c0 += BQ) {
            const int qv = static_cast<int>(L - c0 < BQ ? L - c0 : BQ);
            load_rows_f32<BQ>(sQ, SD, q + base, c0, stride, d, qv, tid);
            load_rows_f32<BQ>(sdO, SD, dout + base, c0, stride, d, qv, tid);
            __syncthreads();
            float s[QPT], dp[QPT];
#pragma unroll
            for (int u = 0; u < QPT; u++) s[u] = dp[u] = 0.0f;
            const float* kr = sK + row * SD;
            const float* vr = sV + row * SD;
            for (int c = 0; c < d; c++) {
                const float x = kr[c], y = vr[c];
#pragma unroll
                for (int u = 0; u < QPT; u++) {
                    s[u] += x * sQ[(part + 4 * u) * SD + c];
                    dp[u] += y * sdO[(part + 4 * u) * SD + c];
                }
            }
#pragma unroll
            for (int u = 0; u < QPT; u++) {
                const int j = part + 4 * u;
                const bool ok = key && j < qv;
                const float p = ok ? expf(s[u] * scale - lse_bh[c0 + j]) : 0.0f;
                sP[row * (BQ + 1) + j] = p;
                sS[row * (BQ + 1) + j] = ok ? p * (dp[u] - delta_bh[c0 + j]) : 0.0f;
            }
            __syncwarp();
            for (int j = 0; j < BQ; j++) {
                const float p = sP[row * (BQ + 1) + j], ds = sS[row * (BQ + 1) + j];
                const float* qr = sQ + j * SD;
                const float* dr = sdO + j * SD;
#pragma unroll
                for (int u = 0; u < kF32Acc; u++) {
                    const int c = part + 4 * u;
                    if (c < d) {
                        adv[u] += p * dr[c];
                        adk[u] += ds * qr[c];
                    }
                }
            }
            __syncthreads();
        }
    }
    if (row < krows) {
        float* ko = dk + base + (k0 + row) * stride;
        float* vo = dv + base + (k0 + row) * stride;
#pragma unroll
        for (int u = 0; u < kF32Acc; u++) {
            const int c = part + 4 * u;
            if (c < d) {
                ko[c] = adk[u] * scale;
                vo[c] = adv[u];
            }
        }
    }
}

}  // namespace attn

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_bf16_d64_dq(__nv_bfloat16* dq, float* delta, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout, const float* lse,
                         const int* seqlens, long long L, long long H, float scale) {
    attn::bwd_dq_bf16<64>(dq, delta, q, k, v, o, dout, lse, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_bf16_d128_dq(__nv_bfloat16* dq, float* delta, const __nv_bfloat16* q, const __nv_bfloat16* k,
                          const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout, const float* lse,
                          const int* seqlens, long long L, long long H, float scale) {
    attn::bwd_dq_bf16<128>(dq, delta, q, k, v, o, dout, lse, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_bf16_d64_dkdv(__nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* q, const __nv_bfloat16* k,
                           const __nv_bfloat16* v, const __nv_bfloat16* dout, const float* lse, const float* delta,
                           const int* seqlens, long long L, long long H, float scale) {
    attn::bwd_dkdv_bf16<64>(dk, dv, q, k, v, dout, lse, delta, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_bf16_d128_dkdv(__nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* q, const __nv_bfloat16* k,
                            const __nv_bfloat16* v, const __nv_bfloat16* dout, const float* lse, const float* delta,
                            const int* seqlens, long long L, long long H, float scale) {
    attn::bwd_dkdv_bf16<128>(dk, dv, q, k, v, dout, lse, delta, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_f32_dq(float* dq, float* delta, const float* q, const float* k, const float* v, const float* o,
                    const float* dout, const float* lse, const int* seqlens, long long L, long long H, long long D,
                    float scale) {
    attn::bwd_dq_f32(dq, delta, q, k, v, o, dout, lse, seqlens, L, H, D, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_bwd_f32_dkdv(float* dk, float* dv, const float* q, const float* k, const float* v, const float* dout,
                      const float* lse, const float* delta, const int* seqlens, long long L, long long H, long long D,
                      float scale) {
    attn::bwd_dkdv_f32(dk, dv, q, k, v, dout, lse, delta, seqlens, L, H, D, scale);
}
