package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// MatMul computes Out = Alpha·op(A)·op(B) + Beta·Out. A, B and Out share one dtype (F32
// or F64). With Beta = 0, Out is not read; with Alpha = 0 (or K = 0), A and B are not read.
func (b *Backend) MatMul(p *ops.MatMulParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.A.DType() {
	case ops.F32:
		return matMul[float32](p)
	case ops.F64:
		return matMul[float64](p)
	}
	return unsupported(ops.OpMatMul, p.A.DType())
}

func matMul[T float](p *ops.MatMulParams) error {
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
	bigGemm(p.TransA, p.TransB, m, n, k, T(p.Alpha), a, p.A.Dim(1), bb, p.B.Dim(1), T(p.Beta), out, n)
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
// output tiles small enough for gonum's serial path. Used inside pool workers (attention),
// where the parallelism is already across (sequence, head) pairs. The tiling depends only
// on the shape, so results are deterministic.
func serialGemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i0 := 0; i0 < m; i0 += serialTileM {
		mi := min(serialTileM, m-i0)
		aa := a[i0*lda:] // rows of A
		if tA {
			aa = a[i0:] // columns of A
		}
		for j0 := 0; j0 < n; j0 += serialTileN {
			nj := min(serialTileN, n-j0)
			bb := b[j0:] // columns of B
			if tB {
				bb = b[j0*ldb:] // rows of B
			}
			gonumGemm(tA, tB, mi, nj, k, alpha, aa, lda, bb, ldb, beta, c[i0*ldc+j0:], ldc)
		}
	}
}
