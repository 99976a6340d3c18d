package cuda

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// This file is the build-tag-free core of the real device: the worker goroutine that owns
// the GPU, the job queue, launch validation, shared-memory opt-in, sticky errors, the
// caching allocator and GEMM dispatch. It drives the GPU through gpuDriver, implemented on
// gorgonia.org/cu in realdevice.go (build tag `cuda`) and by a fake in the tests, so all of
// this logic is tested on machines without a GPU.
//
// Threading (go-cuda-notes.md §1.4–1.5, pitfalls.md B17). One goroutine per GPU calls
// runtime.LockOSThread, makes the device's primary context current and then executes every
// driver call of that device, in order, from a buffered job channel. The public methods
// are safe from any goroutine: a mutex serialises callers. Launches, memsets, GEMMs and
// pinned copies are fire-and-forget jobs: the caller validates them, enqueues them (about
// a channel send, no context switch) and returns; the worker issues them to the stream in
// order. Only calls that need an answer (allocation misses, copies to or from Go memory,
// Sync, MemInfo, the first lookup of a kernel) wait for the worker. The worker spins
// briefly before parking so that a burst of launches does not pay a thread wake-up each.
//
// Errors. A failure of a fire-and-forget job, or any driver failure other than the
// recoverable ones (out of memory at allocation, unknown kernel, missing cuBLAS), becomes
// the device's sticky *AsyncError: the worker stops issuing work and every later call
// returns it, with the names of the last kernels issued.

// gpuDriver is the set of driver calls of one GPU. Every method is called on the device's
// worker goroutine (locked to its OS thread), one at a time, in submission order, after
// open and before close.
type gpuDriver interface {
	// open makes the device's context current on the calling thread, creates the stream
	// and events and returns the device's name and limits.
	open() (Props, error)
	close() error
	memAlloc(n int64) (Ptr, error) // wraps errDriverOOM when out of memory
	memFree(p Ptr) error
	memInfo() (free, total int64, err error)
	// copyHtoD issues a stream-ordered copy; src may be reused when it returns.
	copyHtoD(dst Ptr, src unsafe.Pointer, n int64) error
	// copyDtoH issues a stream-ordered copy and returns when dst holds the data.
	copyDtoH(dst unsafe.Pointer, src Ptr, n int64) error
	// copyHtoDAsync / copyDtoHAsync copy to or from page-locked host memory without
	// waiting.
	copyHtoDAsync(dst Ptr, src unsafe.Pointer, n int64) error
	copyDtoHAsync(dst unsafe.Pointer, src Ptr, n int64) error
	memset(p Ptr, b byte, n int64) error
	// function looks a kernel up by name (loading its module on first use).
	function(name string) (gpuFunc, error)
	// setMaxDynSmem raises a kernel's dynamic shared memory limit (cuFuncSetAttribute).
	setMaxDynSmem(fn unsafe.Pointer, n int) error
	launch(fn unsafe.Pointer, grid, block Dim3, smem int, args []uint64) error
	// gemmInit loads cuBLAS and creates the handle bound to the stream (ErrNoCUBLAS when
	// no library is found); gemm issues one GEMM.
	gemmInit() error
	gemm(g *cublasGemm) error
	sync() error
	// recordEvent records timing event i (0 or 1) on the stream; elapsed returns the time
	// between them once both completed.
	recordEvent(i int) error
	elapsed() (time.Duration, error)
	hostAlloc(n int) (unsafe.Pointer, error)
	hostFree(p unsafe.Pointer) error
}

// gpuFunc is a loaded kernel and its attributes.
type gpuFunc struct {
	handle     unsafe.Pointer // CUfunction (C memory)
	maxThreads int            // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK (launch bounds, registers)
	staticSmem int            // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
	maxDynSmem int            // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (current)
	numRegs    int
	localBytes int //lint:ignore U1000 set and reported by the cuda build (realdevice.go): spills and local arrays, per thread
}

// maxKernelArgs bounds the arguments of one launch (they travel inline in the job).
const maxKernelArgs = 32

// recentKernels is the length of the kernel history in sticky errors.
const recentKernels = 16

