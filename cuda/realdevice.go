//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
	"unsafe"

	"gorgonia.org/cu"
)

// CUDABuild reports whether this binary was built with the `cuda` tag (and can drive a GPU).
//
// Importing gorgonia.org/cu makes this binary exit in its package init on a machine without
// a working CUDA driver and GPU (go-cuda-notes.md §1.2); the CPU build of mdm-gpu detects
// GPUs with NVML and hands over to this build (package cuda/detect).
const CUDABuild = true

// NewRealDevice opens GPU ordinal (cuda:N) and returns its *RealDevice: a goroutine locked
// to an OS thread with the device's primary context current executes every driver call of
// the device; kernels come from the fatbins embedded in this binary, GEMMs from cuBLAS
// loaded at run time. The environment variables MDM_CUDA_SYNC=1 (synchronise and check
// after every launch) and MDM_CUDA_TF32=1 (TF32 for F32 GEMMs) set the options too.
//
// One device is kept per ordinal: a second call returns the same device (and ignores
// opts) until it is closed.
func NewRealDevice(ordinal int, opts ...RealOption) (Device, error) {
	realMu.Lock()
	defer realMu.Unlock()
	if d := realDevices[ordinal]; d != nil {
		return d, nil
	}
	fatbins, err := embeddedFatbins()
	if err != nil {
		return nil, fmt.Errorf("cuda: reading the embedded fatbins: %w", err)
	}
	if len(fatbins) == 0 {
		return nil, ErrNoKernels
	}
	index, err := kernelIndex(fatbins)
	if err != nil {
		return nil, err
	}
	cfg := defaultRealConfig(opts)
	drv := &cuDriver{ordinal: ordinal, fatbins: fatbins, index: index, cublasNames: cfg.cublasNames,
		modules: map[string]cu.Module{}}
	d, err := newRealDevice(drv, ordinal, sortedKernelNames(index), opts...)
	if err != nil {
		return nil, err
	}
	realDevices[ordinal] = d
	return d, nil
}

// New returns a Backend on GPU ordinal (see NewRealDevice).
func New(ordinal int, opts ...Option) (*Backend, error) {
	dev, err := NewRealDevice(ordinal)
	if err != nil {
		return nil, err
	}
	return NewBackend(dev, opts...), nil
}

// cuDriver implements gpuDriver on gorgonia.org/cu's raw API plus driver_cgo.go. All its
// methods run on the device's worker thread.
type cuDriver struct {
	ordinal     int
	fatbins     map[string][]byte
	index       map[string]string // kernel → family
	cublasNames []string

	dev       cu.Device
	ctx       cu.CUContext
	retained  bool
	stream    cu.Stream
	cstream   unsafe.Pointer // the stream's CUstream (C memory), for launches and cuBLAS
	events    [2]cu.Event
	nevents   int
	modules   map[string]cu.Module
	blas      *cublasHandle
	propsName string
}

