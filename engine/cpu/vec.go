package cpu

import (
	"unsafe"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu/internal/vmath"
)

// Loops of the F32 hot paths, with vector kernels (internal/vmath, AVX2) where the CPU
// has them. The kernels compute the first len rounded down to a multiple of 4 elements with
// the same float64 operations in the same order as the scalar loops here, which finish
// the tail (and do everything for float64 data or without AVX2): the results are the same
// bits either way. Only the exponential differs (fused multiply-adds, see fastexp.go).

// vecF32 reports whether T is float32 and the vector kernels can run.
func vecF32[T float]() bool { return vmath.Have && dtIndex[T]() == 0 }

// asF32 reinterprets x as []float32; only call it when T is float32.
func asF32[T float](x []T) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// scaleToT sets dst[i] = T(src[i]·s). len(src) ≥ len(dst).
func scaleToT[T float](dst []T, src []float64, s float64) {
	i := 0
	if vecF32[T]() {
		vmath.ScaleF64ToF32(asF32(dst), src[:len(dst)], s)
		i = len(dst) &^ 3
	}
	for ; i < len(dst); i++ {
		dst[i] = T(src[i] * s)
	}
}

// dSoftmax sets dp[i] = T(p[i]·(dp[i] − delta)) in float64. len(p) ≥ len(dp).
func dSoftmax[T float](dp, p []T, delta float64) {
	i := 0
	if vecF32[T]() {
		vmath.DSoftmaxF32(asF32(dp), asF32(p[:len(dp)]), delta)
		i = len(dp) &^ 3
	}
	for ; i < len(dp); i++ {
		dp[i] = T(float64(p[i]) * (float64(dp[i]) - delta))
	}
}

// normMod sets out[i] = T(((x[i] − mean)·rstd)·(1 + sc[i]) + sh[i]) in float64.
func normMod[T float](out, x, sc, sh []T, mean, rstd float64) {
	out, sc, sh = out[:len(x)], sc[:len(x)], sh[:len(x)]
	i := 0
	if vecF32[T]() {
		vmath.NormModF32(asF32(out), asF32(x), asF32(sc), asF32(sh), mean, rstd)
		i = len(x) &^ 3
	}
	for ; i < len(x); i++ {
		out[i] = T(((float64(x[i])-mean)*rstd)*(1+float64(sc[i])) + float64(sh[i]))
	}
}

// normBwdPrep sets g[i] = dy[i]·(1 + sc[i]) and nh[i] = (x[i] − mean)·rstd in float64.
func normBwdPrep[T float](g, nh []float64, dy, x, sc []T, mean, rstd float64) {
	g, nh, x, sc = g[:len(dy)], nh[:len(dy)], x[:len(dy)], sc[:len(dy)]
	i := 0
	if vecF32[T]() {
		vmath.NormBwdPrep(g, nh, asF32(dy), asF32(x), asF32(sc), mean, rstd)
		i = len(dy) &^ 3
	}
	for ; i < len(dy); i++ {
		g[i] = float64(dy[i]) * (1 + float64(sc[i]))
		nh[i] = (float64(x[i]) - mean) * rstd
	}
}

// normBwdDX sets dx[i] = T(rstd·((g[i] − mg) − nh[i]·mgn)).
func normBwdDX[T float](dx []T, g, nh []float64, rstd, mg, mgn float64) {
	g, nh = g[:len(dx)], nh[:len(dx)]
	i := 0
	if vecF32[T]() {
		vmath.NormBwdDX(asF32(dx), g, nh, rstd, mg, mgn)
		i = len(dx) &^ 3
	}
	for ; i < len(dx); i++ {
		dx[i] = T(rstd * (g[i] - mg - nh[i]*mgn))
	}
}