type gpuJobKind uint8

const (
	jobLaunch gpuJobKind = iota + 1
	jobGemm
	jobMemset
	jobCopyHtoDAsync
	jobCopyDtoHAsync
	jobEvent
	jobCall // run call() and reply
	jobStop
)

// gpuJob is one unit of work for the worker. It holds no Go pointers in the memory that
// reaches C (args is passed to the launch wrapper by address of the field).
type gpuJob struct {
	kind  gpuJobKind
	reply bool // the caller waits for the result on the reply channel
	name  string
	fn    unsafe.Pointer
	grid  Dim3
	block Dim3
	smem  int
	nargs int
	args  [maxKernelArgs]uint64
	ptr   Ptr
	host  unsafe.Pointer // page-locked C memory (never Go memory) for async copies
	n     int64
	b     byte
	event int
	gemm  cublasGemm
	call  func() error
	// soft: an error of this call is returned to the caller but does not stick.
	soft func(error) bool
}

// RealOption configures a real device.
type RealOption func(*realConfig)

type realConfig struct {
	syncEveryLaunch bool
	tf32            bool
	cublasNames     []string
	spin            time.Duration
	queue           int
}

// WithSyncEveryLaunch makes every Launch and GEMM wait for the kernel to finish and return
// its error, naming the failing kernel exactly (slow; for debugging faults). The
// environment variable MDM_CUDA_SYNC=1 turns it on too.
func WithSyncEveryLaunch(on bool) RealOption { return func(c *realConfig) { c.syncEveryLaunch = on } }

// WithTF32 lets F32 GEMMs use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: faster, ~10
// mantissa bits). Off by default: F32 GEMMs are full fp32, which the parity harness needs.
// The environment variable MDM_CUDA_TF32=1 turns it on too.
func WithTF32(on bool) RealOption { return func(c *realConfig) { c.tf32 = on } }

// WithCUBLASLibraries replaces the cuBLAS sonames tried, in order (default CUBLASSonames).
func WithCUBLASLibraries(names ...string) RealOption {
	return func(c *realConfig) { c.cublasNames = append([]string(nil), names...) }
}

// withSpin sets how long the worker polls for more work before parking (tests, benchmarks).
func withSpin(d time.Duration) RealOption { return func(c *realConfig) { c.spin = d } }

func defaultRealConfig(opts []RealOption) realConfig {
	c := realConfig{spin: 50 * time.Microsecond, queue: 4096, cublasNames: CUBLASSonames}
	c.syncEveryLaunch = envOn("MDM_CUDA_SYNC")
	c.tf32 = envOn("MDM_CUDA_TF32")
	for _, o := range opts {
		o(&c)
	}
	return c
}

func envOn(name string) bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv(name)))
	return v != "" && v != "0" && v != "false" && v != "no" && v != "off"
}

// RealDevice is a GPU driven through the CUDA driver API (see NewRealDevice). All methods
// are safe for concurrent use.
type RealDevice struct {
	name    string
	ordinal int
	props   Props
	cfg     realConfig
	drv     gpuDriver
	kernels []string // names in the embedded fatbins

	jobs   chan gpuJob
	replyc chan error
	done   chan struct{}
	sticky atomic.Pointer[AsyncError]

	mu       sync.Mutex // serialises callers; guards the fields below
	funcs    map[string]*gpuFunc
	alloc    *cachingAllocator
	pinned   map[unsafe.Pointer]int // live page-locked buffers (C memory) → size
	gemmOK   bool
	closed   bool
	launches int64

	// Worker-only state.
	ring *kernelRing
}

