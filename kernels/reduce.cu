// reduce.cu: reductions and data movement: the gradient-norm sum of squares, Axpy, dtype conversion, column
// copies, row gather/scatter and the sinusoidal time features.
//
// Math:   SumSquares  Out[0] += Σ X²                     (f64 accumulation)
//         Axpy        Y = α·X + β·Y; X null: Y = β·Y; β = 0: Y is written without being read. Also for F64
//                     (in double): the trainer zeroes its device-side f64 grad-norm accumulator this way.
//         Convert     Out = In: f32 -> bf16 (round to nearest even, NaN kept NaN: cuda.BF16FromFloat32),
//                     bf16 -> f32 (exact), and same-dtype bit copies. F64 is CPU-only.
//         CopyCols    Dst[r, DstOff + j] (+)= Src[r, SrcOff + j], j < Width
//         GatherRows  Out[i, :] = In[Rows[i], :]
//         ScatterRows Out[Rows[i], :] (+)= In[i, :]  (Rows distinct; checked on the device)
//         TimeEmbed   Out[b, k] = sin(s·T[b]·f_k), Out[b, half + k] = cos(s·T[b]·f_k),
//                     f_k = exp(−k·ln(10⁴)/(half − 1)), all in f64 (ln(10⁴) passed from Go), rounded once.
// Shapes: SumSquares/Axpy/Convert: any (flat n); CopyCols: Dst [R, Cd], Src [R, Cs]; Gather: In [N, D],
//         Rows [R] i32, Out [R, D]; Scatter: In [R, D], Out [N, D]; TimeEmbed: T [B] f64, Out [B, Dc].
// Dtypes: data f32 or bf16 (and f64 for Axpy); SumSquares Out f64; TimeEmbed T f64. Arithmetic in f32 (Axpy: fmaf(α, x, β·y)),
//         f64 for SumSquares and TimeEmbed.
// Determinism: SumSquares partials are sums over fixed chunks of SUMSQ_CHUNK elements (thread t of the block
//         owns packs t, t + 256, ... of the chunk; f64 per thread, then block_sum), added by one block in a
//         fixed order: the same bits on every run and for every grid size. The other ops do not reduce.
// Errors (device flags, common.cuh): GatherRows: a row outside [0, N) lowers err[0] to its index (out row
//         untouched). ScatterRows: scatterrows_fwd_i32_mark lowers err[0] for an out-of-range row and
//         first[row] to the row's first index; scatterrows_fwd_i32_dups lowers err[1] to the smallest index
//         whose row appeared earlier; the scatter itself runs only when both flags are clear. TimeEmbed: a
//         time outside [0, 1] (or NaN) lowers err[0] to its index.
//
// Launch contract (mirrored in cuda/reduce.go):
//   sumsq_fwd_<dt>_partial      grid ceil(n / SUMSQ_CHUNK), block 256, static smem 256 B.
//   sumsq_fwd_f64_final         grid 1, block 256, static smem 256 B.
//   axpy_fwd_<dt> (f32, bf16, f64), convert_fwd_<from>_<to>
//                               grid min(ceil(packs / 256), 32·SMs), block 256, grid-stride over packs
//                               (V = 4 f32 / 8 bf16 / 1 f64; convert: 8).
//   copycols_fwd_<dt>, gatherrows_fwd_<dt>, scatterrows_fwd_<dt>
//                               grid ceil(rows / 8), block 256: one warp per row.
//   scatterrows_fwd_i32_mark, scatterrows_fwd_i32_dups
//                               grid ceil(R / 256), block 256: one thread per index.
//   timeembed_fwd_<dt>          grid min(ceil(B·half / 256), 32·SMs), block 256, grid-stride over (b, k).
//   No dynamic shared memory.
// Go launcher: cuda/reduce.go.
//
// Bandwidth (expected, H200): streaming kernels with 128-bit accesses, ~85-90% of HBM bandwidth at
// production sizes; SumSquares reads X once (f64 adds are cheap at sm_80/sm_90 FP64 rates). CopyCols with
// odd offsets falls back to scalar accesses (~50%); it moves only [B, 6D]-sized tensors.
//
// Lab history: v1 (this file).
#include "common.cuh"

