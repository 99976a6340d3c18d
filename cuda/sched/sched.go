package sched

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// Config describes a data-parallel training job. Every rank of the job must use the same
// Config (Fingerprint renders it for the TCP rendezvous, which refuses a rank that does
// not).
type Config struct {
	Model model.Config
	Optim train.OptimConfig
	// Step configures the MD4 step. Step.Batch is the GLOBAL batch (sequences per update,
	// over all devices and accumulation steps); Step.MicroBatch is ignored: it is
	// Batch / (devices · Accum).
	Step train.StepConfig
	// Accum is the number of micro-batches each device runs per update (gradient
	// accumulation); 0 means 1.
	Accum int
	// InitSeed seeds MD4's initialisation (the same on every replica).
	InitSeed uint64
	// LowMemAccum accumulates a device's micro-batch gradients in place (the backward pass
	// adds into the gradient buffers) instead of summing them as a tree in extra buffers.
	// It needs no extra memory, but then gradients depend on how the batch is split within
	// fp32 summation-order tolerance, instead of bit for bit.
	LowMemAccum bool
	// Reduction names the gradient all-reduce every rank uses ("host" for the host-staged
	// reduction over the Comm, "nccl"); it only enters the Fingerprint, so that ranks that
	// chose differently are refused at the rendezvous.
	Reduction string
}

// Plan is the batch arithmetic of a job, checked at start (pitfalls B11).
type Plan struct {
	Global    int // sequences per update
	World     int // devices over all processes
	PerDevice int // Global / World
	Accum     int // micro-batches per device per update
	Micro     int // sequences per micro-batch: PerDevice / Accum
}

// NewPlan checks that a global batch splits evenly over world devices and accum
// micro-batches, and otherwise says which value is implied and what would work.
func NewPlan(global, world, accum int) (Plan, error) {
	if accum == 0 {
		accum = 1
	}
	switch {
	case global < 1:
		return Plan{}, fmt.Errorf("sched: global batch %d must be at least 1", global)
	case world < 1:
		return Plan{}, fmt.Errorf("sched: %d devices: need at least 1", world)
	case accum < 1:
		return Plan{}, fmt.Errorf("sched: accumulation %d must be at least 1", accum)
	case global%world != 0:
		return Plan{}, fmt.Errorf("sched: global batch %d does not divide over %d devices: that implies %d/%d = %.4g sequences per device; use a global batch that is a multiple of %d (e.g. %d or %d)",
			global, world, global, world, float64(global)/float64(world), world, max(world, global/world*world), (global/world+1)*world)
	case (global/world)%accum != 0:
		per := global / world
		return Plan{}, fmt.Errorf("sched: the per-device batch %d (global %d over %d devices) does not split into %d accumulation steps: that implies %d/%d = %.4g sequences per micro-batch; use a global batch that is a multiple of devices × accumulation = %d, or an accumulation that divides %d",
			per, global, world, accum, per, accum, float64(per)/float64(accum), world*accum, per)
	}
	return Plan{Global: global, World: world, PerDevice: global / world, Accum: accum, Micro: global / world / accum}, nil
}

// String describes the plan, e.g. "global batch 512 = 8 devices × 64 (4 micro-batches of 16)".
func (p Plan) String() string {
	return fmt.Sprintf("global batch %d = %d device(s) × %d (%d micro-batch(es) of %d)", p.Global, p.World, p.PerDevice, p.Accum, p.Micro)
}

// Fingerprint renders the parts of cfg that every rank must share, for TCPConfig.
func (cfg Config) Fingerprint(world int) string {
	s := cfg.Step
	return Fingerprint(map[string]string{
		"model":        fmt.Sprintf("%+v", cfg.Model.WithDefaults()),
		"optim":        fmt.Sprintf("%+v", cfg.Optim),
		"batch":        strconv.Itoa(s.Batch),
		"seed":         strconv.FormatUint(s.Seed, 10),
		"antithetic":   strconv.FormatBool(s.Antithetic),
		"estimator":    fmt.Sprintf("L=%d V=%d T=%d bound=%v", s.Est.L, s.Est.V, s.Est.T, s.Est.Bound),
		"schedule":     schedName(s.Est),
		"skipnonfin":   strconv.FormatBool(s.SkipNonFinite),
		"accum":        strconv.Itoa(max(cfg.Accum, 1)),
		"lowmem_accum": strconv.FormatBool(cfg.LowMemAccum),
		"init_seed":    strconv.FormatUint(cfg.InitSeed, 10),
		"reduction":    cfg.Reduction,
		"world":        strconv.Itoa(world),
	})
}

