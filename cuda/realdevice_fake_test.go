package cuda

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// fakeDriver is a gpuDriver without a GPU: device memory is Go memory, kernels are Go
// functions, and faults are injected by name. It checks that every call happens on the
// thread that opened it (the worker's locked OS thread) and after open, before close.
type fakeDriver struct {
	mu       sync.Mutex // the tests read the fields below from other goroutines
	capacity int64      // device memory size
	used     int64
	next     Ptr
	mem      map[Ptr][]byte
	kernels  map[string]*fakeKernel
	tid      int
	opened   bool
	closed   bool
	wrongTID int // calls made on another thread

	calls        map[string]int
	launched     []string
	smemSet      []int
	pendingFault error // surfaces at the next sync (an asynchronous fault)
	gemmInitErr  error
	gemms        int
	hostBufs     map[unsafe.Pointer][]byte
	fast         bool // benchmarks: skip bookkeeping
	launchCost   time.Duration
}

type fakeKernel struct {
	name       string
	maxThreads int
	staticSmem int
	maxDynSmem int
	run        func(d *fakeDriver, args []uint64) error // nil: no-op
}

var errFakeIllegalAddress = errors.New("CUDA_ERROR_ILLEGAL_ADDRESS (fake): an illegal memory access was encountered")
var errFakeLaunch = errors.New("CUDA_ERROR_INVALID_VALUE (fake launch failure)")

func newFakeDriver(capacity int64) *fakeDriver {
	f := &fakeDriver{capacity: capacity, next: 1 << 20, mem: map[Ptr][]byte{}, calls: map[string]int{},
		hostBufs: map[unsafe.Pointer][]byte{}}
	f.kernels = map[string]*fakeKernel{
		"noop":     {maxThreads: 1024, maxDynSmem: 48 << 10},
		"small_lb": {maxThreads: 128, maxDynSmem: 48 << 10},
		"big_smem": {maxThreads: 1024, staticSmem: 1024, maxDynSmem: 48<<10 - 1024},
		"incr_u8": {maxThreads: 1024, maxDynSmem: 48 << 10, run: func(d *fakeDriver, a []uint64) error {
			b, off, ok := d.find(Ptr(a[0]), int64(a[1]))
			if !ok {
				return errFakeIllegalAddress
			}
			for i := range a[1] {
				b[off+int(i)]++
			}
			return nil
		}},
		"fault": {maxThreads: 1024, maxDynSmem: 48 << 10, run: func(d *fakeDriver, a []uint64) error {
			d.pendingFault = errFakeIllegalAddress
			return nil
		}},
		"bad_launch": {maxThreads: 1024, maxDynSmem: 48 << 10, run: func(d *fakeDriver, a []uint64) error {
			return errFakeLaunch
		}},
	}
	for n, k := range f.kernels {
		k.name = n
	}
	return f
}

// enter checks the thread and counts the call (the fast mode skips both).
func (f *fakeDriver) enter(name string) {
	if f.fast {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if syscall.Gettid() != f.tid || !f.opened || f.closed {
		f.wrongTID++
	}
	f.calls[name]++
}

func (f *fakeDriver) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeDriver) find(p Ptr, n int64) ([]byte, int, bool) {
	for base, b := range f.mem {
		if p >= base && uint64(p)+uint64(n) <= uint64(base)+uint64(len(b)) {
			return b, int(p - base), true
		}
	}
	return nil, 0, false
}

func (f *fakeDriver) open() (Props, error) {
	f.mu.Lock()
	f.tid = syscall.Gettid()
	f.opened = true
	f.mu.Unlock()
	return Props{Name: "Fake GPU", SMs: 4, MaxThreadsBlock: 1024, MaxSmemBlock: 48 << 10,
		MaxSmemBlockOptin: 227 << 10, ComputeCapability: [2]int{9, 0}}, nil
}

func (f *fakeDriver) close() error {
	f.enter("close")
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeDriver) memAlloc(n int64) (Ptr, error) {
	f.enter("memAlloc")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.used+n > f.capacity {
		return 0, fmt.Errorf("%w: fake cuMemAlloc(%d)", errDriverOOM, n)
	}
	p := f.next
	f.next += Ptr((n + 255) / 256 * 256)
	f.mem[p] = make([]byte, n)
	f.used += n
	return p, nil
}