// newRealDevice starts the worker goroutine for drv and opens the device on it.
func newRealDevice(drv gpuDriver, ordinal int, kernels []string, opts ...RealOption) (*RealDevice, error) {
	cfg := defaultRealConfig(opts)
	d := &RealDevice{
		ordinal: ordinal, cfg: cfg, drv: drv, kernels: kernels,
		jobs: make(chan gpuJob, cfg.queue), replyc: make(chan error, 1), done: make(chan struct{}),
		funcs: map[string]*gpuFunc{}, pinned: map[unsafe.Pointer]int{}, ring: newKernelRing(recentKernels),
	}
	d.name = fmt.Sprintf("cuda:%d", ordinal)
	opened := make(chan error, 1)
	go d.worker(opened)
	if err := <-opened; err != nil {
		return nil, err
	}
	if d.props.Name != "" {
		d.name = fmt.Sprintf("cuda:%d (%s)", ordinal, d.props.Name)
	}
	d.alloc = newCachingAllocator(workerBlocks{d}, d.name)
	return d, nil
}

// worker owns the OS thread and the context: it opens the device, then executes jobs.
func (d *RealDevice) worker(opened chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(d.done)
	props, err := d.drv.open()
	if err != nil {
		opened <- err
		return
	}
	d.props = props
	opened <- nil
	spin := false
	for {
		j, ok := d.next(spin)
		if !ok || j.kind == jobStop {
			err := d.drv.close()
			if j.reply {
				d.replyc <- err
			}
			return
		}
		d.exec(&j)
		// After a reply the caller needs a P to run on: park at once rather than spin.
		spin = !j.reply
	}
}

// next returns the next job. With spin, it polls for up to cfg.spin before parking on the
// channel, so that a burst of launches does not pay a thread wake-up per launch.
func (d *RealDevice) next(spin bool) (gpuJob, bool) {
	select {
	case j, ok := <-d.jobs:
		return j, ok
	default:
	}
	if spin && d.cfg.spin > 0 {
		deadline := time.Now().Add(d.cfg.spin)
		for i := 0; ; i++ {
			select {
			case j, ok := <-d.jobs:
				return j, ok
			default:
			}
			if i%64 == 63 && time.Now().After(deadline) {
				break
			}
		}
	}
	j, ok := <-d.jobs
	return j, ok
}

// exec runs one job on the worker.
func (d *RealDevice) exec(j *gpuJob) {
	if s := d.sticky.Load(); s != nil {
		if j.reply {
			d.replyc <- s
		}
		return
	}
	var err error
	op := ""
	switch j.kind {
	case jobLaunch:
		d.ring.push(j.name)
		op = "launch"
		err = d.drv.launch(j.fn, j.grid, j.block, j.smem, j.args[:j.nargs])
		if err == nil && d.cfg.syncEveryLaunch {
			op = "sync after launch"
			err = d.drv.sync()
		}
		if err != nil {
			err = d.fail(op, j.name, err)
		}
	case jobGemm:
		d.ring.push(j.name)
		op = "gemm"
		err = d.drv.gemm(&j.gemm)
		if err == nil && d.cfg.syncEveryLaunch {
			err = d.drv.sync()
		}
		if err != nil {
			err = d.fail(op, j.name, err)
		}
	case jobMemset:
		if err = d.drv.memset(j.ptr, j.b, j.n); err != nil {
			err = d.fail("memset", "", err)
		}
	case jobCopyHtoDAsync:
		if err = d.drv.copyHtoDAsync(j.ptr, j.host, j.n); err != nil {
			err = d.fail("copy from pinned host memory", "", err)
		}
	case jobCopyDtoHAsync:
		if err = d.drv.copyDtoHAsync(j.host, j.ptr, j.n); err != nil {
			err = d.fail("copy to pinned host memory", "", err)
		}
	case jobEvent:
		if err = d.drv.recordEvent(j.event); err != nil {
			err = d.fail("event record", "", err)
		}
	case jobCall:
		if err = j.call(); err != nil && (j.soft == nil || !j.soft(err)) {
			err = d.fail(j.name, "", err)
		}
	}
	if j.reply {
		d.replyc <- err
	}
}

// fail records err as the sticky error (if none is recorded yet) and returns the sticky one.
func (d *RealDevice) fail(op, kernel string, err error) error {
	var ae *AsyncError
	if errors.As(err, &ae) {
		return ae
	}
	e := &AsyncError{Device: d.name, Op: op, Err: err, Recent: d.ring.snapshot()}
	if kernel != "" && (op == "launch" || d.cfg.syncEveryLaunch) {
		e.Kernel = kernel
	}
	e.debugHint = e.Kernel == "" && !d.cfg.syncEveryLaunch && len(e.Recent) > 0
	d.sticky.CompareAndSwap(nil, e)
	return d.sticky.Load()
}

