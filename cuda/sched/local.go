package sched

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds every wait of a collective (and of the TCP rendezvous): a member
// that has not arrived after it is reported by rank and the whole group is aborted, so a
// lost member can never hang the others. Collectives wait for the slowest rank's step, so
// it is generous.
const DefaultTimeout = 30 * time.Minute

// NewLocalGroup returns the n members of an in-process communicator (one per simulated or
// CPU device driven by a goroutine of this process). Reductions are host-side, in the fixed
// tree order of TreeSum; each member computes an equal share of the elements for all, so
// the work is parallel and the result does not depend on timing. timeout ≤ 0 means
// DefaultTimeout.
func NewLocalGroup(n int, timeout time.Duration) ([]Comm, error) {
	if n < 1 {
		return nil, fmt.Errorf("sched: a communicator needs at least 1 member, got %d", n)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	g := &localGroup{n: n, timeout: timeout, slots: make([]any, n), here: make([]bool, n),
		release: make(chan struct{}), abortCh: make(chan struct{})}
	out := make([]Comm, n)
	for r := range out {
		out[r] = &localComm{g: g, rank: r}
	}
	return out, nil
}

type localGroup struct {
	n       int
	timeout time.Duration

	mu      sync.Mutex
	arrived int
	here    []bool // members arrived at the current meeting
	what    string // the collective of the current meeting (for timeout messages)
	release chan struct{}
	slots   []any // per-rank deposit of the current meeting
	abortCh chan struct{}
	err     error // set once by abort
}

// meet deposits v for rank (when deposit) and waits until every rank has arrived (or the
// group aborts). Collectives meet twice: a depositing meeting, after which every rank reads
// the deposits, and a completion meeting without deposit, which no rank passes before every
// rank has finished reading; so the deposits of a collective stay valid while it runs.
func (g *localGroup) meet(rank int, what string, v any, deposit bool) error {
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return g.err
	}
	ch := g.release
	if deposit {
		g.slots[rank] = v
	}
	g.here[rank] = true
	if g.arrived == 0 {
		g.what = what
	}
	g.arrived++
	if g.arrived == g.n {
		g.arrived = 0
		clear(g.here)
		g.release = make(chan struct{})
		close(ch)
	}
	g.mu.Unlock()
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-g.abortCh:
		return g.abortErr()
	case <-t.C:
		g.mu.Lock()
		var missing []string
		for r, ok := range g.here {
			if !ok {
				missing = append(missing, fmt.Sprint(r))
			}
		}
		g.mu.Unlock()
		g.abort(fmt.Errorf("%w: rank %d waited %v in %s for rank(s) %s, which never arrived", ErrAborted,
			rank, g.timeout, what, strings.Join(missing, ", ")))
		select {
		case <-ch: // everyone arrived just now
			return nil
		default:
		}
		return g.abortErr()
	}
}

func (g *localGroup) abortErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *localGroup) abort(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return
	}
	if err == nil {
		err = ErrAborted
	}
	g.err = err
	close(g.abortCh)
}

type localComm struct {
	g         *localGroup
	rank      int
	closed    bool
	scratch32 []float32 // this member's share of a reduction, reused across calls
	scratch64 []float64
}

func (c *localComm) Rank() int { return c.rank }
func (c *localComm) Size() int { return c.g.n }

type reduceCall struct {
	k   bufKind
	buf any
	op  ReduceOp
}

