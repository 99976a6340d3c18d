//go:build cuda

package sched

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// The few NCCL declarations we use (nccl.h is not needed at build time: the library is
// loaded at run time, so single-GPU and CPU runs never require NCCL).
typedef int mdm_ncclResult_t;
typedef struct { char internal[128]; } mdm_ncclUniqueId;
typedef void *mdm_ncclComm_t;
enum { mdm_ncclFloat32 = 7, mdm_ncclFloat64 = 8 };
enum { mdm_ncclSum = 0, mdm_ncclAvg = 4 };

static void *mdm_nccl_lib;
static mdm_ncclResult_t (*p_ncclGetVersion)(int *);
static mdm_ncclResult_t (*p_ncclGetUniqueId)(mdm_ncclUniqueId *);
static mdm_ncclResult_t (*p_ncclCommInitRank)(mdm_ncclComm_t *, int, mdm_ncclUniqueId, int);
static mdm_ncclResult_t (*p_ncclCommDestroy)(mdm_ncclComm_t);
static mdm_ncclResult_t (*p_ncclCommAbort)(mdm_ncclComm_t);
static mdm_ncclResult_t (*p_ncclCommGetAsyncError)(mdm_ncclComm_t, mdm_ncclResult_t *);
static mdm_ncclResult_t (*p_ncclAllReduce)(const void *, void *, size_t, int, int, mdm_ncclComm_t, void *);
static mdm_ncclResult_t (*p_ncclGroupStart)(void);
static mdm_ncclResult_t (*p_ncclGroupEnd)(void);
static const char *(*p_ncclGetErrorString)(mdm_ncclResult_t);
static int (*p_cuStreamSynchronize)(void *);
static int (*p_cuDeviceGet)(int *, int);
static int (*p_cuDevicePrimaryCtxRetain)(void **, int);
static int (*p_cuCtxSetCurrent)(void *);

// mdm_nccl_load dlopens NCCL (and the driver, for stream synchronisation) once and
// resolves every entry point; 0 on success, else a message in err.
static int mdm_nccl_load(char *err, int errlen) {
	if (mdm_nccl_lib) return 0;
	const char *names[] = {"libnccl.so.2", "libnccl.so"};
	void *h = NULL;
	for (int i = 0; i < 2 && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "cannot load libnccl.so.2: %s", dlerror());
		return -1;
	}
	void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (!cu) {
		snprintf(err, errlen, "cannot load libcuda.so.1: %s", dlerror());
		dlclose(h);
		return -1;
	}
#define SYM(lib, libname, var, name) \
	if (!(*(void **)(&var) = dlsym(lib, name))) { snprintf(err, errlen, "symbol %s missing from %s", name, libname); dlclose(h); return -1; }
#define NSYM(var, name) SYM(h, "libnccl.so.2", var, name)
	NSYM(p_ncclGetVersion, "ncclGetVersion")
	NSYM(p_ncclGetUniqueId, "ncclGetUniqueId")
	NSYM(p_ncclCommInitRank, "ncclCommInitRank")
	NSYM(p_ncclCommDestroy, "ncclCommDestroy")
	NSYM(p_ncclCommAbort, "ncclCommAbort")
	NSYM(p_ncclCommGetAsyncError, "ncclCommGetAsyncError")
	NSYM(p_ncclAllReduce, "ncclAllReduce")
	NSYM(p_ncclGroupStart, "ncclGroupStart")
	NSYM(p_ncclGroupEnd, "ncclGroupEnd")
	NSYM(p_ncclGetErrorString, "ncclGetErrorString")
	SYM(cu, "libcuda.so.1", p_cuStreamSynchronize, "cuStreamSynchronize")
	SYM(cu, "libcuda.so.1", p_cuDeviceGet, "cuDeviceGet")
	SYM(cu, "libcuda.so.1", p_cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	SYM(cu, "libcuda.so.1", p_cuCtxSetCurrent, "cuCtxSetCurrent")
#undef NSYM
#undef SYM
	mdm_nccl_lib = h;
	return 0;
}