// call runs f on the worker and waits for its result (d.mu must be held). soft, if set,
// says which errors are the caller's to handle rather than sticky device failures.
func (d *RealDevice) call(name string, f func() error, soft func(error) bool) error {
	if d.closed {
		return fmt.Errorf("cuda: %s: device is closed", d.name)
	}
	if s := d.sticky.Load(); s != nil {
		return s
	}
	d.jobs <- gpuJob{kind: jobCall, reply: true, name: name, call: f, soft: soft}
	return <-d.replyc
}

// enqueue submits a fire-and-forget job (d.mu must be held); in the debug mode it waits.
func (d *RealDevice) enqueue(j *gpuJob) error {
	if d.closed {
		return fmt.Errorf("cuda: %s: device is closed", d.name)
	}
	if s := d.sticky.Load(); s != nil {
		return s
	}
	if d.cfg.syncEveryLaunch {
		j.reply = true
		d.jobs <- *j
		return <-d.replyc
	}
	d.jobs <- *j
	return nil
}

// workerBlocks is the allocator's view of the driver: every call runs on the worker.
type workerBlocks struct{ d *RealDevice }

func (w workerBlocks) memAlloc(n int64) (Ptr, error) {
	var p Ptr
	err := w.d.call("alloc", func() (err error) { p, err = w.d.drv.memAlloc(n); return err },
		func(err error) bool { return errors.Is(err, errDriverOOM) })
	return p, err
}

func (w workerBlocks) memFree(p Ptr) error {
	return w.d.call("free", func() error { return w.d.drv.memFree(p) }, nil)
}

func (w workerBlocks) memInfo() (free, total int64, err error) {
	err = w.d.call("meminfo", func() (err error) { free, total, err = w.d.drv.memInfo(); return err }, nil)
	return free, total, err
}

func (w workerBlocks) sync() error { return w.d.call("sync", w.d.drv.sync, nil) }

// Name implements Device: "cuda:N (GPU name)".
func (d *RealDevice) Name() string { return d.name }

// Ordinal returns the CUDA device ordinal.
func (d *RealDevice) Ordinal() int { return d.ordinal }

// Props implements Device.
func (d *RealDevice) Props() Props { return d.props }

// Kernels implements Device: the kernels of the embedded fatbins, sorted.
func (d *RealDevice) Kernels() []string { return append([]string(nil), d.kernels...) }

// Alloc implements Device through the caching allocator.
func (d *RealDevice) Alloc(n int) (Ptr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, fmt.Errorf("cuda: %s: device is closed", d.name)
	}
	if s := d.sticky.Load(); s != nil {
		return 0, s
	}
	return d.alloc.alloc(int64(n))
}

// Free implements Device: the block returns to the allocator's cache.
func (d *RealDevice) Free(p Ptr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	return d.alloc.freeBlock(p)
}

// EmptyCache returns the allocator's cached blocks to the driver.
func (d *RealDevice) EmptyCache() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.alloc.release()
}

// AllocStats returns the caching allocator's counters.
func (d *RealDevice) AllocStats() AllocStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.alloc.stats
}

func (d *RealDevice) checkRange(op string, p Ptr, n int) error {
	if n < 0 {
		return fmt.Errorf("cuda: %s of %d bytes", op, n)
	}
	if !d.alloc.contains(p, int64(n)) {
		return fmt.Errorf("cuda: %s of %d bytes at %#x is outside every allocation of %s", op, n, uint64(p), d.name)
	}
	return nil
}

// CopyHtoD implements Device (stream-ordered; returns once src may be reused).
func (d *RealDevice) CopyHtoD(dst Ptr, src []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(src) == 0 {
		return d.stickyErr()
	}
	if err := d.checkRange("CopyHtoD", dst, len(src)); err != nil {
		return err
	}
	return d.call("copy to device", func() error {
		return d.drv.copyHtoD(dst, unsafe.Pointer(&src[0]), int64(len(src)))
	}, nil)
}

