// cudasim.h: the CUDA device-side language, as seen by a kernel compiled with g++ for the CPU simulator.
//
// compat.cuh includes this header when __CUDACC__ is not defined. It provides, with CUDA semantics:
//   - the qualifiers (__global__, __device__, __shared__, __launch_bounds__, __align__, ...);
//   - threadIdx / blockIdx / blockDim / gridDim / warpSize;
//   - __syncthreads (+ _count/_and/_or), __syncwarp, warp shuffles, votes, __reduce_*_sync, __match_*;
//   - atomics (std::atomic_ref), fast-math and bit intrinsics, min/max, __ldg, fences, __trap, assert;
//   - bf16 (bf16.h) and the vector types (vector_types.h);
//   - the launch glue used by the generated k_<family>.cpp files (CUDASIM_REGISTER).
//
// Design and rules: docs/cudasim.md and kernels/README.md. In short: each CUDA thread is a fiber; fibers
// switch only inside the blocking calls below; `__shared__` is `thread_local` because a whole block runs
// on one worker OS thread; every blocking call takes a std::source_location default argument so a
// fault names the kernel's file:line.
#ifndef MDM_CUDASIM_H
#define MDM_CUDASIM_H

#if defined(__CUDACC__)
#error "kernels/sim/cudasim.h is the g++ simulator's header; nvcc builds must not include it (see compat.cuh)"
#endif

// The C and C++ library comes first: the keyword macros below (notably __noinline__, which libstdc++
// spells inside __attribute__) must not be visible while system headers are parsed.
#include <assert.h>  // kernels/sim/include/assert.h: device assert -> fault
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <bit>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <source_location>
#include <type_traits>
#include <utility>

#include "bf16.h"
#include "cudasim_rt.h"
#include "vector_types.h"

// Lets a kernel (rarely) tell the simulator build apart. Prefer not to.
#define CUDASIM 1

// ---- qualifiers -------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
// Static shared memory: one instance per worker OS thread = per running block (a block never leaves
// its worker). The generated TU brackets all of its thread_local storage so the runtime can poison it
// (0xFF bytes) before every block, as hardware leaves shared memory uninitialised.
#define __shared__ thread_local
// __restrict__ is a g++ keyword already.

// ---- built-in variables -----------------------------------------------------------------------------
namespace cudasim::detail {
inline uint3 thread_idx() { return t_thread->tid; }
inline uint3 block_idx() { return t_block->bid; }
inline dim3 block_dim() { return t_block->bdim; }
inline dim3 grid_dim() { return t_block->gdim; }
}  // namespace cudasim::detail
#define threadIdx (::cudasim::detail::thread_idx())
#define blockIdx (::cudasim::detail::block_idx())
#define blockDim (::cudasim::detail::block_dim())
#define gridDim (::cudasim::detail::grid_dim())
static constexpr int warpSize = 32;

#define CUDASIM_LOC_PARAM std::source_location cudasim_loc = std::source_location::current()

// ---- block barrier ----------------------------------------------------------------------------------
// Releases when every live (not exited) thread of the block waits at the same call site; different
// sites are reported as a "divergent __syncthreads" fault (docs/cudasim.md §3).
inline void __syncthreads(CUDASIM_LOC_PARAM) { ::cudasim::detail::block_barrier(::cudasim::detail::kBarPlain, 0, cudasim_loc); }
inline int __syncthreads_count(int pred, CUDASIM_LOC_PARAM) {
    return ::cudasim::detail::block_barrier(::cudasim::detail::kBarCount, pred != 0, cudasim_loc);
}
inline int __syncthreads_and(int pred, CUDASIM_LOC_PARAM) {
    return ::cudasim::detail::block_barrier(::cudasim::detail::kBarAnd, pred != 0, cudasim_loc);
}
inline int __syncthreads_or(int pred, CUDASIM_LOC_PARAM) {
    return ::cudasim::detail::block_barrier(::cudasim::detail::kBarOr, pred != 0, cudasim_loc);
}