func (f *fakeDriver) memFree(p Ptr) error {
	f.enter("memFree")
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.mem[p]
	if !ok {
		return fmt.Errorf("fake cuMemFree(%#x): not allocated", uint64(p))
	}
	f.used -= int64(len(b))
	delete(f.mem, p)
	return nil
}

func (f *fakeDriver) memInfo() (int64, int64, error) {
	f.enter("memInfo")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.capacity - f.used, f.capacity, nil
}

func (f *fakeDriver) copyHtoD(dst Ptr, src unsafe.Pointer, n int64) error {
	f.enter("copyHtoD")
	if f.fast {
		return nil
	}
	b, off, ok := f.find(dst, n)
	if !ok {
		return errFakeIllegalAddress
	}
	copy(b[off:], unsafe.Slice((*byte)(src), n))
	return nil
}

func (f *fakeDriver) copyDtoH(dst unsafe.Pointer, src Ptr, n int64) error {
	f.enter("copyDtoH")
	if err := f.sync(); err != nil {
		return err
	}
	b, off, ok := f.find(src, n)
	if !ok {
		return errFakeIllegalAddress
	}
	copy(unsafe.Slice((*byte)(dst), n), b[off:])
	return nil
}

func (f *fakeDriver) copyHtoDAsync(dst Ptr, src unsafe.Pointer, n int64) error {
	return f.copyHtoD(dst, src, n)
}

func (f *fakeDriver) copyDtoHAsync(dst unsafe.Pointer, src Ptr, n int64) error {
	return f.copyDtoH(dst, src, n)
}

func (f *fakeDriver) memset(p Ptr, v byte, n int64) error {
	f.enter("memset")
	if f.fast {
		return nil
	}
	b, off, ok := f.find(p, n)
	if !ok {
		return errFakeIllegalAddress
	}
	for i := range n {
		b[off+int(i)] = v
	}
	return nil
}

func (f *fakeDriver) function(name string) (gpuFunc, error) {
	f.enter("function")
	k := f.kernels[name]
	if k == nil {
		return gpuFunc{}, fmt.Errorf("%w: %q (fake)", ErrKernelNotFound, name)
	}
	return gpuFunc{handle: unsafe.Pointer(k), maxThreads: k.maxThreads, staticSmem: k.staticSmem, maxDynSmem: k.maxDynSmem}, nil
}

func (f *fakeDriver) setMaxDynSmem(fn unsafe.Pointer, n int) error {
	f.enter("setMaxDynSmem")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.smemSet = append(f.smemSet, n)
	(*fakeKernel)(fn).maxDynSmem = n
	return nil
}

func (f *fakeDriver) launch(fn unsafe.Pointer, grid, block Dim3, smem int, args []uint64) error {
	if f.launchCost > 0 {
		for t := time.Now(); time.Since(t) < f.launchCost; {
		}
	}
	if f.fast {
		return nil
	}
	f.enter("launch")
	k := (*fakeKernel)(fn)
	if smem > k.maxDynSmem {
		return errors.New("fake: CUDA_ERROR_INVALID_VALUE: shared memory above the kernel's limit")
	}
	f.mu.Lock()
	f.launched = append(f.launched, k.name)
	f.mu.Unlock()
	if k.run != nil {
		return k.run(f, args)
	}
	return nil
}

func (f *fakeDriver) gemmInit() error {
	f.enter("gemmInit")
	return f.gemmInitErr
}

func (f *fakeDriver) gemm(g *cublasGemm) error {
	f.enter("gemm")
	f.gemms++
	return nil
}

func (f *fakeDriver) sync() error {
	f.enter("sync")
	if err := f.pendingFault; err != nil {
		return err // stays: a faulted context fails every later call
	}
	return nil
}

func (f *fakeDriver) recordEvent(i int) error { f.enter("recordEvent"); return nil }

func (f *fakeDriver) elapsed() (time.Duration, error) {
	f.enter("elapsed")
	return 1500 * time.Microsecond, nil
}

func (f *fakeDriver) hostAlloc(n int) (unsafe.Pointer, error) {
	f.enter("hostAlloc")
	b := make([]byte, n)
	p := unsafe.Pointer(&b[0])
	f.mu.Lock()
	f.hostBufs[p] = b
	f.mu.Unlock()
	return p, nil
}

func (f *fakeDriver) hostFree(p unsafe.Pointer) error {
	f.enter("hostFree")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.hostBufs[p]; !ok {
		return errors.New("fake: hostFree of an unknown pointer")
	}
	delete(f.hostBufs, p)
	return nil
}