func (g *cuDriver) open() (Props, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return Props{}, driverErr("cuDeviceGetCount", err)
	}
	if g.ordinal < 0 || g.ordinal >= n {
		vis := ""
		if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
			vis = fmt.Sprintf(" (CUDA_VISIBLE_DEVICES=%q)", v)
		}
		return Props{}, fmt.Errorf("%w: cuda:%d requested but %d CUDA device(s) are visible%s", ErrNoCUDA, g.ordinal, n, vis)
	}
	if g.dev, err = cu.GetDevice(g.ordinal); err != nil {
		return Props{}, driverErr("cuDeviceGet", err)
	}
	if g.ctx, err = g.dev.RetainPrimaryCtx(); err != nil {
		return Props{}, driverErr("cuDevicePrimaryCtxRetain", err)
	}
	g.retained = true
	if err := cu.SetCurrentContext(g.ctx); err != nil {
		g.close()
		return Props{}, driverErr("cuCtxSetCurrent", err)
	}
	if g.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		g.close()
		return Props{}, driverErr("cuStreamCreate", err)
	}
	g.cstream = unsafe.Pointer(cStream(g.stream))
	for i := range g.events {
		if g.events[i], err = cu.MakeEvent(cu.DefaultEvent); err != nil {
			g.close()
			return Props{}, driverErr("cuEventCreate", err)
		}
		g.nevents++
	}
	name, err := g.dev.Name()
	if err != nil {
		g.close()
		return Props{}, driverErr("cuDeviceGetName", err)
	}
	a, err := g.dev.Attributes(cu.MultiprocessorCount, cu.MaxThreadsPerBlock, cu.MaxSharedMemoryPerBlock,
		cu.ComputeCapabilityMajor, cu.ComputeCapabilityMinor, cu.MemoryClockRate, cu.GlobalMemoryBusWidth)
	if err != nil {
		g.close()
		return Props{}, driverErr("cuDeviceGetAttribute", err)
	}
	optin, err := smemOptin(g.dev)
	if err != nil {
		g.close()
		return Props{}, err
	}
	p := Props{Name: name, SMs: a[0], MaxThreadsBlock: a[1], MaxSmemBlock: a[2], MaxSmemBlockOptin: optin,
		ComputeCapability: [2]int{a[3], a[4]}, PeakTFLOPsBF16: PeakBF16TFLOPs(name)}
	// Peak DRAM bandwidth: 2 transfers per clock (DDR) × clock × bus width.
	if a[5] > 0 && a[6] > 0 {
		p.MemBandwidthGBs = 2 * float64(a[5]) * 1e3 * float64(a[6]) / 8 / 1e9
	}
	g.propsName = name
	return p, nil
}

func (g *cuDriver) close() error {
	var errs []error
	if g.stream != (cu.Stream{}) {
		errs = append(errs, driverErr("cuStreamSynchronize", g.stream.Synchronize()))
	}
	if g.blas != nil {
		errs = append(errs, g.blas.destroy())
		g.blas = nil
	}
	for fam, m := range g.modules {
		errs = append(errs, driverErr("cuModuleUnload", m.Unload()))
		delete(g.modules, fam)
	}
	for i := 0; i < g.nevents; i++ {
		errs = append(errs, driverErr("cuEventDestroy", cu.DestroyEvent(&g.events[i])))
	}
	g.nevents = 0
	if g.stream != (cu.Stream{}) {
		errs = append(errs, driverErr("cuStreamDestroy", g.stream.Destroy()))
	}
	if g.retained {
		errs = append(errs, driverErr("cuDevicePrimaryCtxRelease", g.dev.ReleasePrimaryCtx()))
		g.retained = false
	}
	return errors.Join(errs...)
}

func (g *cuDriver) memAlloc(n int64) (Ptr, error) {
	p, err := cu.MemAlloc(n)
	if err == cu.OutOfMemory {
		return 0, fmt.Errorf("%w: %w", errDriverOOM, driverErr("cuMemAlloc", err))
	}
	if err != nil {
		return 0, driverErr("cuMemAlloc", err)
	}
	return Ptr(p), nil
}

func (g *cuDriver) memFree(p Ptr) error { return driverErr("cuMemFree", cu.MemFree(cu.DevicePtr(p))) }

func (g *cuDriver) memInfo() (int64, int64, error) {
	free, total, err := cu.MemInfo()
	return free, total, driverErr("cuMemGetInfo", err)
}

func (g *cuDriver) copyHtoD(dst Ptr, src unsafe.Pointer, n int64) error {
	// From pageable (Go) memory the driver stages the data before returning, so src may
	// be reused afterwards; the copy is ordered on the stream after earlier kernels.
	return driverErr("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, n, g.stream))
}

func (g *cuDriver) copyDtoH(dst unsafe.Pointer, src Ptr, n int64) error {
	if err := cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), n, g.stream); err != nil {
		return driverErr("cuMemcpyDtoHAsync", err)
	}
	return driverErr("cuStreamSynchronize", g.stream.Synchronize())
}

