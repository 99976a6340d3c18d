//go:build openblas && cgo

package cpu

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import "unsafe"

// blasName names the BLAS behind MatMul.
const blasName = "openblas"

// bigGemm is the GEMM behind the MatMul op in builds with the openblas and cgo tags:
// OpenBLAS cblas_sgemm / cblas_dgemm (row-major). OpenBLAS picks its thread count from
// OPENBLAS_NUM_THREADS (default: all cores); see setBLASThreads. With beta = 0, C is
// zeroed first so that garbage in it cannot leak whatever the library does.
func bigGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if beta == 0 {
		for i := 0; i < m; i++ {
			clear(c[i*ldc : i*ldc+n])
		}
	}
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if tA {
		ta = C.CblasTrans
	}
	if tB {
		tb = C.CblasTrans
	}
	switch a := any(a).(type) {
	case []float32:
		bb, cc := any(b).([]float32), any(c).([]float32)
		C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
			C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda),
			(*C.float)(unsafe.Pointer(&bb[0])), C.blasint(ldb),
			C.float(beta), (*C.float)(unsafe.Pointer(&cc[0])), C.blasint(ldc))
	case []float64:
		bb, cc := any(b).([]float64), any(c).([]float64)
		C.cblas_dgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
			C.double(alpha), (*C.double)(unsafe.Pointer(&a[0])), C.blasint(lda),
			(*C.double)(unsafe.Pointer(&bb[0])), C.blasint(ldb),
			C.double(beta), (*C.double)(unsafe.Pointer(&cc[0])), C.blasint(ldc))
	}
}

// setBLASThreads sets OpenBLAS's thread count (benchmarks).
func setBLASThreads(n int) { C.openblas_set_num_threads(C.int(n)) }
