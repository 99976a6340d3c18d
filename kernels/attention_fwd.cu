// attention_fwd.cu: non-causal multi-head attention, forward (the attention family: this file,
// attention_bwd.cu, attention_common.cuh; Go launcher cuda/attention.go).
//
// Math, per sequence b and head h, with n = SeqLens[b] real keys (all L if no SeqLens):
//   S = Scale · Q Kᵀ (keys >= n excluded),  LSE_i = log Σ_j exp(S_ij),  Out = softmax(S) · V.
// Shapes: Q, K, V, Out [B, L, H, Dh] row-major (head h of position l at column h·Dh of row b·L + l);
//   LSE [B, H, L] f32; SeqLens [B] int32 (optional). Key padding: keys >= n get weight exactly 0 and
//   are never loaded (their K/V rows are zero-filled in shared memory, so NaN padding cannot leak).
//   Query rows at padded positions are computed like any other. SeqLens values are clamped to [0, L];
//   n = 0 gives Out = 0, LSE = -inf.
// Saved for the backward: Out and LSE (attention_bwd.cu recomputes P = exp(S - LSE)).
//
// Kernels:
//   attn_fwd_bf16_d64, attn_fwd_bf16_d128  bf16 Q/K/V/Out, f32 LSE; FlashAttention-2 style:
//     grid (ceil(L/64), H, B), block 128 threads (4 warps x 16 query rows), dynamic smem
//     (64 + 2·64)·Dh·2 bytes = 24 KiB (Dh 64) / 48 KiB (Dh 128): the Q tile and one K and one V tile
//     of 64 keys, swizzled (attention_common.cuh). Q fragments stay in registers; per key tile:
//     S = Q·Kᵀ with mma.m16n8k16 (bf16 -> f32), online softmax in f32 (running max and sum per row,
//     exp2 with Scale·log2 e folded in), P rounded to bf16 in registers, O += P·V with mma.
//     The V tile is fetched (cp.async) while S is computed and the next K tile while P·V is computed.
//     The row sums l are accumulated from the f32 P before its rounding, so LSE has f32 accuracy
//     (summing the bf16-rounded P would make LSE ~1e-3 off on peaked rows, 10x the f32 reference).
//   attn_fwd_f32  f32 everything, any Dh <= 128: grid (ceil(L/32), H, B), block 128 threads = 32
//     query rows x 4 threads; scalar f32 FMAs through shared memory tiles of 16 keys; dynamic smem
//     (32·(Dh|1) + 16·(Dh|1) + 16·Dh + 32·17)·4 bytes (<= 35 KiB).
// Dtype policy: bf16 storage, f32 accumulation and softmax statistics; exp2f / expf (not __expf).
// Determinism: no atomics; every reduction has a fixed order (mma tiles, quad butterflies); results
//   are bit-identical across runs and thread orders.
// Launch contract: blockDim = 128 (__launch_bounds__(128)); grid.y = H, grid.z = B (<= 65535);
//   Q, K, V 16-byte aligned for the bf16 kernels (cp.async), 4-byte otherwise. Checked by the launcher.
// Registers (nvcc 11.8, sm_80 / sm_90, no spills, no local memory): bf16_d64 128/128, bf16_d128
//   168/167, f32 128/113.
// Lab history: v1 (this). Expected on H100 at Dh 64, L 1024: ~100-150 TFLOP/s, 35-50% of FA2's ~300:
//   each warp owns only 16 query rows, so every warp re-reads the whole K and V tile through ldmatrix
//   (one 512-byte ldmatrix per two mma: shared-memory bandwidth caps it near 50% of mma.sync peak);
//   no cross-iteration register prefetch of fragments; Out is stored with 4-byte writes. Next steps:
//   32 rows per warp (BQ = 128), Out through shared memory with 16-byte stores, then profile.
#include "compat.cuh"
#include "ptx.cuh"
#include "attention_common.cuh"

namespace attn {

// One block: 64 query rows of (b, h) = (blockIdx.z, blockIdx.y) starting at q0 = 64·blockIdx.x.
template <int D>
__device__ __forceinline__ void fwd_bf16(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                                         const bf16* __restrict__ k, const bf16* __restrict__ v,
                                         const int* __restrict__ seqlens, long long L, long long H, float scale) {
    constexpr int BQ = kRows, BK = Tiles<D>::kFwdKeys;
    constexpr int NS = BK / 8;  // n-tiles of S (keys)
    constexpr int NO = D / 8;   // n-tiles of O (channels)
    DYNAMIC_SMEM(bf16, smem);
    bf16* sQ = smem;
    bf16* sK = sQ + BQ * D;
    bf16* sV = sK + BK * D;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const long long b = blockIdx.z, h = blockIdx.y, q0 = static_cast<long long>(blockIdx.x) * BQ;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;  // element (b, 0, h, 0)
    const int nk = seq_keys(seqlens, b, L);
    const int nkt = static_cast<int>(ceil_div(nk, BK));
    const int qrows = static_cast<int>(L - q0 < BQ ? L - q0 : BQ);
    const float sl2 = scale * kLog2e;

    load_tile<BQ, D, kThreads>(sQ, q + base, q0, stride, qrows, tid);
    if (nkt > 0) load_tile<BK, D, kThreads>(sK, k + base, 0, stride, nk < BK ? nk : BK, tid);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) frag_a<D>(qf[kk], sQ, 16 * warp, 16 * kk, lane);

