// Self-test kernels of the CUDA simulator (kernels/sim). Valid CUDA for nvcc (sm_80, sm_90) as well:
// the same file is the GPU cross-check of the simulator's semantics (docs/cudasim.md §8).
//
// Registered through the generated k_selftest.cpp and driven by kernels/sim/sim_test.go, which computes
// every reference in Go. Kernels named selftest_bad_* / deliberately buggy ones exist to prove that the
// simulator reports the bug; lines tagged "SITE:<name>" are looked up by the tests to check file:line.
#include "../../compat.cuh"
#include "../../ptx.cuh"

// ---- block reduction: static + dynamic shared memory, two barriers, xor and down shuffles, atomicAdd --
// grid-stride partial sums -> dynamic smem (read back rotated by one thread, across a barrier) -> warp
// butterfly -> static smem per warp -> warp 0 reduces with shfl_down -> partials[block], atomicAdd(total).
// Launch: blockDim.x a multiple of 32, dynamic smem = blockDim.x * 4 bytes.
KERNEL void selftest_block_reduce_f32(const float* __restrict__ x, float* __restrict__ partials,
                                      float* __restrict__ total, long long n) {
    __shared__ float warp_sums[32];
    DYNAMIC_SMEM(float, buf);
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    float acc = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + tid; i < n; i += (long long)gridDim.x * blockDim.x)
        acc += x[i];
    buf[tid] = acc;
    __syncthreads();
    float v = buf[(tid + 1) % blockDim.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) {
            partials[blockIdx.x] = v;
            atomicAdd(total, v);
        }
    }
}

