package ops

import (
	"fmt"
	"strings"
)

// Tensor is a handle to a dense, row-major, contiguous array owned by a Device. The
// backend that allocated it decides what Storage holds (the CPU backend: a []float32,
// []uint16 (bf16 bits), []float64 or []int32 of exactly Len() elements; a GPU backend: a
// device allocation record). Code outside the owning backend treats Storage as opaque.
//
// A Tensor's shape is fixed; Reshape returns a new handle sharing the same storage.
type Tensor struct {
	dtype   DType
	shape   []int
	n       int
	dev     Device
	Name    string // optional; used in error messages (e.g. "blocks.0.attn.q.weight")
	Storage any    // backend-owned; see the type comment
}

// NewTensor is for Device implementations: it wraps storage they allocated. It returns an
// error if a dimension is negative or the shape is empty.
func NewTensor(dev Device, dt DType, shape []int, storage any) (*Tensor, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if dt.Size() == 0 {
		return nil, fmt.Errorf("%w: invalid dtype %v", ErrDType, dt)
	}
	return &Tensor{dtype: dt, shape: append([]int(nil), shape...), n: n, dev: dev, Storage: storage}, nil
}

func numel(shape []int) (int, error) {
	if len(shape) == 0 {
		return 0, fmt.Errorf("%w: a tensor needs at least one dimension", ErrShape)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension in shape %v", ErrShape, shape)
		}
		n *= d
	}
	return n, nil
}

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Shape returns a copy of the shape.
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// Rank returns the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Dim returns dimension i; negative i counts from the end (-1 is the last).
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Len returns the number of elements.
func (t *Tensor) Len() int { return t.n }

// Bytes returns the storage size in bytes.
func (t *Tensor) Bytes() int { return t.n * t.dtype.Size() }

// Device returns the owning device.
func (t *Tensor) Device() Device { return t.dev }

// Reshape returns a handle with a new shape over the same storage. The element count must
// not change. The new handle keeps the name.
func (t *Tensor) Reshape(shape ...int) (*Tensor, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if n != t.n {
		return nil, fmt.Errorf("%w: cannot reshape %s %v (%d elements) to %v (%d elements)",
			ErrShape, t.label(), t.shape, t.n, shape, n)
	}
	r := *t
	r.shape = append([]int(nil), shape...)
	return &r, nil
}

// String describes the tensor: name, dtype and shape, e.g. "x0 i32[32 128]".
func (t *Tensor) String() string {
	if t == nil {
		return "<nil tensor>"
	}
	var b strings.Builder
	if t.Name != "" {
		b.WriteString(t.Name)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%v%v", t.dtype, t.shape)
	return b.String()
}

func (t *Tensor) label() string {
	if t.Name != "" {
		return t.Name
	}
	return "tensor"
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b *Tensor) bool {
	if len(a.shape) != len(b.shape) {
		return false
	}
	for i := range a.shape {
		if a.shape[i] != b.shape[i] {
			return false
		}
	}
	return true
}
