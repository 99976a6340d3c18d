package opstest

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// BF16Bits rounds f to bfloat16 with round-to-nearest-even and returns the 16 bits (the
// upper half of a float32). NaN stays NaN (quieted); values beyond the bf16 range round
// to ±Inf as IEEE rounding demands.
func BF16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7FFF + (b>>16)&1
	return uint16(b >> 16)
}

// BF16BitsF64 rounds x to bfloat16 with a single round-to-nearest-even (no double
// rounding through float32): it rounds to float32 with round-to-odd first, which keeps
// enough information for the second rounding to be exact.
func BF16BitsF64(x float64) uint16 {
	f := float32(x)
	if x == x && float64(f) != x {
		u := math.Float32bits(f)
		if math.Abs(float64(f)) > math.Abs(x) {
			u-- // toward zero (sign-magnitude bits)
		}
		f = math.Float32frombits(u | 1)
	}
	return BF16Bits(f)
}

// BF16Float returns the float32 value of bf16 bits h.
func BF16Float(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundTo returns v rounded to the precision of dt (F32 or BF16 round-to-nearest-even;
// F64 unchanged; I32 truncated toward zero).
func RoundTo(dt ops.DType, v float64) float64 {
	switch dt {
	case ops.F32:
		return float64(float32(v))
	case ops.BF16:
		return float64(BF16Float(BF16BitsF64(v)))
	case ops.I32:
		return float64(int32(v))
	}
	return v
}

// host is a host copy of one tensor's elements in the tensor's own type.
type host struct {
	dt  ops.DType
	f32 []float32
	u16 []uint16
	f64 []float64
	i32 []int32
}

// newHost allocates a zeroed host buffer of n elements of type dt.
func newHost(dt ops.DType, n int) *host {
	h := &host{dt: dt}
	switch dt {
	case ops.F32:
		h.f32 = make([]float32, n)
	case ops.BF16:
		h.u16 = make([]uint16, n)
	case ops.F64:
		h.f64 = make([]float64, n)
	case ops.I32:
		h.i32 = make([]int32, n)
	}
	return h
}

// hostFrom converts float64 values (or int32 values for I32) into a buffer of type dt,
// rounding as RoundTo does.
func hostFrom(dt ops.DType, f []float64, i []int32) *host {
	if dt == ops.I32 {
		if i != nil {
			return &host{dt: dt, i32: append([]int32(nil), i...)}
		}
		h := newHost(dt, len(f))
		for k, v := range f {
			h.i32[k] = int32(v)
		}
		return h
	}
	if f == nil && i != nil {
		f = make([]float64, len(i))
		for k, v := range i {
			f[k] = float64(v)
		}
	}
	h := newHost(dt, len(f))
	for k, v := range f {
		switch dt {
		case ops.F32:
			h.f32[k] = float32(v)
		case ops.BF16:
			h.u16[k] = BF16BitsF64(v)
		case ops.F64:
			h.f64[k] = v
		}
	}
	return h
}

// slice returns the typed slice (the form Device.Upload and Device.Download take).
func (h *host) slice() any {
	switch h.dt {
	case ops.F32:
		return h.f32
	case ops.BF16:
		return h.u16
	case ops.F64:
		return h.f64
	case ops.I32:
		return h.i32
	}
	return nil
}

// len returns the element count.
func (h *host) len() int {
	switch h.dt {
	case ops.F32:
		return len(h.f32)
	case ops.BF16:
		return len(h.u16)
	case ops.F64:
		return len(h.f64)
	case ops.I32:
		return len(h.i32)
	}
	return 0
}

// at returns element k as a float64 (exact for every type).
func (h *host) at(k int) float64 {
	switch h.dt {
	case ops.F32:
		return float64(h.f32[k])
	case ops.BF16:
		return float64(BF16Float(h.u16[k]))
	case ops.F64:
		return h.f64[k]
	case ops.I32:
		return float64(h.i32[k])
	}
	return math.NaN()
}

// bits returns element k's raw bit pattern, for bitwise comparisons.
func (h *host) bits(k int) uint64 {
	switch h.dt {
	case ops.F32:
		return uint64(math.Float32bits(h.f32[k]))
	case ops.BF16:
		return uint64(h.u16[k])
	case ops.F64:
		return math.Float64bits(h.f64[k])
	case ops.I32:
		return uint64(uint32(h.i32[k]))
	}
	return 0
}

// floats returns all elements as float64 values.
func (h *host) floats() []float64 {
	out := make([]float64, h.len())
	for k := range out {
		out[k] = h.at(k)
	}
	return out
}

// roundedTo returns a copy of h converted to dt (used to round an honest F32 reference's
// outputs to bf16).
func (h *host) roundedTo(dt ops.DType) *host {
	if dt == h.dt {
		return h
	}
	return hostFrom(dt, h.floats(), nil)
}

// firstBitDiff returns the first index where a and b differ bitwise, or -1.
func firstBitDiff(a, b *host) int {
	if a.dt != b.dt || a.len() != b.len() {
		return 0
	}
	for k, n := 0, a.len(); k < n; k++ {
		if a.bits(k) != b.bits(k) {
			return k
		}
	}
	return -1
}

// fmtBits formats element k's value and bits, e.g. "1.0078125 (bits 0x3f81)".
func (h *host) fmtBits(k int) string {
	switch h.dt {
	case ops.I32:
		return fmt.Sprint(h.i32[k])
	case ops.BF16:
		return fmt.Sprintf("%v (bits %#04x)", h.at(k), h.u16[k])
	case ops.F32:
		return fmt.Sprintf("%v (bits %#08x)", h.f32[k], math.Float32bits(h.f32[k]))
	}
	return fmt.Sprintf("%v (bits %#016x)", h.at(k), h.bits(k))
}

// Index formats flat index k of a row-major tensor of the given shape as a
// multi-index, e.g. "[3, 17]".
func Index(shape []int, k int) string {
	if len(shape) == 0 {
		return fmt.Sprintf("[%d]", k)
	}
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = k % shape[d]
			k /= shape[d]
		}
	}
	s := "["
	for d, v := range idx {
		if d > 0 {
			s += ", "
		}
		s += fmt.Sprint(v)
	}
	return s + "]"
}
