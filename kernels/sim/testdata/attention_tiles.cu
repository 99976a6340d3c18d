// Test-only kernels for the attention family's tile helpers (kernels/attention_common.cuh): the
// swizzled cp.async tile loads, the ldmatrix fragment addressing and the accumulator -> A-fragment
// packing, in isolation, with small-integer data so that every product is exact (bit-exact against an
// integer reference in Go: cuda/attention_test.go, TestAttnTileGEMM). Valid CUDA for nvcc as well (the
// GPU cross-check of the fragment tables); not part of the product kernels (kernels/*.cu).
#include "../../compat.cuh"
#include "../../ptx.cuh"
#include "../../attention_common.cuh"

namespace attn_tiles {

// One warp. q [16][D], k [N][D], v [N][D] bf16 row-major (N = 64); p [16][N] f32.
//   s_out [16][N]  = q · kᵀ          (frag_a + mma_abt: the S = Q Kᵀ path)
//   o_out [16][D]  = bf16(p) · v      (c_to_a + mma_ab: the O += P V path)
//   o2_out [16][D] = (hi + lo)(p) · v (c_to_a_split + mma_ab<SPLIT>: the dQ += dS K path)
template <int D>
__device__ __forceinline__ void tiles(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                      const float* p, float* s_out, float* o_out, float* o2_out) {
    constexpr int N = 64;
    __shared__ __align__(16) __nv_bfloat16 sQ[16 * D];
    __shared__ __align__(16) __nv_bfloat16 sK[N * D];
    __shared__ __align__(16) __nv_bfloat16 sV[N * D];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    attn::load_tile<16, D, 32>(sQ, q, 0, D, 16, lane);
    attn::load_tile<N, D, 32>(sK, k, 0, D, N - 5, lane);  // the last 5 rows are zero-filled, not loaded
    attn::load_tile<N, D, 32>(sV, v, 0, D, N, lane);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    uint32_t qf[D / 16][4];
    for (int kk = 0; kk < D / 16; kk++) attn::frag_a<D>(qf[kk], sQ, 0, 16 * kk, lane);
    float s[N / 8][4];
    attn::zero_acc<N / 8>(s);
    attn::mma_abt<D, N / 8, D / 16>(s, qf, sK, 0, 0, lane);
    for (int nt = 0; nt < N / 8; nt++)
        for (int e = 0; e < 4; e++) s_out[(g + 8 * (e >> 1)) * N + 8 * nt + 2 * t + (e & 1)] = s[nt][e];

    float pc[N / 8][4];
    for (int nt = 0; nt < N / 8; nt++)
        for (int e = 0; e < 4; e++) pc[nt][e] = p[(g + 8 * (e >> 1)) * N + 8 * nt + 2 * t + (e & 1)];
    uint32_t pa[N / 16][4], plo[N / 16][4];
    float o[D / 8][4];
    attn::c_to_a<N / 8>(pa, pc);
    attn::zero_acc<D / 8>(o);
    attn::mma_ab<D, D / 8, N / 16, false>(o, pa, pa, sV, 0, 0, lane);
    for (int nt = 0; nt < D / 8; nt++)
        for (int e = 0; e < 4; e++) o_out[(g + 8 * (e >> 1)) * D + 8 * nt + 2 * t + (e & 1)] = o[nt][e];

    attn::c_to_a_split<N / 8>(pa, plo, pc);
    attn::zero_acc<D / 8>(o);
    attn::mma_ab<D, D / 8, N / 16, true>(o, pa, plo, sV, 0, 0, lane);
    for (int nt = 0; nt < D / 8; nt++)
        for (int e = 0; e < 4; e++) o2_out[(g + 8 * (e >> 1)) * D + 8 * nt + 2 * t + (e & 1)] = o[nt][e];
}

}  // namespace attn_tiles

KERNEL void selftest_attn_tiles_d64(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                    const float* p, float* s_out, float* o_out, float* o2_out) {
    attn_tiles::tiles<64>(q, k, v, p, s_out, o_out, o2_out);
}

KERNEL void selftest_attn_tiles_d128(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                     const float* p, float* s_out, float* o_out, float* o2_out) {
    attn_tiles::tiles<128>(q, k, v, p, s_out, o_out, o2_out);
}
