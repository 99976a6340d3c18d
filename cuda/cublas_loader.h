// cuBLAS loaded at run time with dlopen (go-cuda-notes.md §2): no NEEDED entry ties the
// binary to one CUDA major version. Only the few entry points mdm-gpu uses are resolved.
// The types and constants below are the stable cuBLAS ABI (identical in CUDA 11, 12 and
// 13), declared here so that this file builds without the CUDA headers;
// cublas_test.go checks them against /usr/include/cublas_api.h when it is installed.
#ifndef MDM_CUBLAS_LOADER_H
#define MDM_CUBLAS_LOADER_H

#include <stddef.h>

typedef int (*mdm_cublasCreate_v2_fn)(void **handle);
typedef int (*mdm_cublasDestroy_v2_fn)(void *handle);
typedef int (*mdm_cublasSetStream_v2_fn)(void *handle, void *stream);
typedef int (*mdm_cublasSetMathMode_fn)(void *handle, int mode);
typedef int (*mdm_cublasGetProperty_fn)(int type, int *value);
typedef int (*mdm_cublasGemmEx_fn)(void *handle, int transa, int transb, int m, int n, int k,
                                   const void *alpha, const void *A, int Atype, int lda,
                                   const void *B, int Btype, int ldb, const void *beta,
                                   void *C, int Ctype, int ldc, int computeType, int algo);

typedef struct mdm_cublas {
	void *lib;
	mdm_cublasCreate_v2_fn create;
	mdm_cublasDestroy_v2_fn destroy;
	mdm_cublasSetStream_v2_fn set_stream;
	mdm_cublasSetMathMode_fn set_math_mode;
	mdm_cublasGetProperty_fn get_property;
	mdm_cublasGemmEx_fn gemm_ex;
} mdm_cublas;

// mdm_cublas_open dlopens soname and resolves every entry point. On failure it returns
// -1 (library not found) or -2 (a symbol is missing), writes the reason into err and
// leaves nothing open.
int mdm_cublas_open(const char *soname, mdm_cublas *out, char *err, size_t errlen);

// Calls through the resolved pointers (cuBLAS status codes; 0 is success).
int mdm_cublas_create(const mdm_cublas *lib, void **handle);
int mdm_cublas_destroy(const mdm_cublas *lib, void *handle);
int mdm_cublas_set_stream(const mdm_cublas *lib, void *handle, void *stream);
int mdm_cublas_set_math_mode(const mdm_cublas *lib, void *handle, int mode);
int mdm_cublas_version(const mdm_cublas *lib, int *major, int *minor, int *patch);

// mdm_cublas_gemm runs cublasGemmEx with host-side fp32 alpha and beta.
int mdm_cublas_gemm(const mdm_cublas *lib, void *handle, int transa, int transb, int m, int n,
                    int k, float alpha, unsigned long long A, int Atype, int lda,
                    unsigned long long B, int Btype, int ldb, float beta, unsigned long long C,
                    int Ctype, int ldc, int computeType);

#endif
