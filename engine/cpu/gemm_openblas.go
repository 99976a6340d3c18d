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

// gemmSplitWide is false: OpenBLAS packs both operands, so tiles are cut along M (gemm.go).
const gemmSplitWide = false

// OpenBLAS runs single-threaded: the backend's pool splits every product into tiles and
// calls OpenBLAS once per tile from its workers (gemm.go), so that WithWorkers is the
// thread count, attention can call it from several workers at once, and results do not
// depend on the number of threads.
func init() { C.openblas_set_num_threads(1) }

// tileGemm is the serial kernel of one gemm tile in builds with the openblas and cgo tags:
// OpenBLAS cblas_sgemm / cblas_dgemm (row-major) on the calling thread. With beta = 0,
// OpenBLAS overwrites C with zeros before accumulating (its gemm_beta), so garbage (NaN)
// in C cannot leak (TestMatMulForward, TestMatMulTiled).
func tileGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
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
