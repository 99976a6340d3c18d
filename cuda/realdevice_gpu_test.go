//go:build cuda

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"gorgonia.org/cu"
)

// Tests of the real device on a GPU. Like every binary linking gorgonia.org/cu, this test
// binary exits in cu's package init on a machine without a CUDA driver and GPU
// (go-cuda-notes.md §1.2): CI only compiles it; bench/gpu-check.sh runs it. With a driver
// but no usable device for ordinal 0, the tests skip.

func realDevice(t testing.TB) *RealDevice {
	t.Helper()
	d, err := NewRealDevice(0)
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	rd := d.(*RealDevice)
	if err := rd.Sync(); err != nil {
		t.Fatalf("device unusable at the start of the test: %v", err)
	}
	return rd
}

// loadTestKernels registers the PTX test kernels with the device (on its worker thread).
func loadTestKernels(t testing.TB, d *RealDevice) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.call("test module", func() error {
		g := d.drv.(*cuDriver)
		if _, ok := g.fatbins["realdevice_test"]; ok {
			return nil
		}
		g.fatbins["realdevice_test"] = []byte(testKernelsPTX)
		for _, k := range []string{"mdm_test_args", "mdm_test_fault", "mdm_test_smem"} {
			g.index[k] = "realdevice_test"
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func TestRealOpen(t *testing.T) {
	d := realDevice(t)
	p := d.Props()
	t.Logf("%s: %d SMs, cc %d.%d, smem/block %d (opt-in %d), %.0f GB/s peak, %.0f TFLOP/s bf16 peak, driver %d, %d kernels",
		d.Name(), p.SMs, p.ComputeCapability[0], p.ComputeCapability[1], p.MaxSmemBlock, p.MaxSmemBlockOptin,
		p.MemBandwidthGBs, p.PeakTFLOPsBF16, cu.Version(), len(d.Kernels()))
	if p.SMs <= 0 || p.MaxThreadsBlock < 1024 || p.MaxSmemBlockOptin < p.MaxSmemBlock || p.MaxSmemBlock < 48<<10 {
		t.Errorf("implausible props %+v", p)
	}
	if len(d.Kernels()) == 0 {
		t.Error("no kernels embedded")
	}
	free, total, err := d.MemInfo()
	if err != nil || total <= 0 || free <= 0 || free > total {
		t.Errorf("MemInfo = %d, %d, %v", free, total, err)
	}
	if d2, err := NewRealDevice(0); err != nil || d2 != Device(d) {
		t.Errorf("second NewRealDevice(0) = %v, %v; want the same device", d2, err)
	}
	if _, err := NewRealDevice(1 << 20); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("NewRealDevice(huge ordinal) = %v, want ErrNoCUDA", err)
	}
}

// TestRealKernelsLoad looks up every embedded kernel: every module loads on this GPU and
// every function's attributes are readable (registers, local memory for spills).
func TestRealKernelsLoad(t *testing.T) {
	d := realDevice(t)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range d.Kernels() {
		f, err := d.kernel(k)
		if err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		t.Logf("%-32s max threads %4d, %3d regs, %5d B static smem, %3d B local/thread", k, f.maxThreads, f.numRegs, f.staticSmem, f.localBytes)
	}
	if _, err := d.kernel("no_such_kernel_anywhere"); !errors.Is(err, ErrKernelNotFound) {
		t.Errorf("unknown kernel: %v", err)
	}
}

func TestRealCopies(t *testing.T) {
	d := realDevice(t)
	n := 3<<20 + 13
	p, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(p)
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(i*7 + i>>11)
	}
	if err := d.CopyHtoD(p, src); err != nil {
		t.Fatal(err)
	}
	if err := d.Memset(p+1000, 0xAB, 77); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if err := d.CopyDtoH(got, p); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		want := src[i]
		if i >= 1000 && i < 1077 {
			want = 0xAB
		}
		if got[i] != want {
			t.Fatalf("byte %d = %#x, want %#x", i, got[i], want)
		}
	}
	if err := d.CopyDtoH(make([]byte, 16), p+Ptr(n)); err == nil {
		t.Error("copy past the allocation accepted")
	}
}