// CopyDtoH implements Device (waits for the work issued before it, then copies).
func (d *RealDevice) CopyDtoH(dst []byte, src Ptr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(dst) == 0 {
		return d.stickyErr()
	}
	if err := d.checkRange("CopyDtoH", src, len(dst)); err != nil {
		return err
	}
	return d.call("copy to host", func() error {
		return d.drv.copyDtoH(unsafe.Pointer(&dst[0]), src, int64(len(dst)))
	}, nil)
}

// Memset implements Device (asynchronous, stream-ordered).
func (d *RealDevice) Memset(p Ptr, b byte, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n == 0 {
		return d.stickyErr()
	}
	if err := d.checkRange("Memset", p, n); err != nil {
		return err
	}
	return d.enqueue(&gpuJob{kind: jobMemset, ptr: p, b: b, n: int64(n)})
}

func (d *RealDevice) stickyErr() error {
	if s := d.sticky.Load(); s != nil {
		return s
	}
	return nil
}

// kernel returns the cached function for name, looking it up on the worker the first time.
func (d *RealDevice) kernel(name string) (*gpuFunc, error) {
	if f := d.funcs[name]; f != nil {
		return f, nil
	}
	var f gpuFunc
	err := d.call("module load", func() (err error) { f, err = d.drv.function(name); return err },
		func(err error) bool { return errors.Is(err, ErrKernelNotFound) })
	if err != nil {
		return nil, err
	}
	d.funcs[name] = &f
	return &f, nil
}

// Launch implements Device. The launch configuration is checked against the kernel's and
// the device's limits before anything is issued (an invalid configuration is an error
// here, never a silent no-op); kernels asking for more dynamic shared memory than their
// current limit are opted in with cuFuncSetAttribute when the device allows it. The launch
// itself is asynchronous: a fault surfaces, sticky, at a later call (or here, with
// WithSyncEveryLaunch).
func (d *RealDevice) Launch(name string, grid, block Dim3, dynSmem int, args ...uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("cuda: %s: device is closed", d.name)
	}
	if s := d.sticky.Load(); s != nil {
		return s
	}
	f, err := d.kernel(name)
	if err != nil {
		return err
	}
	if err := d.checkLaunch(name, f, grid, block, dynSmem, len(args)); err != nil {
		return err
	}
	if dynSmem > f.maxDynSmem {
		if err := d.optIn(name, f, dynSmem); err != nil {
			return err
		}
	}
	j := gpuJob{kind: jobLaunch, name: name, fn: f.handle, grid: grid, block: block, smem: dynSmem, nargs: len(args)}
	copy(j.args[:], args)
	d.launches++
	return d.enqueue(&j)
}

// checkLaunch validates a launch configuration.
func (d *RealDevice) checkLaunch(name string, f *gpuFunc, grid, block Dim3, dynSmem, nargs int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("cuda: invalid launch of %s (grid %v, block %v, %d bytes dynamic shared memory) on %s: %s",
			name, grid, block, dynSmem, d.name, fmt.Sprintf(format, a...))
	}
	if nargs > maxKernelArgs {
		return bad("%d arguments, at most %d are supported", nargs, maxKernelArgs)
	}
	if grid.X < 1 || grid.Y < 1 || grid.Z < 1 || block.X < 1 || block.Y < 1 || block.Z < 1 {
		return bad("every grid and block dimension must be at least 1 (skip empty launches in the launcher)")
	}
	if grid.X > 1<<31-1 || grid.Y > 65535 || grid.Z > 65535 {
		return bad("grid exceeds (2147483647, 65535, 65535)")
	}
	if block.X > 1024 || block.Y > 1024 || block.Z > 64 {
		return bad("block exceeds (1024, 1024, 64)")
	}
	if block.Count() > f.maxThreads {
		return bad("%d threads per block, the kernel allows at most %d (launch bounds / registers: %d per thread)",
			block.Count(), f.maxThreads, f.numRegs)
	}
	if dynSmem < 0 {
		return bad("negative shared memory size")
	}
	if limit := d.props.MaxSmemBlockOptin - f.staticSmem; d.props.MaxSmemBlockOptin > 0 && dynSmem > limit {
		return bad("the device allows at most %d bytes of dynamic shared memory per block with opt-in (%d static bytes in use)",
			limit, f.staticSmem)
	}
	return nil
}