// ---- warp-per-row softmax with early exit ------------------------------------------------------------
// y[r, :] = softmax(x[r, :]); one warp per row, butterfly max and sum; warps past the last row return.
KERNEL void selftest_softmax_rows_f32(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    const int row = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float m = __int_as_float(0xff800000);  // -inf
    for (int c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += __expf(xr[c] - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float inv = 1.0f / s;
    for (int c = lane; c < cols; c += 32) y[(size_t)row * cols + c] = __expf(xr[c] - m) * inv;
}

// ---- bf16 GEMM with mma.sync, fragments loaded by hand --------------------------------------------------
// C[M,N] (f32) = A[M,K] · B, A row-major bf16, B given as Bt[N,K] (row-major, i.e. B column-major).
// 4 warps per block compute a 32x16 tile of C (warp w: rows 16*(w/2), cols 8*(w%2)); K in steps of 16
// through static shared memory. Out-of-range elements load as zero. Grid (ceil(N/16), ceil(M/32)).
KERNEL void selftest_gemm_bf16_mma(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ Bt,
                                   float* __restrict__ C, int M, int N, int K) {
    __shared__ __align__(16) __nv_bfloat16 As[32][16];
    __shared__ __align__(16) __nv_bfloat16 Bs[16][16];  // [n][k]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.y * 32, n0 = blockIdx.x * 16;
    const int wr = (warp >> 1) * 16, wc = (warp & 1) * 8;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < K; k0 += 16) {
        for (int e = tid; e < 32 * 16; e += blockDim.x) {
            const int r = e / 16, c = e % 16;
            As[r][c] = (m0 + r < M && k0 + c < K) ? A[(size_t)(m0 + r) * K + k0 + c] : __float2bfloat16(0.0f);
        }
        for (int e = tid; e < 16 * 16; e += blockDim.x) {
            const int r = e / 16, c = e % 16;
            Bs[r][c] = (n0 + r < N && k0 + c < K) ? Bt[(size_t)(n0 + r) * K + k0 + c] : __float2bfloat16(0.0f);
        }
        __syncthreads();
        uint32_t a[4], b[2];
        a[0] = *reinterpret_cast<const uint32_t*>(&As[wr + g][2 * t]);
        a[1] = *reinterpret_cast<const uint32_t*>(&As[wr + g + 8][2 * t]);
        a[2] = *reinterpret_cast<const uint32_t*>(&As[wr + g][2 * t + 8]);
        a[3] = *reinterpret_cast<const uint32_t*>(&As[wr + g + 8][2 * t + 8]);
        b[0] = *reinterpret_cast<const uint32_t*>(&Bs[wc + g][2 * t]);
        b[1] = *reinterpret_cast<const uint32_t*>(&Bs[wc + g][2 * t + 8]);
        mma_m16n8k16_bf16_f32(acc, a, b, acc);
        __syncthreads();
    }
    const int r = m0 + wr + g, c = n0 + wc + 2 * t;
    if (r < M && c < N) C[(size_t)r * N + c] = acc[0];
    if (r < M && c + 1 < N) C[(size_t)r * N + c + 1] = acc[1];
    if (r + 8 < M && c < N) C[(size_t)(r + 8) * N + c] = acc[2];
    if (r + 8 < M && c + 1 < N) C[(size_t)(r + 8) * N + c + 1] = acc[3];
}

// ---- bf16 GEMM with cp.async + ldmatrix feeding mma.sync -----------------------------------------------
// C[M,N] (f32) = A[M,K] · B[K,N], both row-major bf16. Requires M % 32 == 0, N % 32 == 0, K % 16 == 0.
// 4 warps per block compute a 32x32 tile (warp w: rows 16*(w/2), cols 16*(w%2) = two n8 tiles).
// A fragments: ldmatrix.x4 over the 16x16 A tile; B fragments: ldmatrix.x4.trans over the [k][n] tile.
// Grid (N/32, M/32), 128 threads.
KERNEL void selftest_gemm_bf16_ldsm(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B,
                                    float* __restrict__ C, int M, int N, int K) {
    __shared__ __align__(16) __nv_bfloat16 As[32][16];
    __shared__ __align__(16) __nv_bfloat16 Bs[16][32];  // [k][n]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.y * 32, n0 = blockIdx.x * 32;
    const int wr = (warp >> 1) * 16, wc = (warp & 1) * 16;
    if (m0 >= M || n0 >= N) return;  // whole blocks only
    float acc0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, acc1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < K; k0 += 16) {
        if (tid < 64) {  // A tile: 32 rows x 2 chunks of 8 bf16
            const int r = tid / 2, c = (tid % 2) * 8;
            cp_async_16(&As[r][c], A + (size_t)(m0 + r) * K + k0 + c);
        } else {  // B tile: 16 rows x 4 chunks
            const int u = tid - 64, r = u / 4, c = (u % 4) * 8;
            cp_async_16(&Bs[r][c], B + (size_t)(k0 + r) * N + n0 + c);
        }
        cp_async_commit();
        cp_async_wait_all();
        __syncthreads();
        uint32_t a[4], b[4];
        ldmatrix_x4(a, &As[wr + (lane % 16)][(lane / 16) * 8]);
        ldmatrix_x4_trans(b, &Bs[(lane & 7) + ((lane >> 3) & 1) * 8][wc + (lane >> 4) * 8]);
        mma_m16n8k16_bf16_f32(acc0, a, &b[0], acc0);
        mma_m16n8k16_bf16_f32(acc1, a, &b[2], acc1);
        __syncthreads();
    }
    const int r = m0 + wr + g, c = n0 + wc + 2 * t;
    C[(size_t)r * N + c] = acc0[0];
    C[(size_t)r * N + c + 1] = acc0[1];
    C[(size_t)(r + 8) * N + c] = acc0[2];
    C[(size_t)(r + 8) * N + c + 1] = acc0[3];
    C[(size_t)r * N + c + 8] = acc1[0];
    C[(size_t)r * N + c + 9] = acc1[1];
    C[(size_t)(r + 8) * N + c + 8] = acc1[2];
    C[(size_t)(r + 8) * N + c + 9] = acc1[3];
}