func TestRealLaunchArgs(t *testing.T) {
	d := realDevice(t)
	loadTestKernels(t, d)
	const n = 1000
	p, err := d.Alloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(p)
	if err := d.Launch("mdm_test_args", D1((n+127)/128), D1(128), 0,
		Args(p, int64(n), float32(0.5), int32(-3), 2.25, uint64(0x1234_5607))...); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4*n)
	if err := d.CopyDtoH(out, p); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		got := math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:]))
		want := 0.5*float32(i) + float32(-3) + float32(2.25) + float32(7)
		if got != want {
			t.Fatalf("out[%d] = %v, want %v", i, got, want)
		}
	}
}

func TestRealSmemOptIn(t *testing.T) {
	d := realDevice(t)
	loadTestKernels(t, d)
	p, _ := d.Alloc(4)
	defer d.Free(p)
	for _, n := range []int{1000, 25600, 50000} { // 4 KB, 100 KB, 200 KB
		smem := 4 * n
		if smem > d.Props().MaxSmemBlockOptin {
			t.Logf("skipping %d bytes: above the device's opt-in limit %d", smem, d.Props().MaxSmemBlockOptin)
			continue
		}
		if err := d.Launch("mdm_test_smem", D1(1), D1(256), smem, Args(p, int32(n))...); err != nil {
			t.Fatalf("smem %d: %v", smem, err)
		}
		out := make([]byte, 4)
		if err := d.CopyDtoH(out, p); err != nil {
			t.Fatalf("smem %d: %v", smem, err)
		}
		var want float32
		for i := range n {
			want += float32(i)
		}
		if got := math.Float32frombits(binary.LittleEndian.Uint32(out)); got != want {
			t.Errorf("smem %d: sum %v, want %v", smem, got, want)
		}
	}
	err := d.Launch("mdm_test_smem", D1(1), D1(256), d.Props().MaxSmemBlockOptin+4, Args(p, int32(10))...)
	if err == nil || !strings.Contains(err.Error(), "mdm_test_smem") {
		t.Errorf("launch above the opt-in limit: %v", err)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("rejected launch stuck: %v", err)
	}
}

func TestRealGemm(t *testing.T) {
	d := realDevice(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		m, n, k        int
		ta, tc         GemmType
		transA, transB bool
		beta           float32
	}{
		{64, 48, 32, GemmF32, GemmF32, false, false, 0},
		{97, 33, 65, GemmF32, GemmF32, true, false, 0.5},
		{128, 257, 64, GemmBF16, GemmBF16, false, true, 0},
		{31, 50, 1025, GemmBF16, GemmF32, true, true, 1},
		{1, 1, 1, GemmBF16, GemmBF16, false, false, 0},
		{5, 7, 0, GemmF32, GemmF32, false, false, 0.25},
	} {
		name := fmt.Sprintf("m%d_n%d_k%d_%d%d_tA%v_tB%v", c.m, c.n, c.k, c.ta, c.tc, c.transA, c.transB)
		t.Run(name, func(t *testing.T) {
			p := GemmParams{M: c.m, N: c.n, K: c.k, TA: c.ta, TB: c.ta, TC: c.tc, TransA: c.transA, TransB: c.transB,
				Alpha: 1.25, Beta: c.beta}
			ra, ca, rb, cb := c.m, c.k, c.k, c.n
			if c.transA {
				ra, ca = ca, ra
			}
			if c.transB {
				rb, cb = cb, rb
			}
			p.LDA, p.LDB, p.LDC = max(ca, 1), max(cb, 1), c.n
			size := map[GemmType]int{GemmF32: 4, GemmBF16: 2}
			mk := func(rows, cols int, ty GemmType) []byte {
				b := make([]byte, max(rows*cols, 1)*size[ty])
				for i := range rows * cols {
					v := float32(rng.NormFloat64())
					if ty == GemmBF16 {
						binary.LittleEndian.PutUint16(b[2*i:], BF16FromFloat32(v))
					} else {
						binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
					}
				}
				return b
			}
			a, b, cc := mk(ra, ca, c.ta), mk(rb, cb, c.ta), mk(c.m, c.n, c.tc)
			up := func(h []byte) Ptr {
				ptr, err := d.Alloc(len(h))
				if err != nil {
					t.Fatal(err)
				}
				if err := d.CopyHtoD(ptr, h); err != nil {
					t.Fatal(err)
				}
				return ptr
			}
			p.A, p.B, p.C = up(a), up(b), up(cc)
			defer d.Free(p.A)
			defer d.Free(p.B)
			defer d.Free(p.C)
			if err := d.Gemm(&p); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(cc))
			if err := d.CopyDtoH(got, p.C); err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), cc...)
			if err := HostGemm(&p, a, b, want); err != nil {
				t.Fatal(err)
			}
			tol := 1e-5 * math.Sqrt(float64(max(c.k, 1)))
			if c.tc == GemmBF16 {
				tol = 1.0 / 64
			}
			for i := range c.m * c.n {
				var g, w float64
				if c.tc == GemmBF16 {
					g = float64(Float32FromBF16(binary.LittleEndian.Uint16(got[2*i:])))
					w = float64(Float32FromBF16(binary.LittleEndian.Uint16(want[2*i:])))
				} else {
					g = float64(math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])))
					w = float64(math.Float32frombits(binary.LittleEndian.Uint32(want[4*i:])))
				}
				if math.Abs(g-w) > tol*(1+math.Abs(w)) {
					t.Fatalf("C[%d] = %v, want %v (tol %g)", i, g, w, tol)
				}
			}
		})
	}
}

