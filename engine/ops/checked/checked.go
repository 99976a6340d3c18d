// Package checked is a validating wrapper backend: checked.New(b) behaves like b, but
// before every op it calls the op's Params.Validate, scans the op's floating inputs for
// NaN and ±Inf and checks token ids, row lists and sequence lengths against their ranges
// (downloading the tensors to the host, so it works for GPU backends too; meant for debug
// runs, not for speed). With ScanOutputs it also scans the op's floating outputs after
// the op.
//
// Every error is an *ops.OpError wrapping ops.ErrShape, ops.ErrDType, ops.ErrValue or
// ops.ErrNonFinite that names the op, the argument, the element and the value, e.g.
//
//	ops.NormFwd: X: non-finite value: NaN at [3, 17]
//	ops.MaskTokens: X0: invalid value: 27 at [1, 5] is the mask id; x0 must hold clean tokens in [0, 27)
//
// Data checks, by op: EmbedFwd/EmbedBwd IDs in [0, V+1); MaskedCE Targets in [0, V);
// MaskTokens X0 in [0, MaskID) and MaskProb in [0, 1]; SampleStep Z in [0, MaskID], Rows
// in [0, B·L), distinct and masked in Z, Logits free of NaN and +Inf (−Inf marks a
// suppressed token) with at least one finite logit per row; GatherRows/ScatterRows Rows
// in [0, N) (distinct for ScatterRows); SeqLens in [1, L]; TimeEmbed T in [0, 1]; AdamW V
// ≥ 0. Inputs that an op does not read (Out of MatMul with Beta = 0, Y of Axpy with
// Beta = 0, Dst of CopyCols without Accumulate, ...) are not scanned.
//
// Streams (ops.Streamer) are not wrapped: ops enqueued through a stream bypass the checks.
package checked

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Option configures New.
type Option func(*Backend)

// ScanOutputs makes the wrapper also scan every floating output of an op for NaN and
// ±Inf after the op returns; the error says the value was produced by the op.
func ScanOutputs() Option { return func(b *Backend) { b.scanOutputs = true } }

// Backend is the validating wrapper returned by New. Device methods and Supports are
// forwarded unchanged.
type Backend struct {
	ops.Backend
	scanOutputs bool
}

// New wraps b with validation (see the package comment).
func New(b ops.Backend, opts ...Option) ops.Backend {
	c := &Backend{Backend: b}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Unwrap returns the wrapped backend (see opstest.Unwrapper).
func (c *Backend) Unwrap() ops.Backend { return c.Backend }

// scan accumulates the first failed check of one op call.
type scan struct {
	b      ops.Backend
	op     ops.Op
	output bool // scanning outputs after the op
	err    error
}

func (s *scan) fail(name string, kind error, format string, args ...any) {
	if s.err == nil {
		s.err = ops.Errorf(s.op, name, kind, format, args...)
	}
}

// floats downloads t as float64 values.
func (s *scan) floats(name string, t *ops.Tensor) []float64 {
	if s.err != nil || t == nil {
		return nil
	}
	out := make([]float64, t.Len())
	var err error
	switch t.DType() {
	case ops.F32:
		h := make([]float32, t.Len())
		if err = s.b.Download(h, t); err == nil {
			for i, v := range h {
				out[i] = float64(v)
			}
		}
	case ops.BF16:
		h := make([]uint16, t.Len())
		if err = s.b.Download(h, t); err == nil {
			for i, v := range h {
				out[i] = float64(math.Float32frombits(uint32(v) << 16))
			}
		}
	case ops.F64:
		err = s.b.Download(out, t)
	default:
		return nil
	}
	if err != nil {
		s.fail(name, ops.ErrValue, "cannot read %v for checking: %v", t, err)
		return nil
	}
	return out
}

// ints downloads t as int32 values.
func (s *scan) ints(name string, t *ops.Tensor) []int32 {
	if s.err != nil || t == nil || t.DType() != ops.I32 {
		return nil
	}
	h := make([]int32, t.Len())
	if err := s.b.Download(h, t); err != nil {
		s.fail(name, ops.ErrValue, "cannot read %v for checking: %v", t, err)
		return nil
	}
	return h
}

// finite requires every element of t to be finite.
func (s *scan) finite(name string, t *ops.Tensor) {
	for k, v := range s.floats(name, t) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			s.nonFinite(name, t, k, v)
			return
		}
	}
}

