// compat.cuh: the first include of every kernel file (kernels/*.cu). One source, two compilers:
//
//   nvcc (GPU)  -> the CUDA toolkit headers: <cuda_bf16.h>, <stdint.h>, <assert.h>.
//   g++ (CPU)   -> sim/cudasim.h: the simulator's CUDA device language (kernels/sim, kernels/README.md).
//
// Why test __CUDACC__ and not __CUDA_ARCH__: nvcc compiles every .cu twice, a device pass (where
// __CUDA_ARCH__ is defined) and a host pass (where only __CUDACC__ is). With __CUDA_ARCH__ the host
// pass would take the simulator branch and fail to compile it. __CUDACC__ is defined in both nvcc
// passes and never under g++.
//
// It also defines, for both worlds: KERNEL, DYNAMIC_SMEM(T, name), ceil_div / round_up.
#pragma once

#if defined(__CUDACC__)
#include <assert.h>
#include <cuda_bf16.h>
#include <stdint.h>
#else
#include "sim/cudasim.h"
#endif

// Kernels are declared `KERNEL void <op>_<fwd|bwd|step>_<dtype>[_<variant>](...)`: unmangled names,
// found by name in the fatbin (cuModuleGetFunction) and in the simulator's registry alike.
#define KERNEL extern "C" __global__

// DYNAMIC_SMEM(T, name);  declares `T* name` pointing at the block's dynamic shared memory (the bytes
// given at launch). Use it instead of `extern __shared__ T name[]`: the simulator cannot define
// arbitrary extern names, and one name for all kernels matches CUDA, where every extern __shared__
// array aliases the same region. At least 16-byte aligned. In the simulator it is filled with 0xFF
// bytes (NaN) before every block, since hardware leaves it uninitialised.
#if defined(__CUDACC__)
#define DYNAMIC_SMEM(T, name)                                          \
    extern __shared__ __align__(16) unsigned char mdm_dyn_smem[];      \
    T* name = reinterpret_cast<T*>(mdm_dyn_smem)
#else
#define DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::cudasim::detail::t_block->dyn)
#endif

// ceil_div(a, b) = ⌈a / b⌉ and round_up(a, b) = ceil_div(a, b) * b for non-negative integers of any
// (mixed) integer types; the result has the usual arithmetic conversion type of a and b.
template <class A, class B>
__host__ __device__ constexpr inline auto ceil_div(A a, B b) {
    return (a + b - 1) / b;
}
template <class A, class B>
__host__ __device__ constexpr inline auto round_up(A a, B b) {
    return (a + b - 1) / b * b;
}
