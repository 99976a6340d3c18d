// common.cuh: device helpers shared by the kernel families (kernels/*.cu). Valid for nvcc (sm_80,
// sm_90) and for the g++ simulator (kernels/sim); include it after (or instead of) compat.cuh.
//
// What is here, all in namespace mdm:
//   - bf16 <-> f32: bf16_to_f32, f32_to_bf16_bits / f32_to_bf16 (round to nearest even, NaN kept a
//     quiet NaN with its sign and upper payload bits: bit for bit cuda.BF16FromFloat32 in Go), and
//     load_f / store_f, which read or write one float / bf16 element as a float.
//   - Packs: load_pack<V> / store_pack<V> move V consecutive elements (V·sizeof(T) a multiple of 16)
//     with 128-bit accesses; load_pack_any / store_pack_any fall back to scalar accesses when the
//     pointer is not 16-byte aligned or the pack is cut short by the end of a row (the scalar tail).
//     PACK OWNERSHIP: kernels assign whole packs (never single elements) to threads in both paths, so a
//     reduction sums the same elements in the same order whether or not the vector path was taken:
//     results depend on the values only, never on the addresses (a misaligned view gives the same bits).
//   - Reductions in a fixed order: warp_sum (xor butterfly; every lane gets the same bits, because each
//     step adds the same two partial sums on both partner lanes), block_sum (warp sums, then the per-warp
//     sums in warp order), warp/block inclusive/exclusive integer scans. No atomics, no dependence on the
//     order in which threads or blocks run: bit-identical results on every run.
//   - Chunked column sums (two-stage, deterministic): the row partition ColChunks and the block-level
//     combine of per-warp accumulators (combine_warps).
//   - Device error flags: an int in device memory set to FLAG_NONE before a launch; a kernel that finds
//     bad data (an id out of range, a duplicate row) lowers it with atomicMin to the smallest bad index, so
//     the flag's final value does not depend on thread order. The Go launcher reads it back and turns it
//     into an *ops.OpError.
//
// Launch-shape constants used by several families are defined here once and mirrored in Go
// (cuda/reduce.go, the "shared launch constants" block).
#pragma once

#include "compat.cuh"

