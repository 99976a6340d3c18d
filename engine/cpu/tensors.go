package cpu

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// float is the element type of the computing ops.
type float interface{ float32 | float64 }

// dtypeOf returns the contract dtype of T.
func dtypeOf[T float]() ops.DType {
	if dtIndex[T]() == 0 {
		return ops.F32
	}
	return ops.F64
}

// storageErr explains why t's storage cannot be used as a []want.
func storageErr(op ops.Op, name string, t *ops.Tensor, want ops.DType) error {
	if t.Storage == nil {
		return ops.Errorf(op, name, ops.ErrValue, "%v was freed or has no storage", t)
	}
	if err := storageOK(t); err != nil {
		return ops.Errorf(op, name, ops.ErrDType, "%v: %v", t, err)
	}
	if t.DType() != want {
		return ops.Errorf(op, name, ops.ErrDType,
			"%v has dtype %v but this call computes in %v: on the CPU backend all floating tensors of one call share one dtype",
			t, t.DType(), want)
	}
	return ops.Errorf(op, name, ops.ErrShape, "%v: storage does not match the shape", t)
}

// fl returns t's storage as []T (t must be non-nil).
func fl[T float](op ops.Op, name string, t *ops.Tensor) ([]T, error) {
	if s, ok := t.Storage.([]T); ok && len(s) == t.Len() && t.DType() == dtypeOf[T]() {
		return s, nil
	}
	return nil, storageErr(op, name, t, dtypeOf[T]())
}

// optFl is fl for an optional tensor: nil gives a nil slice.
func optFl[T float](op ops.Op, name string, t *ops.Tensor) ([]T, error) {
	if t == nil {
		return nil, nil
	}
	return fl[T](op, name, t)
}

// i32 returns t's storage as []int32; a nil t gives a nil slice.
func i32(op ops.Op, name string, t *ops.Tensor) ([]int32, error) {
	if t == nil {
		return nil, nil
	}
	if s, ok := t.Storage.([]int32); ok && len(s) == t.Len() && t.DType() == ops.I32 {
		return s, nil
	}
	return nil, storageErr(op, name, t, ops.I32)
}

// f64 returns t's storage as []float64 for the tensors the contract fixes to F64; a nil t
// gives a nil slice.
func f64(op ops.Op, name string, t *ops.Tensor) ([]float64, error) {
	if t == nil {
		return nil, nil
	}
	if s, ok := t.Storage.([]float64); ok && len(s) == t.Len() && t.DType() == ops.F64 {
		return s, nil
	}
	return nil, storageErr(op, name, t, ops.F64)
}

// bf16s returns t's storage as []uint16 (bf16 bits); a nil t gives a nil slice.
func bf16s(op ops.Op, name string, t *ops.Tensor) ([]uint16, error) {
	if t == nil {
		return nil, nil
	}
	if s, ok := t.Storage.([]uint16); ok && len(s) == t.Len() && t.DType() == ops.BF16 {
		return s, nil
	}
	return nil, storageErr(op, name, t, ops.BF16)
}

// unsupported is the error for a main dtype other than F32 and F64.
func unsupported(op ops.Op, dt ops.DType) error {
	return ops.Unsupported(op, "cpu", "dtype "+dt.String()+" (the CPU backend computes in f32 and f64; bf16 only in Convert)")
}

// errs returns the first non-nil error.
func errs(list ...error) error {
	for _, e := range list {
		if e != nil {
			return e
		}
	}
	return nil
}

// sameStorage reports whether two slices start at the same element (aliasing outputs).
func sameStorage[E any](a, b []E) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}
