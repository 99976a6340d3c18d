package sim

/*
#cgo CXXFLAGS: -std=c++20 -O2 -Wno-unknown-pragmas -fno-strict-aliasing -I${SRCDIR}/include -I${SRCDIR}/..
#cgo LDFLAGS: -lm -pthread
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Dim3 is a grid or block shape. All three dimensions must be at least 1 (as for cuLaunchKernel; a
// zero is an invalid launch, not a default).
type Dim3 struct{ X, Y, Z int }

// String formats d as "(x,y,z)".
func (d Dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

// Options tune how a launch is scheduled. The zero value runs forward order on one worker with
// 64 KiB fiber stacks (256 KiB under -asan).
type Options struct {
	// Reverse runs the threads of each block in order n-1..0 between synchronisation points instead of
	// 0..n-1. A kernel that gives different results in the two orders has a race (a missing barrier).
	Reverse bool
	// Workers is the number of OS threads that take blocks from the grid concurrently (0 means 1).
	// Blocks then really run in parallel; float atomics become order dependent.
	Workers int
	// StackBytes is the stack size of each simulated thread (0 means the default). A kernel that
	// overflows it hits a guard page (SIGSEGV) instead of corrupting memory silently.
	StackBytes int
}

// MaxDynamicSmem is the largest dynamic shared memory a launch may request: 227 KiB, the per-block
// opt-in limit of sm_90 (sm_80 allows 163 KiB).
const MaxDynamicSmem = 227 * 1024

// Fault kinds (Fault.Kind).
const (
	KindInvalidLaunch      = "invalid launch"          // rejected before running (name, shape, smem, arguments)
	KindDivergentSync      = "divergent __syncthreads" // threads of a block wait at different barriers
	KindDeadlock           = "deadlock"                // no thread can run and nothing can be released
	KindLaneNotInMask      = "lane not in mask"        // a warp collective's mask misses the calling lane
	KindBadShuffleSource   = "bad shuffle source"      // a shuffle reads a lane outside the mask or exited
	KindCollectiveMismatch = "collective mismatch"     // lanes meet at different sites/masks/widths, or an .aligned op lacks lanes
	KindInvalidArgument    = "invalid argument"        // e.g. a shuffle width that is not a power of two
	KindTrap               = "trap"                    // __trap()
	KindAssert             = "assert"                  // a failed device assert
	KindMisaligned         = "misaligned address"      // atomics, ldmatrix, cp.async
	KindBadAddress         = "bad address"             // ldmatrix / cp.async destination outside shared memory
)

// Fault describes a kernel bug found by the simulator, or an invalid launch (Kind KindInvalidLaunch,
// with no block, thread or file). Launch returns it as an error.
type Fault struct {
	Kind   string // one of the Kind* constants
	Kernel string // kernel name
	Block  Dim3   // blockIdx of the faulting thread
	Thread Dim3   // threadIdx of the faulting thread
	File   string // source file of the faulting statement, relative to the module root when known
	Line   int    // its line (0 if unknown)
	Msg    string // details
}

// Error formats f as
// "cudasim: <kind> in kernel <k> at <file>:<line> (block (x,y,z), thread (x,y,z)): <msg>".
func (f *Fault) Error() string {
	if f.Kind == KindInvalidLaunch {
		return fmt.Sprintf("cudasim: invalid launch of kernel %s: %s", f.Kernel, f.Msg)
	}
	return fmt.Sprintf("cudasim: %s in kernel %s at %s:%d (block %v, thread %v): %s",
		f.Kind, f.Kernel, f.File, f.Line, f.Block, f.Thread, f.Msg)
}

// Kernels returns the names of all registered kernels, sorted.
func Kernels() []string {
	n := int(C.cudasim_kernel_count())
	names := make([]string, 0, n)
	for i := 0; i < n; i++ {
		names = append(names, C.GoString(C.cudasim_kernel_name(C.int(i))))
	}
	sort.Strings(names)
	return names
}

// invalid returns an invalid-launch fault.
func invalid(kernel, format string, args ...any) *Fault {
	return &Fault{Kind: KindInvalidLaunch, Kernel: kernel, Msg: fmt.Sprintf(format, args...)}
}

// Launch runs kernel on the simulator and waits for it. grid and block are the launch shape,
// dynSmemBytes the dynamic shared memory per block (see DYNAMIC_SMEM in kernels/compat.cuh), args one
// raw 8-byte value per kernel parameter: a pointer from Alloc as uint64, an integer (its low bytes are
// used, so sign extension does not matter), a float32 as math.Float32bits, a float64 as
// math.Float64bits.
//
// The launch is validated first (kernel name, 1..1024 threads per block, grid dimensions, shared
// memory limit, argument count). Any problem, before or during the run, is returned as a *Fault.
func Launch(kernel string, grid, block Dim3, dynSmemBytes int, args []uint64, opt Options) error {
	cname := C.CString(kernel)
	defer C.free(unsafe.Pointer(cname))
	nargs := int(C.cudasim_kernel_nargs(cname))
	switch {
	case nargs < 0:
		msg := fmt.Sprintf("unknown kernel %q", kernel)
		if near := nearNames(kernel, Kernels()); len(near) > 0 {
			msg += " (did you mean " + strings.Join(near, ", ") + "?)"
		}
		return invalid(kernel, "%s; after adding a kernel run `go generate ./kernels/sim`", msg)
	case block.X < 1 || block.Y < 1 || block.Z < 1:
		return invalid(kernel, "block %v: every dimension must be at least 1", block)
	case block.X*block.Y*block.Z > 1024 || block.X > 1024 || block.Y > 1024 || block.Z > 64:
		return invalid(kernel, "block %v has %d threads: at most 1024 per block (x, y <= 1024, z <= 64)",
			block, block.X*block.Y*block.Z)
	case grid.X < 1 || grid.Y < 1 || grid.Z < 1:
		return invalid(kernel, "grid %v: every dimension must be at least 1", grid)
	case grid.X > 1<<31-1 || grid.Y > 65535 || grid.Z > 65535:
		return invalid(kernel, "grid %v: x must be < 2^31, y and z <= 65535", grid)
	case dynSmemBytes < 0 || dynSmemBytes > MaxDynamicSmem:
		return invalid(kernel, "dynamic shared memory of %d bytes exceeds the per-block limit of 227 KiB (%d bytes, sm_90)",
			dynSmemBytes, MaxDynamicSmem)
	case len(args) != nargs:
		return invalid(kernel, "kernel takes %d arguments, got %d", nargs, len(args))
	}

	// Arguments and the fault record live in C memory for the duration of the call.
	cargs := (*C.uint64_t)(C.malloc(C.size_t(8 * (len(args) + 1))))
	defer C.free(unsafe.Pointer(cargs))
	copy(unsafe.Slice((*uint64)(unsafe.Pointer(cargs)), len(args)), args)
	cf := (*C.cudasim_fault)(C.malloc(C.size_t(unsafe.Sizeof(C.cudasim_fault{}))))
	defer C.free(unsafe.Pointer(cf))
	copt := (*C.cudasim_options)(C.malloc(C.size_t(unsafe.Sizeof(C.cudasim_options{}))))
	defer C.free(unsafe.Pointer(copt))
	copt.reverse = 0
	if opt.Reverse {
		copt.reverse = 1
	}
	copt.workers = C.int32_t(max(opt.Workers, 1))
	copt.stack_bytes = C.int64_t(opt.StackBytes)

	rc := C.cudasim_launch(cname, C.int64_t(grid.X), C.int64_t(grid.Y), C.int64_t(grid.Z),
		C.int64_t(block.X), C.int64_t(block.Y), C.int64_t(block.Z), C.int64_t(dynSmemBytes),
		cargs, C.int32_t(len(args)), copt, cf)
	if rc == 0 {
		return nil
	}
	f := &Fault{
		Kind:   C.GoString(&cf.kind[0]),
		Kernel: C.GoString(&cf.kernel[0]),
		Msg:    C.GoString(&cf.msg[0]),
	}
	if cf.has_thread != 0 {
		f.Block = Dim3{int(cf.block[0]), int(cf.block[1]), int(cf.block[2])}
		f.Thread = Dim3{int(cf.thread[0]), int(cf.thread[1]), int(cf.thread[2])}
		f.File = C.GoString(&cf.file[0])
		f.Line = int(cf.line)
	}
	return f
}

// nearNames returns up to three registered names close to name (edit distance or shared prefix).
func nearNames(name string, names []string) []string {
	type cand struct {
		n string
		d int
	}
	var cs []cand
	for _, n := range names {
		d := editDistance(name, n)
		if d <= max(3, len(name)/3) || (len(name) >= 4 && (strings.HasPrefix(n, name) || strings.Contains(n, name))) {
			cs = append(cs, cand{n, d})
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].d < cs[j].d || (cs[i].d == cs[j].d && cs[i].n < cs[j].n) })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].n)
	}
	return out
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ---- simulated device memory ----------------------------------------------------------------------

// allocs records live allocations (base -> size) so that copies can be bounds-checked.
var allocs = struct {
	sync.Mutex
	bases []uintptr // sorted
	size  map[uintptr]int
}{size: map[uintptr]int{}}

// Alloc returns bytes of simulated device memory: C heap, 256-byte aligned, uninitialised.
func Alloc(bytes int) (uintptr, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("cudasim: Alloc(%d): negative size", bytes)
	}
	p := uintptr(C.cudasim_alloc(C.size_t(bytes)))
	if p == 0 {
		return 0, fmt.Errorf("cudasim: Alloc(%d): out of memory", bytes)
	}
	allocs.Lock()
	defer allocs.Unlock()
	i := sort.Search(len(allocs.bases), func(i int) bool { return allocs.bases[i] >= p })
	allocs.bases = append(allocs.bases, 0)
	copy(allocs.bases[i+1:], allocs.bases[i:])
	allocs.bases[i] = p
	allocs.size[p] = bytes
	return p, nil
}

// Free releases memory returned by Alloc.
func Free(p uintptr) error {
	allocs.Lock()
	defer allocs.Unlock()
	if _, ok := allocs.size[p]; !ok {
		return fmt.Errorf("cudasim: Free(%#x): not an allocation from Alloc (or already freed)", p)
	}
	delete(allocs.size, p)
	i := sort.Search(len(allocs.bases), func(i int) bool { return allocs.bases[i] >= p })
	allocs.bases = append(allocs.bases[:i], allocs.bases[i+1:]...)
	C.cudasim_free(C.uintptr_t(p))
	return nil
}

// checkRange panics unless [p, p+n) lies inside one live allocation: copying outside simulated
// device memory is a bug in the caller.
func checkRange(op string, p uintptr, n int) {
	if n < 0 {
		panic(fmt.Sprintf("cudasim: %s: negative length %d", op, n))
	}
	allocs.Lock()
	defer allocs.Unlock()
	i := sort.Search(len(allocs.bases), func(i int) bool { return allocs.bases[i] > p }) - 1
	if i >= 0 {
		base := allocs.bases[i]
		if p+uintptr(n) <= base+uintptr(allocs.size[base]) {
			return
		}
		panic(fmt.Sprintf("cudasim: %s of %d bytes at %#x overruns the allocation [%#x, +%d)", op, n, p, base, allocs.size[base]))
	}
	panic(fmt.Sprintf("cudasim: %s of %d bytes at %#x: not inside memory from Alloc", op, n, p))
}

// CopyIn copies src into simulated device memory at dst. It panics if the range is not inside one
// allocation from Alloc.
func CopyIn(dst uintptr, src []byte) {
	if len(src) == 0 {
		return
	}
	checkRange("CopyIn", dst, len(src))
	C.cudasim_copy_in(C.uintptr_t(dst), unsafe.Pointer(&src[0]), C.size_t(len(src)))
}

// CopyOut copies simulated device memory at src into dst. It panics if the range is not inside one
// allocation from Alloc.
func CopyOut(dst []byte, src uintptr) {
	if len(dst) == 0 {
		return
	}
	checkRange("CopyOut", src, len(dst))
	C.cudasim_copy_out(unsafe.Pointer(&dst[0]), C.uintptr_t(src), C.size_t(len(dst)))
}

// Memset sets n bytes of simulated device memory at p to b. It panics if the range is not inside one
// allocation from Alloc.
func Memset(p uintptr, b byte, n int) {
	if n == 0 {
		return
	}
	checkRange("Memset", p, n)
	C.cudasim_memset(C.uintptr_t(p), C.int(b), C.size_t(n))
}

// switchNanos measures the cost of one fiber context switch (iters barrier round trips of a single
// thread, two switches each), for tests and benchmarks.
func switchNanos(iters int) float64 { return float64(C.cudasim_switch_ns(C.int64_t(iters))) }
