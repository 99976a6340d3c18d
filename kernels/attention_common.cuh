// attention_common.cuh: launch constants and device helpers shared by attention_fwd.cu and
// attention_bwd.cu (the attention family; see attention_fwd.cu for the family's header comment), and by
// the simulator's tile test kernels (kernels/sim/testdata/attention_tiles.cu).
//
// Contents:
//   - launch constants (mirrored in cuda/attention.go; change both together);
//   - swizzled bf16 shared-memory tiles: a tile of R rows x D bf16 (D = 64 or 128) stores the 16-byte
//     chunk c of row r at chunk position c ^ (r % 8), so that the 8 row addresses of every ldmatrix
//     8x8 matrix fall into 8 different 4-bank groups (conflict-free) without padding;
//   - global -> shared tile copies with cp.async (16 bytes per thread and step; rows past the valid
//     range are zero-filled with plain stores, never read from global memory);
//   - mma.m16n8k16 fragment helpers: the A fragment of a 16 x 16 row-major tile, B fragments of K-like
//     ([n][k] row-major, ldmatrix) and V-like ([k][n] row-major, ldmatrix.trans) tiles, and the packing
//     of f32 accumulators (C layout) into bf16 A fragments (the "P stays in registers" trick of
//     FlashAttention-2), with an optional hi/lo split for extra precision.
//
// Fragment layouts: kernels/ptx.cuh and docs/cudasim.md §5 (g = lane / 4, t = lane % 4).
#pragma once

#include "compat.cuh"
#include "ptx.cuh"

namespace attn {

typedef __nv_bfloat16 bf16;

// ---- launch constants (mirrored in cuda/attention.go) -----------------------------------------------
// bf16 flash kernels: 4 warps; each warp owns 16 rows (queries in fwd / dq, keys in dkdv).
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;  // 128
constexpr int kRows = 16 * kWarps;     // 64: query tile (fwd, dq) or key tile (dkdv)
// Inner-loop tiles: keys per tile in the forward and dq kernels, queries per tile in the dkdv kernel.
// D = 64: 64 everywhere. D = 128: 64 in the forward (Q + K + V = 48 KiB), 32 in dq (Q, dO + K, V =
// 48 KiB) and 16 in dkdv (its dK and dV accumulators take 128 registers per thread; with 32 queries
// per tile the kernel needs more than 255 registers and spills).
template <int D>
struct Tiles {
    static constexpr int kFwdKeys = 64;
    static constexpr int kDqKeys = D == 64 ? 64 : 32;
    static constexpr int kDkdvQueries = D == 64 ? 64 : 16;
};

// f32 kernels: 128 threads = 32 rows x 4 threads ("quads"); the 4 threads of a row are consecutive lanes.
constexpr int kF32Threads = 128;  // == kThreads: every kernel of the family has __launch_bounds__(kThreads)
constexpr int kF32Rows = 32;    // query tile (fwd, dq) or key tile (dkdv)
constexpr int kF32FwdKeys = 16; // keys per inner tile in the forward (4 per thread)
constexpr int kF32BwdInner = 8; // keys (dq) or queries (dkdv) per inner tile in the backward (2 per thread)
constexpr int kF32MaxD = 128;   // largest head dimension of the f32 kernels
constexpr int kF32Acc = kF32MaxD / 4;  // accumulator registers per thread: channels c = part + 4v
static_assert(kF32Threads == kThreads && kF32Threads == 4 * kF32Rows, "f32 kernels: 4 threads per row");

constexpr float kLog2e = 1.4426950408889634f;

// Number of real keys of sequence b: SeqLens[b] clamped to [0, L] (nullptr: L). The launcher cannot
// check the values without a device->host copy; out-of-range lengths are clamped, never read past L.
// A length of 0 gives Out = 0 and LSE = -inf (the empty softmax) and zero gradients.
__device__ __forceinline__ int seq_keys(const int* seqlens, long long b, long long L) {
    if (seqlens == nullptr) return static_cast<int>(L);
    const long long n = seqlens[b];
    return static_cast<int>(n < 0 ? 0 : (n > L ? L : n));
}

// ---- swizzled bf16 tiles ------------------------------------------------------------------------------
// Element offset of (r, c) in a tile with D columns (D a multiple of 64).
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
    return r * D + ((((c >> 3) ^ (r & 7))) << 3) + (c & 7);
}

