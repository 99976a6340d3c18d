package sim

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// Every positive test runs each config and requires bit-identical results across them.

func TestBlockReduce(t *testing.T) {
	const n, grid, block = 100000, 40, 256
	g := lcg(1)
	x := make([]float32, n)
	for i := range x {
		x[i] = g.signed()
	}
	refBlock := make([]float64, grid)
	var ref float64
	for i, v := range x {
		refBlock[(i/block)%grid] += float64(v)
		ref += float64(v)
	}
	var firstP []float32
	var firstTotal float32
	for _, c := range allConfigs {
		t.Run(c.name, func(t *testing.T) {
			xp := upload(t, x)
			partials := dev(t, 4*grid)
			total := upload(t, []float32{0})
			start := time.Now()
			mustLaunch(t, "selftest_block_reduce_f32", d1(grid), d1(block), 4*block,
				[]uint64{ptr(xp), ptr(partials), ptr(total), i64(n)}, c.opt)
			t.Logf("40 blocks x 256 threads: %v", time.Since(start))
			p := download[float32](t, partials, grid)
			tot := download[float32](t, total, 1)[0]
			for b := range p {
				if d := math.Abs(float64(p[b]) - refBlock[b]); d > 2e-3 {
					t.Errorf("block %d: got %v, want %v (diff %g)", b, p[b], refBlock[b], d)
				}
			}
			if d := math.Abs(float64(tot) - ref); d > 2e-2 {
				t.Errorf("total: got %v, want %v (diff %g)", tot, ref, d)
			}
			if firstP == nil {
				firstP, firstTotal = p, tot
				return
			}
			if err := bitsEqual32(p, firstP); err != nil {
				t.Errorf("partials differ from %s: %v", allConfigs[0].name, err)
			}
			// The float atomicAdd of the total depends on block order, fixed only with one worker.
			if c.opt.Workers <= 1 && math.Float32bits(tot) != math.Float32bits(firstTotal) {
				t.Errorf("total %v differs from %s's %v", tot, allConfigs[0].name, firstTotal)
			}
		})
	}
}

func TestSoftmaxRows(t *testing.T) {
	const rows, cols, block = 37, 300, 128
	g := lcg(2)
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = 8 * g.signed()
	}
	ref := make([]float64, rows*cols)
	for r := 0; r < rows; r++ {
		m := math.Inf(-1)
		for c := 0; c < cols; c++ {
			m = math.Max(m, float64(x[r*cols+c]))
		}
		var s float64
		for c := 0; c < cols; c++ {
			s += math.Exp(float64(x[r*cols+c]) - m)
		}
		for c := 0; c < cols; c++ {
			ref[r*cols+c] = math.Exp(float64(x[r*cols+c])-m) / s
		}
	}
	var first []float32
	for _, c := range allConfigs {
		t.Run(c.name, func(t *testing.T) {
			xp := upload(t, x)
			y := upload(t, fill(rows*cols, float32(-1)))
			mustLaunch(t, "selftest_softmax_rows_f32", d1((rows+3)/4), d1(block), 0,
				[]uint64{ptr(xp), ptr(y), i32(rows), i32(cols)}, c.opt)
			got := download[float32](t, y, rows*cols)
			var worst float64
			for i := range got {
				worst = math.Max(worst, math.Abs(float64(got[i])-ref[i]))
			}
			if worst > 1e-6 {
				t.Errorf("max abs error %g, want <= 1e-6", worst)
			}
			if first == nil {
				first = got
			} else if err := bitsEqual32(got, first); err != nil {
				t.Errorf("differs from %s: %v", allConfigs[0].name, err)
			}
		})
	}
}

// gemmData returns A [m*k], B [k*n] as bf16 bits: small integers (exact products and sums) or random.
func gemmData(m, n, k int, integers bool, seed uint64) (a, b []uint16) {
	g := lcg(seed)
	gen := func(cnt int) []uint16 {
		v := make([]uint16, cnt)
		for i := range v {
			if integers {
				v[i] = toBF16(float32(g.intn(9) - 4))
			} else {
				v[i] = toBF16(2 * g.signed())
			}
		}
		return v
	}
	return gen(m * k), gen(k * n)
}