// ---- warp collectives -------------------------------------------------------------------------------
namespace cudasim::detail {
template <class T>
inline uint64_t to_bits(const T& v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
    uint64_t u = 0;
    std::memcpy(&u, static_cast<const void*>(&v), sizeof(T));
    return u;
}
template <class T>
inline T from_bits(uint64_t u) {
    T v;
    std::memcpy(static_cast<void*>(&v), &u, sizeof(T));
    return v;
}
// The CUDA intrinsics pack PTX shfl.sync's c operand as ((32 - width) << 8) | 0x1f: bits 12:8 are the
// segment mask, bits 4:0 the clamp lane. __shfl_up_sync passes the clamp as 0 (the segment start), the
// others as 0x1f (clipped to the segment end by the mask). The formulas are in runtime.cpp.
template <class T>
inline T shfl(int op, unsigned mask, const T& v, int b, int width, const std::source_location& loc) {
    const unsigned c = ((32u - static_cast<unsigned>(width)) << 8) | (op == kShflUp ? 0u : 0x1fu);
    return from_bits<T>(warp_collective(op, mask, to_bits(v), sizeof(T), b, c, width, loc));
}
}  // namespace cudasim::detail

#define CUDASIM_SHFL(T)                                                                                   \
    inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, CUDASIM_LOC_PARAM) {     \
        return ::cudasim::detail::shfl<T>(::cudasim::detail::kShflIdx, mask, var, srcLane, width, cudasim_loc); \
    }                                                                                                     \
    inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize, CUDASIM_LOC_PARAM) { \
        return ::cudasim::detail::shfl<T>(::cudasim::detail::kShflUp, mask, var, static_cast<int>(delta), width, cudasim_loc); \
    }                                                                                                     \
    inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize, CUDASIM_LOC_PARAM) { \
        return ::cudasim::detail::shfl<T>(::cudasim::detail::kShflDown, mask, var, static_cast<int>(delta), width, cudasim_loc); \
    }                                                                                                     \
    inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, CUDASIM_LOC_PARAM) { \
        return ::cudasim::detail::shfl<T>(::cudasim::detail::kShflXor, mask, var, laneMask, width, cudasim_loc); \
    }
CUDASIM_SHFL(int)
CUDASIM_SHFL(unsigned int)
CUDASIM_SHFL(long)
CUDASIM_SHFL(unsigned long)
CUDASIM_SHFL(long long)
CUDASIM_SHFL(unsigned long long)
CUDASIM_SHFL(float)
CUDASIM_SHFL(double)
CUDASIM_SHFL(__nv_bfloat16)
CUDASIM_SHFL(__nv_bfloat162)
#undef CUDASIM_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred, CUDASIM_LOC_PARAM) {
    return static_cast<unsigned>(::cudasim::detail::warp_collective(::cudasim::detail::kBallot, mask, pred != 0, 4, 0, 0, 32, cudasim_loc));
}
inline int __any_sync(unsigned mask, int pred, CUDASIM_LOC_PARAM) {
    return static_cast<int>(::cudasim::detail::warp_collective(::cudasim::detail::kAny, mask, pred != 0, 4, 0, 0, 32, cudasim_loc));
}
inline int __all_sync(unsigned mask, int pred, CUDASIM_LOC_PARAM) {
    return static_cast<int>(::cudasim::detail::warp_collective(::cudasim::detail::kAll, mask, pred != 0, 4, 0, 0, 32, cudasim_loc));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, CUDASIM_LOC_PARAM) {
    ::cudasim::detail::warp_collective(::cudasim::detail::kSyncWarp, mask, 0, 0, 0, 0, 32, cudasim_loc);
}

// sm_80 warp reductions.
#define CUDASIM_WREDUCE(NAME, T, OP)                                                                      \
    inline T NAME(unsigned mask, T value, CUDASIM_LOC_PARAM) {                                            \
        return static_cast<T>(::cudasim::detail::warp_collective(::cudasim::detail::OP, mask,             \
                                                                 static_cast<uint32_t>(value), 4, 0, 0, 32, cudasim_loc)); \
    }
CUDASIM_WREDUCE(__reduce_add_sync, unsigned, kReduceAdd)
CUDASIM_WREDUCE(__reduce_add_sync, int, kReduceAdd)
CUDASIM_WREDUCE(__reduce_min_sync, unsigned, kReduceMinU)
CUDASIM_WREDUCE(__reduce_min_sync, int, kReduceMinI)
CUDASIM_WREDUCE(__reduce_max_sync, unsigned, kReduceMaxU)
CUDASIM_WREDUCE(__reduce_max_sync, int, kReduceMaxI)
CUDASIM_WREDUCE(__reduce_and_sync, unsigned, kReduceAnd)
CUDASIM_WREDUCE(__reduce_or_sync, unsigned, kReduceOr)
CUDASIM_WREDUCE(__reduce_xor_sync, unsigned, kReduceXor)
#undef CUDASIM_WREDUCE

