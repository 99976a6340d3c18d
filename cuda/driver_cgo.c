//go:build cuda

// See driver_cgo.h.
#include "driver_cgo.h"

CUresult mdm_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                    unsigned bz, unsigned smem, CUstream stream, const uint64_t *args, int nargs) {
	uint64_t vals[MDM_MAX_KERNEL_ARGS];
	void *params[MDM_MAX_KERNEL_ARGS];
	if (nargs < 0 || nargs > MDM_MAX_KERNEL_ARGS) return CUDA_ERROR_INVALID_VALUE;
	for (int i = 0; i < nargs; i++) {
		vals[i] = args[i];
		params[i] = &vals[i];
	}
	return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, smem, stream, nargs ? params : NULL, NULL);
}

CUresult mdm_func_info(CUfunction f, int *max_threads, int *static_smem, int *max_dyn_smem,
                       int *num_regs, int *local_bytes) {
	CUresult r = cuFuncGetAttribute(max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f);
	if (r == CUDA_SUCCESS) r = cuFuncGetAttribute(static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f);
	if (r == CUDA_SUCCESS)
		r = cuFuncGetAttribute(max_dyn_smem, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, f);
	if (r == CUDA_SUCCESS) r = cuFuncGetAttribute(num_regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f);
	if (r == CUDA_SUCCESS) r = cuFuncGetAttribute(local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, f);
	return r;
}

CUresult mdm_func_set_max_dyn_smem(CUfunction f, int n) {
	return cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, n);
}

CUresult mdm_device_smem_optin(CUdevice dev, int *n) {
	return cuDeviceGetAttribute(n, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
}

CUresult mdm_host_alloc(void **p, size_t n) { return cuMemHostAlloc(p, n, CU_MEMHOSTALLOC_PORTABLE); }

void mdm_error_text(CUresult r, const char **name, const char **desc) {
	*name = NULL;
	*desc = NULL;
	if (cuGetErrorName(r, name) != CUDA_SUCCESS) *name = NULL;
	if (cuGetErrorString(r, desc) != CUDA_SUCCESS) *desc = NULL;
}