// ---- ldmatrix fragments, all variants ------------------------------------------------------------------
// m: four 8x8 u16 matrices, matrix j row r at m[64j + 8r]. One warp. out[v*128 + lane*4 + j] = r[j] of
// variant v: 0 x1, 1 x2, 2 x4, 3 x2.trans, 4 x4.trans (unused registers stay 0).
KERNEL void selftest_ldmatrix_frags(const unsigned short* __restrict__ m, unsigned* __restrict__ out) {
    __shared__ __align__(16) unsigned short s[4][8][8];
    const int lane = threadIdx.x;
    for (int e = lane; e < 256; e += 32) s[e / 64][(e / 8) % 8][e % 8] = m[e];
    __syncwarp();
    uint32_t r[4];
    unsigned* o = out + lane * 4;
    r[0] = r[1] = r[2] = r[3] = 0;
    ldmatrix_x1(r, &s[0][lane % 8][0]);
    o[0 * 128 + 0] = r[0];
    r[0] = r[1] = 0;
    ldmatrix_x2(r, &s[(lane / 8) % 2][lane % 8][0]);
    o[1 * 128 + 0] = r[0];
    o[1 * 128 + 1] = r[1];
    ldmatrix_x4(r, &s[lane / 8][lane % 8][0]);
    for (int j = 0; j < 4; j++) o[2 * 128 + j] = r[j];
    r[0] = r[1] = 0;
    ldmatrix_x2_trans(r, &s[(lane / 8) % 2][lane % 8][0]);
    o[3 * 128 + 0] = r[0];
    o[3 * 128 + 1] = r[1];
    ldmatrix_x4_trans(r, &s[lane / 8][lane % 8][0]);
    for (int j = 0; j < 4; j++) o[4 * 128 + j] = r[j];
}

// ---- shuffles ------------------------------------------------------------------------------------------
// Lanes in `mask` shuffle in[tid] with the given mode (0 idx, 1 up, 2 down, 3 xor, 4 idx with a per-lane
// source lane*7 + arg); lanes outside the mask write the sentinel 0x7fffffff / NaN-free 1e300.
KERNEL void selftest_shfl_i32(const int* __restrict__ in, int* __restrict__ out, int mode, unsigned mask, int arg,
                              int width) {
    const unsigned tid = threadIdx.x, lane = tid & 31u;
    const int v = in[tid];
    int r = 0x7fffffff;
    if ((mask >> lane) & 1u) {
        switch (mode) {
            case 0: r = __shfl_sync(mask, v, arg, width); break;
            case 1: r = __shfl_up_sync(mask, v, (unsigned)arg, width); break;
            case 2: r = __shfl_down_sync(mask, v, (unsigned)arg, width); break;
            case 3: r = __shfl_xor_sync(mask, v, arg, width); break;  // SITE:shfl-xor
            default: r = __shfl_sync(mask, v, (int)lane * 7 + arg, width); break;
        }
    }
    out[tid] = r;
}

KERNEL void selftest_shfl_f64(const double* __restrict__ in, double* __restrict__ out, int mode, unsigned mask,
                              int arg, int width) {
    const unsigned tid = threadIdx.x, lane = tid & 31u;
    const double v = in[tid];
    double r = 1e300;
    if ((mask >> lane) & 1u) {
        switch (mode) {
            case 0: r = __shfl_sync(mask, v, arg, width); break;
            case 1: r = __shfl_up_sync(mask, v, (unsigned)arg, width); break;
            case 2: r = __shfl_down_sync(mask, v, (unsigned)arg, width); break;
            case 3: r = __shfl_xor_sync(mask, v, arg, width); break;
            default: r = __shfl_sync(mask, v, (int)lane * 7 + arg, width); break;
        }
    }
    out[tid] = r;
}