#define CUDASIM_MATCH(T)                                                                                  \
    inline unsigned __match_any_sync(unsigned mask, T value, CUDASIM_LOC_PARAM) {                         \
        return static_cast<unsigned>(::cudasim::detail::warp_collective(                                  \
            ::cudasim::detail::kMatchAny, mask, ::cudasim::detail::to_bits(value), sizeof(T), 0, 0, 32, cudasim_loc)); \
    }                                                                                                     \
    inline unsigned __match_all_sync(unsigned mask, T value, int* pred, CUDASIM_LOC_PARAM) {              \
        uint64_t r = ::cudasim::detail::warp_collective(::cudasim::detail::kMatchAll, mask,               \
                                                        ::cudasim::detail::to_bits(value), sizeof(T), 0, 0, 32, cudasim_loc); \
        *pred = static_cast<int>(r >> 32);                                                                \
        return static_cast<unsigned>(r);                                                                  \
    }
CUDASIM_MATCH(int)
CUDASIM_MATCH(unsigned int)
CUDASIM_MATCH(long)
CUDASIM_MATCH(unsigned long)
CUDASIM_MATCH(long long)
CUDASIM_MATCH(unsigned long long)
CUDASIM_MATCH(float)
CUDASIM_MATCH(double)
#undef CUDASIM_MATCH

// Implicit warp-synchronous code is not emulated (docs/cudasim.md §3): using __activemask() is a
// compile error under the simulator.
template <class T = void>
unsigned __activemask() {
    static_assert(sizeof(T) == 0, "cudasim: __activemask() is not emulated; pass explicit masks to *_sync");
    return 0;
}

// ---- atomics ----------------------------------------------------------------------------------------
// std::atomic_ref: blocks on different workers really run concurrently. A misaligned address is a
// fault, as on the GPU.
namespace cudasim::detail {
template <class T>
inline std::atomic_ref<T> aref(T* p, const char* what, const std::source_location& loc) {
    if (__builtin_expect(reinterpret_cast<uintptr_t>(p) % sizeof(T) != 0, 0)) misaligned(what, p, sizeof(T), loc);
    return std::atomic_ref<T>(*p);
}
template <class T, class F>
inline T cas_loop(T* p, const char* what, const std::source_location& loc, F f) {
    auto r = aref(p, what, loc);
    T old = r.load();
    while (!r.compare_exchange_weak(old, f(old))) {
    }
    return old;
}
}  // namespace cudasim::detail

