package cpu

// Benchmarks. Thread counts follow -cpu (GOMAXPROCS), e.g.
//
//	go test -run '^$' -bench . -cpu 1,2 ./engine/cpu/
//	go test -tags openblas -run '^$' -bench GEMM -cpu 1,2 ./engine/cpu/   # MatMul with OpenBLAS tiles

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// gemmShapes are the tiny model's GEMMs (N = B·L = 4096 rows, D = 128, MLP width 352):
// the forward projections, then the backward data and weight gradients.
var gemmShapes = []struct {
	name           string
	m, n, k        int
	transA, transB bool
}{
	{"fwd_qkvo_4096x128x128ᵀ", 4096, 128, 128, false, true},
	{"fwd_mlp_up_4096x128x352ᵀ", 4096, 352, 128, false, true},
	{"fwd_mlp_down_4096x352x128ᵀ", 4096, 128, 352, false, true},
	{"bwd_dx_4096x352·352x128", 4096, 128, 352, false, false},
	{"bwd_dx_4096x128·128x352", 4096, 352, 128, false, false},
	{"bwd_dw_4096x352ᵀ·4096x128", 352, 128, 4096, true, false},
	{"bwd_dw_4096x128ᵀ·4096x128", 128, 128, 4096, true, false},
}

func benchData(n int) []float32 {
	r := newRand(uint64(n))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.Float64()*2 - 1)
	}
	return out
}

func BenchmarkGEMM(b *testing.B) {
	for _, s := range gemmShapes {
		ar, ac := s.m, s.k
		if s.transA {
			ar, ac = s.k, s.m
		}
		br, bc := s.k, s.n
		if s.transB {
			br, bc = s.n, s.k
		}
		a, bb, c := benchData(ar*ac), benchData(br*bc), make([]float32, s.m*s.n)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		// gonum's own parallel Sgemm (GOMAXPROCS goroutines), the MatMul of this build
		// before it was tiled over the backend's pool.
		b.Run(fmt.Sprintf("%s/impl=gonum-parallel", s.name), func(b *testing.B) {
			b.SetBytes(int64(4 * (len(a) + len(bb) + len(c))))
			for b.Loop() {
				gonumGemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, ac, bb, bc, 0, c, s.n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		// MatMul: tiles on the pool, tileGemm of this build (gonum serial or OpenBLAS).
		b.Run(fmt.Sprintf("%s/impl=matmul-%s", s.name, blasName), func(b *testing.B) {
			be := New(WithWorkers(runtime.GOMAXPROCS(0)))
			defer be.Close()
			b.SetBytes(int64(4 * (len(a) + len(bb) + len(c))))
			for b.Loop() {
				gemm(be, s.transA, s.transB, s.m, s.n, s.k, 1, a, ac, bb, bc, 0, c, s.n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// benchTensor allocates and fills an F32 tensor.
func benchTensor(b *testing.B, be *Backend, shape ...int) *ops.Tensor {
	t, err := be.Alloc(ops.F32, shape...)
	if err != nil {
		b.Fatal(err)
	}
	if err := be.Upload(t, benchData(t.Len())); err != nil {
		b.Fatal(err)
	}
	return t
}

func BenchmarkAttn(b *testing.B) {
	const bs, l, h, dh = 32, 128, 4, 32
	be := New()
	sh := []int{bs, l, h, dh}
	p := &ops.AttnParams{Q: benchTensor(b, be, sh...), K: benchTensor(b, be, sh...), V: benchTensor(b, be, sh...),
		Out: benchTensor(b, be, sh...), LSE: benchTensor(b, be, bs, h, l), Scale: 0.17}
	must(b, be.AttnFwd(p))
	bp := &ops.AttnBwdParams{DQ: benchTensor(b, be, sh...), DK: benchTensor(b, be, sh...), DV: benchTensor(b, be, sh...),
		DOut: benchTensor(b, be, sh...), Q: p.Q, K: p.K, V: p.V, Out: p.Out, LSE: p.LSE, Scale: 0.17}
	flops := 4.0 * bs * l * l * h * dh
	b.Run("fwd/b=32,t=128,h=4,d=32,f32", func(b *testing.B) {
		for b.Loop() {
			must(b, be.AttnFwd(p))
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("bwd/b=32,t=128,h=4,d=32,f32", func(b *testing.B) {
		for b.Loop() {
			must(b, be.AttnBwd(bp))
		}
		b.ReportMetric(2.5*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

func BenchmarkNorm(b *testing.B) {
	const bs, l, d = 32, 128, 128
	n := bs * l
	be := New()
	x := benchTensor(b, be, n, d)
	p := &ops.NormParams{Kind: ops.LayerNorm, Eps: 1e-5, X: x, Out: benchTensor(b, be, n, d), Mean: benchTensor(b, be, n), Rstd: benchTensor(b, be, n),
		Shift: benchTensor(b, be, bs, d), Scale: benchTensor(b, be, bs, d), RowsPerGroup: l}
	must(b, be.NormFwd(p))
	bp := &ops.NormBwdParams{Kind: ops.LayerNorm, DX: benchTensor(b, be, n, d), DOut: benchTensor(b, be, n, d), X: x, Mean: p.Mean, Rstd: p.Rstd,
		Scale: p.Scale, RowsPerGroup: l, DShift: benchTensor(b, be, bs, d), DScale: benchTensor(b, be, bs, d)}
	b.Run("fwd/layernorm+mod,n=4096,d=128,f32", func(b *testing.B) {
		bytes := float64(2 * 4 * n * d) // read X, write Out
		for b.Loop() {
			must(b, be.NormFwd(p))
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run("bwd/layernorm+mod,n=4096,d=128,f32", func(b *testing.B) {
		bytes := float64(3 * 4 * n * d) // read X, DOut, write DX
		for b.Loop() {
			must(b, be.NormBwd(bp))
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}

func BenchmarkMaskedCE(b *testing.B) {
	for _, v := range []int{256, 4096} {
		const n = 4096
		be := New()
		targets := make([]int32, n)
		for i := range targets {
			targets[i] = int32(i % v)
		}
		tg, _ := be.Alloc(ops.I32, n)
		must(b, be.Upload(tg, targets))
		w, _ := be.Alloc(ops.F64, n)
		loss, _ := be.Alloc(ops.F64, n)
		logits := benchTensor(b, be, n, v)
		p := &ops.MaskedCEParams{Logits: logits, Targets: tg, Weights: w, Loss: loss, DLogits: logits}
		b.Run(fmt.Sprintf("r=4096,v=%d,f32", v), func(b *testing.B) {
			bytes := float64(2 * 4 * n * v) // read logits, write dlogits
			for b.Loop() {
				must(b, be.MaskedCE(p))
			}
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
