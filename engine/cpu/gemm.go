package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// MatMul computes Out = Alpha·op(A)·op(B) + Beta·Out. A, B and Out share one dtype (F32
// or F64). With Beta = 0, Out is not read; with Alpha = 0 (or K = 0), A and B are not read.
//
// The product is cut into output tiles whose size depends only on the shape (gemmTiles);
// the pool's workers compute the tiles, each with the serial kernel of the build (tileGemm:
// gonum's pure-Go Sgemm/Dgemm, or single-threaded OpenBLAS with the openblas tag). So the
// backend's worker count is the number of threads a product uses, and the result is
// bit-identical for any worker count.
func (b *Backend) MatMul(p *ops.MatMulParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.A.DType() {
	case ops.F32:
		return matMul[float32](b, p)
	case ops.F64:
		return matMul[float64](b, p)
	}
	return unsupported(ops.OpMatMul, p.A.DType())
}

func matMul[T float](b *Backend, p *ops.MatMulParams) error {
	const op = ops.OpMatMul
	a, err1 := fl[T](op, "A", p.A)
	bb, err2 := fl[T](op, "B", p.B)
	out, err3 := fl[T](op, "Out", p.Out)
	if err := errs(err1, err2, err3); err != nil {
		return err
	}
	m, n, k := p.Dims()
	if m == 0 || n == 0 {
		return nil
	}
	if p.Alpha == 0 || k == 0 {
		scaleInPlace(out, T(p.Beta))
		return nil
	}
	gemm(b, p.TransA, p.TransB, m, n, k, T(p.Alpha), a, p.A.Dim(1), bb, p.B.Dim(1), T(p.Beta), out, n)
	return nil
}

// scaleInPlace sets x = beta·x, writing zeros without reading x when beta = 0.
func scaleInPlace[T float](x []T, beta T) {
	switch beta {
	case 0:
		clear(x)
	case 1:
	default:
		for i := range x {
			x[i] *= beta
		}
	}
}

// Tiling of gemm. A product of at most gemmSerialWork multiply-adds is one tile. Larger
// ones are cut along M (rows of the output) into 4 tiles, or 2 when M < 1024, never below
// gemmMinTileWork multiply-adds per tile, and along N only beyond gemmMaxTileCols columns.
// With OpenBLAS every tile packs its rows of A and all of op(B): for the weight gradients
// (M = 128–352 rows, K = B·L = 4096) 4 tiles pack op(B) 4 times and run at ~80% of one
// call, 2 tiles at ~95%; for the activation GEMMs (M = B·L) 4 tiles run within 5% of one
// call (BenchmarkGEMM). The tiling depends only on the shape.
const (
	gemmSerialWork  = 1 << 18
	gemmMinTileWork = 1 << 21
	gemmMaxTileCols = 384
)

// gemmTiles returns the tile height and width for an m×n output with inner dimension k,
// and the number of tile columns. It depends only on the shape (and the build: with
// gemmSplitWide, outputs at least as wide as tall are cut along N instead).
func gemmTiles(m, n, k int) (tm, tn, colTiles int) {
	if m*n*k <= gemmSerialWork {
		return m, n, 1
	}
	if gemmSplitWide && n >= m && n >= 32 {
		// Split along N: with A read in place (sgemm.go), column tiles pack disjoint parts
		// of op(B) and share nothing but reads of A.
		t := 4
		if n < 1024 {
			t = 2
		}
		t = max(1, min(t, m*n*k/gemmMinTileWork))
		tn = min(((n+t-1)/t+15)/16*16, n)
		return m, tn, (n + tn - 1) / tn
	}
	colTiles = (n + gemmMaxTileCols - 1) / gemmMaxTileCols
	tn = (n + colTiles - 1) / colTiles
	t := 4
	if m < 1024 {
		t = 2
	}
	t = max(1, min(t, m*tn*k/gemmMinTileWork))
	tm = (m + t - 1) / t
	tm = min((tm+23)/24*24, m) // a multiple of the micro-kernels' 6 and 8 rows
	return tm, tn, colTiles
}