namespace mdm {

// ---- shared launch constants (mirrored in cuda/reduce.go) ---------------------------------------------

// Warp-per-row kernels: one warp per row, ROW_WARPS rows per block of 32·ROW_WARPS threads.
constexpr int ROW_WARPS = 8;
constexpr int ROW_THREADS = 32 * ROW_WARPS;
// Flat elementwise kernels: blocks of ELEM_THREADS threads, grid-stride over packs.
constexpr int ELEM_THREADS = 256;
// Column sums: blocks of COLSUM_WARPS warps; see ColChunks.
constexpr int COLSUM_WARPS = 8;
constexpr int COLSUM_THREADS = 32 * COLSUM_WARPS;
// Value of an error flag that nothing lowered (Memset of 0x7F bytes): larger than any valid index.
constexpr int FLAG_NONE = 0x7f7f7f7f;

// ---- bf16 <-> f32 -------------------------------------------------------------------------------------

__device__ __forceinline__ float bf16_bits_to_f32(unsigned short h) { return __uint_as_float(static_cast<unsigned>(h) << 16); }

// Round to nearest even; NaN -> quiet NaN keeping sign and upper payload (cuda.BF16FromFloat32);
// overflow rounds to +-Inf as IEEE rounding does. Pure integer arithmetic: identical on the GPU and in
// the simulator, and independent of flush-to-zero modes (subnormals round like any other value).
__device__ __forceinline__ unsigned short f32_to_bf16_bits(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<unsigned short>(u >> 16);
}

__device__ __forceinline__ float bf16_to_f32(__nv_bfloat16 h) { return bf16_bits_to_f32(__bfloat16_as_ushort(h)); }
__device__ __forceinline__ __nv_bfloat16 f32_to_bf16(float f) { return __ushort_as_bfloat16(f32_to_bf16_bits(f)); }

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p) { return bf16_to_f32(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, float v) { *p = f32_to_bf16(v); }

// ---- 128-bit packs --------------------------------------------------------------------------------------

// VecOf<T>::N: elements of T in 16 bytes (4 floats, 8 bf16).
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
    static constexpr int N = 4;
};
template <>
struct VecOf<__nv_bfloat16> {
    static constexpr int N = 8;
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// load_pack<V>(p, v): v[0..V) = p[0..V) as floats with V·sizeof(T)/16 aligned 128-bit loads.
template <int V, class T>
__device__ __forceinline__ void load_pack(const T* p, float* v) {
    static_assert((V * sizeof(T)) % 16 == 0, "a pack is a whole number of 16-byte vectors");
    constexpr int PER = 16 / static_cast<int>(sizeof(T));
#pragma unroll
    for (int q = 0; q < V / PER; q++) {
        const uint4 r = reinterpret_cast<const uint4*>(p)[q];
        float* o = v + q * PER;
        if constexpr (sizeof(T) == 4) {
            o[0] = __uint_as_float(r.x);
            o[1] = __uint_as_float(r.y);
            o[2] = __uint_as_float(r.z);
            o[3] = __uint_as_float(r.w);
        } else {
            o[0] = __uint_as_float(r.x << 16);
            o[1] = __uint_as_float(r.x & 0xffff0000u);
            o[2] = __uint_as_float(r.y << 16);
            o[3] = __uint_as_float(r.y & 0xffff0000u);
            o[4] = __uint_as_float(r.z << 16);
            o[5] = __uint_as_float(r.z & 0xffff0000u);
            o[6] = __uint_as_float(r.w << 16);
            o[7] = __uint_as_float(r.w & 0xffff0000u);
        }
    }
}

// store_pack<V>(p, v): p[0..V) = v[0..V) (rounded to bf16 for bf16 p) with aligned 128-bit stores.
template <int V, class T>
__device__ __forceinline__ void store_pack(T* p, const float* v) {
    static_assert((V * sizeof(T)) % 16 == 0, "a pack is a whole number of 16-byte vectors");
    constexpr int PER = 16 / static_cast<int>(sizeof(T));
#pragma unroll
    for (int q = 0; q < V / PER; q++) {
        const float* in = v + q * PER;
        uint4 r;
        if constexpr (sizeof(T) == 4) {
            r.x = __float_as_uint(in[0]);
            r.y = __float_as_uint(in[1]);
            r.z = __float_as_uint(in[2]);
            r.w = __float_as_uint(in[3]);
        } else {
            r.x = f32_to_bf16_bits(in[0]) | (static_cast<unsigned>(f32_to_bf16_bits(in[1])) << 16);
            r.y = f32_to_bf16_bits(in[2]) | (static_cast<unsigned>(f32_to_bf16_bits(in[3])) << 16);
            r.z = f32_to_bf16_bits(in[4]) | (static_cast<unsigned>(f32_to_bf16_bits(in[5])) << 16);
            r.w = f32_to_bf16_bits(in[6]) | (static_cast<unsigned>(f32_to_bf16_bits(in[7])) << 16);
        }
        reinterpret_cast<uint4*>(p)[q] = r;
    }
}

// load_pack_any<V>(p, valid, vec, v): the pack of V elements at p of which the first `valid` exist
// (valid >= V: all). With vec (p 16-byte aligned) and a full pack: load_pack; otherwise scalar loads of
// the existing elements. Missing elements read as 0, so sums over a pack are unaffected.
template <int V, class T>
__device__ __forceinline__ void load_pack_any(const T* p, long long valid, bool vec, float* v) {
    if (vec && valid >= V) {
        load_pack<V>(p, v);
        return;
    }
#pragma unroll
    for (int e = 0; e < V; e++) v[e] = e < valid ? load_f(p + e) : 0.0f;
}

// store_pack_any<V>(p, valid, vec, v): stores the first min(valid, V) elements of v at p.
template <int V, class T>
__device__ __forceinline__ void store_pack_any(T* p, long long valid, bool vec, const float* v) {
    if (vec && valid >= V) {
        store_pack<V>(p, v);
        return;
    }
#pragma unroll
    for (int e = 0; e < V; e++)
        if (e < valid) store_f(p + e, v[e]);
}

// copy_pack_any<V>(dst, src, valid, vec): bit copy of min(valid, V) elements (NaN payloads kept).
template <int V, class T>
__device__ __forceinline__ void copy_pack_any(T* dst, const T* src, long long valid, bool vec) {
    static_assert((V * sizeof(T)) % 16 == 0, "a pack is a whole number of 16-byte vectors");
    if (vec && valid >= V) {
#pragma unroll
        for (int q = 0; q < static_cast<int>(V * sizeof(T)) / 16; q++)
            reinterpret_cast<uint4*>(dst)[q] = reinterpret_cast<const uint4*>(src)[q];
        return;
    }
#pragma unroll
    for (int e = 0; e < V; e++)
        if (e < valid) dst[e] = src[e];
}

// ---- fixed-order reductions ---------------------------------------------------------------------------

// Sum over the 32 lanes of a full warp (all lanes must call it); every lane receives the same bits.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over a 1-D block whose size is a multiple of 32 (all threads must call it, with the same
// `scratch`, a __shared__ T[32]); every thread receives the same bits. Order: warp_sum within each warp,
// then the warp sums in warp order by a second warp_sum. Ends with a barrier, so scratch may be reused.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : T(0);
    v = warp_sum(v);
    __syncthreads();
    return v;
}

