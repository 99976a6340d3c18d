package ops

import "fmt"

// checker accumulates the first validation failure of an op's parameters.
type checker struct {
	op  Op
	err error
}

// dtype sets accepted by an argument.
type dset uint8

const (
	sF32  dset = 1 << iota // float32
	sBF16                  // bfloat16
	sF64                   // float64
	sI32                   // int32
	// sFlt: activations and weights: f32; bf16 on GPU; f64 on the CPU (float64 gradient
	// checks run the whole model in float64).
	sFlt = sF32 | sBF16 | sF64
	// sAcc: saved statistics, master weights and gradient accumulators: f32, or f64 in
	// float64 runs.
	sAcc = sF32 | sF64
)

func (s dset) has(d DType) bool {
	switch d {
	case F32:
		return s&sF32 != 0
	case BF16:
		return s&sBF16 != 0
	case F64:
		return s&sF64 != 0
	case I32:
		return s&sI32 != 0
	}
	return false
}

func (s dset) String() string {
	var out []string
	for _, d := range []DType{F32, BF16, F64, I32} {
		if s.has(d) {
			out = append(out, d.String())
		}
	}
	return fmt.Sprint(out)
}

func (c *checker) fail(name string, kind error, format string, args ...any) {
	if c.err == nil {
		c.err = Errorf(c.op, name, kind, format, args...)
	}
}

// need checks that t is present, has a dtype in s and the given shape; a dim of -1 matches
// anything. It returns false (and records an error) on failure.
func (c *checker) need(name string, t *Tensor, s dset, dims ...int) bool {
	if c.err != nil {
		return false
	}
	if t == nil {
		c.fail(name, ErrValue, "required tensor is nil")
		return false
	}
	return c.check(name, t, s, dims...)
}

// opt is need for an optional tensor: nil is accepted.
func (c *checker) opt(name string, t *Tensor, s dset, dims ...int) bool {
	if c.err != nil || t == nil {
		return false
	}
	return c.check(name, t, s, dims...)
}

func (c *checker) check(name string, t *Tensor, s dset, dims ...int) bool {
	if !s.has(t.dtype) {
		c.fail(name, ErrDType, "%v has dtype %v, want one of %v", t, t.dtype, s)
		return false
	}
	if len(dims) == 0 {
		return true
	}
	ok := len(dims) == len(t.shape)
	for i := 0; ok && i < len(dims); i++ {
		ok = dims[i] < 0 || dims[i] == t.shape[i]
	}
	if !ok {
		c.fail(name, ErrShape, "%v has shape %v, want %v (-1 = any)", t, t.shape, dims)
	}
	return ok
}

// same requires b to have a's dtype.
func (c *checker) same(nameA string, a *Tensor, nameB string, b *Tensor) {
	if c.err == nil && a != nil && b != nil && a.dtype != b.dtype {
		c.fail(nameB, ErrDType, "%v has dtype %v but %s has %v; they must match", b, b.dtype, nameA, a.dtype)
	}
}

// that records an ErrValue failure unless ok.
func (c *checker) that(ok bool, name string, format string, args ...any) {
	if c.err == nil && !ok {
		c.fail(name, ErrValue, format, args...)
	}
}

// finite checks a scalar parameter.
func (c *checker) finite(name string, v float64) {
	if c.err == nil && (v != v || v > 1e308 || v < -1e308) {
		c.fail(name, ErrNonFinite, "scalar parameter is %v", v)
	}
}

// groups checks that rows (N) are a whole number of groups of size per, and returns the
// group count (B).
func (c *checker) groups(name string, rows, per int) int {
	if c.err != nil {
		return 0
	}
	if per <= 0 || rows%per != 0 {
		c.fail(name, ErrValue, "RowsPerGroup=%d must be positive and divide the %d rows", per, rows)
		return 0
	}
	return rows / per
}