type gemmJob[T float] struct {
	tA, tB        bool
	m, n, k       int
	alpha, beta   T
	a, b, c       []T
	lda, ldb, ldc int
	tm, tn, tcols int
}

// run computes tiles [lo, hi) (row-major over the tile grid).
func (j *gemmJob[T]) run(_, lo, hi int) {
	for t := lo; t < hi; t++ {
		i0, j0 := (t/j.tcols)*j.tm, (t%j.tcols)*j.tn
		mi, nj := min(j.tm, j.m-i0), min(j.tn, j.n-j0)
		var aa, bb []T
		if j.tA {
			aa = j.a[i0:] // columns of A
		} else {
			aa = j.a[i0*j.lda:] // rows of A
		}
		if j.tB {
			bb = j.b[j0*j.ldb:] // rows of B
		} else {
			bb = j.b[j0:] // columns of B
		}
		tileGemm(j.tA, j.tB, mi, nj, j.k, j.alpha, aa, j.lda, bb, j.ldb, j.beta, j.c[i0*j.ldc+j0:], j.ldc)
	}
}

// gemm is C = alpha·op(A)·op(B) + beta·C on b's pool (see MatMul). With beta = 0, C is
// not read.
func gemm[T float](b *Backend, tA, tB bool, m, n, k int, alpha T, a []T, lda int, bb []T, ldb int, beta T, c []T, ldc int) {
	tm, tn, tcols := gemmTiles(m, n, k)
	tiles := ((m + tm - 1) / tm) * tcols
	if tiles == 1 {
		tileGemm(tA, tB, m, n, k, alpha, a, lda, bb, ldb, beta, c, ldc)
		return
	}
	j := getJob[gemmJob[T]](b, jobGemm, dtIndex[T]())
	*j = gemmJob[T]{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: bb, c: c,
		lda: lda, ldb: ldb, ldc: ldc, tm: tm, tn: tn, tcols: tcols}
	b.pool.run(j, tiles, 1)
	*j = gemmJob[T]{}
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// gonumGemm is C = alpha·op(A)·op(B) + beta·C through gonum (which may split the work
// over GOMAXPROCS goroutines for large products). gonum zero-fills C when beta = 0, so
// garbage in C cannot leak, and its block partition depends only on the shape, so the
// result does not depend on the number of goroutines.
func gonumGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	switch a := any(a).(type) {
	case []float32:
		gonum.Implementation{}.Sgemm(trans(tA), trans(tB), m, n, k, float32(alpha), a, lda,
			any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		gonum.Implementation{}.Dgemm(trans(tA), trans(tB), m, n, k, float64(alpha), a, lda,
			any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// Tile sizes of serialGemm: gonum computes a product serially when it has fewer than 4
// blocks of 64×64 output elements, so tiles of 64 rows × 192 columns never spawn
// goroutines.
const (
	serialTileM = 64
	serialTileN = 192
)

// serialGemm is gonumGemm computed on the calling goroutine only: the product is cut into
// output tiles small enough for gonum's serial path. Used inside pool workers, where the
// parallelism is already across tiles or (sequence, head) pairs. The tiling depends only
// on the shape, so results are deterministic.
func serialGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i0 := 0; i0 < m; i0 += serialTileM {
		mi := min(serialTileM, m-i0)
		var aa []T
		if tA {
			aa = a[i0:] // columns of A
		} else {
			aa = a[i0*lda:] // rows of A
		}
		for j0 := 0; j0 < n; j0 += serialTileN {
			nj := min(serialTileN, n-j0)
			var bb []T
			if tB {
				bb = b[j0*ldb:] // rows of B
			} else {
				bb = b[j0:] // columns of B
			}
			gonumGemm(tA, tB, mi, nj, k, alpha, aa, lda, bb, ldb, beta, c[i0*ldc+j0:], ldc)
		}
	}
}