// ---- votes, warp reductions, match, block-wide predicates ----------------------------------------------
// Lanes >= live return at once (exited lanes leave the collectives); lanes outside `mask` return too.
// out[tid*9 + i]: ballot, any, all, reduce_add, reduce_min(pred-5), reduce_max, match_any, match_all of
// pred&1 and its predicate.
KERNEL void selftest_vote(const int* __restrict__ pred, unsigned* __restrict__ out, unsigned mask, int live) {
    const unsigned tid = threadIdx.x, lane = tid & 31u;
    if ((int)lane >= live || !((mask >> lane) & 1u)) return;
    const int p = pred[tid];
    unsigned* o = out + tid * 9;
    o[0] = __ballot_sync(mask, p);
    o[1] = (unsigned)__any_sync(mask, p);
    o[2] = (unsigned)__all_sync(mask, p);
    o[3] = __reduce_add_sync(mask, (unsigned)p);
    o[4] = (unsigned)__reduce_min_sync(mask, p - 5);
    o[5] = __reduce_max_sync(mask, (unsigned)p);
    o[6] = __match_any_sync(mask, p);
    int all = 0;
    const unsigned ma = __match_all_sync(mask, p & 1, &all);
    o[7] = ma;
    o[8] = (unsigned)all;
}

// out[0..2] = __syncthreads_count / _and / _or of pred[tid] != 0; threads >= live exit first.
KERNEL void selftest_block_votes(const int* __restrict__ pred, int* __restrict__ out, int live) {
    const unsigned tid = threadIdx.x;
    if ((int)tid >= live) return;
    const int p = pred[tid];
    const int c = __syncthreads_count(p);
    const int a = __syncthreads_and(p);
    const int o = __syncthreads_or(p);
    if (tid == 0) {
        out[0] = c;
        out[1] = a;
        out[2] = o;
    }
}

// Exited threads leave barriers: threads >= live return; the rest exchange through shared memory.
// __syncwarp orders the warp-local exchange. out[t] = 2 * ((nb + 1) % live) + 1 for t < live, nb = t^1
// if that thread is live, else t.
KERNEL void selftest_early_exit_barrier(int* __restrict__ out, int live) {
    __shared__ int s[1024];
    __shared__ int w[1024];
    const int t = threadIdx.x;
    if (t >= live) return;
    s[t] = t;
    __syncthreads();
    w[t] = 2 * s[(t + 1) % live];
    __syncwarp(__ballot_sync(0xffffffffu, 1));
    const int nb = (t ^ 1) < live ? (t ^ 1) : t;
    out[t] = w[nb] + 1;
}

// The upper half warp shuffles among itself first, then the whole warp does: lanes 0-15 wait at the
// full-mask shuffle until lanes 16-31 are done with the half-mask one (this must not look like a
// mismatch). out[t] = v1 + 10000 * v1[t ^ 2], v1 = t (+ 100 * (t ^ 1) in the upper half).
KERNEL void selftest_nested_shfl(int* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    int v = (int)threadIdx.x;
    if (lane >= 16u) v += __shfl_xor_sync(0xffff0000u, v, 1) * 100;
    v += __shfl_xor_sync(0xffffffffu, v, 2) * 10000;
    out[threadIdx.x] = v;
}

