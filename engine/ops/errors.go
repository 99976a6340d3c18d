package ops

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by every *OpError; test them with errors.Is.
var (
	ErrShape       = errors.New("shape mismatch")
	ErrDType       = errors.New("wrong dtype")
	ErrValue       = errors.New("invalid value")
	ErrNonFinite   = errors.New("non-finite value")
	ErrUnsupported = errors.New("not supported")
)

// OpError reports a failure of one op: which op, which argument (tensor or parameter) and
// what was wrong with it. Kind is one of the sentinel errors.
type OpError struct {
	Op     Op
	Tensor string // argument name as in the Params struct, e.g. "Targets"
	Kind   error
	Detail string
}

// Error formats the error as "ops.MaskedCE: Targets: invalid value: 65 at index 17 is not in [0, 65)".
func (e *OpError) Error() string {
	if e.Tensor == "" {
		return fmt.Sprintf("ops.%v: %v: %s", e.Op, e.Kind, e.Detail)
	}
	return fmt.Sprintf("ops.%v: %s: %v: %s", e.Op, e.Tensor, e.Kind, e.Detail)
}

// Unwrap returns the sentinel kind.
func (e *OpError) Unwrap() error { return e.Kind }

// Errorf builds an *OpError.
func Errorf(op Op, tensor string, kind error, format string, args ...any) error {
	return &OpError{Op: op, Tensor: tensor, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Unsupported returns the error a backend gives for an op or dtype it does not implement,
// e.g. "ops.AttnFwd: not supported: on backend sim: dtype bf16 with head dim 96".
func Unsupported(op Op, backend, what string) error {
	return &OpError{Op: op, Kind: ErrUnsupported, Detail: fmt.Sprintf("on backend %s: %s", backend, what)}
}