// gemmRef computes C = A·B in float64 from bf16 bits (B row-major [k][n]).
func gemmRef(a, b []uint16, m, n, k int) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(fromBF16(a[i*k+p])) * float64(fromBF16(b[p*n+j]))
			}
			c[i*n+j] = s
		}
	}
	return c
}

func transpose16(b []uint16, k, n int) []uint16 {
	t := make([]uint16, len(b))
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			t[j*k+p] = b[p*n+j]
		}
	}
	return t
}

func checkGemm(t *testing.T, got []float32, ref []float64, exact bool) {
	t.Helper()
	var worst float64
	for i := range got {
		d := math.Abs(float64(got[i]) - ref[i])
		if exact && d != 0 {
			t.Fatalf("element %d: got %v, want exactly %v", i, got[i], ref[i])
		}
		worst = math.Max(worst, d/(1+math.Abs(ref[i])))
	}
	if worst > 1e-6 {
		t.Errorf("max relative error %g, want <= 1e-6", worst)
	}
}

func TestGemmMma(t *testing.T) {
	for _, tc := range []struct {
		m, n, k  int
		integers bool
	}{
		{64, 48, 64, true},
		{64, 48, 64, false},
		{37, 21, 40, true}, // partial tiles: zero padding at every edge
	} {
		a, b := gemmData(tc.m, tc.n, tc.k, tc.integers, 3)
		ref := gemmRef(a, b, tc.m, tc.n, tc.k)
		bt := transpose16(b, tc.k, tc.n)
		var first []float32
		for _, c := range allConfigs {
			t.Run(fmt.Sprintf("m=%d,n=%d,k=%d,int=%v/%s", tc.m, tc.n, tc.k, tc.integers, c.name), func(t *testing.T) {
				ap, bp := upload(t, a), upload(t, bt)
				cp := upload(t, fill(tc.m*tc.n, float32(math.NaN())))
				mustLaunch(t, "selftest_gemm_bf16_mma", d3((tc.n+15)/16, (tc.m+31)/32, 1), d1(128), 0,
					[]uint64{ptr(ap), ptr(bp), ptr(cp), i32(int32(tc.m)), i32(int32(tc.n)), i32(int32(tc.k))}, c.opt)
				got := download[float32](t, cp, tc.m*tc.n)
				checkGemm(t, got, ref, tc.integers)
				if first == nil {
					first = got
				} else if err := bitsEqual32(got, first); err != nil {
					t.Errorf("differs from %s: %v", allConfigs[0].name, err)
				}
			})
		}
	}
}

func TestGemmLdmatrixCpAsync(t *testing.T) {
	const m, n, k = 64, 64, 48
	for _, integers := range []bool{true, false} {
		a, b := gemmData(m, n, k, integers, 4)
		ref := gemmRef(a, b, m, n, k)
		var first []float32
		for _, c := range allConfigs {
			t.Run(fmt.Sprintf("int=%v/%s", integers, c.name), func(t *testing.T) {
				ap, bp := upload(t, a), upload(t, b)
				cp := upload(t, fill(m*n, float32(math.NaN())))
				mustLaunch(t, "selftest_gemm_bf16_ldsm", d3(n/32, m/32, 1), d1(128), 0,
					[]uint64{ptr(ap), ptr(bp), ptr(cp), i32(m), i32(n), i32(k)}, c.opt)
				got := download[float32](t, cp, m*n)
				checkGemm(t, got, ref, integers)
				if first == nil {
					first = got
				} else if err := bitsEqual32(got, first); err != nil {
					t.Errorf("differs from %s: %v", allConfigs[0].name, err)
				}
			})
		}
	}
}