func schedName(e diffusion.Estimator) string {
	if e.Sched == nil {
		return "none"
	}
	return fmt.Sprintf("%s eps=%g", e.Sched.Name(), e.Sched.Eps())
}

// Device is one device of this process. Open and Close run on the device's own goroutine,
// which is locked to its OS thread for its whole life (a CUDA context is current per OS
// thread, pitfalls B17), so everything the replica does on the device happens there.
type Device struct {
	Name string
	// Open creates the device's backend (e.g. cuda.New(ordinal), or a simulated or CPU
	// backend). An error (such as a device index that does not exist) fails New.
	Open func() (ops.Backend, error)
	// Close, if set, releases the backend after the replica's buffers were freed.
	Close func(ops.Backend) error
	// Reducer, if set, builds the gradient all-reduce for this device (e.g. NCCL on real
	// GPUs); nil uses the host-staged reduction over the device's Comm.
	Reducer func(be ops.Backend, c Comm) (GradReducer, error)
}

// GradReducer sums a replica's gradient tensors over all ranks, in place: afterwards every
// rank holds the same bytes.
type GradReducer interface {
	ReduceGrads(be ops.Backend, grads []*ops.Tensor) error
	Close() error
}

// Source fills x0 ([n·L] token ids) with rows [first, first+n) of the global batch of a
// step, placed exactly as in the whole batch whatever the split (e.g. data.Windows.TrainRows),
// and returns their real lengths (nil when every row is full).
type Source func(step uint64, first, n int, x0 []int32) (seqLens []int32, err error)

// WindowsSource serves random training windows of w drawn at (seed, step, global row).
func WindowsSource(w *data.Windows, seed uint64) Source {
	return func(step uint64, first, n int, x0 []int32) ([]int32, error) {
		return nil, w.TrainRows(x0, first, n, seed, step)
	}
}

// FixedSource serves the same global batch x0 ([B·L]; seqLens nil or [B]) at every step.
func FixedSource(x0, seqLens []int32, L int) Source {
	return func(_ uint64, first, n int, dst []int32) ([]int32, error) {
		if (first+n)*L > len(x0) {
			return nil, fmt.Errorf("sched: rows [%d, %d) are outside the fixed batch of %d sequences", first, first+n, len(x0)/L)
		}
		copy(dst, x0[first*L:(first+n)*L])
		if seqLens == nil {
			return nil, nil
		}
		return seqLens[first : first+n], nil
	}
}

// Scheduler trains one model data-parallel over devices: one goroutine per device of this
// process, each owning a replica (model, workspace, optimizer) on its backend, and a Comm
// joining them with the replicas of other processes. See Step.
type Scheduler struct {
	cfg     Config
	plan    Plan
	workers []*worker
	mu      sync.Mutex
	err     error // sticky: a failed collective leaves replicas in an unknown state
}

type worker struct {
	s    *Scheduler
	idx  int
	dev  Device
	comm Comm
	rank int
	jobs chan func()
	done chan struct{}

	be  ops.Backend
	tr  *train.Trainer
	red GradReducer
	acc *treeAcc

	x0      []int32
	seqLoss []float64
	ctl     []float64
}

