package cuda

// #cgo linux LDFLAGS: -ldl
// #include <stdlib.h>
// #include "cublas_loader.h"
import "C"

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"unsafe"
)

// cuBLAS is loaded with dlopen on the first GEMM of a real device (go-cuda-notes.md §2), so
// the binary starts on any machine and works with the cuBLAS of CUDA 11, 12 or 13. The
// loader (cublas_loader.c) has no CUDA build dependency and is part of every build; only
// its use needs a GPU.

// CUBLASSonames are the cuBLAS libraries tried, newest first. Each libcublas.so.N loads its
// libcublasLt.so.N itself (cublasGemmEx dispatches to cuBLASLt).
var CUBLASSonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// ErrNoCUBLAS is matched (errors.Is) by the error returned when no usable cuBLAS library is
// found; the error itself is a *NoCUBLASError naming every soname tried and why it failed.
var ErrNoCUBLAS = errors.New("cuda: cuBLAS not found")

// NoCUBLASError reports that no cuBLAS library could be loaded.
type NoCUBLASError struct {
	Tried   []string // sonames, in order
	Reasons []string // dlopen/dlsym message for each
}

// Error lists the libraries tried.
func (e *NoCUBLASError) Error() string {
	var b strings.Builder
	b.WriteString("cuda: cuBLAS not found (GEMMs on the GPU need it); tried ")
	for i, n := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", n, e.Reasons[i])
	}
	b.WriteString("; install the CUDA runtime libraries (e.g. the nvidia/cuda runtime image, the libcublas package of CUDA 11/12/13, or pip's nvidia-cublas-cu12 with its directory on LD_LIBRARY_PATH)")
	return b.String()
}

// Is makes errors.Is(err, ErrNoCUBLAS) true.
func (e *NoCUBLASError) Is(target error) bool { return target == ErrNoCUBLAS }

// cublasLib is a loaded cuBLAS (kept for the life of the process).
type cublasLib struct {
	soname              string
	major, minor, patch int
	c                   *C.mdm_cublas // C memory: the function pointer table
}

var (
	cublasMu    sync.Mutex
	cublasCache = map[string]*cublasLib{}
)

// loadCUBLAS opens the first library of names that resolves every entry point.
func loadCUBLAS(names []string) (*cublasLib, error) {
	key := strings.Join(names, "\x00")
	cublasMu.Lock()
	defer cublasMu.Unlock()
	if l := cublasCache[key]; l != nil {
		return l, nil
	}
	if len(names) == 0 {
		return nil, &NoCUBLASError{}
	}
	e := &NoCUBLASError{}
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	for _, n := range names {
		cn := C.CString(n)
		tab := (*C.mdm_cublas)(C.malloc(C.size_t(unsafe.Sizeof(C.mdm_cublas{}))))
		rc := C.mdm_cublas_open(cn, tab, errbuf, 512)
		C.free(unsafe.Pointer(cn))
		if rc != 0 {
			C.free(unsafe.Pointer(tab))
			e.Tried = append(e.Tried, n)
			e.Reasons = append(e.Reasons, C.GoString(errbuf))
			continue
		}
		l := &cublasLib{soname: n, c: tab}
		var maj, mnr, pat C.int
		if C.mdm_cublas_version(tab, &maj, &mnr, &pat) == 0 {
			l.major, l.minor, l.patch = int(maj), int(mnr), int(pat)
		}
		cublasCache[key] = l
		return l, nil
	}
	return nil, e
}

// Version returns "soname (major.minor.patch)".
func (l *cublasLib) Version() string {
	return fmt.Sprintf("%s (%d.%d.%d)", l.soname, l.major, l.minor, l.patch)
}

// cuBLAS ABI constants (cublas_api.h, library_types.h; stable across CUDA 11–13).
const (
	cublasOpN                 = 0
	cublasOpT                 = 1
	cudaR32F                  = 0
	cudaR16BF                 = 14
	cublasCompute32F          = 68
	cublasCompute32FFastTF32  = 77
	cublasDefaultMath         = 0
	cublasDisallowReducedPrec = 16 // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION
)