// TestLdmatrixFragments checks every ldmatrix variant against the PTX ISA definition: thread t gets
// (row t/4, cols 2(t%4), 2(t%4)+1) of each matrix, or with .trans (rows 2(t%4), 2(t%4)+1, col t/4).
func TestLdmatrixFragments(t *testing.T) {
	mat := make([]uint16, 256)
	for j := 0; j < 4; j++ {
		for r := 0; r < 8; r++ {
			for c := 0; c < 8; c++ {
				mat[j*64+r*8+c] = uint16(1000*j + 10*r + c)
			}
		}
	}
	at := func(j, r, c int) uint32 { return uint32(mat[j*64+r*8+c]) }
	variants := []struct {
		name  string
		num   int
		trans bool
	}{{"x1", 1, false}, {"x2", 2, false}, {"x4", 4, false}, {"x2.trans", 2, true}, {"x4.trans", 4, true}}
	for _, c := range oneWorker {
		t.Run(c.name, func(t *testing.T) {
			mp := upload(t, mat)
			out := upload(t, make([]uint32, 5*128))
			mustLaunch(t, "selftest_ldmatrix_frags", d1(1), d1(32), 0, []uint64{ptr(mp), ptr(out)}, c.opt)
			got := download[uint32](t, out, 5*128)
			for v, vr := range variants {
				for lane := 0; lane < 32; lane++ {
					for j := 0; j < 4; j++ {
						var want uint32
						if j < vr.num {
							if !vr.trans {
								want = at(j, lane/4, 2*(lane%4)) | at(j, lane/4, 2*(lane%4)+1)<<16
							} else {
								want = at(j, 2*(lane%4), lane/4) | at(j, 2*(lane%4)+1, lane/4)<<16
							}
						}
						if g := got[v*128+lane*4+j]; g != want {
							t.Errorf("%s lane %d r[%d]: got %#08x, want %#08x", vr.name, lane, j, g, want)
						}
					}
				}
			}
		})
	}
}

// refShuffleSource is the source lane of a shuffle as the CUDA C++ Programming Guide describes it
// (segments of `width` lanes; idx wraps modulo width; up/down do not leave the segment; xor may read
// earlier segments but not later ones). Independent of the PTX clamp formula the simulator uses.
func refShuffleSource(mode, lane, arg, width int) int {
	seg := lane / width * width
	switch mode {
	case 0:
		return seg + arg&(width-1)
	case 1:
		if s := lane - arg; s >= seg {
			return s
		}
	case 2:
		if s := lane + arg; s < seg+width {
			return s
		}
	case 3:
		if s := lane ^ arg; s < seg+width {
			return s
		}
	case 4:
		return seg + (lane*7+arg)&(width-1)
	}
	return lane
}

func TestShuffles(t *testing.T) {
	const nt = 64 // two warps
	cases := []struct {
		mode  int
		mask  uint32
		arg   int
		width int
	}{
		{0, 0xffffffff, 5, 32},
		{0, 0xffffffff, 37, 32}, // srcLane wraps modulo width
		{0, 0xffffffff, 3, 8},
		{0, 0x0000ffff, 9, 16},
		{0, 0x0f0f0f0f, 2, 4},
		{0, 0xffffffff, 0, 1},
		{1, 0xffffffff, 1, 32},
		{1, 0xffffffff, 3, 8},
		{1, 0xffff0000, 3, 16},
		{2, 0xffffffff, 1, 32},
		{2, 0x0000ffff, 1, 16}, // docs/cudasim.md §4 example
		{2, 0xffffffff, 5, 4},  // delta >= width: every lane keeps its value
		{2, 0xff00ff00, 2, 8},
		{3, 0xffffffff, 16, 32},
		{3, 0xffffffff, 1, 2},
		{3, 0x00ff00ff, 4, 8},
		{3, 0xffffffff, 16, 16}, // lanes 16..31 read the earlier segment, 0..15 keep their value
		{4, 0xffffffff, 3, 32},
		{4, 0xffffffff, 1, 16},
		{4, 0x0000ffff, 2, 16},
	}
	modes := []string{"idx", "up", "down", "xor", "idx-per-lane"}
	inI := make([]int32, nt)
	inF := make([]float64, nt)
	for i := range inI {
		inI[i] = int32(100 + i)
		inF[i] = 0.5 + 1.25*float64(i)
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/mask=%08x,arg=%d,width=%d", modes[tc.mode], tc.mask, tc.arg, tc.width)
		t.Run(name, func(t *testing.T) {
			wantI := make([]int32, nt)
			wantF := make([]float64, nt)
			for tid := 0; tid < nt; tid++ {
				lane := tid % 32
				if tc.mask>>lane&1 == 0 {
					wantI[tid], wantF[tid] = 0x7fffffff, 1e300
					continue
				}
				src := tid - lane + refShuffleSource(tc.mode, lane, tc.arg, tc.width)
				wantI[tid], wantF[tid] = inI[src], inF[src]
			}
			for _, c := range allConfigs {
				ip, op := upload(t, inI), upload(t, make([]int32, nt))
				fp, fo := upload(t, inF), upload(t, make([]float64, nt))
				mustLaunch(t, "selftest_shfl_i32", d1(1), d1(nt), 0,
					[]uint64{ptr(ip), ptr(op), i32(int32(tc.mode)), u32(tc.mask), i32(int32(tc.arg)), i32(int32(tc.width))}, c.opt)
				mustLaunch(t, "selftest_shfl_f64", d1(1), d1(nt), 0,
					[]uint64{ptr(fp), ptr(fo), i32(int32(tc.mode)), u32(tc.mask), i32(int32(tc.arg)), i32(int32(tc.width))}, c.opt)
				if got := download[int32](t, op, nt); !slices.Equal(got, wantI) {
					t.Errorf("%s i32: got %v, want %v", c.name, got, wantI)
				}
				if got := download[float64](t, fo, nt); !slices.Equal(got, wantF) {
					t.Errorf("%s f64: got %v, want %v", c.name, got, wantF)
				}
			}
		})
	}
}

