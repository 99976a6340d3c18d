package sim

import (
	"fmt"
	"strings"
	"testing"
)

// TestKernelFaults: kernel bugs come back as *Fault with kind, kernel, block, thread and file:line —
// never as a crash — in both thread orders, and the simulator keeps working afterwards.
func TestKernelFaults(t *testing.T) {
	neg := upload(t, []int32{0, 1, 2, -3, 4, 5, 6, 7})
	scratch := dev(t, 4096)
	cases := []struct {
		name, kernel string
		grid, block  Dim3
		args         []uint64
		kind, site   string
		block0       Dim3  // expected blockIdx
		thread       *Dim3 // expected threadIdx (nil: depends on the order)
		msg          []string
	}{
		{
			name: "divergent __syncthreads", kernel: "selftest_divergent_sync", grid: d1(2), block: d1(32),
			args: []uint64{ptr(scratch)}, kind: KindDivergentSync, site: "divergent-b", thread: &Dim3{16, 0, 0},
			msg: []string{"__syncthreads at kernels/sim/testdata/selftest.cu:", "threads 0-15 at the first, 16-31 at the second"},
		},
		{
			name: "half warp in a full-mask shuffle, half at a barrier", kernel: "selftest_deadlock_half_warp",
			grid: d1(1), block: d1(64), args: []uint64{ptr(scratch)}, kind: KindDeadlock, site: "deadlock-shfl",
			thread: &Dim3{0, 0, 0},
			msg:    []string{"threads 0-15,32-47 wait in __shfl_xor_sync(mask 0xffffffff, width 32)", "threads 16-31,48-63 wait in __syncthreads"},
		},
		{
			name: "full-mask shuffle from two call sites", kernel: "selftest_divergent_shfl", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch)}, kind: KindCollectiveMismatch, site: "divshfl-b", thread: &Dim3{16, 0, 0},
			msg: []string{"lane 0 waits in __shfl_xor_sync(mask 0xffffffff, width 32) at kernels/sim/testdata/selftest.cu:"},
		},
		{
			name: "shuffle width not a power of two", kernel: "selftest_shfl_i32", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch), ptr(scratch), i32(3), u32(0xffffffff), i32(1), i32(3)},
			kind: KindInvalidArgument, site: "shfl-xor", msg: []string{"width 3 is not a power of two"},
		},
		{
			name: "lane not in its own mask", kernel: "selftest_bad_mask", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch)}, kind: KindLaneNotInMask, site: "bad-mask", msg: []string{"not in the mask"},
		},
		{
			name: "shuffle source outside the mask", kernel: "selftest_shfl_outside_mask", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch)}, kind: KindBadShuffleSource, site: "outside-mask", thread: &Dim3{15, 0, 0},
			msg: []string{"lane 15 reads lane 16, which is not in the mask 0x0000ffff"},
		},
		{
			name: "__trap", kernel: "selftest_trap", grid: d1(3), block: d1(32),
			args: []uint64{ptr(scratch), i32(1), i32(5)}, kind: KindTrap, site: "trap", block0: Dim3{1, 0, 0}, thread: &Dim3{5, 0, 0},
		},
		{
			name: "device assert", kernel: "selftest_assert", grid: d1(1), block: d1(8),
			args: []uint64{ptr(neg)}, kind: KindAssert, site: "assert", thread: &Dim3{3, 0, 0}, msg: []string{"in[threadIdx.x] >= 0"},
		},
		{
			name: "mma.sync with exited lanes", kernel: "selftest_mma_exited", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch)}, kind: KindCollectiveMismatch, site: "mma-exited", msg: []string{"needs all 32 lanes"},
		},
		{
			name: "ldmatrix from global memory", kernel: "selftest_ldmatrix_global", grid: d1(1), block: d1(32),
			args: []uint64{ptr(scratch), ptr(scratch)}, kind: KindBadAddress, site: "ldsm-global", msg: []string{"not in the block's shared memory"},
		},
	}
	for _, tc := range cases {
		for _, c := range allConfigs {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				f := asFault(t, Launch(tc.kernel, tc.grid, tc.block, 0, tc.args, c.opt))
				line := siteLine(t, tc.site)
				if f.Kind != tc.kind || f.Kernel != tc.kernel || f.File != "kernels/sim/testdata/selftest.cu" || f.Line != line {
					t.Errorf("got %q in %s at %s:%d, want %q in %s at kernels/sim/testdata/selftest.cu:%d\n(%v)",
						f.Kind, f.Kernel, f.File, f.Line, tc.kind, tc.kernel, line, f)
				}
				if f.Block != tc.block0 && !(tc.block0 == Dim3{} && c.opt.Workers > 1) {
					t.Errorf("block: got %v, want %v", f.Block, tc.block0)
				}
				if tc.thread != nil && f.Thread != *tc.thread {
					t.Errorf("thread: got %v, want %v", f.Thread, *tc.thread)
				}
				for _, m := range tc.msg {
					if !strings.Contains(f.Error(), m) {
						t.Errorf("error %q does not mention %q", f.Error(), m)
					}
				}
			})
		}
	}
	// The simulator is still healthy after all of that.
	out := upload(t, fill(64, int32(-1)))
	mustLaunch(t, "selftest_early_exit_barrier", d1(4), d1(64), 0, []uint64{ptr(out), i32(64)}, Options{Workers: 2})
}

