//go:build !amd64 || purego

package vmath

// Have is false: no vector kernels on this architecture (or in purego builds). The
// functions below do nothing; callers check Have.
const Have = false

func ExpF64x4(dst []float64, src []float32, scale, shift float64) int                      { return 0 }
func ExpF32(dst, src []float32, scale, shift float64) int                                  { return 0 }
func SigmoidGLU(o, a, b []float32) int                                                     { return 0 }
func SigmoidGLUBwd(da, db, a, b, g []float32) int                                          { return 0 }
func ScaleF64ToF32(dst []float32, src []float64, s float64)                                {}
func DSoftmaxF32(dp, p []float32, delta float64)                                           {}
func NormModF32(out, x, sc, sh []float32, mean, rstd float64)                              {}
func NormBwdPrep(g, nh []float64, dy, x, sc []float32, mean, rstd float64)                 {}
func NormBwdDX(dx []float32, g, nh []float64, rstd, mg, mgn float64)                       {}
func Sgemm6x16(k int, a []float32, as int, b, c []float32, ldc int, alpha, beta float32)   {}
func Sgemm6x16R(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {}