    float o[NO][4];
    zero_acc<NO>(o);
    float m0 = -INFINITY, m1 = -INFINITY;  // running max of the raw scores, rows g and g + 8
    float l0 = 0.0f, l1 = 0.0f;             // this lane's part of the running sums

    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        load_tile<BK, D, kThreads>(sV, v + base, k0, stride, nk - k0 < BK ? nk - k0 : BK, tid);
        cp_async_commit();

        float s[NS][4];
        zero_acc<NS>(s);
        mma_abt<D, NS, D / 16>(s, qf, sK, 0, 0, lane);
        if (k0 + BK > nk) {
#pragma unroll
            for (int nt = 0; nt < NS; nt++) {
                const int key = k0 + 8 * nt + 2 * t;
                if (key >= nk) s[nt][0] = s[nt][2] = -INFINITY;
                if (key + 1 >= nk) s[nt][1] = s[nt][3] = -INFINITY;
            }
        }
        // Online softmax. Every key tile holds at least one real key, so the new maxima are finite.
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < NS; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = quad_max(mx0);
        mx1 = quad_max(mx1);
        const float a0 = exp2f((m0 - mx0) * sl2), a1 = exp2f((m1 - mx1) * sl2);  // 0 on the first tile
        m0 = mx0;
        m1 = mx1;
        const float mb0 = mx0 * sl2, mb1 = mx1 * sl2;
        l0 *= a0;
        l1 *= a1;
#pragma unroll
        for (int nt = 0; nt < NO; nt++) {
            o[nt][0] *= a0;
            o[nt][1] *= a0;
            o[nt][2] *= a1;
            o[nt][3] *= a1;
        }
        uint32_t pa[NS / 2][4];
#pragma unroll
        for (int nt = 0; nt < NS; nt++) {
            const float p0 = exp2f(fmaf(s[nt][0], sl2, -mb0)), p1 = exp2f(fmaf(s[nt][1], sl2, -mb0));
            const float p2 = exp2f(fmaf(s[nt][2], sl2, -mb1)), p3 = exp2f(fmaf(s[nt][3], sl2, -mb1));
            l0 += p0 + p1;
            l1 += p2 + p3;
            pa[nt >> 1][(nt & 1) * 2 + 0] = pack_bf16(p0, p1);
            pa[nt >> 1][(nt & 1) * 2 + 1] = pack_bf16(p2, p3);
        }

        cp_async_wait_all();
        __syncthreads();  // V tile visible; every warp is done with the K tile
        if (kt + 1 < nkt) {
            const int n1 = nk - k0 - BK;
            load_tile<BK, D, kThreads>(sK, k + base, k0 + BK, stride, n1 < BK ? n1 : BK, tid);
        }
        cp_async_commit();
        mma_ab<D, NO, BK / 16, false>(o, pa, pa, sV, 0, 0, lane);
        cp_async_wait_all();
        __syncthreads();  // next K tile visible; every warp is done with the V tile
    }

    l0 = quad_sum(l0);
    l1 = quad_sum(l1);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    const int r = 16 * warp + g;  // tile row of c[.][0..1]; r + 8 of c[.][2..3]
    store_rows_bf16<NO>(out + base + q0 * stride, stride, r, qrows, o, inv0, inv1, t);
    if (t == 0) {
        float* lrow = lse + (b * H + h) * L + q0;
        if (r < qrows) lrow[r] = l0 > 0.0f ? fmaf(m0, scale, logf(l0)) : -INFINITY;
        if (r + 8 < qrows) lrow[r + 8] = l1 > 0.0f ? fmaf(m1, scale, logf(l1)) : -INFINITY;
    }
}