func TestFaultErrorFormat(t *testing.T) {
	scratch := dev(t, 256)
	err := Launch("selftest_divergent_sync", d1(1), d1(32), 0, []uint64{ptr(scratch)}, Options{})
	line := siteLine(t, "divergent-b")
	want := fmt.Sprintf("cudasim: divergent __syncthreads in kernel selftest_divergent_sync at kernels/sim/testdata/selftest.cu:%d (block (0,0,0), thread (16,0,0)): ", line)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v,\nwant prefix %q", err, want)
	}
}

func TestInvalidLaunch(t *testing.T) {
	p := dev(t, 1024)
	ok := []uint64{ptr(p), ptr(p), ptr(p), i64(10)}
	cases := []struct {
		name, kernel string
		grid, block  Dim3
		smem         int
		args         []uint64
		msg          string
	}{
		{"unknown kernel", "selftest_block_reduce", d1(1), d1(32), 128, ok, `unknown kernel "selftest_block_reduce" (did you mean selftest_block_reduce_f32`},
		{"too many threads", "selftest_block_reduce_f32", d1(1), d1(1025), 0, ok, "1025 threads: at most 1024"},
		{"too many threads 3d", "selftest_block_reduce_f32", d1(1), d3(32, 8, 8), 0, ok, "2048 threads"},
		{"zero block", "selftest_block_reduce_f32", d1(1), d3(32, 0, 1), 0, ok, "at least 1"},
		{"zero grid", "selftest_block_reduce_f32", d3(1, 1, 0), d1(32), 0, ok, "grid (1,1,0)"},
		{"grid y too large", "selftest_block_reduce_f32", d3(1, 65536, 1), d1(32), 0, ok, "y and z <= 65535"},
		{"too much shared memory", "selftest_block_reduce_f32", d1(1), d1(32), MaxDynamicSmem + 1, ok, "exceeds the per-block limit of 227 KiB (232448 bytes"},
		{"too few arguments", "selftest_block_reduce_f32", d1(1), d1(32), 128, ok[:3], "takes 4 arguments, got 3"},
		{"too many arguments", "selftest_block_reduce_f32", d1(1), d1(32), 128, append(ok, 0), "takes 4 arguments, got 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := asFault(t, Launch(tc.kernel, tc.grid, tc.block, tc.smem, tc.args, Options{}))
			if f.Kind != KindInvalidLaunch || !strings.Contains(f.Error(), tc.msg) {
				t.Errorf("got %v, want an invalid launch mentioning %q", f, tc.msg)
			}
			if !strings.HasPrefix(f.Error(), "cudasim: invalid launch of kernel "+tc.kernel+": ") {
				t.Errorf("error %q: unexpected format", f.Error())
			}
		})
	}
}

func TestKernelsSortedAndComplete(t *testing.T) {
	ks := Kernels()
	for i := 1; i < len(ks); i++ {
		if ks[i-1] >= ks[i] {
			t.Fatalf("Kernels() not sorted or has duplicates: %q before %q", ks[i-1], ks[i])
		}
	}
	for _, want := range []string{"selftest_block_reduce_f32", "selftest_gemm_bf16_mma", "selftest_oob_read"} {
		if _, found := slicesIndex(ks, want); !found {
			t.Errorf("Kernels() lacks %s", want)
		}
	}
}

func slicesIndex(s []string, x string) (int, bool) {
	for i, v := range s {
		if v == x {
			return i, true
		}
	}
	return -1, false
}

func TestMemory(t *testing.T) {
	p, err := Alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	if p%256 != 0 {
		t.Errorf("Alloc returned %#x, want 256-byte alignment", p)
	}
	Memset(p, 0xab, 1000)
	CopyIn(p+10, []byte{1, 2, 3})
	got := make([]byte, 6)
	CopyOut(got, p+8)
	if want := []byte{0xab, 0xab, 1, 2, 3, 0xab}; string(got) != string(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	mustPanic(t, "CopyIn past the end", func() { CopyIn(p+999, []byte{1, 2}) })
	mustPanic(t, "CopyOut outside memory", func() { CopyOut(make([]byte, 1), 8) })
	mustPanic(t, "Memset past the end", func() { Memset(p, 0, 1001) })
	if err := Free(p); err != nil {
		t.Fatal(err)
	}
	if err := Free(p); err == nil {
		t.Error("double Free: got nil error")
	}
	if _, err := Alloc(-1); err == nil {
		t.Error("Alloc(-1): got nil error")
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}
