package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestLoadCUBLASMissing(t *testing.T) {
	names := []string{"libcublas-mdm-does-not-exist.so.99", "libnope-mdm.so.1"}
	_, err := loadCUBLAS(names)
	if !errors.Is(err, ErrNoCUBLAS) {
		t.Fatalf("loadCUBLAS = %v, want ErrNoCUBLAS", err)
	}
	var ne *NoCUBLASError
	if !errors.As(err, &ne) || len(ne.Tried) != 2 {
		t.Fatalf("error %v: want a *NoCUBLASError with 2 sonames tried", err)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("message %q does not name %s", err, n)
		}
	}
}

func TestLoadCUBLASMissingSymbol(t *testing.T) {
	_, err := loadCUBLAS([]string{"libc.so.6"})
	if !errors.Is(err, ErrNoCUBLAS) || !strings.Contains(err.Error(), "missing symbol cublasCreate_v2") {
		t.Fatalf("loadCUBLAS(libc) = %v, want a missing-symbol ErrNoCUBLAS", err)
	}
}

// TestLoadCUBLASInstalled loads the machine's cuBLAS when there is one (dlopen and dlsym
// need no GPU): every entry point resolves and the version matches the soname.
func TestLoadCUBLASInstalled(t *testing.T) {
	l, err := loadCUBLAS(CUBLASSonames)
	if err != nil {
		t.Skipf("no cuBLAS on this machine: %v", err)
	}
	want := strings.TrimPrefix(l.soname, "libcublas.so.")
	if strconv.Itoa(l.major) != want {
		t.Errorf("%s reports version %s", l.soname, l.Version())
	}
	t.Logf("loaded %s", l.Version())
	l2, err := loadCUBLAS(CUBLASSonames)
	if err != nil || l2 != l {
		t.Errorf("second load = %p, %v; want the cached library", l2, err)
	}
}

// TestCUBLASABIConstants checks the constants declared by hand against the CUDA headers
// when they are installed.
func TestCUBLASABIConstants(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("%s not installed: %v", p, err)
		}
		return string(b)
	}
	api := read("/usr/include/cublas_api.h")
	lt := read("/usr/include/library_types.h")
	for _, c := range []struct {
		src, name string
		want      int
	}{
		{api, "CUBLAS_OP_N", cublasOpN},
		{api, "CUBLAS_OP_T", cublasOpT},
		{lt, "CUDA_R_32F", cudaR32F},
		{lt, "CUDA_R_16BF", cudaR16BF},
		{api, "CUBLAS_COMPUTE_32F", cublasCompute32F},
		{api, "CUBLAS_COMPUTE_32F_FAST_TF32", cublasCompute32FFastTF32},
		{api, "CUBLAS_DEFAULT_MATH", cublasDefaultMath},
		{api, "CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION", cublasDisallowReducedPrec},
		{api, "CUBLAS_GEMM_DEFAULT", -1},
		{api, "CUBLAS_STATUS_NOT_SUPPORTED", 15},
		{lt, "MAJOR_VERSION", 0},
		{lt, "PATCH_LEVEL", 2},
	} {
		re := regexp.MustCompile(`\b` + c.name + `\s*=\s*(-?\d+)`)
		m := re.FindStringSubmatch(c.src)
		if m == nil {
			if c.name == "MAJOR_VERSION" || c.name == "PATCH_LEVEL" {
				// libraryPropertyType is declared without explicit values: 0, 1, 2.
				if strings.Contains(c.src, "MAJOR_VERSION,\n    MINOR_VERSION,\n    PATCH_LEVEL") {
					continue
				}
			}
			t.Errorf("%s not found in the headers", c.name)
			continue
		}
		if got, _ := strconv.Atoi(m[1]); got != c.want {
			t.Errorf("%s = %d in the headers, %d here", c.name, got, c.want)
		}
	}
}

