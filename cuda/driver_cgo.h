// Driver API calls gorgonia.org/cu v0.9.6 does not wrap (go-cuda-notes.md §1.10), and the
// launch path of the real device. Built only with the `cuda` tag (driver_cgo.c).
#ifndef MDM_DRIVER_CGO_H
#define MDM_DRIVER_CGO_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

// MDM_MAX_KERNEL_ARGS mirrors maxKernelArgs in realdevice_core.go.
#define MDM_MAX_KERNEL_ARGS 32

// mdm_launch copies nargs 8-byte argument holders into C stack memory and calls
// cuLaunchKernel with pointers to those copies (the driver reads each parameter's declared
// size from its holder; little-endian, so 4-byte ints and floats sit in the low bytes).
// No allocation per launch, one cgo call.
CUresult mdm_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                    unsigned bz, unsigned smem, CUstream stream, const uint64_t *args, int nargs);

// mdm_func_info reads the attributes the launcher checks.
CUresult mdm_func_info(CUfunction f, int *max_threads, int *static_smem, int *max_dyn_smem,
                       int *num_regs, int *local_bytes);

// mdm_func_set_max_dyn_smem opts a kernel in to n bytes of dynamic shared memory.
CUresult mdm_func_set_max_dyn_smem(CUfunction f, int n);

// mdm_device_smem_optin returns CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN.
CUresult mdm_device_smem_optin(CUdevice dev, int *n);

// mdm_host_alloc returns n bytes of page-locked, portable host memory (cuMemHostAlloc).
CUresult mdm_host_alloc(void **p, size_t n);

// mdm_error_text returns the driver's name and description of an error code.
void mdm_error_text(CUresult r, const char **name, const char **desc);

#endif