// ---- atomics from many blocks ----------------------------------------------------------------------------
// Every result is exact (integers, integer-valued floats), so any block order gives the same bits.
KERNEL void selftest_atomics(int* __restrict__ ints, unsigned* __restrict__ uints, unsigned long long* __restrict__ ulls,
                             float* __restrict__ f32, double* __restrict__ f64) {
    const unsigned gt = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&ints[0], 1);
    atomicSub(&ints[1], 2);
    atomicMax(&ints[2], (int)gt);
    atomicMin(&ints[3], -(int)gt);
    atomicExch(&ints[4], 7);
    int old = ints[5], assumed;
    do {  // increment by CAS loop
        assumed = old;
        old = atomicCAS(&ints[5], assumed, assumed + 1);
    } while (old != assumed);
    atomicAdd(&uints[0], 3u);
    atomicMax(&uints[1], gt);
    atomicMin(&uints[2], gt + 5u);
    atomicOr(&uints[3], 1u << (gt % 32u));
    atomicXor(&uints[4], gt);
    atomicAnd(&uints[5], ~(1u << (gt % 32u)));
    atomicInc(&uints[6], 1000000u);
    atomicSub(&uints[7], 1u);
    atomicAdd(&ulls[0], (unsigned long long)gt);
    atomicCAS(&ulls[1], 0ull, 42ull);  // only the first succeeds; all would write the same value
    atomicAdd(&f32[0], 1.0f);
    atomicAdd(&f32[1], 0.5f);
    atomicAdd(&f64[0], 0.25);
}

// ---- argument passing ------------------------------------------------------------------------------------
KERNEL void selftest_args(long long a, int b, float c, double d, unsigned long long e, const int* p,
                          unsigned char u8, short s16, long long* __restrict__ out) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    out[0] = a;
    out[1] = b;
    out[2] = __float_as_int(c);
    out[3] = __double_as_longlong(d);
    out[4] = (long long)e;
    out[5] = (long long)(size_t)p;
    out[6] = u8;
    out[7] = s16;
}

// ---- 3-D grids and blocks ----------------------------------------------------------------------------------
// out[(linear block * threads + linear thread) * 8 + i]: threadIdx.xyz, blockIdx.xyz, packed blockDim,
// packed gridDim (x | y << 10 | z << 20).
KERNEL void selftest_indices(unsigned* __restrict__ out) {
    const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    const unsigned lt = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned lb = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned* o = out + ((size_t)lb * nt + lt) * 8;
    o[0] = threadIdx.x;
    o[1] = threadIdx.y;
    o[2] = threadIdx.z;
    o[3] = blockIdx.x;
    o[4] = blockIdx.y;
    o[5] = blockIdx.z;
    o[6] = blockDim.x | blockDim.y << 10 | blockDim.z << 20;
    o[7] = gridDim.x | gridDim.y << 10 | gridDim.z << 20;
}

