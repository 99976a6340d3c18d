package ops

import "fmt"

// DType is the element type of a Tensor.
type DType uint8

// Element types. F32 is the reference type; BF16 is the storage type of GPU activations and
// weights in mixed precision (stored as the upper 16 bits of a float32, round-to-nearest-even);
// F64 holds small reductions (losses, norms) and exact probabilities; I32 holds token ids,
// positions and lengths.
const (
	Invalid DType = iota
	F32
	BF16
	F64
	I32
)

// Size returns the size of one element in bytes (0 for Invalid).
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16:
		return 2
	case F64:
		return 8
	}
	return 0
}

// String returns the short name used in kernel names and messages: f32, bf16, f64, i32.
func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F64:
		return "f64"
	case I32:
		return "i32"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Float returns whether d is a floating-point type.
func (d DType) Float() bool { return d == F32 || d == BF16 || d == F64 }
