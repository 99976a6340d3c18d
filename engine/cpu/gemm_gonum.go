//go:build !openblas || !cgo

package cpu

// blasName names the BLAS behind MatMul.
const blasName = "gonum"

// bigGemm is the GEMM behind the MatMul op: gonum's pure-Go Sgemm/Dgemm (the default
// build; see gemm_openblas.go for the optional OpenBLAS path).
func bigGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	gonumGemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// setBLASThreads is a no-op: gonum follows GOMAXPROCS.
func setBLASThreads(int) {}
