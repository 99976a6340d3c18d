package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func newFakeDevice(t testing.TB, capacity int64, opts ...RealOption) (*RealDevice, *fakeDriver) {
	t.Helper()
	t.Setenv("MDM_CUDA_SYNC", "")
	t.Setenv("MDM_CUDA_TF32", "")
	f := newFakeDriver(capacity)
	d, err := newRealDevice(f, 0, []string{"noop"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, f
}

func TestRealDeviceName(t *testing.T) {
	d, _ := newFakeDevice(t, 1<<20)
	if got, want := d.Name(), "cuda:0 (Fake GPU)"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if got := d.Props().MaxSmemBlockOptin; got != 227<<10 {
		t.Errorf("Props().MaxSmemBlockOptin = %d, want %d", got, 227<<10)
	}
}

// TestRealDeviceThreadAffinity is pitfalls.md B17's stress test: many goroutines allocate,
// copy, launch, free and synchronise concurrently (yielding to force migrations); every
// driver call must happen on the worker's locked thread and every result must be exact.
func TestRealDeviceThreadAffinity(t *testing.T) {
	d, f := newFakeDevice(t, 64<<20)
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				n := 100 + 37*w + r
				p, err := d.Alloc(n)
				if err != nil {
					errc <- err
					return
				}
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(w*31 + r + i)
				}
				if err := d.CopyHtoD(p, src); err != nil {
					errc <- err
					return
				}
				runtime.Gosched()
				for range 3 {
					if err := d.Launch("incr_u8", D1(1), D1(32), 0, Args(p, n)...); err != nil {
						errc <- err
						return
					}
				}
				got := make([]byte, n)
				if err := d.CopyDtoH(got, p); err != nil {
					errc <- err
					return
				}
				for i := range got {
					if got[i] != src[i]+3 {
						errc <- fmt.Errorf("worker %d round %d: byte %d = %d, want %d", w, r, i, got[i], src[i]+3)
						return
					}
				}
				if r%7 == 0 {
					if err := d.Sync(); err != nil {
						errc <- err
						return
					}
				}
				if err := d.Free(p); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wrongTID != 0 {
		t.Errorf("%d driver calls ran off the worker thread (or outside open/close)", f.wrongTID)
	}
	if f.calls["launch"] != workers*rounds*3 {
		t.Errorf("launches = %d, want %d", f.calls["launch"], workers*rounds*3)
	}
}

func TestRealDeviceStickyFault(t *testing.T) {
	d, _ := newFakeDevice(t, 1<<20)
	p, err := d.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"noop", "incr_u8", "fault", "noop"} {
		if err := d.Launch(k, D1(1), D1(1), 0, Args(p, 64)...); err != nil {
			t.Fatalf("Launch(%s) = %v (asynchronous: want nil)", k, err)
		}
	}
	err = d.Sync()
	var ae *AsyncError
	if !errors.As(err, &ae) {
		t.Fatalf("Sync() = %v, want *AsyncError", err)
	}
	if !errors.Is(err, errFakeIllegalAddress) {
		t.Errorf("Sync() error does not wrap the driver error: %v", err)
	}
	if ae.Op != "sync" || ae.Kernel != "" {
		t.Errorf("Op, Kernel = %q, %q; want sync, \"\"", ae.Op, ae.Kernel)
	}
	if got, want := strings.Join(ae.Recent, ","), "noop,incr_u8,fault,noop"; got != want {
		t.Errorf("Recent = %s, want %s", got, want)
	}
	msg := err.Error()
	for _, s := range []string{"cuda:0 (Fake GPU)", "fault, noop", "MDM_CUDA_SYNC=1", "illegal memory access"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	// Every later call returns the same error.
	buf := make([]byte, 8)
	for name, e := range map[string]error{
		"Sync":     d.Sync(),
		"Launch":   d.Launch("noop", D1(1), D1(1), 0),
		"CopyDtoH": d.CopyDtoH(buf, p),
		"CopyHtoD": d.CopyHtoD(p, buf),
		"Memset":   d.Memset(p, 0, 8),
		"Gemm":     d.Gemm(&GemmParams{M: 1, N: 1, K: 1, A: p, B: p, C: p, TA: GemmF32, TB: GemmF32, TC: GemmF32, LDA: 1, LDB: 1, LDC: 1}),
	} {
		if e != error(ae) {
			t.Errorf("%s after the fault = %v, want the same *AsyncError", name, e)
		}
	}
	if _, e := d.Alloc(16); e != error(ae) {
		t.Errorf("Alloc after the fault = %v, want the same *AsyncError", e)
	}
}

func TestRealDeviceSyncEveryLaunchNamesKernel(t *testing.T) {
	d, _ := newFakeDevice(t, 1<<20, WithSyncEveryLaunch(true))
	if err := d.Launch("noop", D1(1), D1(1), 0); err != nil {
		t.Fatal(err)
	}
	err := d.Launch("fault", D1(1), D1(1), 0)
	var ae *AsyncError
	if !errors.As(err, &ae) {
		t.Fatalf("Launch(fault) = %v, want *AsyncError at once in the debug mode", err)
	}
	if ae.Kernel != "fault" {
		t.Errorf("Kernel = %q, want fault", ae.Kernel)
	}
	if strings.Contains(err.Error(), "rerun with MDM_CUDA_SYNC") {
		t.Errorf("debug hint shown in the debug mode: %v", err)
	}
}

func TestRealDeviceEnvSync(t *testing.T) {
	t.Setenv("MDM_CUDA_SYNC", "1")
	d, err := newRealDevice(newFakeDriver(1<<20), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.cfg.syncEveryLaunch {
		t.Error("MDM_CUDA_SYNC=1 did not turn on the synchronise-after-every-launch mode")
	}
}

func TestRealDeviceLaunchErrorNamesKernel(t *testing.T) {
	d, _ := newFakeDevice(t, 1<<20)
	if err := d.Launch("noop", D1(1), D1(1), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Launch("bad_launch", D1(1), D1(1), 0); err != nil {
		t.Fatalf("Launch = %v, want nil (reported asynchronously)", err)
	}
	err := d.Sync()
	var ae *AsyncError
	if !errors.As(err, &ae) || ae.Kernel != "bad_launch" || ae.Op != "launch" {
		t.Fatalf("Sync() = %v; want an *AsyncError naming bad_launch in op launch", err)
	}
}

func TestRealDeviceLaunchValidation(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	tooMany := make([]uint64, maxKernelArgs+1)
	cases := []struct {
		name          string
		kernel        string
		grid, block   Dim3
		smem          int
		args          []uint64
		want          string
		wantSentinel  error
		wantNoDriver  bool
		wantSmemCalls int
	}{
		{"zero grid", "noop", Dim3{0, 1, 1}, D1(32), 0, nil, "at least 1", nil, true, 0},
		{"zero block", "noop", D1(1), Dim3{32, 0, 1}, 0, nil, "at least 1", nil, true, 0},
		{"grid y", "noop", Dim3{1, 70000, 1}, D1(32), 0, nil, "grid exceeds", nil, true, 0},
		{"block z", "noop", D1(1), Dim3{1, 1, 65}, 0, nil, "block exceeds", nil, true, 0},
		{"launch bounds", "small_lb", D1(1), D1(256), 0, nil, "kernel allows at most 128", nil, true, 0},
		{"too many args", "noop", D1(1), D1(1), 0, tooMany, "arguments", nil, true, 0},
		{"smem above opt-in", "big_smem", D1(1), D1(32), 227 << 10, nil, "at most 231424 bytes", nil, true, 0},
		{"negative smem", "noop", D1(1), D1(32), -1, nil, "negative", nil, true, 0},
		{"unknown kernel", "no_such_kernel", D1(1), D1(1), 0, nil, "no_such_kernel", ErrKernelNotFound, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.count("launch")
			err := d.Launch(c.kernel, c.grid, c.block, c.smem, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Launch = %v, want an error containing %q", err, c.want)
			}
			if c.wantSentinel != nil && !errors.Is(err, c.wantSentinel) {
				t.Errorf("Launch = %v, want errors.Is %v", err, c.wantSentinel)
			}
			if c.kernel != "no_such_kernel" && !strings.Contains(err.Error(), c.kernel) {
				t.Errorf("error %q does not name the kernel", err)
			}
			if err := d.Sync(); err != nil {
				t.Errorf("Sync after a rejected launch = %v; a rejected launch must not stick", err)
			}
			if got := f.count("launch"); got != before {
				t.Errorf("the driver saw %d launches, want none", got-before)
			}
		})
	}
}

func TestRealDeviceSmemOptIn(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	for _, smem := range []int{0, 40 << 10, 100 << 10, 100 << 10, 64 << 10, 200 << 10} {
		if err := d.Launch("big_smem", D1(1), D1(32), smem); err != nil {
			t.Fatalf("Launch(smem=%d) = %v", smem, err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got, want := fmt.Sprint(f.smemSet), fmt.Sprint([]int{100 << 10, 200 << 10}); got != want {
		t.Errorf("cuFuncSetAttribute calls = %s, want %s (once per increase)", got, want)
	}
}

func TestRealDeviceKernelLookupCached(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	for range 10 {
		if err := d.Launch("noop", D1(1), D1(1), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := f.count("function"); got != 1 {
		t.Errorf("function lookups = %d, want 1", got)
	}
	if got := d.Launches(); got != 10 {
		t.Errorf("Launches() = %d, want 10", got)
	}
}

func TestRealDeviceOOM(t *testing.T) {
	const capacity = 1 << 20
	d, f := newFakeDevice(t, capacity)
	var ptrs []Ptr
	var oom *OOMError
	for {
		p, err := d.Alloc(100 << 10)
		if errors.As(err, &oom) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ptrs = append(ptrs, p)
		if len(ptrs) > 100 {
			t.Fatal("no OOM")
		}
	}
	if oom.Requested != 100<<10 || oom.Free < 0 || oom.Free >= 100<<10 || !strings.Contains(oom.Error(), "Fake GPU") {
		t.Errorf("OOMError = %+v", oom)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("out of memory must not stick: Sync() = %v", err)
	}
	// Free three blocks: the same size is served from the cache without the driver.
	allocsBefore := f.count("memAlloc")
	for _, p := range ptrs[:3] {
		if err := d.Free(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Alloc(100 << 10); err != nil {
		t.Fatalf("Alloc after Free = %v", err)
	}
	if got := f.count("memAlloc"); got != allocsBefore {
		t.Errorf("a cached size went to the driver (%d calls)", got-allocsBefore)
	}
	// A different size class needs the driver: the cached block is released and retried.
	if _, err := d.Alloc(150 << 10); err != nil {
		t.Fatalf("Alloc of another class after freeing = %v (the cache must be released on OOM)", err)
	}
	if st := d.AllocStats(); st.Releases == 0 {
		t.Errorf("AllocStats = %+v, want a cache release", st)
	}
	free, total, err := d.MemInfo()
	if err != nil || total != capacity || free < 0 || free > capacity {
		t.Errorf("MemInfo() = %d, %d, %v", free, total, err)
	}
}

func TestRealDeviceCopyBounds(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	p, err := d.Alloc(1000) // class 1024
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CopyHtoD(p+512, make([]byte, 512)); err != nil {
		t.Errorf("interior copy: %v", err)
	}
	for name, err := range map[string]error{
		"HtoD past the end": d.CopyHtoD(p+1000, make([]byte, 100)),
		"DtoH wild":         d.CopyDtoH(make([]byte, 4), 12345),
		"Memset past end":   d.Memset(p, 0, 4096),
	} {
		if err == nil || !strings.Contains(err.Error(), "outside every allocation") {
			t.Errorf("%s: %v, want an out-of-bounds error", name, err)
		}
	}
	if got := f.count("copyDtoH"); got != 0 {
		t.Errorf("rejected copy reached the driver")
	}
	if err := d.Free(p + 8); err == nil {
		t.Error("Free of an interior pointer succeeded")
	}
}

func TestRealDeviceGemmNoCUBLAS(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	f.gemmInitErr = &NoCUBLASError{Tried: []string{"libcublas.so.99"}, Reasons: []string{"not found"}}
	p, _ := d.Alloc(64)
	g := &GemmParams{M: 2, N: 2, K: 2, A: p, B: p, C: p, TA: GemmF32, TB: GemmF32, TC: GemmF32, LDA: 2, LDB: 2, LDC: 2, Alpha: 1}
	err := d.Gemm(g)
	if !errors.Is(err, ErrNoCUBLAS) || !strings.Contains(err.Error(), "libcublas.so.99") {
		t.Fatalf("Gemm = %v, want ErrNoCUBLAS naming the sonames", err)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("missing cuBLAS must not stick: %v", err)
	}
	f.gemmInitErr = nil
	for range 3 {
		if err := d.Gemm(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if f.gemms != 3 || f.count("gemmInit") != 2 {
		t.Errorf("gemms = %d, gemmInit calls = %d; want 3, 2", f.gemms, f.count("gemmInit"))
	}
	// Invalid parameters are rejected before the driver.
	bad := *g
	bad.LDA = 1
	if err := d.Gemm(&bad); err == nil || !strings.Contains(err.Error(), "leading dimension") {
		t.Errorf("Gemm(lda=1) = %v", err)
	}
}

func TestRealDeviceTimeAndPinned(t *testing.T) {
	d, _ := newFakeDevice(t, 1<<20)
	el, err := d.TimeStream(func() error { return d.Launch("noop", D1(1), D1(1), 0) })
	if err != nil || el != 1500*time.Microsecond {
		t.Errorf("TimeStream = %v, %v", el, err)
	}
	hb, err := d.HostAlloc(256)
	if err != nil {
		t.Fatal(err)
	}
	copy(hb.Bytes(), bytes.Repeat([]byte{7}, 256))
	p, _ := d.Alloc(256)
	if err := d.CopyHtoDAsync(p, hb, 0, 256); err != nil {
		t.Fatal(err)
	}
	if err := d.Launch("incr_u8", D1(1), D1(1), 0, Args(p, 128)...); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyDtoHAsync(hb, 0, p, 256); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if b := hb.Bytes(); b[0] != 8 || b[127] != 8 || b[128] != 7 {
		t.Errorf("pinned round trip: %v %v %v", b[0], b[127], b[128])
	}
	if err := d.CopyHtoDAsync(p, hb, 200, 100); err == nil {
		t.Error("pinned copy beyond the buffer accepted")
	}
	if err := hb.Free(); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyHtoDAsync(p, hb, 0, 1); err == nil {
		t.Error("pinned copy from a freed buffer accepted")
	}
}

func TestRealDeviceClose(t *testing.T) {
	d, f := newFakeDevice(t, 1<<20)
	p, _ := d.Alloc(4096)
	q, _ := d.Alloc(4096)
	d.Free(q)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	closed, used, wrong := f.closed, f.used, f.wrongTID
	f.mu.Unlock()
	if !closed || used != 0 || wrong != 0 {
		t.Errorf("after Close: closed=%v used=%d wrong-thread calls=%d", closed, used, wrong)
	}
	if err := d.Launch("noop", D1(1), D1(1), 0); err == nil {
		t.Error("Launch after Close succeeded")
	}
	if _, err := d.Alloc(1); err == nil {
		t.Error("Alloc after Close succeeded")
	}
	_ = p
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestRealDeviceBackend drives the fake device through Backend (allocation, guard bands,
// upload, download): the same path the ops take on the GPU.
func TestRealDeviceBackend(t *testing.T) {
	d, _ := newFakeDevice(t, 16<<20)
	b := NewBackend(d, WithGuardBands(256))
	x, err := b.Alloc(ops.F32, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, 15)
	for i := range in {
		in[i] = float32(i) - 7.5
	}
	if err := b.Upload(x, in); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 15)
	if err := b.Download(out, x); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Fatalf("element %d = %v, want %v", i, out[i], in[i])
		}
	}
	if err := b.CheckGuards(); err != nil {
		t.Fatal(err)
	}
	if err := b.Free(x); err != nil {
		t.Fatal(err)
	}
}

func TestKernelRing(t *testing.T) {
	r := newKernelRing(4)
	if got := r.snapshot(); len(got) != 0 || r.last() != "" {
		t.Errorf("empty ring: %v %q", got, r.last())
	}
	for i := range 3 {
		r.push(fmt.Sprint(i))
	}
	if got := strings.Join(r.snapshot(), ","); got != "0,1,2" || r.last() != "2" {
		t.Errorf("snapshot = %s, last %s", got, r.last())
	}
	for i := 3; i < 10; i++ {
		r.push(fmt.Sprint(i))
	}
	if got := strings.Join(r.snapshot(), ","); got != "6,7,8,9" || r.last() != "9" {
		t.Errorf("snapshot = %s, want 6,7,8,9 (last %s)", got, r.last())
	}
}