func (s *scan) nonFinite(name string, t *ops.Tensor, k int, v float64) {
	if s.output {
		s.fail(name, ops.ErrNonFinite, "%s at %s (produced by the op from finite inputs)", val(t, v), index(t.Shape(), k))
	} else {
		s.fail(name, ops.ErrNonFinite, "%s at %s", val(t, v), index(t.Shape(), k))
	}
}

// val formats an element of t with the shortest representation of t's precision.
func val(t *ops.Tensor, v float64) string {
	bits := 64
	if t.DType() != ops.F64 {
		bits = 32
	}
	return strconv.FormatFloat(v, 'g', -1, bits)
}

// finiteCols requires columns [off, off+w) of the 2-D tensor t to be finite.
func (s *scan) finiteCols(name string, t *ops.Tensor, off, w int) {
	v := s.floats(name, t)
	if v == nil {
		return
	}
	cols := t.Dim(1)
	for r := 0; r < t.Dim(0); r++ {
		for j := off; j < off+w; j++ {
			if x := v[r*cols+j]; math.IsNaN(x) || math.IsInf(x, 0) {
				s.nonFinite(name, t, r*cols+j, x)
				return
			}
		}
	}
}

// prob requires every element of t to be finite and in [0, 1].
func (s *scan) prob(name string, t *ops.Tensor, what string) {
	for k, v := range s.floats(name, t) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			s.nonFinite(name, t, k, v)
			return
		}
		if v < 0 || v > 1 {
			s.fail(name, ops.ErrValue, "%s at %s is not %s in [0, 1]", val(t, v), index(t.Shape(), k), what)
			return
		}
	}
}

// inRange requires ids in [lo, hi) and returns them.
func (s *scan) inRange(name string, t *ops.Tensor, lo, hi int, what string) []int32 {
	v := s.ints(name, t)
	for k, x := range v {
		if int(x) < lo || int(x) >= hi {
			s.fail(name, ops.ErrValue, "%d at %s is not in [%d, %d)%s", x, index(t.Shape(), k), lo, hi, what)
			return nil
		}
	}
	return v
}

// seqLens requires lengths in [1, l].
func (s *scan) seqLens(t *ops.Tensor, l int) {
	for k, x := range s.ints("SeqLens", t) {
		if x < 1 || int(x) > l {
			s.fail("SeqLens", ops.ErrValue, "%d at %s is not in [1, %d] (a sequence has at least one real position and at most L)", x, index(t.Shape(), k), l)
			return
		}
	}
}

// distinct requires the row list to hold no repeats.
func (s *scan) distinct(name string, t *ops.Tensor, rows []int32) {
	first := make(map[int32]int, len(rows))
	for k, r := range rows {
		if j, ok := first[r]; ok {
			s.fail(name, ops.ErrValue, "row %d appears at %s and at %s; rows must be distinct", r, index(t.Shape(), j), index(t.Shape(), k))
			return
		}
		first[r] = k
	}
}

// index formats flat index k of a row-major tensor of the given shape, e.g. "[3, 17]".
func index(shape []int, k int) string {
	idx := make([]string, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = fmt.Sprint(k % shape[d])
			k /= shape[d]
		} else {
			idx[d] = "0"
		}
	}
	return "[" + strings.Join(idx, ", ") + "]"
}

// run validates p, runs the input checks, the op, and (with ScanOutputs) the output
// checks.
func (c *Backend) run(op ops.Op, p interface{ Validate() error }, inputs func(*scan), call func() error, outputs func(*scan)) error {
	if err := p.Validate(); err != nil {
		return err
	}
	s := &scan{b: c.Backend, op: op}
	inputs(s)
	if s.err != nil {
		return s.err
	}
	if err := call(); err != nil {
		return err
	}
	if c.scanOutputs && outputs != nil {
		s.output = true
		outputs(s)
		return s.err
	}
	return nil
}
