package cuda

import (
	"errors"
	"fmt"
	"math"
)

// Ptr is a device address (0 is null).
type Ptr uint64

// Dim3 is a CUDA grid or block shape.
type Dim3 struct{ X, Y, Z int }

// D1 returns the one-dimensional Dim3 {x, 1, 1}.
func D1(x int) Dim3 { return Dim3{x, 1, 1} }

// Count returns X·Y·Z.
func (d Dim3) Count() int { return d.X * d.Y * d.Z }

// Props describes a device's limits, used by launchers to pick and check launch shapes.
type Props struct {
	Name              string
	SMs               int
	MaxThreadsBlock   int // 1024
	MaxSmemBlock      int // default dynamic shared memory limit per block in bytes (48 KiB)
	MaxSmemBlockOptin int // with opt-in (227 KiB on H100/H200)
	ComputeCapability [2]int
	MemBandwidthGBs   float64 // peak, for % of peak in benchmarks (0 if unknown)
	PeakTFLOPsBF16    float64 // dense bf16 tensor-core peak (0 if unknown)
}

// GemmType is the element type of a GEMM operand.
type GemmType uint8

// GEMM element types.
const (
	GemmF32 GemmType = iota + 1
	GemmBF16
)

// GemmParams is a row-major GEMM C = Alpha·op(A)·op(B) + Beta·C with op(A) [M, K],
// op(B) [K, N], C [M, N], leading dimensions in elements (row strides), fp32
// accumulation. With Beta = 0, C is not read.
type GemmParams struct {
	M, N, K        int
	A, B, C        Ptr
	TA, TB         GemmType // A and B share a type
	TC             GemmType
	TransA, TransB bool
	LDA, LDB, LDC  int
	Alpha, Beta    float32
}

// Device is the minimal runtime a GPU backend needs (after tinygrad's device runtime):
// memory, copies, launches by kernel name, GEMM and synchronisation. Implementations are
// not safe for concurrent use; one goroutine drives one device.
type Device interface {
	// Name identifies the device, e.g. "sim" or "cuda:0 (NVIDIA H200)".
	Name() string
	// Props returns the device's limits.
	Props() Props
	// Alloc returns n bytes of device memory, 256-byte aligned. Out of memory is an
	// *OOMError with the requested and free byte counts.
	Alloc(n int) (Ptr, error)
	// Free releases memory from Alloc.
	Free(p Ptr) error
	// CopyHtoD copies len(src) bytes from host memory to dst.
	CopyHtoD(dst Ptr, src []byte) error
	// CopyDtoH copies len(dst) bytes from src to host memory.
	CopyDtoH(dst []byte, src Ptr) error
	// Memset sets n bytes at p to b.
	Memset(p Ptr, b byte, n int) error
	// Launch runs kernel name on grid × block threads with dynSmem bytes of dynamic shared
	// memory. Each argument is a raw 64-bit value (see Arg). Launch errors (unknown
	// kernel, bad shape, a fault) are returned; on asynchronous devices a fault may
	// surface at the next Sync instead, and then sticks.
	Launch(name string, grid, block Dim3, dynSmem int, args ...uint64) error
	// Gemm runs a GEMM (cuBLAS on the GPU, the CPU on the simulator).
	Gemm(p *GemmParams) error
	// Sync waits for all work and returns the first (sticky) asynchronous error, wrapped
	// with the names of the last kernels launched.
	Sync() error
	// MemInfo returns free and total device memory in bytes.
	MemInfo() (free, total int64, err error)
	// Kernels lists the kernel names this device can launch.
	Kernels() []string
}

// ErrNoCUDA is returned by the real-device constructor in builds without the `cuda` tag,
// or when no GPU/driver is present.
var ErrNoCUDA = errors.New("cuda: no CUDA device available")

// OOMError reports an allocation the device could not satisfy.
type OOMError struct {
	Device          string
	Requested, Free int64
}

// Error formats the request and free memory.
func (e *OOMError) Error() string {
	return fmt.Sprintf("cuda: out of memory on %s: requested %d bytes, %d bytes free", e.Device, e.Requested, e.Free)
}

// Arg converts a kernel argument to its raw 64-bit form: Ptr and integer types are stored
// as 64-bit integers (kernels declare them long long / unsigned long long / pointers, or
// int for int32), float32 as its IEEE bits in the low 32 bits, float64 as its bits.
func Arg(v any) uint64 {
	switch x := v.(type) {
	case Ptr:
		return uint64(x)
	case int:
		return uint64(int64(x))
	case int64:
		return uint64(x)
	case int32:
		return uint64(uint32(x))
	case uint32:
		return uint64(x)
	case uint64:
		return x
	case float32:
		return uint64(math.Float32bits(x))
	case float64:
		return math.Float64bits(x)
	case bool:
		if x {
			return 1
		}
		return 0
	}
	panic(fmt.Sprintf("cuda.Arg: unsupported kernel argument type %T", v)) // programming error in a launcher
}

// Args converts a list of kernel arguments with Arg.
func Args(vs ...any) []uint64 {
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = Arg(v)
	}
	return out
}