// cublasStatusName names a cuBLAS status code.
func cublasStatusName(s int) string {
	switch s {
	case 0:
		return "CUBLAS_STATUS_SUCCESS"
	case 1:
		return "CUBLAS_STATUS_NOT_INITIALIZED"
	case 3:
		return "CUBLAS_STATUS_ALLOC_FAILED"
	case 7:
		return "CUBLAS_STATUS_INVALID_VALUE"
	case 8:
		return "CUBLAS_STATUS_ARCH_MISMATCH"
	case 11:
		return "CUBLAS_STATUS_MAPPING_ERROR"
	case 13:
		return "CUBLAS_STATUS_EXECUTION_FAILED"
	case 14:
		return "CUBLAS_STATUS_INTERNAL_ERROR"
	case 15:
		return "CUBLAS_STATUS_NOT_SUPPORTED"
	case 16:
		return "CUBLAS_STATUS_LICENSE_ERROR"
	}
	return fmt.Sprintf("cuBLAS status %d", s)
}

// CUBLASError is a failed cuBLAS call.
type CUBLASError struct {
	Call   string
	Status int
}

// Error names the call and the status.
func (e *CUBLASError) Error() string {
	return fmt.Sprintf("cuda: %s: %s", e.Call, cublasStatusName(e.Status))
}

func cublasCheck(call string, s C.int) error {
	if s == 0 {
		return nil
	}
	return &CUBLASError{Call: call, Status: int(s)}
}

// cublasHandle is a cuBLAS handle bound to one stream. Its methods must run on the thread
// whose current context is the device's primary context (the device's worker).
type cublasHandle struct {
	lib *cublasLib
	h   unsafe.Pointer // cublasHandle_t (C memory)
}

// openCUBLAS returns a handle bound to stream from the first of names that loads and
// whose cublasCreate succeeds on the current context (a cuBLAS newer than the driver fails
// there, and the next, older soname is tried). The error, when none works, matches
// ErrNoCUBLAS and lists every library with its reason.
func openCUBLAS(names []string, stream unsafe.Pointer) (*cublasHandle, error) {
	e := &NoCUBLASError{}
	for _, n := range names {
		lib, err := loadCUBLAS([]string{n})
		if err == nil {
			var h *cublasHandle
			if h, err = newCUBLASHandle(lib, stream); err == nil {
				return h, nil
			}
		}
		var ne *NoCUBLASError
		e.Tried = append(e.Tried, n)
		if errors.As(err, &ne) && len(ne.Reasons) == 1 {
			e.Reasons = append(e.Reasons, ne.Reasons[0])
		} else {
			e.Reasons = append(e.Reasons, err.Error())
		}
	}
	return nil, e
}

// newCUBLASHandle creates a handle on the current context, binds it to stream (a CUstream,
// C memory) and sets the math mode: default math (TF32 only when a GEMM asks for it
// through its compute type) without reduced-precision split-K reductions.
func newCUBLASHandle(lib *cublasLib, stream unsafe.Pointer) (*cublasHandle, error) {
	var h unsafe.Pointer
	if err := cublasCheck("cublasCreate_v2 ("+lib.Version()+")", C.mdm_cublas_create(lib.c, &h)); err != nil {
		return nil, err
	}
	ch := &cublasHandle{lib: lib, h: h}
	if err := cublasCheck("cublasSetStream_v2", C.mdm_cublas_set_stream(lib.c, h, stream)); err != nil {
		ch.destroy()
		return nil, err
	}
	if err := cublasCheck("cublasSetMathMode", C.mdm_cublas_set_math_mode(lib.c, h, cublasDefaultMath|cublasDisallowReducedPrec)); err != nil {
		ch.destroy()
		return nil, err
	}
	return ch, nil
}

func (ch *cublasHandle) destroy() error {
	if ch == nil || ch.h == nil {
		return nil
	}
	err := cublasCheck("cublasDestroy_v2", C.mdm_cublas_destroy(ch.lib.c, ch.h))
	ch.h = nil
	return err
}

// gemm issues g (asynchronous on the handle's stream).
func (ch *cublasHandle) gemm(g *cublasGemm) error {
	s := C.mdm_cublas_gemm(ch.lib.c, ch.h, C.int(g.transa), C.int(g.transb), C.int(g.m), C.int(g.n), C.int(g.k),
		C.float(g.alpha), C.ulonglong(g.a), C.int(g.atype), C.int(g.lda),
		C.ulonglong(g.b), C.int(g.btype), C.int(g.ldb),
		C.float(g.beta), C.ulonglong(g.c), C.int(g.ctype), C.int(g.ldc), C.int(g.compute))
	return cublasCheck("cublasGemmEx", s)
}