// TestRealGemmFullFP32 shows F32 GEMMs do not use TF32 by default: 1+2^-12 survives in
// fp32 and is rounded away in TF32's 10-bit mantissa.
func TestRealGemmFullFP32(t *testing.T) {
	d := realDevice(t)
	const n = 64
	a := make([]byte, 4*n*n)
	b := make([]byte, 4*n*n)
	for i := range n * n {
		binary.LittleEndian.PutUint32(a[4*i:], math.Float32bits(1+1.0/4096))
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1))
	}
	pa, _ := d.Alloc(len(a))
	pb, _ := d.Alloc(len(b))
	pc, _ := d.Alloc(len(a))
	defer d.Free(pa)
	defer d.Free(pb)
	defer d.Free(pc)
	d.CopyHtoD(pa, a)
	d.CopyHtoD(pb, b)
	run := func(tf32 bool) float32 {
		d.mu.Lock()
		d.cfg.tf32 = tf32
		d.mu.Unlock()
		defer func() { d.mu.Lock(); d.cfg.tf32 = false; d.mu.Unlock() }()
		if err := d.Gemm(&GemmParams{M: n, N: n, K: n, A: pa, B: pb, C: pc, TA: GemmF32, TB: GemmF32, TC: GemmF32,
			LDA: n, LDB: n, LDC: n, Alpha: 1}); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 4)
		if err := d.CopyDtoH(out, pc); err != nil {
			t.Fatal(err)
		}
		return math.Float32frombits(binary.LittleEndian.Uint32(out))
	}
	if got, want := run(false), float32(n*(1+1.0/4096)); got != want {
		t.Errorf("fp32 GEMM = %v, want %v exactly (TF32 would give %v)", got, want, float32(n))
	}
	t.Logf("with TF32 allowed: %v", run(true))
}

func TestRealOOM(t *testing.T) {
	d := realDevice(t)
	_, total, err := d.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Alloc(int(total) * 2)
	var oom *OOMError
	if !errors.As(err, &oom) || oom.Requested != total*2 || oom.Free <= 0 {
		t.Fatalf("Alloc(2×total) = %v, want *OOMError with the free bytes", err)
	}
	t.Log(err)
	// Fill most of the memory, fail, free, and allocate again.
	chunk := int(total / 8)
	var ps []Ptr
	for len(ps) < 16 {
		p, err := d.Alloc(chunk)
		if errors.As(err, &oom) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 16 {
		t.Fatal("16 chunks of total/8 fit")
	}
	for _, p := range ps {
		if err := d.Free(p); err != nil {
			t.Fatal(err)
		}
	}
	half, err := d.Alloc(int(total / 2))
	if err != nil {
		t.Fatalf("Alloc after freeing = %v", err)
	}
	if err := d.Free(half); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("device stuck after OOM: %v", err)
	}
	if err := d.EmptyCache(); err != nil {
		t.Fatal(err)
	}
}