func TestVotes(t *testing.T) {
	const nt = 64
	const sentinel = 0xdeadbeef
	pred := make([]int32, nt)
	for i := range pred {
		pred[i] = int32((i * 7) % 5)
	}
	for _, tc := range []struct {
		mask uint32
		live int
	}{{0xffffffff, 32}, {0x0000ffff, 32}, {0xffffffff, 20}, {0xf0f0f0f0, 32}, {0x3, 1}} {
		t.Run(fmt.Sprintf("mask=%08x,live=%d", tc.mask, tc.live), func(t *testing.T) {
			want := fill(nt*9, uint32(sentinel))
			for w := 0; w < nt/32; w++ {
				var part uint32 // participating lanes: in the mask and not exited
				for l := 0; l < 32; l++ {
					if tc.mask>>l&1 == 1 && l < tc.live {
						part |= 1 << l
					}
				}
				var ballot, sum uint32
				minv, maxv := int32(math.MaxInt32), uint32(0)
				allSame := true
				for l := 0; l < 32; l++ {
					if part>>l&1 == 0 {
						continue
					}
					p := pred[w*32+l]
					if p != 0 {
						ballot |= 1 << l
					}
					sum += uint32(p)
					minv = min(minv, p-5)
					maxv = max(maxv, uint32(p))
					allSame = allSame && p&1 == pred[w*32+firstBit(part)]&1
				}
				for l := 0; l < 32; l++ {
					if part>>l&1 == 0 {
						continue
					}
					o := want[(w*32+l)*9:]
					o[0] = ballot
					o[1] = b2u(ballot != 0)
					o[2] = b2u(ballot == part)
					o[3] = sum
					o[4] = uint32(minv)
					o[5] = maxv
					var same uint32
					for m := 0; m < 32; m++ {
						if part>>m&1 == 1 && pred[w*32+m] == pred[w*32+l] {
							same |= 1 << m
						}
					}
					o[6] = same
					if allSame {
						o[7], o[8] = part, 1
					} else {
						o[7], o[8] = 0, 0
					}
				}
			}
			for _, c := range allConfigs {
				pp := upload(t, pred)
				out := upload(t, fill(nt*9, uint32(sentinel)))
				mustLaunch(t, "selftest_vote", d1(1), d1(nt), 0, []uint64{ptr(pp), ptr(out), u32(tc.mask), i32(int32(tc.live))}, c.opt)
				if got := download[uint32](t, out, nt*9); !slices.Equal(got, want) {
					t.Errorf("%s: got %v, want %v", c.name, got, want)
				}
			}
		})
	}
}

