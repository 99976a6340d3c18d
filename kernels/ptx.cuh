// ptx.cuh: every inline-asm instruction our kernels use, each in one small device wrapper with two
// implementations (docs/cudasim.md §2.2):
//
//   #if defined(__CUDACC__)  -> asm volatile(...) for nvcc (sm_80 and sm_90);
//   #else                    -> the cudasim emulation (g++ build, kernels/sim).
//
// __CUDACC__, not __CUDA_ARCH__: see compat.cuh. In the simulator build each wrapper takes a trailing
// std::source_location default argument so that a fault (bad address, exited lane, ...) names the
// kernel line that called the wrapper; call sites are identical in both builds.
//
// Warp-collective wrappers (mma, ldmatrix) must be executed by all 32 lanes of the warp with the same
// arguments where the PTX ISA requires it (.sync.aligned); the simulator checks this.
#pragma once

#include "compat.cuh"

#if defined(__CUDACC__)
#define MDM_PTX_LOC
#else
#define MDM_PTX_LOC , std::source_location cudasim_loc = std::source_location::current()
#endif

// D = A·B + C for one 16x8x16 tile, bf16 inputs, f32 accumulators:
// PTX `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` (PTX ISA, "Matrix Fragments for mma.m16n8k16
// with floating point type", .bf16 layouts; sm_80+).
// Fragments (lane = 4g + t, g = lane/4, t = lane%4; in each 32-bit register the lower 16 bits hold
// the lower-indexed element):
//   a[0] = A(g, 2t..2t+1)     a[1] = A(g+8, 2t..2t+1)   a[2] = A(g, 2t+8..2t+9)   a[3] = A(g+8, 2t+8..2t+9)
//   b[0] = B(k=2t..2t+1, n=g) b[1] = B(k=2t+8..2t+9, n=g)         (A row-major 16x16, B 16x8 "col")
//   c/d[0..1] = C(g, 2t..2t+1)  c/d[2..3] = C(g+8, 2t..2t+1)
// With A row-major and B stored as Bt[n][k], each register is one 32-bit load of two adjacent k.
// d may alias c.
__device__ __forceinline__ void mma_m16n8k16_bf16_f32(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                      const float c[4] MDM_PTX_LOC) {
#if defined(__CUDACC__)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#else
    ::cudasim::detail::warp_mma_m16n8k16_bf16(d, a, b, c, cudasim_loc);
#endif
}

// Loads 8x8 b16 matrices from shared memory: PTX `ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16`
// (PTX ISA, "Warp-level matrix load instruction:
// ldmatrix", sm_75+). Lane i supplies in smem_row_ptr the address of row i%8 of matrix i/8
// (16 bytes, 16-byte aligned; lanes >= 8*num supply ignored addresses). Thread t receives in r[j] two
// elements of matrix j: (row t/4, cols 2(t%4), 2(t%4)+1); with .trans, (rows 2(t%4), 2(t%4)+1, col t/4).
// So x4 over a row-major 16x16 A tile (lane i -> row i%16, col 8*(i/16)) yields the mma A fragment,
// and x2/x4 .trans over a row-major [k][n] B tile yields B fragments.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row_ptr MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#else
    ::cudasim::detail::warp_ldmatrix(r, 4, false, smem_row_ptr, cudasim_loc);
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row_ptr MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#else
    ::cudasim::detail::warp_ldmatrix(r, 4, true, smem_row_ptr, cudasim_loc);
#endif
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* smem_row_ptr MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
#else
    ::cudasim::detail::warp_ldmatrix(r, 2, false, smem_row_ptr, cudasim_loc);
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* smem_row_ptr MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
#else
    ::cudasim::detail::warp_ldmatrix(r, 2, true, smem_row_ptr, cudasim_loc);
#endif
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void* smem_row_ptr MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
#else
    ::cudasim::detail::warp_ldmatrix(r, 1, false, smem_row_ptr, cudasim_loc);
#endif
}

// Asynchronous 16-byte global -> shared copy: PTX `cp.async.cg.shared.global [dst], [src], 16`
// (PTX ISA, "Data Movement and
// Conversion Instructions: cp.async", sm_80+; .cg = cache in L2 only, requires 16 bytes). Both addresses 16-byte
// aligned. Complete with cp_async_commit() + cp_async_wait_all() (or _wait_group<N>) and then a
// barrier before other threads read the data. The simulator copies synchronously; the waits are no-ops.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem MDM_PTX_LOC) {
#if defined(__CUDACC__)
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const size_t g = __cvta_generic_to_global(gmem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(g) : "memory");
#else
    ::cudasim::detail::cp_async(smem, gmem, 16, cudasim_loc);
#endif
}

// PTX `cp.async.commit_group`: closes the group of cp.async issued by this thread so far.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDACC__)
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// PTX `cp.async.wait_all`: waits for all of this thread's cp.async (committed or not).
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDACC__)
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// PTX `cp.async.wait_group N`: waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
#if defined(__CUDACC__)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

#undef MDM_PTX_LOC
