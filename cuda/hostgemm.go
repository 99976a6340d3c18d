package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// HostGemm computes a GemmParams product on the CPU over host views of the operands' memory
// (a, b, c cover at least the bytes the product touches). It is the simulated device's
// GEMM: gonum Sgemm in float32 (bf16 operands are widened exactly; a bf16 C is rounded to
// nearest even once at the end), standing in for cuBLAS.
func HostGemm(p *GemmParams, a, b, c []byte) error {
	if p.M < 0 || p.N < 0 || p.K < 0 {
		return fmt.Errorf("cuda: GEMM with negative dimension m=%d n=%d k=%d", p.M, p.N, p.K)
	}
	if p.M == 0 || p.N == 0 {
		return nil
	}
	ra, ca := p.M, p.K
	if p.TransA {
		ra, ca = ca, ra
	}
	rb, cb := p.K, p.N
	if p.TransB {
		rb, cb = cb, rb
	}
	af, err := widen(a, p.TA, ra, ca, p.LDA, "A")
	if err != nil {
		return err
	}
	bf, err := widen(b, p.TB, rb, cb, p.LDB, "B")
	if err != nil {
		return err
	}
	var cf []float32
	if p.TC == GemmF32 {
		if len(c) < 4*((p.M-1)*p.LDC+p.N) {
			return fmt.Errorf("cuda: GEMM C buffer too small")
		}
		cf = unsafe.Slice((*float32)(unsafe.Pointer(&c[0])), (p.M-1)*p.LDC+p.N)
	} else {
		cf = make([]float32, (p.M-1)*p.LDC+p.N)
		if p.Beta != 0 {
			if cf, err = widen(c, GemmBF16, p.M, p.N, p.LDC, "C"); err != nil {
				return err
			}
		}
	}
	if p.Beta == 0 { // C must not be read: clear garbage (NaN·0 would leak otherwise)
		for i := 0; i < p.M; i++ {
			row := cf[i*p.LDC : i*p.LDC+p.N]
			for j := range row {
				row[j] = 0
			}
		}
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if p.TransA {
		ta = blas.Trans
	}
	if p.TransB {
		tb = blas.Trans
	}
	if p.K == 0 {
		for i := 0; i < p.M; i++ {
			for j := 0; j < p.N; j++ {
				cf[i*p.LDC+j] *= p.Beta
			}
		}
	} else {
		gonum.Implementation{}.Sgemm(ta, tb, p.M, p.N, p.K, p.Alpha, af, p.LDA, bf, p.LDB, p.Beta, cf, p.LDC)
	}
	if p.TC == GemmBF16 {
		for i := 0; i < p.M; i++ {
			for j := 0; j < p.N; j++ {
				k := i*p.LDC + j
				v := BF16FromFloat32(cf[k])
				c[2*k], c[2*k+1] = byte(v), byte(v>>8)
			}
		}
	}
	return nil
}

// widen returns a float32 view (F32) or widened copy (BF16) of a rows×cols matrix with
// leading dimension ld.
func widen(raw []byte, t GemmType, rows, cols, ld int, name string) ([]float32, error) {
	if rows == 0 || cols == 0 {
		return []float32{}, nil
	}
	if ld < cols {
		return nil, fmt.Errorf("cuda: GEMM %s leading dimension %d < %d columns", name, ld, cols)
	}
	n := (rows-1)*ld + cols
	switch t {
	case GemmF32:
		if len(raw) < 4*n {
			return nil, fmt.Errorf("cuda: GEMM %s buffer too small", name)
		}
		return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), n), nil
	case GemmBF16:
		if len(raw) < 2*n {
			return nil, fmt.Errorf("cuda: GEMM %s buffer too small", name)
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(uint32(raw[2*i])<<16 | uint32(raw[2*i+1])<<24)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cuda: GEMM %s has unknown element type %d", name, t)
}

// BF16FromFloat32 rounds f to bfloat16 bits, round-to-nearest-even, keeping NaN a (quiet) NaN.
func BF16FromFloat32(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// Float32FromBF16 widens bfloat16 bits exactly.
func Float32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