// cublasGemm is one column-major cublasGemmEx call.
type cublasGemm struct {
	transa, transb int32 // cublasOpN / cublasOpT
	m, n, k        int32
	a              Ptr
	atype, lda     int32
	b              Ptr
	btype, ldb     int32
	c              Ptr
	ctype, ldc     int32
	alpha, beta    float32
	compute        int32
}

// colMajorGemm maps a row-major GemmParams to the column-major cuBLAS call computing it.
//
// A row-major matrix X with row stride ld is, read column-major with the same leading
// dimension, Xᵀ. So row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: call
// cuBLAS with the operands swapped (its A is our B, its B is our A), m = N, n = M, k = K,
// and each operand transposed iff it is transposed in GemmParams. Leading dimensions carry
// over unchanged. bf16 operands compute in fp32 (CUBLAS_COMPUTE_32F) with bf16 or fp32
// output; fp32 operands compute in full fp32 unless tf32 allows TF32 tensor cores.
func colMajorGemm(p *GemmParams, tf32 bool) (cublasGemm, error) {
	bad := func(format string, a ...any) (cublasGemm, error) {
		return cublasGemm{}, fmt.Errorf("cuda: GEMM m=%d n=%d k=%d: %s", p.M, p.N, p.K, fmt.Sprintf(format, a...))
	}
	if p.M < 0 || p.N < 0 || p.K < 0 {
		return bad("negative dimension")
	}
	if p.M > math.MaxInt32 || p.N > math.MaxInt32 || p.K > math.MaxInt32 {
		return bad("dimension exceeds 2^31-1 (cuBLAS 32-bit API)")
	}
	if p.TA != p.TB {
		return bad("A and B must have the same element type")
	}
	g := cublasGemm{m: int32(p.N), n: int32(p.M), k: int32(p.K), a: p.B, b: p.A, c: p.C, alpha: p.Alpha, beta: p.Beta}
	switch {
	case p.TA == GemmBF16 && (p.TC == GemmBF16 || p.TC == GemmF32):
		g.atype, g.compute = cudaR16BF, cublasCompute32F
	case p.TA == GemmF32 && p.TC == GemmF32:
		g.atype, g.compute = cudaR32F, cublasCompute32F
		if tf32 {
			g.compute = cublasCompute32FFastTF32
		}
	default:
		return bad("element types %d×%d→%d are not supported by cuBLAS (bf16×bf16→bf16|f32, f32×f32→f32)", p.TA, p.TB, p.TC)
	}
	g.btype = g.atype
	g.ctype = cudaR32F
	if p.TC == GemmBF16 {
		g.ctype = cudaR16BF
	}
	// Stored (row-major) widths: A is [M,K] or, transposed, [K,M]; B is [K,N] or [N,K].
	wa, wb := p.K, p.N
	g.transb, g.transa = cublasOpN, cublasOpN
	if p.TransA {
		wa = p.M
		g.transb = cublasOpT
	}
	if p.TransB {
		wb = p.K
		g.transa = cublasOpT
	}
	if p.LDA < max(1, wa) || p.LDB < max(1, wb) || p.LDC < max(1, p.N) {
		return bad("leading dimensions lda=%d ldb=%d ldc=%d must be at least the stored widths %d, %d, %d",
			p.LDA, p.LDB, p.LDC, max(1, wa), max(1, wb), max(1, p.N))
	}
	if p.LDA > math.MaxInt32 || p.LDB > math.MaxInt32 || p.LDC > math.MaxInt32 {
		return bad("leading dimension exceeds 2^31-1")
	}
	g.lda, g.ldb, g.ldc = int32(p.LDB), int32(p.LDA), int32(p.LDC)
	if p.M > 0 && p.N > 0 {
		if p.C == 0 || (p.K > 0 && (p.A == 0 || p.B == 0)) {
			return bad("null operand pointer")
		}
	}
	return g, nil
}