// Copies rows [row0, row0 + R) of the row-major bf16 matrix g (row stride `stride` elements) into the
// swizzled tile s, with cp.async; tile rows >= nvalid are zero-filled (not loaded). Every thread of the
// block takes part; the caller commits, waits and synchronises. g and stride*2 must be 16-byte aligned.
template <int R, int D, int NT>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, long long row0, long long stride, int nvalid,
                                          int tid) {
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
#pragma unroll
    for (int i = tid; i < R * kChunks; i += NT) {
        const int r = i / kChunks, c = (i % kChunks) * 8;
        bf16* dst = s + swz<D>(r, c);
        if (r < nvalid)
            cp_async_16(dst, g + (row0 + r) * stride + c);
        else
            *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
}

// ---- fragments ---------------------------------------------------------------------------------------
// A fragment (16 x 16, row-major) of rows r0..r0+15, columns c0..c0+15 of a swizzled tile.
template <int D>
__device__ __forceinline__ void frag_a(uint32_t a[4], const bf16* s, int r0, int c0, int lane) {
    ldmatrix_x4(a, s + swz<D>(r0 + (lane & 15), c0 + ((lane >> 4) << 3)));
}

// B fragments of two n-tiles from a tile stored [n][k] (K in Q·Kᵀ): rows n0..n0+15 (n), columns
// k0..k0+15 (k). b[0..1]: n-tile n0..n0+7; b[2..3]: n-tile n0+8..n0+15.
template <int D>
__device__ __forceinline__ void frag_b_nk(uint32_t b[4], const bf16* s, int n0, int k0, int lane) {
    ldmatrix_x4(b, s + swz<D>(n0 + (lane & 7) + ((lane >> 4) << 3), k0 + (((lane >> 3) & 1) << 3)));
}

// B fragments of two n-tiles from a tile stored [k][n] (V in P·V): rows k0..k0+15 (k), columns
// n0..n0+15 (n). b[0..1]: n-tile n0..n0+7; b[2..3]: n-tile n0+8..n0+15.
template <int D>
__device__ __forceinline__ void frag_b_kn(uint32_t b[4], const bf16* s, int k0, int n0, int lane) {
    ldmatrix_x4_trans(b, s + swz<D>(k0 + (lane & 7) + (((lane >> 3) & 1) << 3), n0 + ((lane >> 4) << 3)));
}

__device__ __forceinline__ uint32_t bits2(__nv_bfloat162 v) {
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

// Two floats -> one register of two bf16 (round to nearest even; lo in the low half).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) { return bits2(__floats2bfloat162_rn(lo, hi)); }

// x ≈ hi + lo with hi = bf16(x) and lo = bf16(x - hi) (x - hi is exact in f32): 16 significant bits.
__device__ __forceinline__ void split_bf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    const float2 hf = __bfloat1622float2(h);
    hi = bits2(h);
    lo = pack_bf16(x0 - hf.x, x1 - hf.y);
}

// Accumulators c[N][4] of a 16 x 8N tile (C layout) -> A fragments a[N/2][4] of the same 16 x 8N tile
// used as the left operand of the next product (k = the accumulator's columns): k-step j takes
// n-tiles 2j (a[j][0], a[j][1]) and 2j+1 (a[j][2], a[j][3]).
template <int N>
__device__ __forceinline__ void c_to_a(uint32_t a[][4], const float c[][4]) {
#pragma unroll
    for (int nt = 0; nt < N; nt++) {
        a[nt >> 1][(nt & 1) * 2 + 0] = pack_bf16(c[nt][0], c[nt][1]);
        a[nt >> 1][(nt & 1) * 2 + 1] = pack_bf16(c[nt][2], c[nt][3]);
    }
}

// As c_to_a, split into hi and lo parts (a ≈ hi + lo, 16 significant bits).
template <int N>
__device__ __forceinline__ void c_to_a_split(uint32_t hi[][4], uint32_t lo[][4], const float c[][4]) {
#pragma unroll
    for (int nt = 0; nt < N; nt++) {
        split_bf16(c[nt][0], c[nt][1], hi[nt >> 1][(nt & 1) * 2 + 0], lo[nt >> 1][(nt & 1) * 2 + 0]);
        split_bf16(c[nt][2], c[nt][3], hi[nt >> 1][(nt & 1) * 2 + 1], lo[nt >> 1][(nt & 1) * 2 + 1]);
    }
}

// acc[N][4] += A (16 x 16·KS, fragments a[KS][4] from registers) · B where B (16·KS x 8N) is a tile
// of s stored [n][k] (rows n0.., columns k0..): C = A·Bᵀ-style products such as S = Q·Kᵀ.
template <int D, int N, int KS>
__device__ __forceinline__ void mma_abt(float acc[][4], const uint32_t a[][4], const bf16* s, int n0, int k0,
                                        int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
        for (int np = 0; np < N / 2; np++) {
            uint32_t b[4];
            frag_b_nk<D>(b, s, n0 + 16 * np, k0 + 16 * kk, lane);
            mma_m16n8k16_bf16_f32(acc[2 * np], a[kk], &b[0], acc[2 * np]);
            mma_m16n8k16_bf16_f32(acc[2 * np + 1], a[kk], &b[2], acc[2 * np + 1]);
        }
    }
}

