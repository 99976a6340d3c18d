// Package traced is a tracing wrapper backend: traced.New(b, w) behaves like b and
// records every op call (op name, argument dtypes and shapes, scalar parameters, wall
// time, error) in an in-memory ring of the last N calls, writing one line per call to w
// when w is not nil. Errors can be annotated with the recent calls, which is what a
// sticky asynchronous GPU error needs: Sync reports it long after the failing launch.
//
// Wall time is the time the call took on the host: for an asynchronous backend that is
// the enqueue time unless SyncEach is set, which synchronises after every op (a debug
// mode that also attributes asynchronous errors to the op that caused them).
//
// Structured loggers plug in through WithHook, e.g. with zerolog:
//
//	traced.New(b, nil, traced.WithHook(func(e traced.Event) {
//		log.Debug().Str("op", e.Op.String()).Dur("dur", e.Dur).Err(e.Err).Msg(e.String())
//	}))
//
// Streams (ops.Streamer) are not wrapped: ops enqueued through a stream are not traced.
package traced

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Arg is one field of an op's Params: a tensor (DType and Shape set) or a scalar.
type Arg struct {
	Name  string    // the Params field name, e.g. "Out"
	DType ops.DType // Invalid for scalars
	Shape []int     // nil for scalars
	Value string    // scalars: the value; tensors: the tensor's Name, if any and not Name
}

// String formats the argument: "Out=f32[2 97 4 64]", "W=f32[64 64](blocks.0.w)" or
// "Scale=0.125".
func (a Arg) String() string {
	if a.DType == ops.Invalid {
		return a.Name + "=" + a.Value
	}
	s := fmt.Sprintf("%s=%v%v", a.Name, a.DType, a.Shape)
	if a.Value != "" {
		s += "(" + a.Value + ")"
	}
	return s
}

// Event is one traced call: an op, or a Sync (Op = 0).
type Event struct {
	Seq   uint64 // 1 for the first call of the Backend
	Op    ops.Op
	Args  []Arg
	Start time.Time
	Dur   time.Duration
	Err   error
}

// String formats the event as "#12 AttnFwd(Out=f32[...], ..., Scale=0.125) 1.234ms" with
// " error: ..." appended when the call failed.
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d ", e.Seq)
	if e.Op == 0 {
		b.WriteString("Sync")
	} else {
		b.WriteString(e.Op.String())
		b.WriteByte('(')
		for i, a := range e.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(a.String())
		}
		b.WriteByte(')')
	}
	fmt.Fprintf(&b, " %v", e.Dur)
	if e.Err != nil {
		fmt.Fprintf(&b, " error: %v", e.Err)
	}
	return b.String()
}

// Option configures New.
type Option func(*Backend)

// RingSize sets how many recent calls are kept (default 32; at least 1).
func RingSize(n int) Option { return func(t *Backend) { t.ring = make([]Event, max(n, 1)) } }

// AnnotateErrors makes failing ops and Syncs return their error wrapped with the recent
// calls ("...; recent ops: #10 MatMul(...) ..., #11 AttnFwd(...) ..."). errors.Is and
// errors.As still see the original error.
func AnnotateErrors() Option { return func(t *Backend) { t.annotate = true } }

// SyncEach synchronises after every op, so that wall times are device times and an
// asynchronous error is reported by the op that caused it.
func SyncEach() Option { return func(t *Backend) { t.syncEach = true } }

// WithHook calls f with every event as it completes (after it entered the ring).
func WithHook(f func(Event)) Option { return func(t *Backend) { t.hook = f } }

// Backend is the tracing wrapper returned by New. Device methods other than Sync, and
// Supports, are forwarded untraced.
type Backend struct {
	ops.Backend
	w        io.Writer
	hook     func(Event)
	annotate bool
	syncEach bool

	mu   sync.Mutex
	ring []Event
	seq  uint64
}

// New wraps b; w (may be nil) receives one line per call.
func New(b ops.Backend, w io.Writer, opts ...Option) *Backend {
	t := &Backend{Backend: b, w: w}
	for _, o := range opts {
		o(t)
	}
	if t.ring == nil {
		t.ring = make([]Event, 32)
	}
	return t
}

// Unwrap returns the wrapped backend (see opstest.Unwrapper).
func (t *Backend) Unwrap() ops.Backend { return t.Backend }

// Recent returns the most recent calls, oldest first (at most the ring size).
func (t *Backend) Recent() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := uint64(len(t.ring))
	var out []Event
	for s := t.seq - min(t.seq, n) + 1; s <= t.seq; s++ {
		out = append(out, t.ring[(s-1)%n])
	}
	return out
}

// RecentString returns the recent calls, oldest first, one per line.
func (t *Backend) RecentString() string {
	var lines []string
	for _, e := range t.Recent() {
		lines = append(lines, e.String())
	}
	return strings.Join(lines, "\n")
}

// annotated wraps err with the recent calls.
type annotated struct {
	err    error
	recent string
}

func (a *annotated) Error() string { return a.err.Error() + "; recent ops:\n" + a.recent }
func (a *annotated) Unwrap() error { return a.err }

// record stores e in the ring, logs it and returns the error to give the caller.
func (t *Backend) record(e Event) error {
	t.mu.Lock()
	t.seq++
	e.Seq = t.seq
	t.ring[(e.Seq-1)%uint64(len(t.ring))] = e
	t.mu.Unlock()
	if t.w != nil {
		fmt.Fprintf(t.w, "traced: %s\n", e)
	}
	if t.hook != nil {
		t.hook(e)
	}
	if e.Err != nil && t.annotate {
		return &annotated{err: e.Err, recent: t.RecentString()}
	}
	return e.Err
}

var tensorType = reflect.TypeOf((*ops.Tensor)(nil))

// args describes the fields of a *Params struct.
func args(p any) []Arg {
	v := reflect.ValueOf(p).Elem()
	ty := v.Type()
	out := make([]Arg, 0, ty.NumField())
	for i := 0; i < ty.NumField(); i++ {
		f := v.Field(i)
		if !ty.Field(i).IsExported() {
			continue
		}
		name := ty.Field(i).Name
		if f.Type() == tensorType {
			if f.IsNil() {
				continue
			}
			tn := f.Interface().(*ops.Tensor)
			a := Arg{Name: name, DType: tn.DType(), Shape: tn.Shape()}
			if tn.Name != name {
				a.Value = tn.Name
			}
			out = append(out, a)
			continue
		}
		out = append(out, Arg{Name: name, Value: fmt.Sprint(f.Interface())})
	}
	return out
}

// do traces one op call.
func (t *Backend) do(op ops.Op, p any, call func() error) error {
	e := Event{Op: op, Args: args(p), Start: time.Now()}
	e.Err = call()
	if e.Err == nil && t.syncEach {
		e.Err = t.Backend.Sync()
	}
	e.Dur = time.Since(e.Start)
	return t.record(e)
}

// Sync forwards to the wrapped backend and traces the call.
func (t *Backend) Sync() error {
	e := Event{Start: time.Now()}
	e.Err = t.Backend.Sync()
	e.Dur = time.Since(e.Start)
	return t.record(e)
}
