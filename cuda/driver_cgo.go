//go:build cuda

package cuda

// #cgo CFLAGS: -Wno-deprecated-declarations
// #cgo LDFLAGS: -lcuda
// #cgo linux CFLAGS: -I/usr/local/cuda/include -I/usr/include
// #cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/local/cuda/lib64/stubs -L/usr/lib/x86_64-linux-gnu
// #include "driver_cgo.h"
import "C"

import (
	"fmt"
	"reflect"
	"unsafe"

	"gorgonia.org/cu"
)

// The small cgo layer of our own (go-cuda-notes.md §1.10): the launch wrapper, function
// attributes, the shared-memory opt-in, pinned host memory and error texts. It links the
// same libcuda.so.1 as gorgonia.org/cu.

// The C handles inside cu's types: cu.Function is struct{ fn C.CUfunction } and cu.Stream
// is struct{ s C.CUstream } (v0.9.6, pinned in go.mod); both are one C pointer.
func init() {
	if unsafe.Sizeof(cu.Function{}) != unsafe.Sizeof(uintptr(0)) || unsafe.Sizeof(cu.Stream{}) != unsafe.Sizeof(uintptr(0)) {
		panic("cuda: gorgonia.org/cu's Function or Stream layout changed; update driver_cgo.go")
	}
}

func cFunction(fn cu.Function) C.CUfunction { return *(*C.CUfunction)(unsafe.Pointer(&fn)) }

func cStream(s cu.Stream) C.CUstream { return *(*C.CUstream)(unsafe.Pointer(&s)) }

// DriverError is a failed CUDA driver call. Unwrap returns gorgonia.org/cu's error value,
// so errors.Is(err, cu.IllegalAddress) and the like work.
type DriverError struct {
	Call string // e.g. "cuLaunchKernel"
	Code int    // CUresult
	Name string // e.g. "CUDA_ERROR_ILLEGAL_ADDRESS"
	Desc string // the driver's description
	err  error
}

// Error formats the call, the code's name and its description.
func (e *DriverError) Error() string {
	if e.Desc != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Call, e.Name, e.Desc)
	}
	return fmt.Sprintf("%s: %s", e.Call, e.Name)
}

// Unwrap returns the cu error value.
func (e *DriverError) Unwrap() error { return e.err }

var cuResultType = reflect.TypeOf(cu.Success)

// driverErr wraps an error returned by gorgonia.org/cu (or a CUresult) with the call name.
func driverErr(call string, err error) error {
	if err == nil {
		return nil
	}
	v := reflect.ValueOf(err)
	if v.Type() != cuResultType {
		return fmt.Errorf("%s: %w", call, err)
	}
	return newDriverError(call, C.CUresult(v.Int()))
}

func newDriverError(call string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	v := reflect.New(cuResultType).Elem()
	v.SetInt(int64(r))
	e := &DriverError{Call: call, Code: int(r), err: v.Interface().(error)}
	var name, desc *C.char
	C.mdm_error_text(r, &name, &desc)
	if name != nil {
		e.Name = C.GoString(name)
	} else {
		e.Name = fmt.Sprintf("CUresult %d", int(r))
	}
	if desc != nil {
		e.Desc = C.GoString(desc)
	}
	return e
}

func launchKernel(fn unsafe.Pointer, grid, block Dim3, smem int, stream unsafe.Pointer, args []uint64) error {
	var a *C.uint64_t
	if len(args) > 0 {
		a = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	return newDriverError("cuLaunchKernel", C.mdm_launch(C.CUfunction(fn),
		C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z), C.uint(block.X), C.uint(block.Y), C.uint(block.Z),
		C.uint(smem), C.CUstream(stream), a, C.int(len(args))))
}

func funcInfo(fn cu.Function) (gpuFunc, error) {
	var mt, ss, md, nr, lb C.int
	if err := newDriverError("cuFuncGetAttribute", C.mdm_func_info(cFunction(fn), &mt, &ss, &md, &nr, &lb)); err != nil {
		return gpuFunc{}, err
	}
	return gpuFunc{handle: unsafe.Pointer(cFunction(fn)), maxThreads: int(mt), staticSmem: int(ss), maxDynSmem: int(md),
		numRegs: int(nr), localBytes: int(lb)}, nil
}

func setMaxDynSmem(fn unsafe.Pointer, n int) error {
	return newDriverError("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", C.mdm_func_set_max_dyn_smem(C.CUfunction(fn), C.int(n)))
}

func smemOptin(dev cu.Device) (int, error) {
	var n C.int
	err := newDriverError("cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)", C.mdm_device_smem_optin(C.CUdevice(dev), &n))
	return int(n), err
}

func hostAlloc(n int) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if err := newDriverError("cuMemHostAlloc", C.mdm_host_alloc(&p, C.size_t(n))); err != nil {
		return nil, err
	}
	return p, nil
}