// New starts one goroutine per device, opens the devices there and builds identical
// replicas (model initialised from cfg.InitSeed, zero optimizer state). comms[i] is device
// i's member of the job's communicator (NewLocalGroup for devices of one process, DialTCP
// for one device per process); its Rank fixes which rows of the global batch the device
// computes. The batch arithmetic is checked first: a global batch that does not divide is
// refused with the implied per-device (or per-micro-batch) value.
func New(cfg Config, devs []Device, comms []Comm) (*Scheduler, error) {
	if len(devs) == 0 || len(devs) != len(comms) {
		return nil, fmt.Errorf("sched: %d devices and %d communicator members: need one member per device, at least one", len(devs), len(comms))
	}
	world := comms[0].Size()
	seen := map[int]bool{}
	for i, c := range comms {
		if c.Size() != world {
			return nil, fmt.Errorf("sched: communicator members disagree on the world size (%d and %d)", world, c.Size())
		}
		if seen[c.Rank()] {
			return nil, fmt.Errorf("sched: two devices of this process have rank %d", c.Rank())
		}
		seen[c.Rank()] = true
		if devs[i].Open == nil {
			return nil, fmt.Errorf("sched: device %d (%s) has no Open function", i, devs[i].Name)
		}
	}
	plan, err := NewPlan(cfg.Step.Batch, world, cfg.Accum)
	if err != nil {
		return nil, err
	}
	cfg.Accum = plan.Accum
	cfg.Step.MicroBatch = plan.Micro
	if err := cfg.Step.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, plan: plan}
	for i, d := range devs {
		w := &worker{s: s, idx: i, dev: d, comm: comms[i], rank: comms[i].Rank(), jobs: make(chan func()), done: make(chan struct{})}
		s.workers = append(s.workers, w)
		go w.loop()
	}
	errs := s.all(func(w *worker) error { return w.open() })
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// loop is the device goroutine: locked to its OS thread for life (the thread ends with it).
func (w *worker) loop() {
	runtime.LockOSThread()
	defer close(w.done)
	for job := range w.jobs {
		job()
	}
}

// run executes f on the worker's goroutine and returns its error; a panic becomes an error
// and aborts the communicator so that no other rank waits for this one.
func (w *worker) run(f func() error) error {
	res := make(chan error, 1)
	w.jobs <- func() {
		defer func() {
			if r := recover(); r != nil {
				err := fmt.Errorf("sched: device %d (%s, rank %d) panicked: %v", w.idx, w.dev.Name, w.rank, r)
				w.comm.Abort(err)
				res <- err
			}
		}()
		res <- f()
	}
	return <-res
}

// all runs f on every worker concurrently and returns the errors (nil entries for successes).
func (s *Scheduler) all(f func(w *worker) error) []error {
	errs := make([]error, len(s.workers))
	var wg sync.WaitGroup
	for i, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.run(func() error { return f(w) })
		}()
	}
	wg.Wait()
	return errs
}

func (w *worker) label() string {
	name := w.dev.Name
	if name == "" && w.be != nil {
		name = w.be.Name()
	}
	return fmt.Sprintf("device %d (%s, rank %d)", w.idx, name, w.rank)
}

func (w *worker) open() error {
	s := w.s
	be, err := w.dev.Open()
	if err != nil {
		return fmt.Errorf("sched: opening %s: %w", w.label(), err)
	}
	w.be = be
	m, err := model.New(be, s.cfg.Model)
	if err == nil {
		err = m.Init(s.cfg.InitSeed)
		if err != nil {
			m.Free()
		}
	}
	if err != nil {
		return fmt.Errorf("sched: model on %s: %w", w.label(), err)
	}
	opt, err := train.NewOptimizer(m, s.cfg.Optim)
	if err != nil {
		m.Free()
		return fmt.Errorf("sched: optimizer on %s: %w", w.label(), err)
	}
	tr, err := train.NewTrainer(m, opt, s.cfg.Step)
	if err != nil {
		opt.Free()
		m.Free()
		return fmt.Errorf("sched: trainer on %s: %w", w.label(), err)
	}
	w.tr = tr
	if w.dev.Reducer != nil {
		w.red, err = w.dev.Reducer(be, w.comm)
	} else {
		w.red = &hostReducer{comm: w.comm}
	}
	if err != nil {
		return fmt.Errorf("sched: gradient all-reduce on %s: %w", w.label(), err)
	}
	if s.plan.Accum > 1 && !s.cfg.LowMemAccum {
		w.acc = newTreeAcc(m)
	}
	L := s.cfg.Model.SeqLen
	w.x0 = make([]int32, s.plan.PerDevice*L)
	w.seqLoss = make([]float64, s.plan.PerDevice)
	w.ctl = make([]float64, ctlLen(s.plan))
	return nil
}

func (w *worker) close() error {
	var errs []error
	if w.red != nil {
		errs = append(errs, w.red.Close())
	}
	if w.tr != nil {
		if w.acc != nil {
			w.acc.free()
		}
		w.tr.Free()
		w.tr.Opt.Free()
		w.tr.M.Free()
		w.tr = nil
	}
	if w.be != nil && w.dev.Close != nil {
		errs = append(errs, w.dev.Close(w.be))
	}
	w.be = nil
	return errors.Join(errs...)
}