// optIn raises a kernel's dynamic shared memory limit to n bytes (cuFuncSetAttribute
// MAX_DYNAMIC_SHARED_SIZE_BYTES), once per increase.
func (d *RealDevice) optIn(name string, f *gpuFunc, n int) error {
	err := d.call("set shared memory limit", func() error { return d.drv.setMaxDynSmem(f.handle, n) },
		func(error) bool { return true })
	if err != nil {
		var ae *AsyncError
		if errors.As(err, &ae) {
			return err
		}
		return fmt.Errorf("cuda: %s: kernel %s: opting in to %d bytes of dynamic shared memory: %w", d.name, name, n, err)
	}
	f.maxDynSmem = n
	return nil
}

// Gemm implements Device through cuBLAS (loaded with dlopen on first use; ErrNoCUBLAS when
// no library is found). The row-major parameters are mapped to one column-major
// cublasGemmEx call (colMajorGemm). Asynchronous like Launch.
func (d *RealDevice) Gemm(p *GemmParams) error {
	g, err := colMajorGemm(p, d.cfg.tf32)
	if err != nil {
		return err
	}
	if p.M == 0 || p.N == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("cuda: %s: device is closed", d.name)
	}
	if s := d.sticky.Load(); s != nil {
		return s
	}
	if !d.gemmOK {
		err := d.call("cuBLAS initialisation", d.drv.gemmInit, func(err error) bool { return errors.Is(err, ErrNoCUBLAS) })
		if err != nil {
			return err
		}
		d.gemmOK = true
	}
	j := gpuJob{kind: jobGemm, name: gemmLabel(p), gemm: g}
	return d.enqueue(&j)
}

// gemmLabel names a GEMM in the kernel history.
func gemmLabel(p *GemmParams) string {
	t := func(x GemmType) string {
		if x == GemmBF16 {
			return "bf16"
		}
		return "f32"
	}
	return fmt.Sprintf("gemm(m=%d,n=%d,k=%d,%s->%s)", p.M, p.N, p.K, t(p.TA), t(p.TC))
}

// Sync implements Device: waits for the stream and returns the sticky error, if any.
func (d *RealDevice) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.call("sync", d.drv.sync, nil)
}

// MemInfo implements Device: free is the driver's free memory plus the allocator's cached
// blocks (which this device can reuse); total is the device's memory.
func (d *RealDevice) MemInfo() (free, total int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err = d.call("meminfo", func() (err error) { free, total, err = d.drv.memInfo(); return err }, nil)
	return free + d.alloc.stats.Cached, total, err
}

// TimeStream returns the GPU time of the work f issues to this device, measured with CUDA
// events recorded before and after it (f runs on the calling goroutine; it waits for the
// stream at the end).
func (d *RealDevice) TimeStream(f func() error) (time.Duration, error) {
	record := func(i int) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.enqueue(&gpuJob{kind: jobEvent, event: i})
	}
	if err := record(0); err != nil {
		return 0, err
	}
	if err := f(); err != nil {
		return 0, err
	}
	if err := record(1); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var t time.Duration
	err := d.call("event timing", func() (err error) {
		if err = d.drv.sync(); err != nil {
			return err
		}
		t, err = d.drv.elapsed()
		return err
	}, nil)
	return t, err
}

// PinnedBuffer is page-locked host memory (cuMemHostAlloc): copies between it and the
// device run asynchronously on the device's stream and overlap with kernels.
type PinnedBuffer struct {
	d   *RealDevice
	ptr unsafe.Pointer // C memory
	n   int
}

