// cudasim runtime interface: what the kernel-facing header (cudasim.h) needs from the scheduler in
// runtime.cpp. No CUDA keyword macros here, so runtime.cpp can include it next to the C++ library.
//
// Every blocking operation (block barrier, warp collective, mma, ldmatrix) is one call that records
// what the calling CUDA thread (a fiber) waits for and parks it; the scheduler resumes it once the
// operation completes (see docs/cudasim.md §2-§5 and kernels/README.md).
#ifndef MDM_CUDASIM_RT_H
#define MDM_CUDASIM_RT_H

#if defined(__CUDACC__)
#error "kernels/sim/cudasim_rt.h is for the g++ simulator build only"
#endif

#include <cstddef>
#include <cstdint>
#include <source_location>

#include "vector_types.h"

namespace cudasim::detail {

// Public prefix of a fiber (one CUDA thread) and of the running block. threadIdx & co read these
// through the worker thread's t_thread / t_block pointers (__thread: no TLS wrapper calls).
struct ThreadState {
    uint3 tid;  // threadIdx
};
struct BlockState {
    uint3 bid;               // blockIdx
    dim3 bdim;               // blockDim
    dim3 gdim;               // gridDim
    unsigned char* dyn;      // dynamic shared memory of the block
    size_t dyn_bytes;        // its size as given at launch
    char* static_lo;         // static __shared__ storage of the kernel's translation unit (this worker)
    char* static_hi;
};
extern __thread ThreadState* t_thread;
extern __thread BlockState* t_block;

// Warp collective operations. Each one completes when every live lane named in the mask has arrived
// at the same call site with the same operation, mask and width.
enum WarpOp : int {
    kShflIdx,
    kShflUp,
    kShflDown,
    kShflXor,
    kBallot,
    kAny,
    kAll,
    kSyncWarp,
    kReduceAdd,   // wraps: same bits for int and unsigned
    kReduceMinU,
    kReduceMinI,
    kReduceMaxU,
    kReduceMaxI,
    kReduceAnd,
    kReduceOr,
    kReduceXor,
    kMatchAny,
    kMatchAll,   // result: low 32 bits mask, bit 32 = predicate
    kMma,        // internal: mma.sync.m16n8k16 bf16
    kLdmatrix,   // internal: ldmatrix.x{1,2,4}[.trans]
};

enum BarrierKind : int { kBarPlain, kBarCount, kBarAnd, kBarOr };

// __syncthreads family; returns the count / and / or result (0 for kBarPlain).
int block_barrier(int kind, int pred, const std::source_location& loc);

// Generic warp collective. value: the lane's operand bits (size bytes, zero-extended); b: source lane /
// delta / lane mask of shuffles; c: the packed clamp/segment word of PTX shfl.sync; width: the CUDA
// width argument (checked: a power of two in 1..32).
uint64_t warp_collective(int op, unsigned mask, uint64_t value, int size, int b, unsigned c, int width,
                         const std::source_location& loc);

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 as a 32-lane collective (fragments: cudasim.md §5).
void warp_mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c,
                            const std::source_location& loc);

// ldmatrix.sync.aligned.m8n8.x{num}[.trans].shared.b16 as a 32-lane collective.
void warp_ldmatrix(uint32_t* r, int num, bool trans, const void* row_ptr, const std::source_location& loc);

// cp.async.cg.shared.global with `bytes` bytes: checked, then copied synchronously.
void cp_async(void* smem, const void* gmem, int bytes, const std::source_location& loc);

// Faults: record {kind, block, thread, file:line, message}, abandon the block, never return.
[[noreturn]] void fault(const char* kind, const char* file, unsigned line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] void trap(const std::source_location& loc);
[[noreturn]] void misaligned(const char* what, const void* p, size_t align, const std::source_location& loc);

// Registration of kernels (static initialisers in the generated k_<family>.cpp files).
struct TuInfo {
    const char* family;          // "selftest", "layernorm", ...
    char* (*tls_lo)();           // this worker's static __shared__ storage of the TU: [lo, hi)
    char* (*tls_hi)();
};
using Thunk = void (*)(void* const* args);
void register_kernel(const char* name, Thunk fn, int nargs, const TuInfo* tu);

}  // namespace cudasim::detail

// Device-side assert (see include/assert.h): a fault inside a kernel, __assert_fail on the host.
extern "C" [[noreturn]] void cudasim_assert_fail(const char* expr, const char* file, unsigned line,
                                                 const char* func);

#endif  // MDM_CUDASIM_RT_H