namespace mdm {

constexpr int SUMSQ_THREADS = 256;
constexpr long long SUMSQ_CHUNK = 8192;  // elements per partial; mirrored in Go

// ---- SumSquares ---------------------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ void sumsq_partial(const T* x, double* part, long long n) {
    constexpr int V = VecOf<T>::N;
    __shared__ double scratch[32];
    const long long base = static_cast<long long>(blockIdx.x) * SUMSQ_CHUNK;
    const long long end = base + SUMSQ_CHUNK < n ? base + SUMSQ_CHUNK : n;
    const bool vec = aligned16(x);
    double s = 0.0;
    for (long long i = base + static_cast<long long>(threadIdx.x) * V; i < end; i += SUMSQ_THREADS * V) {
        float v[V];
        load_pack_any<V>(x + i, end - i, vec, v);
#pragma unroll
        for (int e = 0; e < V; e++) s += static_cast<double>(v[e]) * static_cast<double>(v[e]);
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__device__ __forceinline__ void sumsq_final(const double* part, double* out, long long nparts) {
    __shared__ double scratch[32];
    double s = 0.0;
    for (long long i = threadIdx.x; i < nparts; i += SUMSQ_THREADS) s += part[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] += s;
}

// ---- flat elementwise ------------------------------------------------------------------------------------------

template <int V, class F>
__device__ __forceinline__ void for_packs(long long n, F f) {
    const long long packs = (n + V - 1) / V;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride)
        f(p * V, n - p * V);
}

// mode: 0 Y = α·X + β·Y, 1 Y = α·X (β = 0: Y not read), 2 Y = β·Y (X null), 3 Y = 0 (X null, β = 0).
template <class T>
__device__ __forceinline__ void axpy(T* y, const T* x, float alpha, float beta, long long n, int mode) {
    constexpr int V = VecOf<T>::N;
    const bool vec = aligned16(y) && aligned16(x);
    for_packs<V>(n, [&](long long i, long long valid) {
        float a[V], b[V];
        if (mode == 3) {
#pragma unroll
            for (int e = 0; e < V; e++) b[e] = 0.0f;
        } else if (mode == 2) {
            load_pack_any<V>(y + i, valid, vec, b);
#pragma unroll
            for (int e = 0; e < V; e++) b[e] *= beta;
        } else if (mode == 1) {
            load_pack_any<V>(x + i, valid, vec, a);
#pragma unroll
            for (int e = 0; e < V; e++) b[e] = alpha * a[e];
        } else {
            load_pack_any<V>(x + i, valid, vec, a);
            load_pack_any<V>(y + i, valid, vec, b);
#pragma unroll
            for (int e = 0; e < V; e++) b[e] = fmaf(alpha, a[e], beta * b[e]);
        }
        store_pack_any<V>(y + i, valid, vec, b);
    });
}

// F64 Axpy, same modes, in double: the trainer keeps small f64 accumulators on the device (the
// grad-norm sum of SumSquares) and zeroes or scales them with Axpy. Scalar accesses.
__device__ __forceinline__ void axpy_f64(double* y, const double* x, double alpha, double beta, long long n, int mode) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        switch (mode) {
            case 3: y[i] = 0.0; break;
            case 2: y[i] = beta * y[i]; break;
            case 1: y[i] = alpha * x[i]; break;
            default: y[i] = alpha * x[i] + beta * y[i]; break;
        }
    }
}

// Out = In converted (or bit-copied when TI == TO), packs of 8 elements.
template <class TI, class TO>
__device__ __forceinline__ void convert(const TI* in, TO* out, long long n) {
    constexpr int V = 8;
    const bool vec = aligned16(in) && aligned16(out);
    for_packs<V>(n, [&](long long i, long long valid) {
        if constexpr (sizeof(TI) == sizeof(TO)) {
            copy_pack_any<V>(out + i, in + i, valid, vec);
        } else {
            float v[V];
            load_pack_any<V>(in + i, valid, vec, v);
            store_pack_any<V>(out + i, valid, vec, v);
        }
    });
}

// ---- rows and columns ----------------------------------------------------------------------------------------