// Bytes returns the buffer's memory. It must not be used after Free, and not be modified
// (or read, after a CopyDtoHAsync into it) before the device's next Sync.
func (b *PinnedBuffer) Bytes() []byte {
	if b.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(b.ptr), b.n)
}

// Len returns the buffer's size in bytes.
func (b *PinnedBuffer) Len() int { return b.n }

// HostAlloc returns n bytes of page-locked host memory.
func (d *RealDevice) HostAlloc(n int) (*PinnedBuffer, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cuda: HostAlloc of %d bytes", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var p unsafe.Pointer
	err := d.call("pinned host alloc", func() (err error) { p, err = d.drv.hostAlloc(n); return err }, func(error) bool { return true })
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: cannot allocate %d bytes of page-locked host memory: %w", d.name, n, err)
	}
	d.pinned[p] = n
	return &PinnedBuffer{d: d, ptr: p, n: n}, nil
}

// Free releases the buffer (after the device's pending work).
func (b *PinnedBuffer) Free() error {
	if b.ptr == nil {
		return nil
	}
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	p := b.ptr
	b.ptr = nil
	delete(d.pinned, p)
	return d.call("pinned host free", func() error {
		if err := d.drv.sync(); err != nil {
			return err
		}
		return d.drv.hostFree(p)
	}, nil)
}

// CopyHtoDAsync copies n bytes from src at offset off to dst without waiting.
func (d *RealDevice) CopyHtoDAsync(dst Ptr, src *PinnedBuffer, off, n int) error {
	return d.pinnedCopy(jobCopyHtoDAsync, dst, src, off, n)
}

// CopyDtoHAsync copies n bytes from src into dst at offset off; the data is there after
// the next Sync.
func (d *RealDevice) CopyDtoHAsync(dst *PinnedBuffer, off int, src Ptr, n int) error {
	return d.pinnedCopy(jobCopyDtoHAsync, src, dst, off, n)
}

func (d *RealDevice) pinnedCopy(kind gpuJobKind, dev Ptr, host *PinnedBuffer, off, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if host == nil || host.ptr == nil || host.d != d {
		return fmt.Errorf("cuda: pinned copy with a buffer that is not live on %s", d.name)
	}
	if off < 0 || n < 0 || off+n > host.n {
		return fmt.Errorf("cuda: pinned copy of %d bytes at offset %d of a %d-byte buffer", n, off, host.n)
	}
	if n == 0 {
		return d.stickyErr()
	}
	if err := d.checkRange("pinned copy", dev, n); err != nil {
		return err
	}
	return d.enqueue(&gpuJob{kind: kind, ptr: dev, host: unsafe.Add(host.ptr, off), n: int64(n)})
}

// Close waits for pending work, frees all device memory and releases the device (its
// worker goroutine ends). Further calls return an error.
func (d *RealDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	var first error
	if d.sticky.Load() == nil {
		first = d.call("sync", d.drv.sync, nil)
		if err := d.alloc.releaseAll(); err != nil && first == nil {
			first = err
		}
		for p := range d.pinned {
			if err := d.call("pinned host free", func() error { return d.drv.hostFree(p) }, nil); err != nil && first == nil {
				first = err
			}
			delete(d.pinned, p)
		}
	}
	d.closed = true
	d.jobs <- gpuJob{kind: jobStop, reply: true}
	if err := <-d.replyc; err != nil && first == nil {
		first = err
	}
	<-d.done
	unregisterRealDevice(d)
	return first
}

// Launches returns the number of launches issued so far.
func (d *RealDevice) Launches() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.launches
}

// registry: one RealDevice (one worker goroutine) per GPU ordinal.
var (
	realMu      sync.Mutex
	realDevices = map[int]*RealDevice{}
)

func unregisterRealDevice(d *RealDevice) {
	realMu.Lock()
	defer realMu.Unlock()
	if realDevices[d.ordinal] == d {
		delete(realDevices, d.ordinal)
	}
}

// sortedKernelNames returns the keys of an index, sorted.
//
//lint:ignore U1000 used by the cuda build (realdevice.go)
func sortedKernelNames(index map[string]string) []string {
	out := make([]string, 0, len(index))
	for k := range index {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