// ---- bf16 conversions ----------------------------------------------------------------------------------------
// bits[i] = __float2bfloat16(in[i]) (round to nearest even), back[i] = that bf16 as float,
// pairs[i] = the bits of __floats2bfloat162_rn(in[i], -in[i]) (x in the low half).
KERNEL void selftest_bf16(const float* __restrict__ in, unsigned short* __restrict__ bits, float* __restrict__ back,
                          unsigned* __restrict__ pairs, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __nv_bfloat16 h = __float2bfloat16(in[i]);
    bits[i] = __bfloat16_as_ushort(h);
    back[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
    const __nv_bfloat162 p = __floats2bfloat162_rn(in[i], -in[i]);
    pairs[i] = (unsigned)__bfloat16_as_ushort(__low2bfloat16(p)) | ((unsigned)__bfloat16_as_ushort(__high2bfloat16(p)) << 16);
    if (__low2float(p) != __bfloat162float(h) && !(in[i] != in[i])) pairs[i] = 0xdeadbeefu;
}

// ---- shared memory is uninitialised: the simulator poisons it ------------------------------------------
// Thread 0 reads static and dynamic shared memory before anyone wrote it; then every thread dirties it so
// that a following block on the same worker would see stale values if nothing re-poisoned them.
// Launch with dynamic smem = blockDim.x * 4 bytes.
KERNEL void selftest_smem_poison(unsigned* __restrict__ out) {
    __shared__ unsigned st[64];
    DYNAMIC_SMEM(unsigned, dy);
    if (threadIdx.x == 0) {
        out[blockIdx.x * 4 + 0] = st[0];
        out[blockIdx.x * 4 + 1] = st[63];
        out[blockIdx.x * 4 + 2] = dy[0];
        out[blockIdx.x * 4 + 3] = dy[blockDim.x - 1];
    }
    __syncthreads();
    st[threadIdx.x % 64] = 7u;
    dy[threadIdx.x] = 7u;
}

// ---- deliberately buggy kernels -------------------------------------------------------------------------
// Missing barrier: thread t reads its left neighbour's shared-memory write without __syncthreads. Correct
// by luck in forward thread order (t-1 ran to completion before t), wrong (poison) in reverse order.
KERNEL void selftest_missing_sync(const float* __restrict__ in, float* __restrict__ out) {
    __shared__ float s[1024];
    const unsigned t = threadIdx.x;
    s[t] = 2.0f * in[t];
    // BUG (deliberate): a __syncthreads() belongs here.
    out[t] = t > 0 ? s[t - 1] : s[0];
}

KERNEL void selftest_divergent_sync(int* __restrict__ out) {
    if (threadIdx.x < 16) {
        __syncthreads();  // SITE:divergent-a
    } else {
        __syncthreads();  // SITE:divergent-b
    }
    out[threadIdx.x] = 1;
}

// Lanes 0-15 of every warp wait in a full-mask shuffle for lanes 16-31, which wait at the barrier.
KERNEL void selftest_deadlock_half_warp(int* __restrict__ out) {
    int v = (int)threadIdx.x;
    if ((threadIdx.x & 31u) < 16u) {
        v = __shfl_xor_sync(0xffffffffu, v, 1);  // SITE:deadlock-shfl
    }
    __syncthreads();  // SITE:deadlock-bar
    out[threadIdx.x] = v;
}

// The two half warps call a full-mask shuffle from two different call sites.
KERNEL void selftest_divergent_shfl(int* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    int v = (int)lane;
    if (lane < 16u) {
        v = __shfl_xor_sync(0xffffffffu, v, 1);  // SITE:divshfl-a
    } else {
        v = __shfl_xor_sync(0xffffffffu, v, 1);  // SITE:divshfl-b
    }
    out[threadIdx.x] = v;
}

// Each lane passes a mask that names only its neighbour.
KERNEL void selftest_bad_mask(int* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    out[threadIdx.x] = __shfl_sync(1u << ((lane + 1u) & 31u), (int)lane, 0);  // SITE:bad-mask
}

// Lane 15 reads lane 16 (a valid source for width 32), which is not in the mask.
KERNEL void selftest_shfl_outside_mask(int* __restrict__ out) {
    const unsigned lane = threadIdx.x & 31u;
    if (lane < 16u) out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, (int)lane, 1);  // SITE:outside-mask
}

KERNEL void selftest_trap(int* __restrict__ out, int bx, int tx) {
    if ((int)blockIdx.x == bx && (int)threadIdx.x == tx) __trap();  // SITE:trap
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

KERNEL void selftest_assert(const int* __restrict__ in) {
    assert(in[threadIdx.x] >= 0);  // SITE:assert
}

// mma.sync with half the warp gone.
KERNEL void selftest_mma_exited(float* __restrict__ out) {
    if ((threadIdx.x & 31u) >= 16u) return;
    const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_m16n8k16_bf16_f32(d, a, b, d);  // SITE:mma-exited
    out[threadIdx.x] = d[0];
}

// ldmatrix from global memory (must be shared).
KERNEL void selftest_ldmatrix_global(const unsigned short* __restrict__ g, unsigned* __restrict__ out) {
    uint32_t r[4];
    ldmatrix_x4(r, g + (threadIdx.x & 31u) * 8u);  // SITE:ldsm-global
    out[threadIdx.x] = r[0];
}

// Off-by-one read: y[i] = x[i + 1] reads x[n] at i = n - 1. Under `go test -asan` AddressSanitizer
// reports a heap-buffer-overflow at this line.
KERNEL void selftest_oob_read(const float* __restrict__ x, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];  // SITE:oob
}