#define CUDASIM_ATOMIC_FETCH(NAME, T, METHOD)                                                             \
    inline T NAME(T* address, T val, CUDASIM_LOC_PARAM) {                                                 \
        return ::cudasim::detail::aref(address, #NAME, cudasim_loc).METHOD(val);                          \
    }
CUDASIM_ATOMIC_FETCH(atomicAdd, int, fetch_add)
CUDASIM_ATOMIC_FETCH(atomicAdd, unsigned int, fetch_add)
CUDASIM_ATOMIC_FETCH(atomicAdd, unsigned long long, fetch_add)
CUDASIM_ATOMIC_FETCH(atomicAdd, float, fetch_add)
CUDASIM_ATOMIC_FETCH(atomicAdd, double, fetch_add)
CUDASIM_ATOMIC_FETCH(atomicSub, int, fetch_sub)
CUDASIM_ATOMIC_FETCH(atomicSub, unsigned int, fetch_sub)
CUDASIM_ATOMIC_FETCH(atomicExch, int, exchange)
CUDASIM_ATOMIC_FETCH(atomicExch, unsigned int, exchange)
CUDASIM_ATOMIC_FETCH(atomicExch, unsigned long long, exchange)
CUDASIM_ATOMIC_FETCH(atomicExch, float, exchange)
CUDASIM_ATOMIC_FETCH(atomicAnd, int, fetch_and)
CUDASIM_ATOMIC_FETCH(atomicAnd, unsigned int, fetch_and)
CUDASIM_ATOMIC_FETCH(atomicAnd, unsigned long long, fetch_and)
CUDASIM_ATOMIC_FETCH(atomicOr, int, fetch_or)
CUDASIM_ATOMIC_FETCH(atomicOr, unsigned int, fetch_or)
CUDASIM_ATOMIC_FETCH(atomicOr, unsigned long long, fetch_or)
CUDASIM_ATOMIC_FETCH(atomicXor, int, fetch_xor)
CUDASIM_ATOMIC_FETCH(atomicXor, unsigned int, fetch_xor)
CUDASIM_ATOMIC_FETCH(atomicXor, unsigned long long, fetch_xor)
#undef CUDASIM_ATOMIC_FETCH

#define CUDASIM_ATOMIC_MINMAX(T)                                                                          \
    inline T atomicMax(T* address, T val, CUDASIM_LOC_PARAM) {                                            \
        return ::cudasim::detail::cas_loop(address, "atomicMax", cudasim_loc, [val](T o) { return o > val ? o : val; }); \
    }                                                                                                     \
    inline T atomicMin(T* address, T val, CUDASIM_LOC_PARAM) {                                            \
        return ::cudasim::detail::cas_loop(address, "atomicMin", cudasim_loc, [val](T o) { return o < val ? o : val; }); \
    }
CUDASIM_ATOMIC_MINMAX(int)
CUDASIM_ATOMIC_MINMAX(unsigned int)
CUDASIM_ATOMIC_MINMAX(long long)
CUDASIM_ATOMIC_MINMAX(unsigned long long)
#undef CUDASIM_ATOMIC_MINMAX

#define CUDASIM_ATOMIC_CAS(T)                                                                             \
    inline T atomicCAS(T* address, T compare, T val, CUDASIM_LOC_PARAM) {                                 \
        ::cudasim::detail::aref(address, "atomicCAS", cudasim_loc).compare_exchange_strong(compare, val); \
        return compare; /* the old value, whether or not the swap happened */                             \
    }
CUDASIM_ATOMIC_CAS(int)
CUDASIM_ATOMIC_CAS(unsigned int)
CUDASIM_ATOMIC_CAS(unsigned long long)
CUDASIM_ATOMIC_CAS(unsigned short)
#undef CUDASIM_ATOMIC_CAS

// ((old >= val) ? 0 : (old + 1)) and (((old == 0) || (old > val)) ? val : (old - 1)), as in CUDA.
inline unsigned atomicInc(unsigned* address, unsigned val, CUDASIM_LOC_PARAM) {
    return ::cudasim::detail::cas_loop(address, "atomicInc", cudasim_loc, [val](unsigned o) { return o >= val ? 0u : o + 1u; });
}
inline unsigned atomicDec(unsigned* address, unsigned val, CUDASIM_LOC_PARAM) {
    return ::cudasim::detail::cas_loop(address, "atomicDec", cudasim_loc,
                                       [val](unsigned o) { return (o == 0 || o > val) ? val : o - 1u; });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 val, CUDASIM_LOC_PARAM) {
    auto* p = reinterpret_cast<unsigned short*>(address);
    unsigned short old = ::cudasim::detail::cas_loop(p, "atomicAdd", cudasim_loc, [val](unsigned short o) {
        return __bfloat16_as_ushort(__hadd(__ushort_as_bfloat16(o), val));
    });
    return __ushort_as_bfloat16(old);
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162* address, __nv_bfloat162 val, CUDASIM_LOC_PARAM) {
    auto* p = reinterpret_cast<uint32_t*>(address);
    uint32_t old = ::cudasim::detail::cas_loop(p, "atomicAdd", cudasim_loc, [val](uint32_t o) {
        return std::bit_cast<uint32_t>(__hadd2(std::bit_cast<__nv_bfloat162>(o), val));
    });
    return std::bit_cast<__nv_bfloat162>(old);
}

// ---- fences, traps ----------------------------------------------------------------------------------
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) {}
[[noreturn]] inline void __trap(CUDASIM_LOC_PARAM) { ::cudasim::detail::trap(cudasim_loc); }
[[noreturn]] inline void __brkpt(CUDASIM_LOC_PARAM) { ::cudasim::detail::trap(cudasim_loc); }

// ---- loads and stores with cache hints: plain accesses here ------------------------------------------
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- float intrinsics -------------------------------------------------------------------------------
// The GPU's fast versions (ex2.approx, lg2.approx, ...) are ~2 ulp and flush denormals; libm is more
// accurate. Compare kernels with tolerances (docs/cudasim.md §6). g++ does not contract a*b+c into an
// fma on baseline x86-64 while nvcc does (-fmad=true): another last-bit difference.
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline double __dsqrt_rn(double x) { return std::sqrt(x); }