func TestColMajorGemmTable(t *testing.T) {
	base := GemmParams{M: 3, N: 5, K: 7, A: 0x100, B: 0x200, C: 0x300, TA: GemmBF16, TB: GemmBF16, TC: GemmBF16,
		LDA: 7, LDB: 5, LDC: 5, Alpha: 1, Beta: 0}
	cases := []struct {
		name string
		mod  func(p *GemmParams)
		tf32 bool
		want cublasGemm
	}{
		{"NN bf16", func(p *GemmParams) {}, false, cublasGemm{transa: cublasOpN, transb: cublasOpN, m: 5, n: 3, k: 7,
			a: 0x200, atype: cudaR16BF, lda: 5, b: 0x100, btype: cudaR16BF, ldb: 7, c: 0x300, ctype: cudaR16BF, ldc: 5,
			alpha: 1, compute: cublasCompute32F}},
		{"TA", func(p *GemmParams) { p.TransA, p.LDA = true, 3 }, false, cublasGemm{transa: cublasOpN, transb: cublasOpT,
			m: 5, n: 3, k: 7, a: 0x200, atype: cudaR16BF, lda: 5, b: 0x100, btype: cudaR16BF, ldb: 3, c: 0x300,
			ctype: cudaR16BF, ldc: 5, alpha: 1, compute: cublasCompute32F}},
		{"TB padded ld, f32 out, beta", func(p *GemmParams) { p.TransB, p.LDB, p.TC, p.LDC, p.Beta = true, 9, GemmF32, 8, 0.5 },
			false, cublasGemm{transa: cublasOpT, transb: cublasOpN, m: 5, n: 3, k: 7, a: 0x200, atype: cudaR16BF, lda: 9,
				b: 0x100, btype: cudaR16BF, ldb: 7, c: 0x300, ctype: cudaR32F, ldc: 8, alpha: 1, beta: 0.5, compute: cublasCompute32F}},
		{"f32 full precision", func(p *GemmParams) { p.TA, p.TB, p.TC = GemmF32, GemmF32, GemmF32 }, false,
			cublasGemm{m: 5, n: 3, k: 7, a: 0x200, atype: cudaR32F, lda: 5, b: 0x100, btype: cudaR32F, ldb: 7, c: 0x300,
				ctype: cudaR32F, ldc: 5, alpha: 1, compute: cublasCompute32F}},
		{"f32 tf32", func(p *GemmParams) { p.TA, p.TB, p.TC = GemmF32, GemmF32, GemmF32 }, true,
			cublasGemm{m: 5, n: 3, k: 7, a: 0x200, atype: cudaR32F, lda: 5, b: 0x100, btype: cudaR32F, ldb: 7, c: 0x300,
				ctype: cudaR32F, ldc: 5, alpha: 1, compute: cublasCompute32FFastTF32}},
		{"bf16 tf32 flag ignored", func(p *GemmParams) {}, true, cublasGemm{m: 5, n: 3, k: 7, a: 0x200, atype: cudaR16BF,
			lda: 5, b: 0x100, btype: cudaR16BF, ldb: 7, c: 0x300, ctype: cudaR16BF, ldc: 5, alpha: 1, compute: cublasCompute32F}},
		{"k=0", func(p *GemmParams) { p.K, p.LDA = 0, 1 }, false, cublasGemm{m: 5, n: 3, k: 0, a: 0x200, atype: cudaR16BF,
			lda: 5, b: 0x100, btype: cudaR16BF, ldb: 1, c: 0x300, ctype: cudaR16BF, ldc: 5, alpha: 1, compute: cublasCompute32F}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base
			c.mod(&p)
			got, err := colMajorGemm(&p, c.tf32)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestColMajorGemmErrors(t *testing.T) {
	ok := GemmParams{M: 2, N: 3, K: 4, A: 1, B: 2, C: 3, TA: GemmF32, TB: GemmF32, TC: GemmF32, LDA: 4, LDB: 3, LDC: 3}
	for _, c := range []struct {
		name string
		mod  func(p *GemmParams)
		want string
	}{
		{"negative", func(p *GemmParams) { p.M = -1 }, "negative"},
		{"huge", func(p *GemmParams) { p.K = math.MaxInt32 + 1; p.LDA = p.K }, "2^31-1"},
		{"mixed inputs", func(p *GemmParams) { p.TB = GemmBF16 }, "same element type"},
		{"f32 to bf16", func(p *GemmParams) { p.TC = GemmBF16 }, "not supported"},
		{"lda", func(p *GemmParams) { p.LDA = 3 }, "leading dimensions"},
		{"ldb transposed", func(p *GemmParams) { p.TransB = true }, "leading dimensions"},
		{"ldc", func(p *GemmParams) { p.LDC = 2 }, "leading dimensions"},
		{"null", func(p *GemmParams) { p.B = 0 }, "null"},
		{"unknown type", func(p *GemmParams) { p.TA, p.TB = 9, 9 }, "not supported"},
	} {
		p := ok
		c.mod(&p)
		if _, err := colMajorGemm(&p, false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: colMajorGemm = %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := colMajorGemm(&ok, false); err != nil {
		t.Errorf("valid params rejected: %v", err)
	}
}

// refColMajorGemm executes a cublasGemm the way cuBLAS defines it (column-major,
// op(A)[m,k]·op(B)[k,n] → C[m,n] with leading dimensions), in float64, over mem addressed
// by Ptr offsets.
func refColMajorGemm(g cublasGemm, mem []byte) {
	load := func(p Ptr, typ int32, i int) float64 {
		if typ == cudaR16BF {
			h := uint16(mem[int(p)+2*i]) | uint16(mem[int(p)+2*i+1])<<8
			return float64(Float32FromBF16(h))
		}
		return float64(math.Float32frombits(uint32(mem[int(p)+4*i]) | uint32(mem[int(p)+4*i+1])<<8 |
			uint32(mem[int(p)+4*i+2])<<16 | uint32(mem[int(p)+4*i+3])<<24))
	}
	// Element (r, c) of op(X) for column-major storage with leading dimension ld.
	el := func(p Ptr, typ int32, ld int32, trans int32, r, c int) float64 {
		if trans == cublasOpT {
			r, c = c, r
		}
		return load(p, typ, r+c*int(ld))
	}
	for i := 0; i < int(g.m); i++ {
		for j := 0; j < int(g.n); j++ {
			s := 0.0
			for l := 0; l < int(g.k); l++ {
				s += el(g.a, g.atype, g.lda, g.transa, i, l) * el(g.b, g.btype, g.ldb, g.transb, l, j)
			}
			k := i + j*int(g.ldc)
			v := float64(g.alpha)*s + 0 // +0: the sign of a zero product is not compared
			if g.beta != 0 {
				v += float64(g.beta) * load(g.c, g.ctype, k)
			}
			if g.ctype == cudaR16BF {
				h := BF16FromFloat32(float32(v))
				mem[int(g.c)+2*k], mem[int(g.c)+2*k+1] = byte(h), byte(h>>8)
			} else {
				u := math.Float32bits(float32(v))
				for b := range 4 {
					mem[int(g.c)+4*k+b] = byte(u >> (8 * b))
				}
			}
		}
	}
}

// TestColMajorGemmMatchesRowMajor runs random row-major problems through the mapping and
// a literal column-major GEMM and compares with HostGemm (the simulator's row-major GEMM).
func TestColMajorGemmMatchesRowMajor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := [][3]GemmType{{GemmF32, GemmF32, GemmF32}, {GemmBF16, GemmBF16, GemmF32}, {GemmBF16, GemmBF16, GemmBF16}}
	for it := range 300 {
		ty := types[it%len(types)]
		p := GemmParams{M: 1 + rng.IntN(9), N: 1 + rng.IntN(9), K: rng.IntN(9), TA: ty[0], TB: ty[1], TC: ty[2],
			TransA: rng.IntN(2) == 1, TransB: rng.IntN(2) == 1, Alpha: float32(rng.IntN(3)) - 0.5}
		if rng.IntN(2) == 1 {
			p.Beta = 0.75
		}
		ra, ca := p.M, p.K
		if p.TransA {
			ra, ca = ca, ra
		}
		rb, cb := p.K, p.N
		if p.TransB {
			rb, cb = cb, rb
		}
		p.LDA, p.LDB, p.LDC = max(1, ca)+rng.IntN(3), max(1, cb)+rng.IntN(3), p.N+rng.IntN(3)
		size := func(t GemmType) int {
			if t == GemmBF16 {
				return 2
			}
			return 4
		}
		na, nb, nc := max(0, (ra-1)*p.LDA+ca), max(0, (rb-1)*p.LDB+cb), (p.M-1)*p.LDC+p.N
		align := func(x int) Ptr { return Ptr((x + 15) / 16 * 16) }
		mem := make([]byte, 64+(na*size(p.TA)+nb*size(p.TB)+nc*size(p.TC))+64)
		p.A = 16
		p.B = align(int(p.A) + na*size(p.TA) + 16)
		p.C = align(int(p.B) + nb*size(p.TB) + 16)
		fill := func(at Ptr, n int, typ GemmType) {
			for i := range n {
				v := float32(rng.IntN(17)-8) / 4 // exact in bf16, sums exact in f32
				if typ == GemmBF16 {
					h := BF16FromFloat32(v)
					mem[int(at)+2*i], mem[int(at)+2*i+1] = byte(h), byte(h>>8)
				} else {
					*(*float32)(unsafe.Pointer(&mem[int(at)+4*i])) = v
				}
			}
		}
		fill(p.A, na, p.TA)
		fill(p.B, nb, p.TB)
		fill(p.C, nc, p.TC)
		want := append([]byte(nil), mem...)
		wantC := want[p.C : int(p.C)+nc*size(p.TC)]
		if err := HostGemm(&p, want[p.A:], want[p.B:], wantC); err != nil {
			t.Fatal(err)
		}
		g, err := colMajorGemm(&p, false)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		refColMajorGemm(g, mem)
		if string(mem) != string(want) {
			t.Fatalf("case %d %s transA=%v transB=%v: column-major mapping differs from the row-major GEMM\n got %v\nwant %v",
				it, fmt.Sprint(ty), p.TransA, p.TransB, mem[p.C:int(p.C)+nc*size(p.TC)], wantC)
		}
	}
}

func TestOpenCUBLASMissing(t *testing.T) {
	_, err := openCUBLAS([]string{"libcublas-mdm-nope.so.13", "libc.so.6"}, nil)
	var ne *NoCUBLASError
	if !errors.As(err, &ne) || !errors.Is(err, ErrNoCUBLAS) || len(ne.Reasons) != 2 ||
		!strings.Contains(ne.Reasons[1], "missing symbol") {
		t.Fatalf("openCUBLAS = %v", err)
	}
}