func firstBit(m uint32) int {
	for i := 0; i < 32; i++ {
		if m>>i&1 == 1 {
			return i
		}
	}
	return -1
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func TestBlockVotes(t *testing.T) {
	const nt = 100
	for _, tc := range []struct {
		name string
		pred func(i int) int32
		live int
	}{
		{"some", func(i int) int32 { return b2i(i%3 == 0) }, nt},
		{"some-exited", func(i int) int32 { return b2i(i%3 == 0) }, 70},
		{"all", func(i int) int32 { return 2 }, nt},
		{"none", func(i int) int32 { return 0 }, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pred := make([]int32, nt)
			var count int32
			for i := range pred {
				pred[i] = tc.pred(i)
				if i < tc.live && pred[i] != 0 {
					count++
				}
			}
			want := []int32{count, b2i(count == int32(tc.live)), b2i(count > 0)}
			for _, c := range allConfigs {
				pp, out := upload(t, pred), upload(t, fill(3, int32(-7)))
				mustLaunch(t, "selftest_block_votes", d1(1), d1(nt), 0, []uint64{ptr(pp), ptr(out), i32(int32(tc.live))}, c.opt)
				if got := download[int32](t, out, 3); !slices.Equal(got, want) {
					t.Errorf("%s: got count/and/or %v, want %v", c.name, got, want)
				}
			}
		})
	}
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func TestEarlyExitLeavesBarrier(t *testing.T) {
	const nt, live = 100, 70
	want := fill(nt, int32(-1))
	for i := 0; i < live; i++ {
		nb := i ^ 1
		if nb >= live {
			nb = i
		}
		want[i] = int32(2*((nb+1)%live) + 1)
	}
	for _, c := range allConfigs {
		out := upload(t, fill(nt, int32(-1)))
		mustLaunch(t, "selftest_early_exit_barrier", d1(3), d1(nt), 0, []uint64{ptr(out), i32(live)}, c.opt)
		if got := download[int32](t, out, nt); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", c.name, got, want)
		}
	}
}

func TestAtomicsManyBlocks(t *testing.T) {
	const grid, block = 40, 64
	const nthr = grid * block
	initInts := []int32{0, 0, -100, 100, 0, 0, 0, 0}
	initU := []uint32{0, 0, 1000, 0, 0, 0xffffffff, 0, 10000}
	var xor uint32
	var sum uint64
	for i := 0; i < nthr; i++ {
		xor ^= uint32(i)
		sum += uint64(i)
	}
	wantInts := []int32{nthr, -2 * nthr, nthr - 1, -(nthr - 1), 7, nthr, 0, 0}
	wantU := []uint32{3 * nthr, nthr - 1, 5, 0xffffffff, xor, 0, nthr, 10000 - nthr}
	wantULL := []uint64{sum, 42}
	wantF32 := []float32{nthr, nthr / 2}
	wantF64 := []float64{nthr / 4.0}
	configs := append(slices.Clone(allConfigs), config{"fwd-w4", Options{Workers: 4}})
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			ip, up := upload(t, initInts), upload(t, initU)
			lp, fp, dp := upload(t, []uint64{0, 0}), upload(t, []float32{0, 0}), upload(t, []float64{0})
			mustLaunch(t, "selftest_atomics", d1(grid), d1(block), 0, []uint64{ptr(ip), ptr(up), ptr(lp), ptr(fp), ptr(dp)}, c.opt)
			if got := download[int32](t, ip, 8); !slices.Equal(got, wantInts) {
				t.Errorf("ints: got %v, want %v", got, wantInts)
			}
			if got := download[uint32](t, up, 8); !slices.Equal(got, wantU) {
				t.Errorf("uints: got %v, want %v", got, wantU)
			}
			if got := download[uint64](t, lp, 2); !slices.Equal(got, wantULL) {
				t.Errorf("ulls: got %v, want %v", got, wantULL)
			}
			if got := download[float32](t, fp, 2); !slices.Equal(got, wantF32) {
				t.Errorf("f32: got %v, want %v", got, wantF32)
			}
			if got := download[float64](t, dp, 1); !slices.Equal(got, wantF64) {
				t.Errorf("f64: got %v, want %v", got, wantF64)
			}
		})
	}
}

