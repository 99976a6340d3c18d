package cuda

import (
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func init() { register(ops.OpMatMul, ops.F32, ops.BF16) }

func gemmType(dt ops.DType) GemmType {
	if dt == ops.BF16 {
		return GemmBF16
	}
	return GemmF32
}

// MatMul implements ops.Ops through Device.Gemm (cuBLAS on the GPU, the CPU on the
// simulator): row-major operands with leading dimension = their stored column count.
func (b *Backend) MatMul(p *ops.MatMulParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, t := range []*ops.Tensor{p.A, p.B, p.Out} {
		if t.DType() == ops.F64 {
			return ops.Unsupported(ops.OpMatMul, "cuda", "dtype f64")
		}
	}
	ptrs, err := b.ptrs(p.A, p.B, p.Out)
	if err != nil {
		return err
	}
	m, n, k := p.Dims()
	if m == 0 || n == 0 {
		return nil
	}
	return b.dev.Gemm(&GemmParams{
		M: m, N: n, K: k, A: ptrs[0], B: ptrs[1], C: ptrs[2],
		TA: gemmType(p.A.DType()), TB: gemmType(p.B.DType()), TC: gemmType(p.Out.DType()),
		TransA: p.TransA, TransB: p.TransB,
		LDA: p.A.Dim(1), LDB: p.B.Dim(1), LDC: p.Out.Dim(1),
		Alpha: p.Alpha, Beta: p.Beta,
	})
}