// Close frees every replica, closes the devices (on their goroutines), ends the
// goroutines and closes the communicators.
func (s *Scheduler) Close() error {
	var errs []error
	if s.workers != nil {
		errs = s.all(func(w *worker) error { return w.close() })
		for _, w := range s.workers {
			close(w.jobs)
			<-w.done
			errs = append(errs, w.comm.Close())
		}
		s.workers = nil
	}
	return errors.Join(errs...)
}

// Plan returns the batch arithmetic.
func (s *Scheduler) Plan() Plan { return s.plan }

// StepIndex returns the number of steps completed (the index of the next step).
func (s *Scheduler) StepIndex() int { return s.workers[0].tr.Step }

// Skipped returns the number of updates skipped for non-finite values (the same on every
// rank).
func (s *Scheduler) Skipped() int { return s.workers[0].tr.Skipped }

// Updates returns the number of optimizer updates applied.
func (s *Scheduler) Updates() int { return s.workers[0].tr.Opt.Updates }

// Devices returns the number of devices of this process.
func (s *Scheduler) Devices() int { return len(s.workers) }

// Do runs f on device i's goroutine with its replica's trainer (e.g. evaluation on one
// replica, or reading parameters). f must not keep the trainer.
func (s *Scheduler) Do(i int, f func(tr *train.Trainer) error) error {
	if i < 0 || i >= len(s.workers) {
		return fmt.Errorf("sched: device %d of %d", i, len(s.workers))
	}
	w := s.workers[i]
	return w.run(func() error { return f(w.tr) })
}