// Inclusive prefix sum over the lanes of a full warp.
__device__ __forceinline__ int warp_inclusive_scan(int v) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += y;
    }
    return v;
}

// Exclusive prefix sum over a 1-D block (size a multiple of 32); *total receives the block's sum.
// scratch: __shared__ int[32]. Ends with a barrier.
__device__ __forceinline__ int block_exclusive_scan(int v, int* scratch, int* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int inc = warp_inclusive_scan(v);
    if (lane == 31) scratch[warp] = inc;
    __syncthreads();
    int w = lane < nw ? scratch[lane] : 0;
    const int winc = warp_inclusive_scan(w);
    const int before = __shfl_sync(0xffffffffu, winc - w, warp);  // sum of warps before this one
    *total = __shfl_sync(0xffffffffu, winc, 31);
    __syncthreads();
    return before + inc - v;
}

// ---- deterministic two-stage column sums ----------------------------------------------------------------
//
// Output element (g, c) = sum over the rows r of group g (rows [g·per, (g+1)·per)) of some f(r, c). Stage 1
// splits every group into cpg chunks of crows consecutive rows (the last ones may be short or empty) and
// writes one partial row per chunk: partial[k, c], k = g·cpg + j. Inside a chunk, warp w of the block
// sums rows r0+w, r0+w+COLSUM_WARPS, ... in increasing order and the warps' sums are added in warp order
// (combine_warps). Stage 2 adds a group's partials in increasing j. The chunking depends only on the
// shape (ColChunks), never on the SM count or the scheduling, so every run gives the same bits; no atomics.
struct ColChunks {
    long long per;    // rows per group
    long long cpg;    // chunks per group
    long long crows;  // rows per chunk
    // rows [r0, r1) of chunk k (empty when r0 >= r1)
    __device__ __forceinline__ void rows(long long k, long long& r0, long long& r1) const {
        const long long g = k / cpg, j = k % cpg;
        const long long lo = j * crows, hi = lo + crows < per ? lo + crows : per;
        r0 = g * per + lo;
        r1 = g * per + (hi > lo ? hi : lo);
    }
};
// Host-side rule (cuda/reduce.go, colChunks): cpg = min(COLSUM_CHUNKS_MAX, ceil(per / COLSUM_CHUNK_MIN)),
// crows = ceil(per / cpg).
constexpr int COLSUM_CHUNK_MIN = 32;
constexpr int COLSUM_CHUNKS_MAX = 256;

// combine_warps<NV>(acc, smem): adds the NV accumulators of the COLSUM_WARPS warps lane by lane in warp
// order 0, 1, ...; the result is returned in warp 0 (other warps get garbage). smem: a __shared__
// float[COLSUM_WARPS * 32 * NV]. All threads of the block must call it. Ends with a barrier.
template <int NV>
__device__ __forceinline__ void combine_warps(float* acc, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int e = 0; e < NV; e++) smem[(warp * 32 + lane) * NV + e] = acc[e];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int e = 0; e < NV; e++) acc[e] = smem[lane * NV + e];
        for (int w = 1; w < COLSUM_WARPS; w++) {
#pragma unroll
            for (int e = 0; e < NV; e++) acc[e] += smem[(w * 32 + lane) * NV + e];
        }
    }
    __syncthreads();
}

// ---- row gather with a bounds flag (EmbedFwd, GatherRows) ----------------------------------------------
//
// out[i, :] = table[idx[i], :] for i < n, one warp per output row (ROW_WARPS rows per block). An index
// outside [0, rows) leaves out[i] untouched and lowers *err to the smallest such i. Bit copy (NaN
// payloads kept); 128-bit accesses when the row pointers are 16-byte aligned.
template <class T>
__device__ __forceinline__ void gather_rows_warp(T* out, const T* table, const int* idx, int* err, long long n,
                                                 long long rows, long long d) {
    constexpr int V = VecOf<T>::N;
    const long long i = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (i >= n) return;
    const int lane = threadIdx.x & 31;
    const long long id = idx[i];
    if (id < 0 || id >= rows) {
        if (lane == 0) atomicMin(err, static_cast<int>(i));
        return;
    }
    const T* src = table + id * d;
    T* dst = out + i * d;
    const bool vec = aligned16(src) && aligned16(dst);
    for (long long c = static_cast<long long>(lane) * V; c < d; c += 32 * V) copy_pack_any<V>(dst + c, src + c, d - c, vec);
}

}  // namespace mdm