func (g *cuDriver) copyHtoDAsync(dst Ptr, src unsafe.Pointer, n int64) error {
	return driverErr("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, n, g.stream))
}

func (g *cuDriver) copyDtoHAsync(dst unsafe.Pointer, src Ptr, n int64) error {
	return driverErr("cuMemcpyDtoHAsync", cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), n, g.stream))
}

func (g *cuDriver) memset(p Ptr, b byte, n int64) error {
	return driverErr("cuMemsetD8Async", cu.MemsetD8Async(cu.DevicePtr(p), b, n, g.stream))
}

// module loads (once) the fatbin of a family.
func (g *cuDriver) module(fam string) (cu.Module, error) {
	if m, ok := g.modules[fam]; ok {
		return m, nil
	}
	m, err := cu.LoadData(string(g.fatbins[fam]))
	if err != nil {
		err = driverErr("cuModuleLoadData("+fam+".fatbin)", err)
		if errors.Is(err, cu.NoBinaryForGpu) || errors.Is(err, cu.InvalidPtx) || strings.Contains(err.Error(), "PTX") {
			err = fmt.Errorf("%w; the fatbins carry sm_90 and sm_80 code and compute_80 PTX (CUDA 11.8), "+
				"which needs an sm_80 or newer GPU and a driver ≥ 520", err)
		}
		return cu.Module{}, err
	}
	g.modules[fam] = m
	return m, nil
}

func (g *cuDriver) function(name string) (gpuFunc, error) {
	fam, ok := g.index[name]
	if !ok {
		fams := make([]string, 0, len(g.fatbins))
		for f := range g.fatbins {
			fams = append(fams, f)
		}
		sort.Strings(fams)
		return gpuFunc{}, fmt.Errorf("%w: %q is in none of the embedded fatbins (%s); is it declared extern \"C\" "+
			"and was its .cu rebuilt with cmake before `go build -tags cuda`?", ErrKernelNotFound, name, strings.Join(fams, ", "))
	}
	m, err := g.module(fam)
	if err != nil {
		return gpuFunc{}, err
	}
	fn, err := m.Function(name)
	if err != nil {
		if err == cu.NotFound {
			return gpuFunc{}, fmt.Errorf("%w: %q not found in %s.fatbin by the driver", ErrKernelNotFound, name, fam)
		}
		return gpuFunc{}, driverErr("cuModuleGetFunction("+name+")", err)
	}
	return funcInfo(fn)
}

func (g *cuDriver) setMaxDynSmem(fn unsafe.Pointer, n int) error { return setMaxDynSmem(fn, n) }

func (g *cuDriver) launch(fn unsafe.Pointer, grid, block Dim3, smem int, args []uint64) error {
	return launchKernel(fn, grid, block, smem, g.cstream, args)
}

func (g *cuDriver) gemmInit() error {
	if g.blas != nil {
		return nil
	}
	h, err := openCUBLAS(g.cublasNames, g.cstream)
	if err != nil {
		return err
	}
	g.blas = h
	return nil
}

func (g *cuDriver) gemm(c *cublasGemm) error { return g.blas.gemm(c) }

func (g *cuDriver) sync() error { return driverErr("cuStreamSynchronize", g.stream.Synchronize()) }

func (g *cuDriver) recordEvent(i int) error {
	return driverErr("cuEventRecord", g.events[i].Record(g.stream))
}

func (g *cuDriver) elapsed() (time.Duration, error) {
	ms, err := g.events[0].Elapsed(g.events[1])
	if err != nil {
		return 0, driverErr("cuEventElapsedTime", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

func (g *cuDriver) hostAlloc(n int) (unsafe.Pointer, error) { return hostAlloc(n) }

func (g *cuDriver) hostFree(p unsafe.Pointer) error {
	return driverErr("cuMemFreeHost", cu.MemFreeHost(p))
}