func (c *localComm) AllReduce(buf any, op ReduceOp) error {
	if c.closed {
		return fmt.Errorf("sched: AllReduce on a closed communicator")
	}
	k, err := describe(buf, true)
	if err == nil {
		err = checkOp(op)
	}
	if err != nil {
		c.g.abort(fmt.Errorf("%w: rank %d: %v", ErrAborted, c.rank, err))
		return err
	}
	g := c.g
	if err := g.meet(c.rank, "AllReduce", reduceCall{k: k, buf: buf, op: op}, true); err != nil {
		return err
	}
	// Every rank checks the same deposits, so a mismatch fails every rank the same way.
	calls := make([]reduceCall, g.n)
	for r := range calls {
		rc, ok := g.slots[r].(reduceCall)
		if !ok {
			return c.mismatch(r, "AllReduce")
		}
		calls[r] = rc
	}
	for r, rc := range calls {
		if rc.k.code != k.code || rc.k.n != k.n || rc.op != op {
			err := fmt.Errorf("sched: AllReduce mismatch: rank %d passed %d × %s (%v), rank 0 passed %d × %s (%v)",
				r, rc.k.n, rc.k.typeName(), rc.op, calls[0].k.n, calls[0].k.typeName(), calls[0].op)
			return err
		}
	}
	// Member r reduces elements [lo, hi) of every buffer and writes the result into all of
	// them; element ranges are disjoint, so members never touch the same element.
	lo, hi := k.n*c.rank/g.n, k.n*(c.rank+1)/g.n
	switch k.code {
	case 3:
		reduceRange(calls, lo, hi, op, g.n, &c.scratch32)
	case 4:
		reduceRange(calls, lo, hi, op, g.n, &c.scratch64)
	}
	return g.meet(c.rank, "AllReduce (completion)", nil, false)
}

func reduceRange[T float32 | float64](calls []reduceCall, lo, hi int, op ReduceOp, n int, scratch *[]T) {
	if hi <= lo {
		return
	}
	src := make([][]T, len(calls))
	for r, rc := range calls {
		src[r] = rc.buf.([]T)[lo:hi]
	}
	if cap(*scratch) < hi-lo {
		*scratch = make([]T, hi-lo)
	}
	out := (*scratch)[:hi-lo]
	TreeSum(out, src)
	if op == Mean {
		scaleMean(out, n)
	}
	for _, s := range src {
		copy(s, out)
	}
}

// mismatch reports a member that entered a different collective.
func (c *localComm) mismatch(r int, what string) error {
	return fmt.Errorf("sched: collective mismatch: rank %d called %s while rank %d called %s", c.rank, what, r, describeSlot(c.g.slots[r]))
}

func describeSlot(v any) string {
	switch v.(type) {
	case reduceCall:
		return "AllReduce"
	case bcastCall:
		return "Broadcast"
	case barrierCall:
		return "Barrier"
	}
	return fmt.Sprintf("%T", v)
}

type bcastCall struct {
	k    bufKind
	root int
}

type barrierCall struct{}

func (c *localComm) Broadcast(buf any, root int) error {
	if c.closed {
		return fmt.Errorf("sched: Broadcast on a closed communicator")
	}
	g := c.g
	k, err := describe(buf, false)
	if err == nil && (root < 0 || root >= g.n) {
		err = fmt.Errorf("sched: Broadcast root %d outside [0, %d)", root, g.n)
	}
	if err != nil {
		g.abort(fmt.Errorf("%w: rank %d: %v", ErrAborted, c.rank, err))
		return err
	}
	if err := g.meet(c.rank, "Broadcast", bcastCall{k: k, root: root}, true); err != nil {
		return err
	}
	calls := make([]bcastCall, g.n)
	for r := range calls {
		bc, ok := g.slots[r].(bcastCall)
		if !ok {
			return c.mismatch(r, "Broadcast")
		}
		calls[r] = bc
	}
	for r, bc := range calls {
		if bc.k.code != k.code || bc.k.n != k.n || bc.root != root {
			return fmt.Errorf("sched: Broadcast mismatch: rank %d passed %d × %s from root %d, rank %d passed %d × %s from root %d",
				r, bc.k.n, bc.k.typeName(), bc.root, c.rank, k.n, k.typeName(), root)
		}
	}
	if c.rank != root {
		copy(k.bytes, calls[root].k.bytes)
	}
	return g.meet(c.rank, "Broadcast (completion)", nil, false)
}

func (c *localComm) Barrier() error {
	if c.closed {
		return fmt.Errorf("sched: Barrier on a closed communicator")
	}
	if err := c.g.meet(c.rank, "Barrier", barrierCall{}, true); err != nil {
		return err
	}
	for r := 0; r < c.g.n; r++ {
		if _, ok := c.g.slots[r].(barrierCall); !ok {
			return c.mismatch(r, "Barrier")
		}
	}
	// A second meeting keeps the slots of this one valid until every rank has checked them.
	return c.g.meet(c.rank, "Barrier (completion)", nil, false)
}

func (c *localComm) Abort(err error) { c.g.abort(err) }

func (c *localComm) Close() error {
	c.closed = true
	return nil
}