// f32: one block = 32 query rows; thread (row i = tid/4, part p = tid%4) computes the scores of row i
// with keys p, p+4, p+8, p+12 of each 16-key tile and owns the output channels c = p + 4v.
__device__ __forceinline__ void fwd_f32(float* __restrict__ out, float* __restrict__ lse, const float* __restrict__ q,
                                        const float* __restrict__ k, const float* __restrict__ v,
                                        const int* __restrict__ seqlens, long long L, long long H, long long D,
                                        float scale) {
    constexpr int BQ = kF32Rows, BK = kF32FwdKeys, KPT = BK / 4;
    const int SD = static_cast<int>(D | 1);  // odd row stride: conflict-free column reads
    DYNAMIC_SMEM(float, smem);
    float* sQ = smem;            // [BQ][SD]
    float* sK = sQ + BQ * SD;    // [BK][SD]
    float* sV = sK + BK * SD;    // [BK][D]
    float* sP = sV + BK * D;     // [BQ][BK + 1]

    const int tid = threadIdx.x, row = tid >> 2, part = tid & 3;
    const long long b = blockIdx.z, h = blockIdx.y, q0 = static_cast<long long>(blockIdx.x) * BQ;
    const long long stride = H * D;
    const long long base = (b * L * H + h) * D;
    const int nk = seq_keys(seqlens, b, L);
    const int d = static_cast<int>(D);
    const int qrows = static_cast<int>(L - q0 < BQ ? L - q0 : BQ);

    for (int i = tid; i < BQ * d; i += kF32Threads) {
        const int r = i / d, c = i % d;
        sQ[r * SD + c] = r < qrows ? q[base + (q0 + r) * stride + c] : 0.0f;
    }

    float o[kF32Acc];
#pragma unroll
    for (int j = 0; j < kF32Acc; j++) o[j] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (int k0 = 0; k0 < nk; k0 += BK) {
        for (int i = tid; i < BK * d; i += kF32Threads) {
            const int r = i / d, c = i % d;
            const bool ok = k0 + r < nk;
            const long long gi = base + (k0 + r) * stride + c;
            sK[r * SD + c] = ok ? k[gi] : 0.0f;
            sV[r * d + c] = ok ? v[gi] : 0.0f;
        }
        __syncthreads();
        float s[KPT];
#pragma unroll
        for (int u = 0; u < KPT; u++) s[u] = 0.0f;
        const float* qr = sQ + row * SD;
        for (int c = 0; c < d; c++) {
            const float x = qr[c];
#pragma unroll
            for (int u = 0; u < KPT; u++) s[u] += x * sK[(part + 4 * u) * SD + c];
        }
        float mx = m;
#pragma unroll
        for (int u = 0; u < KPT; u++) {
            s[u] = k0 + part + 4 * u < nk ? s[u] * scale : -INFINITY;
            mx = fmaxf(mx, s[u]);
        }
        mx = quad_max(mx);
        const float alpha = expf(m - mx);  // 0 on the first tile (m = -inf)
        m = mx;
        float ls = 0.0f;
#pragma unroll
        for (int u = 0; u < KPT; u++) {
            const float p = expf(s[u] - mx);
            ls += p;
            sP[row * (BK + 1) + part + 4 * u] = p;
        }
        l = fmaf(l, alpha, ls);
#pragma unroll
        for (int j = 0; j < kF32Acc; j++) o[j] *= alpha;
        __syncwarp();  // the quad's P row (all four threads are in this warp)
        for (int j = 0; j < BK; j++) {
            const float p = sP[row * (BK + 1) + j];
            const float* vr = sV + j * d;
#pragma unroll
            for (int u = 0; u < kF32Acc; u++) {
                const int c = part + 4 * u;
                if (c < d) o[u] += p * vr[c];
            }
        }
        __syncthreads();  // before the next tile overwrites sK, sV (and sP)
    }

    l = quad_sum(l);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if (row < qrows) {
        float* orow = out + base + (q0 + row) * stride;
#pragma unroll
        for (int u = 0; u < kF32Acc; u++) {
            const int c = part + 4 * u;
            if (c < d) orow[c] = o[u] * inv;
        }
        if (part == 0) lse[(b * H + h) * L + q0 + row] = l > 0.0f ? m + logf(l) : -INFINITY;
    }
}

}  // namespace attn

KERNEL void __launch_bounds__(attn::kThreads)
    attn_fwd_bf16_d64(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                      const __nv_bfloat16* v, const int* seqlens, long long L, long long H, float scale) {
    attn::fwd_bf16<64>(out, lse, q, k, v, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_fwd_bf16_d128(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, const int* seqlens, long long L, long long H, float scale) {
    attn::fwd_bf16<128>(out, lse, q, k, v, seqlens, L, H, scale);
}

KERNEL void __launch_bounds__(attn::kThreads)
    attn_fwd_f32(float* out, float* lse, const float* q, const float* k, const float* v, const int* seqlens,
                 long long L, long long H, long long D, float scale) {
    attn::fwd_f32(out, lse, q, k, v, seqlens, L, H, D, scale);
}