// One warp per row r < rows.
template <class T>
__device__ __forceinline__ void copycols(T* dst, const T* src, long long rows, long long cd, long long cs, long long doff,
                                         long long soff, long long width, int accumulate) {
    constexpr int V = VecOf<T>::N;
    const long long r = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (r >= rows) return;
    const int lane = threadIdx.x & 31;
    T* o = dst + r * cd + doff;
    const T* s = src + r * cs + soff;
    const bool vec = aligned16(o) && aligned16(s);
    for (long long c = static_cast<long long>(lane) * V; c < width; c += 32 * V) {
        const long long valid = width - c;
        if (!accumulate) {
            copy_pack_any<V>(o + c, s + c, valid, vec);
            continue;
        }
        float a[V], b[V];
        load_pack_any<V>(o + c, valid, vec, a);
        load_pack_any<V>(s + c, valid, vec, b);
#pragma unroll
        for (int e = 0; e < V; e++) a[e] += b[e];
        store_pack_any<V>(o + c, valid, vec, a);
    }
}

// One thread per index i: range check, first occurrence of each row.
__device__ __forceinline__ void scatter_mark(const int* idx, int* first, int* err, long long r, long long nout) {
    const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= r) return;
    const long long row = idx[i];
    if (row < 0 || row >= nout) {
        atomicMin(&err[0], static_cast<int>(i));
        return;
    }
    atomicMin(&first[row], static_cast<int>(i));
}

// One thread per index i: a row whose first occurrence is not i is a duplicate.
__device__ __forceinline__ void scatter_dups(const int* idx, const int* first, int* err, long long r, long long nout) {
    if (err[0] != FLAG_NONE) return;
    const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= r) return;
    const long long row = idx[i];
    if (first[row] != static_cast<int>(i)) atomicMin(&err[1], static_cast<int>(i));
}

// One warp per index i: Out[Rows[i]] (+)= In[i]. Rows are distinct (checked), so no two warps share a row.
template <class T>
__device__ __forceinline__ void scatter_rows(T* out, const T* in, const int* idx, const int* err, long long r, long long d,
                                             int accumulate) {
    constexpr int V = VecOf<T>::N;
    if (err[0] != FLAG_NONE || err[1] != FLAG_NONE) return;
    const long long i = static_cast<long long>(blockIdx.x) * ROW_WARPS + (threadIdx.x >> 5);
    if (i >= r) return;
    const int lane = threadIdx.x & 31;
    T* o = out + static_cast<long long>(idx[i]) * d;
    const T* s = in + i * d;
    const bool vec = aligned16(o) && aligned16(s);
    for (long long c = static_cast<long long>(lane) * V; c < d; c += 32 * V) {
        const long long valid = d - c;
        if (!accumulate) {
            copy_pack_any<V>(o + c, s + c, valid, vec);
            continue;
        }
        float a[V], b[V];
        load_pack_any<V>(o + c, valid, vec, a);
        load_pack_any<V>(s + c, valid, vec, b);
#pragma unroll
        for (int e = 0; e < V; e++) a[e] += b[e];
        store_pack_any<V>(o + c, valid, vec, a);
    }
}

// ---- TimeEmbed -------------------------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ void timeembed(const double* t, T* out, int* err, long long b, long long dc, double scale,
                                          double ln_max) {
    const long long half = dc / 2;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < b * half; i += stride) {
        const long long bi = i / half, k = i % half;
        const double tv = t[bi];
        if (k == 0 && !(tv >= 0.0 && tv <= 1.0)) atomicMin(err, static_cast<int>(bi));
        const double f = exp(-static_cast<double>(k) * ln_max / static_cast<double>(half - 1));
        const double a = scale * tv * f;
        store_f(out + bi * dc + k, static_cast<float>(sin(a)));
        store_f(out + bi * dc + half + k, static_cast<float>(cos(a)));
    }
}

}  // namespace mdm

// ---- entry points -------------------------------------------------------------------------------------------

KERNEL void __launch_bounds__(256) sumsq_fwd_f32_partial(const float* x, double* part, long long n) {
    mdm::sumsq_partial<float>(x, part, n);
}
KERNEL void __launch_bounds__(256) sumsq_fwd_bf16_partial(const __nv_bfloat16* x, double* part, long long n) {
    mdm::sumsq_partial<__nv_bfloat16>(x, part, n);
}
KERNEL void __launch_bounds__(256) sumsq_fwd_f64_final(const double* part, double* out, long long nparts) {
    mdm::sumsq_final(part, out, nparts);
}

