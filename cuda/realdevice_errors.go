package cuda

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of the real device (pitfalls.md B16): every failure is a typed Go error that says
// what failed and what to do; asynchronous failures stick.

// ErrNoKernels is returned by NewRealDevice when the binary was built with `-tags cuda` but
// without the kernel fatbins (cuda/kernelsbin/*.fatbin, produced by cmake).
var ErrNoKernels = errors.New("cuda: this binary embeds no kernel fatbins; build them with `cmake -S . -B build && cmake --build build` before `go build -tags cuda`")

// ErrKernelNotFound is wrapped by Launch when no embedded fatbin holds the kernel.
var ErrKernelNotFound = errors.New("cuda: kernel not found")

// errDriverOOM is wrapped by a driver's memAlloc when the device is out of memory (the
// allocator turns it into an *OOMError after releasing its cache and retrying).
var errDriverOOM = errors.New("cuda: driver out of memory")

// AsyncError is a sticky device failure: a kernel fault, a failed launch, copy, GEMM or
// synchronisation. Once a device reports one, every later call returns the same
// *AsyncError (the CUDA context of a faulted device is unusable until the process exits).
// It carries the names of the last kernels issued to the device, oldest first, because a
// fault in an asynchronous launch surfaces at a later call.
type AsyncError struct {
	Device string
	// Op is the call that surfaced the failure ("launch", "sync", "copy to host", "gemm", …).
	Op string
	// Kernel is the kernel that failed when it is known exactly: a launch the driver
	// rejected, or any fault in the synchronise-after-every-launch debug mode.
	Kernel string
	// Recent are the last kernels (and GEMMs) issued, oldest first.
	Recent []string
	// Err is the driver or cuBLAS error.
	Err error
	// debugHint: whether to suggest the debug mode (not in it already, kernel unknown).
	debugHint bool
}

// Error formats the failure with the kernel history.
func (e *AsyncError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cuda: %s: %s failed", e.Device, e.Op)
	if e.Kernel != "" {
		fmt.Fprintf(&b, " in kernel %s", e.Kernel)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if len(e.Recent) > 0 {
		fmt.Fprintf(&b, "; last kernels issued (oldest first): %s", strings.Join(e.Recent, ", "))
	} else {
		b.WriteString("; no kernel had been issued")
	}
	b.WriteString("; the device is unusable until the process restarts")
	if e.debugHint {
		b.WriteString(" (rerun with MDM_CUDA_SYNC=1 to synchronise after every launch and name the failing kernel)")
	}
	return b.String()
}

// Unwrap returns the driver error (errors.Is(err, cu.IllegalAddress) works in cuda builds).
func (e *AsyncError) Unwrap() error { return e.Err }

// kernelRing keeps the names of the last len(names) kernels issued (not safe for concurrent
// use: only the device's worker goroutine touches it).
type kernelRing struct {
	names []string
	next  int
	full  bool
}

func newKernelRing(n int) *kernelRing { return &kernelRing{names: make([]string, n)} }

// push records a kernel name.
func (r *kernelRing) push(name string) {
	if len(r.names) == 0 {
		return
	}
	r.names[r.next] = name
	r.next++
	if r.next == len(r.names) {
		r.next, r.full = 0, true
	}
}

// last returns the most recent name ("" if none).
func (r *kernelRing) last() string {
	if len(r.names) == 0 || (!r.full && r.next == 0) {
		return ""
	}
	return r.names[(r.next+len(r.names)-1)%len(r.names)]
}

// snapshot returns the recorded names, oldest first.
func (r *kernelRing) snapshot() []string {
	if !r.full {
		return append([]string(nil), r.names[:r.next]...)
	}
	out := make([]string, 0, len(r.names))
	out = append(out, r.names[r.next:]...)
	return append(out, r.names[:r.next]...)
}
