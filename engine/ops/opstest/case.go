package opstest

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Size is a case's size class: Small cases run everywhere, Large ones are skipped under
// -short (Options.Short) and are the ones worth timing.
type Size uint8

const (
	// Small cases take well under a second on the CPU reference.
	Small Size = iota
	// Large cases use production-like shapes (V = 50257, L = 1025, wide rows).
	Large
)

// String returns "small" or "large".
func (s Size) String() string {
	if s == Large {
		return "large"
	}
	return "small"
}

// Tolerance says how close the device under test must be to the reference.
//
// F32 (and F64) outputs pass when the normalised mean squared error
// Σ(got−want)²/Σwant² is at most NMSE and every element satisfies
// |got−want| ≤ ATol + RTol·|want|. BF16 cases follow the FlashAttention principle: with
// an oracle (the reference run in F64 on the bf16-rounded inputs) and an honest
// low-precision reference (the reference run in F32 on the same inputs, its bf16 outputs
// rounded to bf16), each output passes when
//
//	max|got − oracle| ≤ BF16Factor · max|honest − oracle| + BF16ATol · max|oracle| + ATol.
//
// Integer outputs, and outputs of cases marked exact, must match bit for bit.
type Tolerance struct {
	NMSE       float64
	ATol, RTol float64
	BF16Factor float64
	BF16ATol   float64 // relative to the output's largest magnitude
}

// DefaultTolerance is used by cases that do not set their own: NMSE 1e-10, elementwise
// 1e-5 + 1e-5·|want|, bf16 within 2× the honest reference plus 2^-16 of the output scale.
var DefaultTolerance = Tolerance{NMSE: 1e-10, ATol: 1e-5, RTol: 1e-5, BF16Factor: 2, BF16ATol: 1.0 / 65536}

// Case is one entry of the parity table: an op with concrete shapes, scalars and
// deterministic inputs. Cases are values; their inputs are generated when the case is run
// (or set up), from a seed derived from the name.
type Case struct {
	// Name carries the op and every parameter that distinguishes the case, e.g.
	// "AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)".
	Name string
	// Op is the op under test.
	Op ops.Op
	// DType is the case's main floating type (the one passed to Backend.Supports).
	// Arguments that follow it are stored in DType on the device under test; statistics,
	// accumulators and master weights stay F32; token ids I32; losses and probabilities F64.
	DType ops.DType
	// Size is the size class.
	Size Size
	// NonDeterministic disables the run-twice bitwise check for this case.
	NonDeterministic bool
	// Exact requires every output to match the reference bit for bit (integer outputs
	// always must).
	Exact bool
	// Tol is the tolerance for floating outputs.
	Tol Tolerance
	// FLOPs is an estimate of the floating-point operations of one call (the
	// FlashAttention formulas for attention: 4·B·L²·H·Dh forward, 2.5× that backward).
	FLOPs int64
	// Bytes is the memory traffic of one call if every input is read once and every
	// output written once (read and written for accumulated outputs), in the dtypes of the
	// device under test.
	Bytes int64

	args []arg
	fill func(g *gen, d data)
	call func(o ops.Ops, t map[string]*ops.Tensor) error
	// verify, if set, checks the device's outputs for internal consistency (exactly,
	// independent of the reference), e.g. that a bf16 shadow is the rounding of its master.
	verify func(got map[string]*host) error
}

// ArgInfo describes one argument of a case as the device under test sees it.
type ArgInfo struct {
	Name   string
	DType  ops.DType
	Shape  []int
	Input  bool // read by the op
	Output bool // written by the op
}

// Args lists the case's tensor arguments, in the dtypes of the device under test.
func (c Case) Args() []ArgInfo {
	res := make([]ArgInfo, 0, len(c.args))
	for _, a := range c.args {
		res = append(res, ArgInfo{Name: a.name, DType: a.dtype(c.DType, forDUT), Shape: append([]int(nil), a.shape...),
			Input: a.role != out, Output: a.role != in})
	}
	return res
}

// String returns the case's name.
func (c Case) String() string { return c.Name }

// argKind says how an argument's dtype follows the case's dtype.
type argKind uint8

const (
	kFloat argKind = iota + 1 // the case dtype (F32, BF16 or F64)
	kAcc                      // F32, or F64 when the case (or the oracle) is F64
	kF32                      // always F32
	kBF16                     // always BF16
	kF64                      // always F64
	kI32                      // always I32
)

// role says whether an argument is read, written or both.
type role uint8

const (
	in    role = iota + 1 // read only
	out                   // written only (initial contents never read)
	inout                 // read and written (accumulated or in place)
)

// arg is one tensor argument of a case.
type arg struct {
	name  string
	kind  argKind
	role  role
	shape []int
	exact bool       // compare bit for bit
	tol   *Tolerance // overrides the case's tolerance for this output
}

// target names the run an argument's dtype is chosen for.
type target uint8

const (
	forDUT    target = iota + 1 // the device under test, in the case dtype
	forHonest                   // an honest F32 reference
	forOracle                   // a float64 oracle
)

// dtype returns the argument's dtype for a run.
func (a arg) dtype(caseDT ops.DType, t target) ops.DType {
	switch a.kind {
	case kFloat:
		switch t {
		case forHonest:
			return ops.F32
		case forOracle:
			return ops.F64
		}
		return caseDT
	case kAcc:
		if t == forOracle || (t == forDUT && caseDT == ops.F64) {
			return ops.F64
		}
		return ops.F32
	case kF32:
		return ops.F32
	case kBF16:
		return ops.BF16
	case kF64:
		return ops.F64
	case kI32:
		return ops.I32
	}
	return ops.Invalid
}

func (a arg) len() int {
	n := 1
	for _, d := range a.shape {
		n *= d
	}
	return n
}

// data is the host contents of a case's arguments: float values (inputs, and the initial
// contents of outputs) or int32 values for I32 arguments.
type data struct {
	f map[string][]float64
	i map[string][]int32
}

// finish completes a case: the default tolerance if none was set, and Bytes from the
// arguments.
func (c *Case) finish() {
	if c.Tol == (Tolerance{}) {
		c.Tol = DefaultTolerance
	}
	var b int64
	for _, a := range c.args {
		n := int64(a.len()) * int64(a.dtype(c.DType, forDUT).Size())
		if a.role == inout {
			n *= 2
		}
		b += n
	}
	c.Bytes = b
}

// seed derives a case's random seed from its name, so that adding or reordering cases
// never changes another case's inputs.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// name builds "Op(k=v,k=v,...)" from alternating keys and values.
func name(op ops.Op, kv ...any) string {
	var b strings.Builder
	b.WriteString(op.String())
	b.WriteByte('(')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%v=%v", kv[i], kv[i+1])
	}
	b.WriteByte(')')
	return b.String()
}

func yesno(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}
