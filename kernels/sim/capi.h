/* C interface of the cudasim runtime, used by the cgo side (sim.go). Plain C: the cgo preamble is C.
 * All memory crossing this interface is C memory or Go memory used only for the duration of a call. */
#ifndef MDM_CUDASIM_CAPI_H
#define MDM_CUDASIM_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel bug or an invalid launch. Strings are NUL-terminated (truncated to fit). */
typedef struct {
    char kind[64];
    char kernel[128];
    char file[512];
    char msg[2048];
    int32_t block[3];
    int32_t thread[3];
    int32_t line;
    int32_t has_thread; /* block/thread/file/line are meaningful */
} cudasim_fault;

typedef struct {
    int32_t reverse;     /* run the fibers of a block in order n-1..0 instead of 0..n-1 */
    int32_t workers;     /* OS threads taking blocks from the grid (>= 1) */
    int64_t stack_bytes; /* per-fiber stack (a PROT_NONE guard page is added below it) */
} cudasim_options;

int cudasim_kernel_count(void);
const char* cudasim_kernel_name(int i);          /* registration order */
int cudasim_kernel_nargs(const char* name);      /* -1: unknown kernel */
const char* cudasim_kernel_family(const char* name);

/* Returns 0 on success, 1 when *fault was filled in. Synchronous. */
int cudasim_launch(const char* name, int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz,
                   int64_t dyn_smem, const uint64_t* args, int32_t nargs, const cudasim_options* opt,
                   cudasim_fault* fault);

int64_t cudasim_max_dynamic_smem(void);
int64_t cudasim_default_stack_bytes(void);

uintptr_t cudasim_alloc(size_t bytes); /* 256-byte aligned C heap; 0 on failure */
void cudasim_free(uintptr_t p);
void cudasim_copy_in(uintptr_t dst, const void* src, size_t n);
void cudasim_copy_out(void* dst, uintptr_t src, size_t n);
void cudasim_memset(uintptr_t dst, int byte_value, size_t n);

/* Cost of one fiber context switch in ns, measured with `iters` single-thread barrier round trips. */
double cudasim_switch_ns(int64_t iters);

#ifdef __cplusplus
}
#endif

#endif /* MDM_CUDASIM_CAPI_H */
