//go:build amd64 && !purego

package vmath

import "golang.org/x/sys/cpu"

// Have reports whether the kernels can run (AVX2 and FMA).
var Have = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// ExpF64x4 sets dst[i] = e^(scale·src[i] − shift) for i < len(src) rounded down to a
// multiple of 4, four float64 lanes at a time, by the method of engine/cpu's fexp:
// k = round(y·log2 e), r = y − k·ln 2 (ln 2 in two parts), a degree-7 Taylor polynomial
// for e^r (with fused multiply-adds) and 2^k from the exponent bits; relative error below
// 1e-8. It stops before the first group of four with a lane outside (−708, 709) or NaN
// and returns the number of elements done (the caller finishes that group in scalar
// code). len(dst) must be at least that number.
//
//go:noescape
func ExpF64x4(dst []float64, src []float32, scale, shift float64) int

// ExpF32 is ExpF64x4 rounding the results to float32 into dst (dst may be src).
//
//go:noescape
func ExpF32(dst, src []float32, scale, shift float64) int

// SigmoidGLU sets o[i] = float32(b[i] / (1 + e^−a[i])) (in float64, e^−a as ExpF64x4)
// for i < len(a) rounded down to a multiple of 4, stopping like ExpF64x4 before a group
// with a lane of −a outside (−708, 709); it returns the number of elements done.
//
//go:noescape
func SigmoidGLU(o, a, b []float32) int

// SigmoidGLUBwd sets, with s = 1/(1 + e^−a[i]) in float64, da[i] =
// float32((g[i]·b[i])·(s·(1 − s))) and db[i] = float32(g[i]·s), like SigmoidGLU.
//
//go:noescape
func SigmoidGLUBwd(da, db, a, b, g []float32) int

// ScaleF64ToF32 sets dst[i] = float32(src[i]·s) for i < len(src) rounded down to a
// multiple of 4.
//
//go:noescape
func ScaleF64ToF32(dst []float32, src []float64, s float64)

// DSoftmaxF32 sets dp[i] = float32(p[i]·(dp[i] − delta)) (float64 arithmetic) for i <
// len(dp) rounded down to a multiple of 4.
//
//go:noescape
func DSoftmaxF32(dp, p []float32, delta float64)

// NormModF32 sets out[i] = float32(((x[i] − mean)·rstd)·(1 + sc[i]) + sh[i]) (float64
// arithmetic) for i < len(x) rounded down to a multiple of 4.
//
//go:noescape
func NormModF32(out, x, sc, sh []float32, mean, rstd float64)

// NormBwdPrep sets g[i] = dy[i]·(1 + sc[i]) and nh[i] = (x[i] − mean)·rstd (float64) for
// i < len(dy) rounded down to a multiple of 4.
//
//go:noescape
func NormBwdPrep(g, nh []float64, dy, x, sc []float32, mean, rstd float64)

// NormBwdDX sets dx[i] = float32(rstd·((g[i] − mg) − nh[i]·mgn)) for i < len(dx) rounded
// down to a multiple of 4.
//
//go:noescape
func NormBwdDX(dx []float32, g, nh []float64, rstd, mg, mgn float64)

// Sgemm6x16 is the GEMM micro-kernel with A in column panels: A(r, p) = a[p·as + r]
// for r < 6, p < k (packed panels: as = 6; a transposed A read in place: as = its leading
// dimension), B packed (k groups of 16 column values, len ≥ 16k): C[6×16] (row stride
// ldc, len ≥ 5·ldc + 16) = alpha·(A·B) + beta·C, A·B accumulated in float32 with fused
// multiply-adds over p = 0..k−1 in order, then (alpha·acc) + (beta·C). C is not read when
// beta is 0.
//
//go:noescape
func Sgemm6x16(k int, a []float32, as int, b, c []float32, ldc int, alpha, beta float32)

// Sgemm6x16R is Sgemm6x16 with A in rows: A(r, p) = a[r·lda + p] (a row-major A read in
// place; len(a) ≥ 5·lda + k).
//
//go:noescape
func Sgemm6x16R(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32)
