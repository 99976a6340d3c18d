package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// BF16FromF32 rounds a float32 to bfloat16 bits with round-to-nearest-even. NaN stays NaN
// (quiet, sign kept); overflow rounds to ±Inf as IEEE rounding does.
func BF16FromF32(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 { // NaN
		return uint16(u>>16) | 0x0040
	}
	return uint16((u + 0x7FFF + (u>>16)&1) >> 16)
}

// BF16FromF64 rounds a float64 to bfloat16 bits with a single round-to-nearest-even
// (through float32 with round-to-odd, which avoids double rounding).
func BF16FromF64(x float64) uint16 {
	f := float32(x)
	if x == x && float64(f) != x {
		// Round to odd: truncate toward zero, then set the sticky last bit.
		u := math.Float32bits(f)
		if math.Abs(float64(f)) > math.Abs(x) {
			u--
		}
		f = math.Float32frombits(u | 1)
	}
	return BF16FromF32(f)
}

// BF16ToF32 widens bfloat16 bits to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Convert copies In to Out converting between F32, F64 and BF16 (to BF16 with
// round-to-nearest-even).
func (b *Backend) Convert(p *ops.ConvertParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	const op = ops.OpConvert
	j := &b.conv
	var errIn, errOut error
	switch p.In.DType() {
	case ops.F32:
		j.in32, errIn = fl[float32](op, "In", p.In)
	case ops.F64:
		j.in64, errIn = fl[float64](op, "In", p.In)
	case ops.BF16:
		j.inBF, errIn = bf16s(op, "In", p.In)
	}
	switch p.Out.DType() {
	case ops.F32:
		j.out32, errOut = fl[float32](op, "Out", p.Out)
	case ops.F64:
		j.out64, errOut = fl[float64](op, "Out", p.Out)
	case ops.BF16:
		j.outBF, errOut = bf16s(op, "Out", p.Out)
	}
	if err := errs(errIn, errOut); err == nil {
		b.pool.run(j, p.In.Len(), b.grainFor(2))
	}
	*j = convJob{}
	return errs(errIn, errOut)
}

// convJob converts elements [lo, hi) from the one non-nil input to the one non-nil output.
type convJob struct {
	in32, out32 []float32
	in64, out64 []float64
	inBF, outBF []uint16
}

func (j *convJob) run(_, lo, hi int) {
	switch {
	case j.in32 != nil && j.out32 != nil:
		copy(j.out32[lo:hi], j.in32[lo:hi])
	case j.in32 != nil && j.out64 != nil:
		for i, v := range j.in32[lo:hi] {
			j.out64[lo+i] = float64(v)
		}
	case j.in32 != nil:
		for i, v := range j.in32[lo:hi] {
			j.outBF[lo+i] = BF16FromF32(v)
		}
	case j.in64 != nil && j.out32 != nil:
		for i, v := range j.in64[lo:hi] {
			j.out32[lo+i] = float32(v)
		}
	case j.in64 != nil && j.out64 != nil:
		copy(j.out64[lo:hi], j.in64[lo:hi])
	case j.in64 != nil:
		for i, v := range j.in64[lo:hi] {
			j.outBF[lo+i] = BF16FromF64(v)
		}
	case j.out32 != nil:
		for i, v := range j.inBF[lo:hi] {
			j.out32[lo+i] = BF16ToF32(v)
		}
	case j.out64 != nil:
		for i, v := range j.inBF[lo:hi] {
			j.out64[lo+i] = float64(BF16ToF32(v))
		}
	default:
		copy(j.outBF[lo:hi], j.inBF[lo:hi])
	}
}