static int mdm_nccl_version(int *v) { return p_ncclGetVersion(v); }
static int mdm_nccl_unique_id(void *id) { return p_ncclGetUniqueId((mdm_ncclUniqueId *)id); }
static int mdm_nccl_init_rank(uintptr_t *comm, int nranks, const void *id, int rank) {
	mdm_ncclUniqueId u;
	memcpy(&u, id, sizeof u);
	mdm_ncclComm_t c = NULL;
	int r = p_ncclCommInitRank(&c, nranks, u, rank);
	*comm = (uintptr_t)c;
	return r;
}
static int mdm_nccl_destroy(uintptr_t comm) { return p_ncclCommDestroy((mdm_ncclComm_t)comm); }
static int mdm_nccl_abort(uintptr_t comm) { return p_ncclCommAbort((mdm_ncclComm_t)comm); }
static int mdm_nccl_async_error(uintptr_t comm, int *e) { return p_ncclCommGetAsyncError((mdm_ncclComm_t)comm, e); }
static int mdm_nccl_group_start(void) { return p_ncclGroupStart(); }
static int mdm_nccl_group_end(void) { return p_ncclGroupEnd(); }
static int mdm_nccl_allreduce(uintptr_t buf, size_t count, int dtype, int op, uintptr_t comm, uintptr_t stream) {
	return p_ncclAllReduce((const void *)buf, (void *)buf, count, dtype, op, (mdm_ncclComm_t)comm, (void *)stream);
}
static const char *mdm_nccl_error_string(int r) { return p_ncclGetErrorString(r); }
static int mdm_cu_stream_sync(uintptr_t stream) { return p_cuStreamSynchronize((void *)stream); }
// mdm_cu_make_current makes GPU ordinal's primary context current on the calling thread
// (NCCL picks its device from the current context). The retained reference is kept for
// the life of the process, like the device's own.
static int mdm_cu_make_current(int ordinal) {
	int dev = 0;
	void *ctx = NULL;
	int r = p_cuDeviceGet(&dev, ordinal);
	if (r == 0) r = p_cuDevicePrimaryCtxRetain(&ctx, dev);
	if (r == 0) r = p_cuCtxSetCurrent(ctx);
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// NCCLAvailable reports whether this build can use NCCL (the `cuda` build tag).
const NCCLAvailable = true

var ncclLoad struct {
	once sync.Once
	err  error
}

func loadNCCL() error {
	ncclLoad.once.Do(func() {
		var buf [512]C.char
		if C.mdm_nccl_load(&buf[0], C.int(len(buf))) != 0 {
			ncclLoad.err = fmt.Errorf("%w: %s", ErrNoNCCL, C.GoString(&buf[0]))
		}
	})
	return ncclLoad.err
}

// NCCLVersion returns the loaded NCCL's version code (e.g. 22105 for 2.21.5).
func NCCLVersion() (int, error) {
	if err := loadNCCL(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.mdm_nccl_version(&v); r != 0 {
		return 0, ncclErr("ncclGetVersion", int(r))
	}
	return int(v), nil
}

func ncclErr(what string, r int) error {
	return fmt.Errorf("sched: %s: NCCL error %d (%s)", what, r, C.GoString(C.mdm_nccl_error_string(C.int(r))))
}

// streamer is implemented by devices that expose their CUDA stream (a CUstream as a
// uintptr), so that NCCL work is ordered after the kernels without a host synchronisation.
type streamer interface{ CUStream() uintptr }

// ncclReducer all-reduces gradients on the GPU with NCCL.
type ncclReducer struct {
	comm   uintptr
	rank   int
	stream uintptr
	sync   bool // the device has no exposed stream: synchronise around the legacy stream
}

// NCCLReducer is a Device.Reducer for real GPUs: rank 0 creates an NCCL unique id, c
// broadcasts it (over TCP between processes, in memory between devices of one process),
// and every rank joins the NCCL communicator on its device goroutine (its CUDA context is
// current there). Gradients are then summed on the GPUs by ncclAllReduce (one group call
// per step). c stays the control channel (flags, norm, checkpoints).
//
// NCCL's reduction order is its own (ring or tree over the links), not the package's fixed
// rank-order tree: gradients agree across device counts within fp32 summation-order
// tolerance, and every rank still receives identical bytes.
func NCCLReducer(be ops.Backend, c Comm) (GradReducer, error) {
	red, err := newNCCLReducer(be, c)
	if err != nil {
		// The other ranks are (or will be) waiting for this one in the id broadcast or
		// in ncclCommInitRank's own rendezvous on the control channel: release them.
		c.Abort(err)
	}
	return red, err
}

func newNCCLReducer(be ops.Backend, c Comm) (GradReducer, error) {
	if err := loadNCCL(); err != nil {
		return nil, fmt.Errorf("rank %d: %w", c.Rank(), err)
	}
	cb, ok := be.(*cuda.Backend)
	if !ok {
		return nil, fmt.Errorf("sched: NCCL needs a CUDA backend, got %s", be.Name())
	}
	// The scheduler calls this on the device's goroutine, locked to its OS thread: make
	// the GPU's primary context current there, so that NCCL binds to this GPU and its
	// calls (made from this thread at every step) run in the right context.
	ord, ok := cb.Device().(interface{ Ordinal() int })
	if !ok {
		return nil, fmt.Errorf("sched: NCCL needs a real GPU, got %s", be.Name())
	}
	if r := C.mdm_cu_make_current(C.int(ord.Ordinal())); r != 0 {
		return nil, fmt.Errorf("sched: making GPU %d's context current for NCCL: CUDA error %d", ord.Ordinal(), int(r))
	}
	id := make([]byte, 128)
	if c.Rank() == 0 {
		if r := C.mdm_nccl_unique_id(unsafe.Pointer(&id[0])); r != 0 {
			return nil, ncclErr("ncclGetUniqueId", int(r))
		}
	}
	if err := c.Broadcast(id, 0); err != nil {
		return nil, fmt.Errorf("sched: exchanging the NCCL unique id: %w", err)
	}
	var comm C.uintptr_t
	if r := C.mdm_nccl_init_rank(&comm, C.int(c.Size()), unsafe.Pointer(&id[0]), C.int(c.Rank())); r != 0 {
		return nil, ncclErr(fmt.Sprintf("ncclCommInitRank(rank %d of %d)", c.Rank(), c.Size()), int(r))
	}
	red := &ncclReducer{comm: uintptr(comm), rank: c.Rank(), sync: true}
	if s, ok := cb.Device().(streamer); ok {
		red.stream, red.sync = s.CUStream(), false
	}
	return red, nil
}

func (n *ncclReducer) ReduceGrads(be ops.Backend, grads []*ops.Tensor) error {
	cb := be.(*cuda.Backend)
	if n.sync {
		if err := cb.Sync(); err != nil {
			return err
		}
	}
	if r := C.mdm_nccl_group_start(); r != 0 {
		return ncclErr("ncclGroupStart", int(r))
	}
	var callErr error
	for _, g := range grads {
		p, err := cb.DevicePtr(g)
		if err != nil {
			callErr = err
			break
		}
		dt := C.int(C.mdm_ncclFloat32)
		switch g.DType() {
		case ops.F32:
		case ops.F64:
			dt = C.mdm_ncclFloat64
		default:
			callErr = fmt.Errorf("sched: NCCL all-reduce of a %v gradient (%s)", g.DType(), g.Name)
		}
		if callErr != nil {
			break
		}
		if r := C.mdm_nccl_allreduce(C.uintptr_t(p), C.size_t(g.Len()), dt, C.mdm_ncclSum, C.uintptr_t(n.comm), C.uintptr_t(n.stream)); r != 0 {
			callErr = ncclErr("ncclAllReduce of "+g.Name, int(r))
			break
		}
	}
	if r := C.mdm_nccl_group_end(); r != 0 && callErr == nil {
		callErr = ncclErr("ncclGroupEnd", int(r))
	}
	if callErr == nil {
		if n.sync {
			if r := C.mdm_cu_stream_sync(C.uintptr_t(n.stream)); r != 0 {
				callErr = fmt.Errorf("sched: cuStreamSynchronize after the NCCL all-reduce: CUDA error %d", int(r))
			}
		} else {
			callErr = cb.Sync()
		}
	}
	if callErr != nil {
		var async C.int
		if C.mdm_nccl_async_error(C.uintptr_t(n.comm), &async) == 0 && async != 0 {
			callErr = errors.Join(callErr, ncclErr("asynchronous", int(async)))
		}
		// A failed NCCL collective leaves the communicator unusable and other ranks
		// blocked in it: abort it so they fail too.
		C.mdm_nccl_abort(C.uintptr_t(n.comm))
		n.comm = 0
	}
	return callErr
}

func (n *ncclReducer) Close() error {
	if n.comm == 0 {
		return nil
	}
	r := C.mdm_nccl_destroy(C.uintptr_t(n.comm))
	n.comm = 0
	if r != 0 {
		return ncclErr("ncclCommDestroy", int(r))
	}
	return nil
}