func TestArgumentPassing(t *testing.T) {
	out := upload(t, make([]int64, 8))
	const p = uintptr(0x12345678abc)
	args := []uint64{
		i64(-1234567890123),
		i64(-5), // sign-extended to 64 bits: only the low 4 bytes are the int
		f32(3.5),
		f64(-2.25e300),
		0xfedcba9876543210,
		ptr(p),
		200,
		uint64(uint16(0xfed4)), // short -300
		ptr(out),
	}
	mustLaunch(t, "selftest_args", d1(2), d1(32), 0, args, Options{})
	want := []int64{-1234567890123, -5, int64(math.Float32bits(3.5)), int64(math.Float64bits(-2.25e300)),
		int64(-0x0123456789abcdf0), int64(p), 200, -300}
	if got := download[int64](t, out, 8); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestIndices3D(t *testing.T) {
	grid, block := d3(3, 2, 2), d3(4, 3, 2)
	nb, nt := 12, 24
	for _, c := range allConfigs {
		out := upload(t, make([]uint32, nb*nt*8))
		mustLaunch(t, "selftest_indices", grid, block, 0, []uint64{ptr(out)}, c.opt)
		got := download[uint32](t, out, nb*nt*8)
		for bz := 0; bz < 2; bz++ {
			for by := 0; by < 2; by++ {
				for bx := 0; bx < 3; bx++ {
					for tz := 0; tz < 2; tz++ {
						for ty := 0; ty < 3; ty++ {
							for tx := 0; tx < 4; tx++ {
								lb := bx + 3*(by+2*bz)
								lt := tx + 4*(ty+3*tz)
								o := got[(lb*nt+lt)*8:][:8]
								want := []uint32{uint32(tx), uint32(ty), uint32(tz), uint32(bx), uint32(by), uint32(bz),
									4 | 3<<10 | 2<<20, 3 | 2<<10 | 2<<20}
								if !slices.Equal(o, want) {
									t.Fatalf("%s: block (%d,%d,%d) thread (%d,%d,%d): got %v, want %v", c.name, bx, by, bz, tx, ty, tz, o, want)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestBF16Conversions(t *testing.T) {
	in := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 1.00390625 /* tie, even stays */, 1.01171875, /* tie, rounds up to even */
		1.0039063, 3.14159265, -2.7182818, 65504, 3.3895314e38, 3.3961776e38 /* rounds to inf */, float32(math.Inf(1)),
		float32(math.Inf(-1)), float32(math.NaN()), math.Float32frombits(0xffc00001), 1e-40 /* denormal */, 9.18355e-41,
		math.MaxFloat32, -math.MaxFloat32, 1.5e-39}
	g := lcg(5)
	for i := 0; i < 200; i++ {
		in = append(in, math.Float32frombits(g.next()))
	}
	n := len(in)
	for _, c := range oneWorker {
		ip := upload(t, in)
		bits, back, pairs := upload(t, make([]uint16, n)), upload(t, make([]float32, n)), upload(t, make([]uint32, n))
		mustLaunch(t, "selftest_bf16", d1((n+63)/64), d1(64), 0, []uint64{ptr(ip), ptr(bits), ptr(back), ptr(pairs), i32(int32(n))}, c.opt)
		gb := download[uint16](t, bits, n)
		gf := download[float32](t, back, n)
		gp := download[uint32](t, pairs, n)
		for i, f := range in {
			want := toBF16(f)
			if gb[i] != want {
				t.Errorf("%s: __float2bfloat16(%g = %#08x) = %#04x, want %#04x", c.name, f, math.Float32bits(f), gb[i], want)
			}
			if math.Float32bits(gf[i]) != uint32(want)<<16 {
				t.Errorf("%s: __bfloat162float(%#04x) = %#08x, want %#08x", c.name, want, math.Float32bits(gf[i]), uint32(want)<<16)
			}
			if wp := uint32(want) | uint32(toBF16(-f))<<16; gp[i] != wp {
				t.Errorf("%s: __floats2bfloat162_rn(%g, -%g) = %#08x, want %#08x", c.name, f, f, gp[i], wp)
			}
		}
	}
}

func TestSharedMemoryPoisoned(t *testing.T) {
	const grid, block = 5, 32
	want := fill(grid*4, uint32(0xffffffff))
	for _, c := range allConfigs {
		out := upload(t, make([]uint32, grid*4))
		mustLaunch(t, "selftest_smem_poison", d1(grid), d1(block), 4*block, []uint64{ptr(out)}, c.opt)
		if got := download[uint32](t, out, grid*4); !slices.Equal(got, want) {
			t.Errorf("%s: first reads of static/dynamic shared memory = %x, want all 0xffffffff", c.name, got)
		}
	}
}

// TestMissingSyncFoundByReverseOrder: a kernel that lacks a __syncthreads passes in forward thread
// order and gives wrong values in reverse order — why every kernel test runs both.
func TestMissingSyncFoundByReverseOrder(t *testing.T) {
	const nt = 256
	in := make([]float32, nt)
	for i := range in {
		in[i] = float32(i) + 0.5
	}
	want := make([]float32, nt)
	for i := range want {
		want[i] = 2 * in[max(i-1, 0)]
	}
	wrong := func(opt Options) int {
		ip, out := upload(t, in), upload(t, make([]float32, nt))
		mustLaunch(t, "selftest_missing_sync", d1(2), d1(nt), 0, []uint64{ptr(ip), ptr(out)}, opt)
		got := download[float32](t, out, nt)
		n := 0
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				n++
			}
		}
		return n
	}
	if n := wrong(Options{}); n != 0 {
		t.Errorf("forward order: %d wrong values, want 0 (the race must stay hidden in forward order)", n)
	}
	n := wrong(Options{Reverse: true})
	if n < nt-1 {
		t.Errorf("reverse order: %d wrong values, want >= %d", n, nt-1)
	}
	t.Logf("missing __syncthreads: 0 wrong values forward, %d of %d wrong in reverse order", n, nt)
}

func TestLargeBlockAndSmallStacks(t *testing.T) {
	// 1024 threads per block, 1 KiB over the minimum stack: still fine for a small kernel.
	const nt = 1024
	out := upload(t, fill(nt, int32(-1)))
	mustLaunch(t, "selftest_early_exit_barrier", d1(2), d1(nt), 0, []uint64{ptr(out), i32(nt)},
		Options{StackBytes: 16 << 10, Reverse: true, Workers: 2})
	got := download[int32](t, out, nt)
	for i := 0; i < nt; i++ {
		if want := int32(2*(((i^1)+1)%nt) + 1); got[i] != want {
			t.Fatalf("thread %d: got %d, want %d", i, got[i], want)
		}
	}
}

func TestNestedShuffles(t *testing.T) {
	const nt = 64
	v1 := make([]int32, nt)
	for i := range v1 {
		v1[i] = int32(i)
		if i%32 >= 16 {
			v1[i] += int32(100 * (i ^ 1))
		}
	}
	want := make([]int32, nt)
	for i := range want {
		want[i] = v1[i] + 10000*v1[i^2]
	}
	for _, c := range allConfigs {
		out := upload(t, make([]int32, nt))
		mustLaunch(t, "selftest_nested_shfl", d1(2), d1(nt), 0, []uint64{ptr(out)}, c.opt)
		if got := download[int32](t, out, nt); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", c.name, got, want)
		}
	}
}

// TestConcurrentLaunches: launches from several goroutines at once (each on its own OS thread, with
// its own workers) do not interfere.
func TestConcurrentLaunches(t *testing.T) {
	const n, grid, block = 20000, 16, 128
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i % 7)
	}
	xp := upload(t, x)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	parts := make([]uintptr, 8)
	for g := 0; g < 8; g++ {
		partials := dev(t, 4*grid)
		total := dev(t, 4)
		parts[g] = partials
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				Memset(total, 0, 4)
				if err := Launch("selftest_block_reduce_f32", d1(grid), d1(block), 4*block,
					[]uint64{ptr(xp), ptr(partials), ptr(total), i64(n)}, Options{Workers: 1 + g%3, Reverse: g%2 == 1}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	results := make([][]float32, 8)
	for g := range results {
		results[g] = download[float32](t, parts[g], grid)
	}
	for g := 1; g < 8; g++ {
		if err := bitsEqual32(results[g], results[0]); err != nil {
			t.Errorf("goroutine %d: %v", g, err)
		}
	}
}
