package cpu

import (
	"sync"
	"sync/atomic"
)

// runner is a unit of parallel work: run computes items [lo, hi) on worker w (0 ≤ w <
// workers), using only that worker's scratch. Items are split into chunks whose
// boundaries do not depend on the number of workers, so a runner whose chunks write
// disjoint outputs gives the same bits for any worker count.
type runner interface {
	run(w, lo, hi int)
}

// pool is a fixed set of worker goroutines. The calling goroutine is worker 0; workers
// 1..n-1 are goroutines started on first use. Dispatch does not allocate.
type pool struct {
	n       int
	scratch []wscratch

	mu      sync.Mutex // guards started/stopped against Close racing the cleanup
	started bool
	stopped bool
	start   []chan struct{}
	wg      sync.WaitGroup

	// The current task, published to workers by the channel sends in run.
	task  runner
	total int
	grain int
	next  atomic.Int64
}

func newPool(n int) *pool {
	if n < 1 {
		n = 1
	}
	return &pool{n: n, scratch: make([]wscratch, n)}
}

func (p *pool) ensureStarted() {
	if p.started {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.stopped {
		return
	}
	p.start = make([]chan struct{}, p.n-1)
	for i := range p.start {
		p.start[i] = make(chan struct{})
		go p.worker(i+1, p.start[i])
	}
	p.started = true
}

func (p *pool) worker(w int, start chan struct{}) {
	for range start {
		p.work(w)
		p.wg.Done()
	}
}

func (p *pool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.started {
		for _, c := range p.start {
			close(c)
		}
	}
}

// work takes chunks until none are left.
func (p *pool) work(w int) {
	for {
		c := int(p.next.Add(1)) - 1
		lo := c * p.grain
		if lo >= p.total {
			return
		}
		p.task.run(w, lo, min(lo+p.grain, p.total))
	}
}

// run computes items [0, total) of t in chunks of grain items (the last may be shorter),
// in parallel when there is more than one chunk, and returns when all are done.
func (p *pool) run(t runner, total, grain int) {
	if total <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := (total + grain - 1) / grain
	if p.n == 1 || chunks == 1 || p.stopped {
		for lo := 0; lo < total; lo += grain {
			t.run(0, lo, min(lo+grain, total))
		}
		return
	}
	p.ensureStarted()
	p.task, p.total, p.grain = t, total, grain
	p.next.Store(0)
	helpers := min(p.n, chunks) - 1
	p.wg.Add(helpers)
	for i := 0; i < helpers; i++ {
		p.start[i] <- struct{}{}
	}
	p.work(0)
	p.wg.Wait()
	p.task = nil
}

// grainFor returns how many items of the given size (elements of work each) make one
// chunk of about parMin elements.
func (b *Backend) grainFor(itemWork int) int {
	if itemWork < 1 {
		itemWork = 1
	}
	g := b.parMin / itemWork
	if g < 1 {
		g = 1
	}
	return g
}

// wscratch is one worker's reusable scratch memory.
type wscratch struct {
	f32 [3][]float32
	f64 [3][]float64 // element-typed scratch for F64 runs
	acc [3][]float64 // float64 accumulators for any element type
}

// buf returns worker scratch slot (0..2) of the element type T with n elements (contents
// unspecified).
func buf[T float](s *wscratch, slot, n int) []T {
	var p *[]T
	if q, ok := any(&s.f32[slot]).(*[]T); ok {
		p = q
	} else {
		p = any(&s.f64[slot]).(*[]T)
	}
	if cap(*p) < n {
		*p = make([]T, n)
	}
	return (*p)[:n]
}

// accBuf returns float64 accumulator slot (0..2) with n elements (contents unspecified).
func (s *wscratch) accBuf(slot, n int) []float64 {
	if cap(s.acc[slot]) < n {
		s.acc[slot] = make([]float64, n)
	}
	return s.acc[slot][:n]
}

// Job slots: one per op family that dispatches to the pool (index into Backend.jobs).
const (
	jobEmbed = iota
	jobEmbedBwd
	jobNorm
	jobNormBwd
	jobNormBwdCols
	jobRoPE
	jobAttn
	jobAttnBwd
	jobElem
	jobCols
	jobCE
	jobMask
	jobSample
	jobAdamW
	jobSumSq
	jobRows
	jobGenCE
	jobGenCECols
	jobGemm
	numJobSlots
)

// getJob returns the backend's cached job of type J for slot and dtype index dti (0 for
// float32, 1 for float64), creating it on first use. Caching the job means that handing it
// to the pool (as a runner) does not allocate.
func getJob[J any](b *Backend, slot, dti int) *J {
	s := &b.jobs[slot][dti]
	if j, ok := (*s).(*J); ok {
		return j
	}
	j := new(J)
	*s = j
	return j
}

// dtIndex returns 0 for float32 and 1 for float64.
func dtIndex[T float]() int {
	var z T
	if _, ok := any(&z).(*float32); ok {
		return 0
	}
	return 1
}
