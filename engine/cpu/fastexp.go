package cpu

import (
	"math"
	"unsafe"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu/internal/vmath"
)

// fexp returns e^x for float64 x with a relative error below 1e-8 (see TestFexp), for the
// F32 paths of attention, cross-entropy and the gate activations, whose results are
// rounded to float32 (relative precision 6e-8): it is several times faster than math.Exp
// (it inlines), which F64 data keep using (the float64 finite-difference checks need full
// precision). x < −708 gives 0, x > 709 gives +Inf and NaN gives NaN.
//
// Method: e^x = 2^k·e^r with k = round(x·log2 e) (by adding and subtracting 1.5·2^52) and
// r = x − k·ln 2 (ln 2 in two parts so that k·ln2Hi is exact), |r| ≤ ln2/2; e^r by its
// degree-7 Taylor polynomial (remainder below (ln2/2)^8/8! ≈ 5.3e-9); 2^k from the
// exponent bits.
func fexp(x float64) float64 {
	if !(x > -708 && x < 709) {
		return fexpSpecial(x)
	}
	const (
		log2e = 1.4426950408889634
		round = 6755399441055744.0         // 1.5·2^52
		ln2Hi = 6.93147180369123816490e-01 // the upper bits of ln 2: k·ln2Hi is exact for |k| < 2^11
		ln2Lo = 1.90821492927058770002e-10
	)
	k := (x*log2e + round) - round
	r := (x - k*ln2Hi) - k*ln2Lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

// fexpSpecial is fexp outside (−708, 709): 0 below, +Inf above, NaN for NaN.
func fexpSpecial(x float64) float64 {
	switch {
	case x != x:
		return x
	case x <= -708:
		return 0
	}
	return math.Inf(1)
}

// Constants of fexp, shared by the loops below that inline its body.
const (
	fexpLog2e = 1.4426950408889634
	fexpRound = 6755399441055744.0         // 1.5·2^52: adding and subtracting it rounds to an integer
	fexpLn2Hi = 6.93147180369123816490e-01 // the upper bits of ln 2: k·ln2Hi is exact for |k| < 2^11
	fexpLn2Lo = 1.90821492927058770002e-10
)

// expShiftSum sets e[i] = exp(x[i] − m) as expScaleInto does and returns Σ e[i], summed
// in float64 by sumF64x4. len(e) ≥ len(x).
func expShiftSum[T float](e []float64, x []T, m float64) float64 {
	expScaleInto(e, x, 1, m)
	return sumF64x4(e[:len(x)])
}

// expScaleInto sets dst[i] = e^(s·x[i] − m): for float32 data by fexp's method, four
// lanes at a time with AVX2 (vmath.ExpF64x4) where the CPU has it, for float64 data by math.Exp.
// len(dst) ≥ len(x).
func expScaleInto[T float](dst []float64, x []T, s, m float64) {
	dst = dst[:len(x)]
	if dtIndex[T]() == 1 {
		for i, v := range x {
			dst[i] = math.Exp(s*float64(v) - m)
		}
		return
	}
	x32 := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
	i := 0
	if vmath.Have {
		for i+4 <= len(x32) {
			i += vmath.ExpF64x4(dst[i:], x32[i:], s, m)
			if i+4 <= len(x32) { // a group with a lane out of range: finish it in scalar code
				expScalar(dst[i:i+4], x32[i:i+4], s, m)
				i += 4
			}
		}
	}
	expScalar(dst[i:], x32[i:], s, m)
}

// expScalar sets dst[i] = fexp(s·x[i] − m), with fexp's body inlined.
func expScalar(dst []float64, x []float32, s, m float64) {
	dst = dst[:len(x)]
	for i, v := range x {
		y := s*float64(v) - m
		if y > -708 && y < 709 {
			k := (y*fexpLog2e + fexpRound) - fexpRound
			r := (y - k*fexpLn2Hi) - k*fexpLn2Lo
			p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
			dst[i] = p * math.Float64frombits(uint64(int64(k)+1023)<<52)
		} else {
			dst[i] = fexpSpecial(y)
		}
	}
}

// expShiftTo sets x[i] = exp(x[i] − m) in place, computed as expScaleInto and rounded
// once to T (through the float64 scratch e, len(e) ≥ len(x), where there is no vector
// kernel writing float32 directly).
func expShiftTo[T float](x []T, e []float64, m float64) {
	if vecF32[T]() {
		x32 := asF32(x)
		i := 0
		for i+4 <= len(x32) {
			i += vmath.ExpF32(x32[i:], x32[i:], 1, m)
			if i+4 <= len(x32) { // a group with a lane out of range
				expScalar(e[:4], x32[i:i+4], 1, m)
				for q := range 4 {
					x32[i+q] = float32(e[q])
				}
				i += 4
			}
		}
		expScalar(e[:len(x32)-i], x32[i:], 1, m)
		for q := range len(x32) - i {
			x32[i+q] = float32(e[q])
		}
		return
	}
	expScaleInto(e, x, 1, m)
	for i := range x {
		x[i] = T(e[i])
	}
}