KERNEL void __launch_bounds__(256) axpy_fwd_f32(float* y, const float* x, float alpha, float beta, long long n, int mode) {
    mdm::axpy<float>(y, x, alpha, beta, n, mode);
}
KERNEL void __launch_bounds__(256) axpy_fwd_bf16(__nv_bfloat16* y, const __nv_bfloat16* x, float alpha, float beta,
                                                 long long n, int mode) {
    mdm::axpy<__nv_bfloat16>(y, x, alpha, beta, n, mode);
}

KERNEL void __launch_bounds__(256) axpy_fwd_f64(double* y, const double* x, double alpha, double beta, long long n,
                                                int mode) {
    mdm::axpy_f64(y, x, alpha, beta, n, mode);
}

KERNEL void __launch_bounds__(256) convert_fwd_f32_bf16(const float* in, __nv_bfloat16* out, long long n) {
    mdm::convert<float, __nv_bfloat16>(in, out, n);
}
KERNEL void __launch_bounds__(256) convert_fwd_bf16_f32(const __nv_bfloat16* in, float* out, long long n) {
    mdm::convert<__nv_bfloat16, float>(in, out, n);
}
KERNEL void __launch_bounds__(256) convert_fwd_f32_f32(const float* in, float* out, long long n) {
    mdm::convert<float, float>(in, out, n);
}
KERNEL void __launch_bounds__(256) convert_fwd_bf16_bf16(const __nv_bfloat16* in, __nv_bfloat16* out, long long n) {
    mdm::convert<__nv_bfloat16, __nv_bfloat16>(in, out, n);
}

KERNEL void __launch_bounds__(256) copycols_fwd_f32(float* dst, const float* src, long long rows, long long cd,
                                                    long long cs, long long doff, long long soff, long long width,
                                                    int accumulate) {
    mdm::copycols<float>(dst, src, rows, cd, cs, doff, soff, width, accumulate);
}
KERNEL void __launch_bounds__(256) copycols_fwd_bf16(__nv_bfloat16* dst, const __nv_bfloat16* src, long long rows,
                                                     long long cd, long long cs, long long doff, long long soff,
                                                     long long width, int accumulate) {
    mdm::copycols<__nv_bfloat16>(dst, src, rows, cd, cs, doff, soff, width, accumulate);
}

KERNEL void __launch_bounds__(256) gatherrows_fwd_f32(float* out, const float* in, const int* rows, int* err,
                                                      long long r, long long n, long long d) {
    mdm::gather_rows_warp<float>(out, in, rows, err, r, n, d);
}
KERNEL void __launch_bounds__(256) gatherrows_fwd_bf16(__nv_bfloat16* out, const __nv_bfloat16* in, const int* rows,
                                                       int* err, long long r, long long n, long long d) {
    mdm::gather_rows_warp<__nv_bfloat16>(out, in, rows, err, r, n, d);
}

KERNEL void __launch_bounds__(256) scatterrows_fwd_i32_mark(const int* rows, int* first, int* err, long long r,
                                                            long long nout) {
    mdm::scatter_mark(rows, first, err, r, nout);
}
KERNEL void __launch_bounds__(256) scatterrows_fwd_i32_dups(const int* rows, const int* first, int* err, long long r,
                                                            long long nout) {
    mdm::scatter_dups(rows, first, err, r, nout);
}
KERNEL void __launch_bounds__(256) scatterrows_fwd_f32(float* out, const float* in, const int* rows, const int* err,
                                                       long long r, long long d, int accumulate) {
    mdm::scatter_rows<float>(out, in, rows, err, r, d, accumulate);
}
KERNEL void __launch_bounds__(256) scatterrows_fwd_bf16(__nv_bfloat16* out, const __nv_bfloat16* in, const int* rows,
                                                        const int* err, long long r, long long d, int accumulate) {
    mdm::scatter_rows<__nv_bfloat16>(out, in, rows, err, r, d, accumulate);
}

KERNEL void __launch_bounds__(256) timeembed_fwd_f32(const double* t, float* out, int* err, long long b, long long dc,
                                                     double scale, double ln_max) {
    mdm::timeembed<float>(t, out, err, b, dc, scale, ln_max);
}
KERNEL void __launch_bounds__(256) timeembed_fwd_bf16(const double* t, __nv_bfloat16* out, int* err, long long b,
                                                      long long dc, double scale, double ln_max) {
    mdm::timeembed<__nv_bfloat16>(t, out, err, b, dc, scale, ln_max);
}
