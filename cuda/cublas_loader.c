// Run-time loader of cuBLAS: see cublas_loader.h.
#include "cublas_loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *a, const char *b) {
	if (errlen == 0) return;
	snprintf(err, errlen, "%s%s", a, b ? b : "");
}

int mdm_cublas_open(const char *soname, mdm_cublas *out, char *err, size_t errlen) {
	memset(out, 0, sizeof *out);
	dlerror();
	void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *e = dlerror();
		set_err(err, errlen, e ? e : "dlopen failed", NULL);
		return -1;
	}
#define MDM_SYM(field, name)                                   \
	do {                                                       \
		*(void **)(&out->field) = dlsym(lib, name);            \
		if (!out->field) {                                     \
			set_err(err, errlen, "missing symbol ", name);     \
			dlclose(lib);                                      \
			memset(out, 0, sizeof *out);                       \
			return -2;                                         \
		}                                                      \
	} while (0)
	MDM_SYM(create, "cublasCreate_v2");
	MDM_SYM(destroy, "cublasDestroy_v2");
	MDM_SYM(set_stream, "cublasSetStream_v2");
	MDM_SYM(set_math_mode, "cublasSetMathMode");
	MDM_SYM(get_property, "cublasGetProperty");
	MDM_SYM(gemm_ex, "cublasGemmEx");
#undef MDM_SYM
	out->lib = lib;
	return 0;
}

int mdm_cublas_create(const mdm_cublas *lib, void **handle) { return lib->create(handle); }

int mdm_cublas_destroy(const mdm_cublas *lib, void *handle) { return lib->destroy(handle); }

int mdm_cublas_set_stream(const mdm_cublas *lib, void *handle, void *stream) {
	return lib->set_stream(handle, stream);
}

int mdm_cublas_set_math_mode(const mdm_cublas *lib, void *handle, int mode) {
	return lib->set_math_mode(handle, mode);
}

int mdm_cublas_version(const mdm_cublas *lib, int *major, int *minor, int *patch) {
	int s = lib->get_property(0, major); // MAJOR_VERSION
	if (s == 0) s = lib->get_property(1, minor);
	if (s == 0) s = lib->get_property(2, patch);
	return s;
}

int mdm_cublas_gemm(const mdm_cublas *lib, void *handle, int transa, int transb, int m, int n,
                    int k, float alpha, unsigned long long A, int Atype, int lda,
                    unsigned long long B, int Btype, int ldb, float beta, unsigned long long C,
                    int Ctype, int ldc, int computeType) {
	return lib->gemm_ex(handle, transa, transb, m, n, k, &alpha, (const void *)A, Atype, lda,
	                    (const void *)B, Btype, ldb, &beta, (void *)C, Ctype, ldc, computeType,
	                    -1 /* CUBLAS_GEMM_DEFAULT */);
}
