package cuda

import (
	"fmt"
	"strings"
	"sync"

	"github.com/mdm-gpu/mdm-gpu/kernels/sim"
)

// SimDevice is the simulated GPU: device memory is C heap memory owned by kernels/sim,
// kernels are the real kernels/*.cu compiled with g++ and run by the simulator, and GEMM
// runs on the CPU (HostGemm). Launches are synchronous, so errors are never deferred.
type SimDevice struct {
	opt    sim.Options
	mu     sync.Mutex
	allocs map[Ptr]int // live allocations and their sizes
	bytes  int64
	recent []string // last kernels launched (for error messages)
}

// SimOption configures a SimDevice.
type SimOption func(*SimDevice)

// SimReverse runs the threads of every block in reverse order between synchronisation
// points (a kernel whose results change has a race; cudasim.md §7).
func SimReverse(on bool) SimOption { return func(d *SimDevice) { d.opt.Reverse = on } }

// SimWorkers runs blocks on n OS threads concurrently.
func SimWorkers(n int) SimOption { return func(d *SimDevice) { d.opt.Workers = n } }

// NewSimDevice returns a simulated device.
func NewSimDevice(opts ...SimOption) *SimDevice {
	d := &SimDevice{allocs: map[Ptr]int{}}
	for _, o := range opts {
		o(d)
	}
	return d
}

// SimMemoryLimit is the simulated device's memory size (allocations beyond it fail with an
// *OOMError, so out-of-memory handling is testable without a GPU).
const SimMemoryLimit = 16 << 30

// Name implements Device.
func (d *SimDevice) Name() string {
	if d.opt.Reverse {
		return "sim (reverse thread order)"
	}
	return "sim"
}

// Props implements Device: H100/H200-like limits (so launchers choose the same shapes as on
// the GPU).
func (d *SimDevice) Props() Props {
	return Props{Name: "simulated sm_90", SMs: 132, MaxThreadsBlock: 1024, MaxSmemBlock: 48 << 10,
		MaxSmemBlockOptin: sim.MaxDynamicSmem, ComputeCapability: [2]int{9, 0}}
}

// Alloc implements Device.
func (d *SimDevice) Alloc(n int) (Ptr, error) {
	if n < 0 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bytes+int64(n) > SimMemoryLimit {
		return 0, &OOMError{Device: d.Name(), Requested: int64(n), Free: SimMemoryLimit - d.bytes}
	}
	p, err := sim.Alloc(max(n, 1))
	if err != nil {
		return 0, err
	}
	d.allocs[Ptr(p)] = n
	d.bytes += int64(n)
	return Ptr(p), nil
}

// Free implements Device.
func (d *SimDevice) Free(p Ptr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.allocs[p]
	if !ok {
		return fmt.Errorf("cuda: Free of %#x, which is not a live allocation of %s", uint64(p), d.Name())
	}
	delete(d.allocs, p)
	d.bytes -= int64(n)
	return sim.Free(uintptr(p))
}

// check verifies that [p, p+n) lies inside one live allocation (copies are bounds-checked
// before any transfer; pitfalls B16).
func (d *SimDevice) check(op string, p Ptr, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for base, size := range d.allocs {
		if p >= base && p+Ptr(n) <= base+Ptr(size) {
			return nil
		}
	}
	return fmt.Errorf("cuda: %s of %d bytes at %#x is outside every allocation of %s", op, n, uint64(p), d.Name())
}

// CopyHtoD implements Device.
func (d *SimDevice) CopyHtoD(dst Ptr, src []byte) error {
	if err := d.check("CopyHtoD", dst, len(src)); err != nil {
		return err
	}
	sim.CopyIn(uintptr(dst), src)
	return nil
}

// CopyDtoH implements Device.
func (d *SimDevice) CopyDtoH(dst []byte, src Ptr) error {
	if err := d.check("CopyDtoH", src, len(dst)); err != nil {
		return err
	}
	sim.CopyOut(dst, uintptr(src))
	return nil
}

// Memset implements Device.
func (d *SimDevice) Memset(p Ptr, b byte, n int) error {
	if err := d.check("Memset", p, n); err != nil {
		return err
	}
	sim.Memset(uintptr(p), b, n)
	return nil
}

// Launch implements Device: a synchronous simulated launch; a kernel fault comes back as
// a *sim.Fault (kernel, block, thread, file:line).
func (d *SimDevice) Launch(name string, grid, block Dim3, dynSmem int, args ...uint64) error {
	d.recent = append(d.recent, name)
	if len(d.recent) > 8 {
		d.recent = d.recent[1:]
	}
	return sim.Launch(name, sim.Dim3(grid), sim.Dim3(block), dynSmem, args, d.opt)
}

// Gemm implements Device on the CPU: the operands are copied out of simulated device
// memory, multiplied with HostGemm and the result copied back.
func (d *SimDevice) Gemm(p *GemmParams) error {
	if p.M == 0 || p.N == 0 {
		return nil
	}
	ra, ca := p.M, p.K
	if p.TransA {
		ra, ca = ca, ra
	}
	rb, cb := p.K, p.N
	if p.TransB {
		rb, cb = cb, rb
	}
	span := func(rows, cols, ld int, t GemmType) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		size := 4
		if t == GemmBF16 {
			size = 2
		}
		return ((rows-1)*ld + cols) * size
	}
	fetch := func(ptr Ptr, n int) ([]byte, error) {
		b := make([]byte, n)
		if n > 0 {
			if err := d.CopyDtoH(b, ptr); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	a, err := fetch(p.A, span(ra, ca, p.LDA, p.TA))
	if err != nil {
		return err
	}
	b, err := fetch(p.B, span(rb, cb, p.LDB, p.TB))
	if err != nil {
		return err
	}
	c, err := fetch(p.C, span(p.M, p.N, p.LDC, p.TC))
	if err != nil {
		return err
	}
	// Alignment: HostGemm views the bytes as float32; make([]byte) is 8-byte aligned.
	if err := HostGemm(p, a, b, c); err != nil {
		return err
	}
	return d.CopyHtoD(p.C, c)
}

// Sync implements Device (launches are synchronous: nothing is pending).
func (d *SimDevice) Sync() error { return nil }

// MemInfo implements Device.
func (d *SimDevice) MemInfo() (int64, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return SimMemoryLimit - d.bytes, SimMemoryLimit, nil
}

// Kernels implements Device.
func (d *SimDevice) Kernels() []string { return sim.Kernels() }

// Recent returns the names of the last kernels launched, oldest first.
func (d *SimDevice) Recent() string { return strings.Join(d.recent, ", ") }