// float -> integer conversions saturate and map NaN to 0, like cvt.rni/rzi/rmi/rpi.sat.
namespace cudasim::detail {
template <class I>
inline I sat_cvt(double v) {
    if (std::isnan(v)) return 0;
    if (v <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
    if (v >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
    return static_cast<I>(v);
}
}  // namespace cudasim::detail
inline int __float2int_rn(float x) { return ::cudasim::detail::sat_cvt<int>(std::nearbyint(static_cast<double>(x))); }
inline int __float2int_rz(float x) { return ::cudasim::detail::sat_cvt<int>(std::trunc(static_cast<double>(x))); }
inline int __float2int_rd(float x) { return ::cudasim::detail::sat_cvt<int>(std::floor(static_cast<double>(x))); }
inline int __float2int_ru(float x) { return ::cudasim::detail::sat_cvt<int>(std::ceil(static_cast<double>(x))); }
inline unsigned __float2uint_rn(float x) { return ::cudasim::detail::sat_cvt<unsigned>(std::nearbyint(static_cast<double>(x))); }
inline unsigned __float2uint_rz(float x) { return ::cudasim::detail::sat_cvt<unsigned>(std::trunc(static_cast<double>(x))); }
inline long long __float2ll_rn(float x) { return ::cudasim::detail::sat_cvt<long long>(std::nearbyint(static_cast<double>(x))); }
inline long long __float2ll_rz(float x) { return ::cudasim::detail::sat_cvt<long long>(std::trunc(static_cast<double>(x))); }
inline int __double2int_rn(double x) { return ::cudasim::detail::sat_cvt<int>(std::nearbyint(x)); }
inline int __double2int_rz(double x) { return ::cudasim::detail::sat_cvt<int>(std::trunc(x)); }
inline long long __double2ll_rn(double x) { return ::cudasim::detail::sat_cvt<long long>(std::nearbyint(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __ull2float_rn(unsigned long long x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }
inline double __int2double_rn(int x) { return static_cast<double>(x); }
inline double __ll2double_rn(long long x) { return static_cast<double>(x); }

// ---- bit reinterpretation ---------------------------------------------------------------------------
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __double2hiint(double x) { return static_cast<int>(std::bit_cast<uint64_t>(x) >> 32); }
inline int __double2loint(double x) { return static_cast<int>(std::bit_cast<uint64_t>(x)); }
inline double __hiloint2double(int hi, int lo) {
    return std::bit_cast<double>((static_cast<uint64_t>(static_cast<uint32_t>(hi)) << 32) | static_cast<uint32_t>(lo));
}

// ---- integer intrinsics -----------------------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
    return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) | __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<int64_t>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) { return static_cast<long long>((static_cast<__int128>(a) * b) >> 64); }
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
// result byte i = byte (s >> 4i) & 7 of the 8-byte value {y:x} (x holds bytes 0-3).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
    return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
    return static_cast<unsigned>((((static_cast<uint64_t>(hi) << 32) | lo) << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
    return static_cast<unsigned>(((static_cast<uint64_t>(hi) << 32) | lo) >> (shift & 31u));
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
    return static_cast<unsigned>((((static_cast<uint64_t>(hi) << 32) | lo) << (shift < 32u ? shift : 32u)) >> 32);
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
    return static_cast<unsigned>(((static_cast<uint64_t>(hi) << 32) | lo) >> (shift < 32u ? shift : 32u));
}

// ---- min / max (CUDA's global overloads; float versions ignore a NaN operand like fminf/fmaxf) --------
#define CUDASIM_MINMAX(T)                                                                                 \
    inline T min(T a, T b) { return a < b ? a : b; }                                                      \
    inline T max(T a, T b) { return a > b ? a : b; }
CUDASIM_MINMAX(int)
CUDASIM_MINMAX(unsigned int)
CUDASIM_MINMAX(long)
CUDASIM_MINMAX(unsigned long)
CUDASIM_MINMAX(long long)
CUDASIM_MINMAX(unsigned long long)
#undef CUDASIM_MINMAX
inline unsigned min(int a, unsigned b) { return min(static_cast<unsigned>(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, static_cast<unsigned>(b)); }
inline unsigned max(int a, unsigned b) { return max(static_cast<unsigned>(a), b); }
inline unsigned max(unsigned a, int b) { return max(a, static_cast<unsigned>(b)); }
inline unsigned long long min(long long a, unsigned long long b) { return min(static_cast<unsigned long long>(a), b); }
inline unsigned long long min(unsigned long long a, long long b) { return min(a, static_cast<unsigned long long>(b)); }
inline unsigned long long max(long long a, unsigned long long b) { return max(static_cast<unsigned long long>(a), b); }
inline unsigned long long max(unsigned long long a, long long b) { return max(a, static_cast<unsigned long long>(b)); }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(static_cast<double>(a), b); }
inline double min(double a, float b) { return std::fmin(a, static_cast<double>(b)); }
inline double max(float a, double b) { return std::fmax(static_cast<double>(a), b); }
inline double max(double a, float b) { return std::fmax(a, static_cast<double>(b)); }

// ---- launch glue (used by the generated k_<family>.cpp) ---------------------------------------------
namespace cudasim::detail {
// Kernel parameters arrive as an array of pointers to 8-byte holders (cuLaunchKernel style). Project
// rule: every parameter is a scalar or a pointer of at most 8 bytes; it lives in the holder's low bytes
// (little-endian), so reading sizeof(T) bytes from the holder's start gives the value.
template <class T>
inline T load_arg(const void* holder) {
    static_assert(std::is_scalar_v<T> && sizeof(T) <= 8,
                  "cudasim: kernel parameters must be scalars or pointers of at most 8 bytes "
                  "(no structs by value; see kernels/README.md)");
    T v;
    std::memcpy(&v, holder, sizeof(T));
    return v;
}
template <auto Fn>
struct KernelThunk;
template <class... P, void (*Fn)(P...)>
struct KernelThunk<Fn> {
    static constexpr int nargs = static_cast<int>(sizeof...(P));
    static void call(void* const* args) { call_(args, std::index_sequence_for<P...>{}); }
    template <size_t... I>
    static void call_([[maybe_unused]] void* const* args, std::index_sequence<I...>) {
        Fn(load_arg<std::remove_cv_t<P>>(args[I])...);
    }
};
struct Registrar {
    Registrar(const char* name, Thunk fn, int nargs, const TuInfo* tu) { register_kernel(name, fn, nargs, tu); }
};
}  // namespace cudasim::detail

// Brackets the translation unit's thread_local storage (= its static __shared__ variables): a label at
// the start of this object's .tbss and one in subsection 8191, which the assembler places after
// everything the compiler emits into .tbss (subsection 0). Only kernel code defines thread_local
// variables in a generated TU, so [lo, hi) is exactly its static shared memory (+ padding).
#if defined(__arm__) || defined(__aarch64__)
#define CUDASIM_ASM_TYPE "%"  // '@' starts a comment in ARM assembly
#else
#define CUDASIM_ASM_TYPE "@"
#endif
#define CUDASIM_TU(family)                                                                                \
    __asm__(".pushsection .tbss,\"awT\"," CUDASIM_ASM_TYPE "nobits\n"                                    \
            ".globl cudasim_shared_lo_" #family "\n"                                                      \
            ".hidden cudasim_shared_lo_" #family "\n"                                                     \
            ".type cudasim_shared_lo_" #family ", " CUDASIM_ASM_TYPE "tls_object\n"                       \
            "cudasim_shared_lo_" #family ":\n"                                                            \
            ".subsection 8191\n"                                                                          \
            ".globl cudasim_shared_hi_" #family "\n"                                                      \
            ".hidden cudasim_shared_hi_" #family "\n"                                                     \
            ".type cudasim_shared_hi_" #family ", " CUDASIM_ASM_TYPE "tls_object\n"                       \
            "cudasim_shared_hi_" #family ":\n"                                                            \
            ".popsection\n");                                                                             \
    extern "C" __thread char cudasim_shared_lo_##family[];                                                \
    extern "C" __thread char cudasim_shared_hi_##family[];                                                \
    static char* cudasim_tu_lo() { return cudasim_shared_lo_##family; }                                   \
    static char* cudasim_tu_hi() { return cudasim_shared_hi_##family; }                                   \
    static const ::cudasim::detail::TuInfo cudasim_tu_info{#family, &cudasim_tu_lo, &cudasim_tu_hi};

#define CUDASIM_REGISTER(name)                                                                            \
    static const ::cudasim::detail::Registrar cudasim_registrar_##name{                                   \
        #name, &::cudasim::detail::KernelThunk<&name>::call, ::cudasim::detail::KernelThunk<&name>::nargs, \
        &cudasim_tu_info};

#endif  // MDM_CUDASIM_H