func TestRealPinnedAndTiming(t *testing.T) {
	d := realDevice(t)
	const n = 64 << 20
	hb, err := d.HostAlloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Free()
	for i := range hb.Bytes() {
		hb.Bytes()[i] = byte(i >> 12)
	}
	p, _ := d.Alloc(n)
	defer d.Free(p)
	el, err := d.TimeStream(func() error { return d.CopyHtoDAsync(p, hb, 0, n) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pinned HtoD of %d MiB: %v (%.1f GB/s)", n>>20, el, float64(n)/el.Seconds()/1e9)
	back := make([]byte, n)
	if err := d.CopyDtoH(back, p); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 4093 {
		if back[i] != byte(i>>12) {
			t.Fatalf("byte %d = %d", i, back[i])
		}
	}
}

// TestRealConcurrentUse is pitfalls.md B17 on the GPU: many goroutines allocate, copy,
// launch and free at once; results must be exact and no context error may appear.
func TestRealConcurrentUse(t *testing.T) {
	d := realDevice(t)
	loadTestKernels(t, d)
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 50 {
				n := 1 + (w*977+r*131)%5000
				p, err := d.Alloc(4 * n)
				if err != nil {
					errc <- err
					return
				}
				if err := d.Launch("mdm_test_args", D1((n+255)/256), D1(256), 0,
					Args(p, int64(n), float32(w), int32(r), 0.0, uint64(0))...); err != nil {
					errc <- err
					return
				}
				out := make([]byte, 4*n)
				if err := d.CopyDtoH(out, p); err != nil {
					errc <- err
					return
				}
				i := n - 1
				if got, want := math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:])), float32(w)*float32(i)+float32(r); got != want {
					errc <- fmt.Errorf("worker %d round %d: out[%d] = %v, want %v", w, r, i, got, want)
					return
				}
				d.Free(p)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestRealFault runs a faulting kernel in a child process (a fault ruins the context for
// the rest of the process) and checks the sticky, typed error in both modes.
func TestRealFault(t *testing.T) {
	if os.Getenv("MDM_TEST_FAULT_CHILD") != "" {
		d := realDevice(t)
		loadTestKernels(t, d)
		p, _ := d.Alloc(64)
		err := d.Launch("mdm_test_args", D1(1), D1(16), 0, Args(p, int64(16), float32(1), int32(0), 0.0, uint64(0))...)
		if err == nil {
			err = d.Launch("mdm_test_fault", D1(1), D1(32), 0, Args(Ptr(8))...)
		}
		if err == nil {
			err = d.Sync()
		}
		later := d.Launch("mdm_test_args", D1(1), D1(1), 0, Args(p, int64(1), float32(1), int32(0), 0.0, uint64(0))...)
		fmt.Printf("FAULT-ERROR: %v\nSAME-LATER: %v\nILLEGAL-ADDRESS: %v\n", err, later == err, errors.Is(err, cu.IllegalAddress))
		return
	}
	for _, mode := range []string{"async", "sync"} {
		t.Run(mode, func(t *testing.T) {
			realDevice(t) // skip without a GPU
			cmd := exec.Command(os.Args[0], "-test.run=^TestRealFault$", "-test.v")
			cmd.Env = append(os.Environ(), "MDM_TEST_FAULT_CHILD=1", "MDM_CUDA_SYNC=")
			if mode == "sync" {
				cmd.Env = append(cmd.Env, "MDM_CUDA_SYNC=1")
			}
			done := make(chan struct{})
			var out []byte
			go func() { out, _ = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
				t.Fatal("the faulting child hung")
			}
			s := string(out)
			t.Log(s)
			for _, want := range []string{"FAULT-ERROR: cuda: cuda:0", "mdm_test_fault", "SAME-LATER: true", "ILLEGAL-ADDRESS: true"} {
				if !strings.Contains(s, want) {
					t.Errorf("child output lacks %q", want)
				}
			}
			if mode == "sync" && !strings.Contains(s, "in kernel mdm_test_fault") {
				t.Errorf("debug mode did not name the failing kernel")
			}
		})
	}
}

// BenchmarkRealLaunch measures the caller's cost per launch of a tiny kernel and the
// GPU's throughput for such launches.
func BenchmarkRealLaunch(b *testing.B) {
	d := realDevice(b)
	loadTestKernels(b, d)
	p, _ := d.Alloc(4 * 256)
	defer d.Free(p)
	args := Args(p, int64(256), float32(1), int32(0), 0.0, uint64(0))
	b.ResetTimer()
	for i := range b.N {
		if err := d.Launch("mdm_test_args", D1(1), D1(256), 0, args...); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			d.Sync()
		}
	}
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
}