// As mma_abt, with A = rows a0..a0+15 of the tile sa (columns 0..16·KS-1) loaded from shared memory one
// k-step at a time (4 registers live instead of 4·KS).
template <int D, int N, int KS>
__device__ __forceinline__ void mma_abt_sa(float acc[][4], const bf16* sa, int a0, const bf16* s, int n0, int k0,
                                           int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t a[4];
        frag_a<D>(a, sa, a0, 16 * kk, lane);
#pragma unroll
        for (int np = 0; np < N / 2; np++) {
            uint32_t b[4];
            frag_b_nk<D>(b, s, n0 + 16 * np, k0 + 16 * kk, lane);
            mma_m16n8k16_bf16_f32(acc[2 * np], a, &b[0], acc[2 * np]);
            mma_m16n8k16_bf16_f32(acc[2 * np + 1], a, &b[2], acc[2 * np + 1]);
        }
    }
}

// acc[N][4] += A (16 x 16·KS from registers) · B where B (16·KS x 8N) is a tile of s stored [k][n]
// (rows k0.., columns n0..): products such as O += P·V. With SPLIT, A is given as hi + lo parts
// (a and alo) and both are multiplied (two mma per tile).
template <int D, int N, int KS, bool SPLIT>
__device__ __forceinline__ void mma_ab(float acc[][4], const uint32_t a[][4], const uint32_t alo[][4], const bf16* s,
                                       int k0, int n0, int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
        for (int np = 0; np < N / 2; np++) {
            uint32_t b[4];
            frag_b_kn<D>(b, s, k0 + 16 * kk, n0 + 16 * np, lane);
            mma_m16n8k16_bf16_f32(acc[2 * np], a[kk], &b[0], acc[2 * np]);
            mma_m16n8k16_bf16_f32(acc[2 * np + 1], a[kk], &b[2], acc[2 * np + 1]);
            if (SPLIT) {
                mma_m16n8k16_bf16_f32(acc[2 * np], alo[kk], &b[0], acc[2 * np]);
                mma_m16n8k16_bf16_f32(acc[2 * np + 1], alo[kk], &b[2], acc[2 * np + 1]);
            }
        }
    }
}

template <int N>
__device__ __forceinline__ void zero_acc(float acc[][4]) {
#pragma unroll
    for (int i = 0; i < N; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
}

// Stores rows r (c[.][0..1]) and r + 8 (c[.][2..3]) of a 16 x 8N accumulator tile, times mul0 / mul1,
// as bf16 to g (row stride `stride`); rows >= nrows are skipped. Lane (g, t) writes columns 8nt + 2t, +1.
template <int N>
__device__ __forceinline__ void store_rows_bf16(bf16* g, long long stride, int r, int nrows, const float c[][4],
                                                float mul0, float mul1, int t) {
#pragma unroll
    for (int nt = 0; nt < N; nt++) {
        if (r < nrows)
            *reinterpret_cast<__nv_bfloat162*>(g + r * stride + 8 * nt + 2 * t) =
                __floats2bfloat162_rn(c[nt][0] * mul0, c[nt][1] * mul0);
        if (r + 8 < nrows)
            *reinterpret_cast<__nv_bfloat162*>(g + (r + 8) * stride + 8 * nt + 2 * t) =
                __floats2bfloat162_rn(c[nt][2] * mul1, c[nt][3] * mul1);
    }
}

// Max / sum over the 4 lanes of a quad (the lanes holding one accumulator row). Butterflies: every lane
// gets the same, order-independent result (a+b == b+a), so results are deterministic.
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace attn