func (s *Scheduler) sticky() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Scheduler) setSticky(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// control vector layout (float64, summed over ranks):
//
//	[0, W)          1 where rank r failed (an error, not a number)
//	[W, 2W)         1 where rank r saw a non-finite loss or gradient
//	2W              masked positions
//	2W+1            real tokens
//	[2W+2, 2W+2+B)  per-sequence weighted losses (each rank fills its own rows, zeros
//	                elsewhere, so the sum is exact)
func ctlLen(p Plan) int { return 2*p.World + 2 + p.Global }

// Step runs one data-parallel training step and returns the same statistics on every
// device (those of the global batch, as train.Trainer.TrainStep would report them):
//
//  1. each device fills its rows of the global batch from src and runs forward and
//     backward on them, micro-batch by micro-batch, with the times, masks and loss weights
//     of the global batch (normalised by the global batch size, so rows contribute
//     exactly what they would on one device), summing its micro-batch gradients as a tree;
//  2. the devices all-reduce a small control vector: per-rank failure and non-finite
//     flags, the masked and token counts and the per-sequence losses; every rank thus
//     makes the same decision: stop (an error on any rank: every rank returns an error),
//     skip (a NaN/Inf loss or gradient on any rank and Step.SkipNonFinite: every rank skips
//     the update and counts it) or go on — nobody is left waiting in a collective
//     (pitfalls B12);
//  3. gradients are summed over ranks (the weights already divide by the global batch);
//  4. the global gradient norm is computed from the reduced gradient (identical on every
//     rank) and rank 0's value is broadcast, so every rank clips with the same scale
//     (pitfalls B11);
//  5. every replica applies the identical AdamW + EMA update.
func (s *Scheduler) Step(src Source) (train.StepStats, error) {
	if err := s.sticky(); err != nil {
		return train.StepStats{}, err
	}
	start := time.Now()
	stats := make([]train.StepStats, len(s.workers))
	errs := s.all(func(w *worker) error {
		var err error
		stats[w.idx], err = w.step(src)
		return err
	})
	if err := errors.Join(errs...); err != nil {
		// Errors that every rank agreed on are identical: report each distinct one once.
		var uniq []error
		seen := map[string]bool{}
		for _, e := range errs {
			if e != nil && !seen[e.Error()] {
				seen[e.Error()] = true
				uniq = append(uniq, e)
			}
		}
		err = errors.Join(uniq...)
		s.setSticky(err)
		return stats[0], err
	}
	st := stats[0]
	st.Duration = time.Since(start)
	return st, nil
}

// stepError is the error every rank returns for a step that was stopped collectively.
type stepError struct{ msg string }

func (e *stepError) Error() string { return e.msg }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (w *worker) forwardBackward(lens []int32, first int, step uint64) (int, error) {
	s, tr := w.s, w.tr
	L := s.cfg.Model.SeqLen
	clear(w.seqLoss)
	if w.acc == nil {
		if err := tr.M.ZeroGrad(); err != nil {
			return 0, err
		}
		return tr.ForwardBackwardRows(w.x0, lens, first, step, w.seqLoss)
	}
	mb, masked := s.plan.Micro, 0
	for a := 0; a < s.plan.Accum; a++ {
		if err := tr.M.ZeroGrad(); err != nil {
			return 0, err
		}
		var l []int32
		if lens != nil {
			l = lens[a*mb : (a+1)*mb]
		}
		n, err := tr.ForwardBackwardRows(w.x0[a*mb*L:(a+1)*mb*L], l, first+a*mb, step, w.seqLoss[a*mb:(a+1)*mb])
		if err != nil {
			return 0, err
		}
		masked += n
		if err := w.acc.push(); err != nil {
			return 0, err
		}
	}
	return masked, w.acc.finish()
}

func (w *worker) step(src Source) (train.StepStats, error) {
	s, tr := w.s, w.tr
	p := s.plan
	W, B, L := p.World, p.Global, s.cfg.Model.SeqLen
	step := uint64(tr.Step)
	first := w.rank * p.PerDevice
	st := train.StepStats{Step: tr.Step, LR: tr.Opt.Cfg.LearningRate(tr.Opt.Updates)}

	// 1. Local forward/backward. An error does not return yet: the other ranks are (or
	// will be) waiting in the control all-reduce, and must learn about it there.
	masked, tokens := 0, 0
	lens, localErr := src(step, first, p.PerDevice, w.x0)
	if localErr == nil && lens != nil && len(lens) != p.PerDevice {
		localErr = fmt.Errorf("sched: the batch source returned %d lengths for %d rows", len(lens), p.PerDevice)
	}
	if localErr == nil {
		masked, localErr = w.forwardBackward(lens, first, step)
	}
	nonFinite := false
	if localErr == nil {
		loss := 0.0
		for _, l := range w.seqLoss {
			loss += l
		}
		var norm float64
		norm, localErr = tr.Opt.GradNorm()
		nonFinite = !finite(loss) || !finite(norm)
		tokens = p.PerDevice * L
		if lens != nil {
			tokens = 0
			for _, n := range lens {
				tokens += int(n)
			}
		}
	}

	// 2. Agree.
	ctl := w.ctl
	clear(ctl)
	if localErr != nil {
		ctl[w.rank] = 1
	} else {
		if nonFinite {
			ctl[W+w.rank] = 1
		}
		ctl[2*W] = float64(masked)
		ctl[2*W+1] = float64(tokens)
		copy(ctl[2*W+2+first:], w.seqLoss)
	}
	if err := w.comm.AllReduce(ctl, Sum); err != nil {
		if localErr != nil {
			return st, fmt.Errorf("sched: step %d: %s: %w (and the communicator failed: %v)", step, w.label(), localErr, err)
		}
		return st, fmt.Errorf("sched: step %d: %s: all-reduce of the step's flags: %w", step, w.label(), err)
	}
	failed, bad := ranksWith(ctl[:W]), ranksWith(ctl[W:2*W])
	if len(failed) > 0 {
		if localErr != nil {
			return st, fmt.Errorf("sched: step %d: %s failed, every device stops: %w", step, w.label(), localErr)
		}
		return st, &stepError{fmt.Sprintf("sched: step %d: stopped on every device because rank(s) %s failed (see their errors)", step, joinInts(failed))}
	}
	st.Masked = int(ctl[2*W])
	st.Tokens = int(ctl[2*W+1])
	seq := ctl[2*W+2 : 2*W+2+B]
	diff := 0.0
	for _, l := range seq { // in global row order, as on one device
		diff += l
	}
	st.DiffBits = diff
	st.LossBits = diff + tr.Cfg.Est.ConstBits()
	scale := float64(B) * float64(L) * math.Ln2
	st.SeqLosses = make([]float64, B)
	for b, l := range seq {
		st.SeqLosses[b] = l * scale
	}
	skip := func(why string) (train.StepStats, error) {
		if !tr.Cfg.SkipNonFinite {
			return st, &stepError{fmt.Sprintf("sched: step %d: %s; every device stops (pass --skip-nonfinite to skip such steps instead)", step, why)}
		}
		st.Skipped = true
		st.GradNorm = math.NaN()
		tr.Skipped++
		tr.Step++
		return st, nil
	}
	if len(bad) > 0 {
		return skip(fmt.Sprintf("non-finite loss or gradient on rank(s) %s", joinInts(bad)))
	}

	// 3. Sum the gradients over ranks.
	grads := make([]*ops.Tensor, len(tr.M.Params))
	for i, q := range tr.M.Params {
		grads[i] = q.Grad
	}
	if err := w.red.ReduceGrads(w.be, grads); err != nil {
		return st, fmt.Errorf("sched: step %d: %s: gradient all-reduce: %w", step, w.label(), err)
	}

	// 4. The global norm of the reduced gradient; rank 0's value is everyone's.
	norm, err := tr.Opt.GradNorm()
	if err != nil {
		// This rank cannot go on, but the others wait in the broadcast: abort them.
		err = fmt.Errorf("sched: step %d: %s: gradient norm: %w", step, w.label(), err)
		w.comm.Abort(err)
		return st, err
	}
	nb := []float64{norm}
	if err := w.comm.Broadcast(nb, 0); err != nil {
		return st, fmt.Errorf("sched: step %d: %s: broadcast of the gradient norm: %w", step, w.label(), err)
	}
	norm = nb[0]
	st.GradNorm = norm
	if !finite(norm) {
		return skip(fmt.Sprintf("the all-reduced gradient norm is %v (overflow)", norm))
	}

	// 5. The identical update everywhere.
	if err := tr.Opt.Step(tr.Opt.ClipScale(norm)); err != nil {
		err = fmt.Errorf("sched: step %d: %s: optimizer: %w", step, w.label(), err)
		w.comm.Abort(err)
		return st, err
	}
	tr.Step++
	return st, nil
}

func ranksWith(flags []float64) []int {
	var out []int
	for r, f := range flags {
		if f != 0 {
			out = append(out, r)
		}
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// hostReducer is the host-staged gradient all-reduce: download every gradient into one
// flat host buffer per dtype (parameter order), all-reduce it over the Comm (fixed tree
// order), upload the result.
type hostReducer struct {
	comm Comm
	f32  []float32
	f64  []float64
}

func (h *hostReducer) ReduceGrads(be ops.Backend, grads []*ops.Tensor) error {
	n32, n64 := 0, 0
	for _, g := range grads {
		switch g.DType() {
		case ops.F32:
			n32 += g.Len()
		case ops.F64:
			n64 += g.Len()
		default:
			return fmt.Errorf("sched: cannot all-reduce a %v gradient (%s)", g.DType(), g.Name)
		}
	}
	if len(h.f32) != n32 {
		h.f32 = make([]float32, n32)
	}
	if len(h.f64) != n64 {
		h.f64 = make([]float64, n64)
	}
	move := func(down bool) error {
		o32, o64 := 0, 0
		for _, g := range grads {
			var seg any
			if g.DType() == ops.F32 {
				seg, o32 = h.f32[o32:o32+g.Len()], o32+g.Len()
			} else {
				seg, o64 = h.f64[o64:o64+g.Len()], o64+g.Len()
			}
			var err error
			if down {
				err = be.Download(seg, g)
			} else {
				err = be.Upload(g, seg)
			}
			if err != nil {
				return fmt.Errorf("sched: staging the gradient %s: %w", g.Name, err)
			}
		}
		return nil
	}
	if err := move(true); err != nil {
		h.comm.Abort(err)
		return err
	}
	// Every rank has the same parameter list, so both calls happen on every rank (or on
	// none), in the same order.
	if n32 > 0 {
		if err := h.comm.AllReduce(h.f32, Sum); err != nil {
			return err
		}
	}
	if n64 > 0 {
		if err := h.comm.AllReduce(h.f64, Sum); err != nil {
			return err
		}
	}
	if err := move(false); err != nil {
		h.comm.Abort(err)
		return err
	}
	return nil
}

func (h *hostReducer) Close() error { return nil }

// Save writes the training state (train.SaveState: parameters, EMA, AdamW moments, step
// counters) from the replica of global rank 0; every rank takes part so that all learn
// whether it worked. The state does not depend on the number of devices: it can be
// resumed with any device count (the step index addresses data, times and masks).
func (s *Scheduler) Save(path string, meta map[string]string) error {
	if err := s.sticky(); err != nil {
		return err
	}
	m := map[string]string{}
	for k, v := range meta {
		m[k] = v
	}
	m["mdm.sched.devices"] = strconv.Itoa(s.plan.World)
	m["mdm.sched.accum"] = strconv.Itoa(s.plan.Accum)
	errs := s.all(func(w *worker) error {
		var err error
		if w.rank == 0 {
			err = train.SaveState(path, w.tr, m)
		}
		flag := []float64{0}
		if err != nil {
			flag[0] = 1
		}
		if cerr := w.comm.AllReduce(flag, Sum); cerr != nil {
			return errors.Join(err, cerr)
		}
		if err != nil {
			return err
		}
		if flag[0] != 0 {
			return fmt.Errorf("sched: rank 0 could not write the checkpoint %s", path)
		}
		return nil
	})
	return firstErr(errs)
}

// Load restores a training state written by Save (or by train.SaveState on one device)
// into every replica, then checks that all replicas of the job hold identical state.
func (s *Scheduler) Load(path string) (map[string]string, error) {
	if err := s.sticky(); err != nil {
		return nil, err
	}
	metas := make([]map[string]string, len(s.workers))
	errs := s.all(func(w *worker) error {
		meta, err := train.LoadState(path, w.tr)
		metas[w.idx] = meta
		flag := []float64{0}
		if err != nil {
			flag[0] = 1
		}
		if cerr := w.comm.AllReduce(flag, Sum); cerr != nil {
			return errors.Join(err, cerr)
		}
		if err != nil {
			return fmt.Errorf("sched: %s: %w", w.label(), err)
		}
		if flag[0] != 0 {
			return fmt.Errorf("sched: another rank could not load %s", path)
		}
		return nil
	})
	if err := firstErr(errs); err != nil {
		return nil, err
	}
	if err := s.VerifyReplicas(); err != nil {
		return nil, err
	}
	return metas[0], nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// VerifyReplicas checks that every replica of the job (all processes) holds bit-identical
// parameters, optimizer state and step counters, by all-reducing per-rank checksums.
func (s *Scheduler) VerifyReplicas() error {
	W := s.plan.World
	errs := s.all(func(w *worker) error {
		h, err := w.checksum()
		v := make([]float64, 5*W)
		if err != nil {
			v[5*w.rank+4] = 1
		} else {
			for i := 0; i < 4; i++ {
				v[5*w.rank+i] = float64((h >> (16 * i)) & 0xffff)
			}
		}
		if cerr := w.comm.AllReduce(v, Sum); cerr != nil {
			return errors.Join(err, cerr)
		}
		if err != nil {
			return err
		}
		var differ []int
		for r := 0; r < W; r++ {
			if v[5*r+4] != 0 {
				return fmt.Errorf("sched: rank %d could not checksum its replica", r)
			}
			for i := 0; i < 4; i++ {
				if v[5*r+i] != v[i] {
					differ = append(differ, r)
					break
				}
			}
		}
		if len(differ) > 0 {
			return fmt.Errorf("sched: replicas diverged: rank(s) %s hold different parameters or optimizer state than rank 0", joinInts(differ))
		}
		return nil
	})
	return firstErr(errs)
}

// checksum hashes the replica's parameters, EMA, moments and counters (FNV-1a).
func (w *worker) checksum() (uint64, error) {
	h := fnv.New64a()
	tr := w.tr
	fmt.Fprintf(h, "%d/%d/%d;", tr.Step, tr.Opt.Updates, tr.Skipped)
	var ts []*ops.Tensor
	for i, p := range tr.M.Params {
		ts = append(ts, p.W, tr.Opt.M[i], tr.Opt.V[i])
		if tr.Opt.EMA != nil {
			ts = append(ts, tr.Opt.EMA[i])
		}
	}
	for _, t := range ts {
		v, err := model.Download(w.be, t)
		if err != nil {
			return 0, err
		}
		var b [8]byte
		for _, x := range v {
			u := math.Float64bits(x)
			for i := range b {
				b[i] = byte(u >> (8 * i))
			}
			h.Write(b[:])
		}
	}
	return h.Sum64(), nil
}
