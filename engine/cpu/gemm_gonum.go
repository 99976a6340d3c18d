//go:build !openblas || !cgo

package cpu

// blasName names the BLAS behind MatMul.
const blasName = "gonum"

// gemmSplitWide: sgemm reads A in place and packs only op(B), so tiles of a wide output
// (the weight gradients, N ≥ M) are cut along N, where they pack disjoint parts of op(B)
// instead of all of it each (gemm.go).
const gemmSplitWide = true

// tileGemm is the serial kernel of one gemm tile in the default (pure-Go) build: for
// float32 on CPUs with AVX2 and FMA the blocked GEMM around the assembly micro-kernel
// (sgemm.go), otherwise (float64, other CPUs, purego builds) gonum's Sgemm/Dgemm on the
// calling goroutine. See gemm_openblas.go for the optional OpenBLAS kernel.
func tileGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if vecF32[T]() {
		sgemm(tA, tB, m, n, k, float32(alpha), asF32(a), lda, asF32(b), ldb, float32(beta), asF32(c), ldc)
		return
	}
	serialGemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
