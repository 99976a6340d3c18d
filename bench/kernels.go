package bench

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// PeakBandwidth returns the HBM bandwidth in bytes/s of a GPU from its name
// (perf-anchors.md §2), or 0 when unknown. The % of bandwidth of a memory-bound kernel is
// also reported against the copy kernel measured in the same run.
func PeakBandwidth(name string) float64 {
	n := strings.ToUpper(name)
	switch {
	case strings.Contains(n, "H200"):
		return 4.8e12
	case strings.Contains(n, "H100") && strings.Contains(n, "PCIE"):
		return 2.0e12
	case strings.Contains(n, "H100"):
		return 3.35e12
	case strings.Contains(n, "A100") && strings.Contains(n, "80GB"):
		return 2.0e12
	case strings.Contains(n, "A100"):
		return 1.6e12
	}
	return 0
}

// KernelResult is one kernel benchmark.
type KernelResult struct {
	Name    string  `json:"name"`  // e.g. "attn_fwd"
	Shape   string  `json:"shape"` // e.g. "b=8,l=1024,h=12,dh=64,bf16"
	Seconds float64 `json:"seconds"`
	Iters   int     `json:"iterations"`
	TFLOPs  float64 `json:"tflops,omitempty"`
	GBps    float64 `json:"gbps,omitempty"`
	// PctPeak is TFLOP/s of the bf16 peak (compute-bound kernels) or GB/s of the HBM peak
	// (memory-bound ones); PctCopy is GB/s of the copy kernel measured in the same run.
	PctPeak float64 `json:"pct_peak,omitempty"`
	PctCopy float64 `json:"pct_copy,omitempty"`
	// Torch is the PyTorch equivalent's seconds per call (0: none or not measured) and
	// Speedup = Torch / Seconds.
	Torch   float64 `json:"pytorch_seconds,omitempty"`
	TorchOp string  `json:"pytorch_op,omitempty"`
	Speedup float64 `json:"speedup_vs_pytorch,omitempty"`
	Err     string  `json:"error,omitempty"` // unsupported or failed
}

// KernelOptions sizes the kernel benchmarks.
type KernelOptions struct {
	// Small uses shapes ~100× smaller (the simulator and the CPU: plumbing only).
	Small bool
	// DType of the activations: BF16 on GPUs (and the simulator), F32 on the CPU.
	DType ops.DType
	// MinTime is the least time each kernel is timed for (after two warm-up calls).
	MinTime time.Duration
}

// kernel is one benchmark: setup allocates and fills its tensors and returns the call.
type kernel struct {
	name, shape string
	flops       float64 // per call (compute-bound kernels)
	bytes       float64 // per call (memory-bound kernels)
	setup       func(a *arena) (func() error, error)
}

// arena allocates benchmark tensors on a backend and frees them all at once.
type arena struct {
	be  ops.Backend
	dt  ops.DType
	all []*ops.Tensor
	err error
	rnd uint64
}

func (a *arena) free() {
	for _, t := range a.all {
		a.be.Free(t)
	}
	a.all = nil
}

// next returns a pseudo-random float in [−1, 1) (xorshift; the values do not matter).
func (a *arena) next() float32 {
	a.rnd ^= a.rnd << 13
	a.rnd ^= a.rnd >> 7
	a.rnd ^= a.rnd << 17
	return float32(a.rnd>>40)/float32(1<<23) - 1
}

// t allocates a tensor of dtype dt filled with scale·U[−1, 1) (floats) or zeros (I32).
func (a *arena) t(dt ops.DType, scale float32, shape ...int) *ops.Tensor {
	if a.err != nil {
		return nil
	}
	t, err := a.be.Alloc(dt, shape...)
	if err != nil {
		a.err = err
		return nil
	}
	a.all = append(a.all, t)
	n := t.Len()
	switch dt {
	case ops.F32:
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * a.next()
		}
		a.err = a.be.Upload(t, v)
	case ops.BF16:
		v := make([]uint16, n)
		for i := range v {
			v[i] = cpu.BF16FromF32(scale * a.next())
		}
		a.err = a.be.Upload(t, v)
	case ops.F64:
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(scale * a.next())
		}
		a.err = a.be.Upload(t, v)
	}
	return t
}

// kernels returns the benchmark list at full (GPU) or small size.
func kernels(o KernelOptions) []kernel {
	dt := o.DType
	esz := float64(dt.Size())
	dn := strings.ToLower(dt.String())
	// Shapes: MD4-S / GPT-2 small (D = 768, 12 heads of 64, L = 1024, V = 50257), batch 8.
	B, L, H, Dh, V, R, D, P := 8, 1024, 12, 64, 50257, 4096, 768, 124_000_000
	gm, gn, gk := 8192, 3*768, 768
	copyN := 1 << 28
	if o.Small {
		B, L, H, R, V, P, gm, copyN = 1, 256, 2, 256, 4096, 1<<20, 512, 1<<22
		gn, gk = 256, 128
	}
	N := B * L
	attnShape := fmt.Sprintf("b=%d,l=%d,h=%d,dh=%d,%s", B, L, H, Dh, dn)
	attnFlops := 4 * float64(B) * float64(L) * float64(L) * float64(H) * float64(Dh)
	return []kernel{
		{name: "copy", shape: fmt.Sprintf("n=%d,f32", copyN), bytes: 8 * float64(copyN),
			setup: func(a *arena) (func() error, error) {
				x, y := a.t(ops.F32, 1, copyN), a.t(ops.F32, 0, copyN)
				return func() error { return a.be.Axpy(&ops.AxpyParams{Y: y, X: x, Alpha: 1}) }, a.err
			}},
		{name: "matmul", shape: fmt.Sprintf("m=%d,n=%d,k=%d,%s", gm, gn, gk, dn), flops: 2 * float64(gm) * float64(gn) * float64(gk),
			setup: func(a *arena) (func() error, error) {
				x, w, y := a.t(dt, 1, gm, gk), a.t(dt, 0.05, gn, gk), a.t(dt, 0, gm, gn)
				return func() error {
					return a.be.MatMul(&ops.MatMulParams{Out: y, A: x, B: w, TransB: true, Alpha: 1})
				}, a.err
			}},
		{name: "attn_fwd", shape: attnShape, flops: attnFlops,
			setup: func(a *arena) (func() error, error) {
				sh := []int{B, L, H, Dh}
				p := &ops.AttnParams{Q: a.t(dt, 1, sh...), K: a.t(dt, 1, sh...), V: a.t(dt, 1, sh...), Out: a.t(dt, 0, sh...),
					LSE: a.t(ops.F32, 0, B, H, L), Scale: float32(1 / math.Sqrt(float64(Dh)))}
				return func() error { return a.be.AttnFwd(p) }, a.err
			}},
		{name: "attn_bwd", shape: attnShape, flops: 2.5 * attnFlops,
			setup: func(a *arena) (func() error, error) {
				sh := []int{B, L, H, Dh}
				p := &ops.AttnParams{Q: a.t(dt, 1, sh...), K: a.t(dt, 1, sh...), V: a.t(dt, 1, sh...), Out: a.t(dt, 0, sh...),
					LSE: a.t(ops.F32, 0, B, H, L), Scale: float32(1 / math.Sqrt(float64(Dh)))}
				if a.err != nil {
					return nil, a.err
				}
				if err := a.be.AttnFwd(p); err != nil {
					return nil, err
				}
				bp := &ops.AttnBwdParams{DQ: a.t(dt, 0, sh...), DK: a.t(dt, 0, sh...), DV: a.t(dt, 0, sh...), DOut: a.t(dt, 1, sh...),
					Q: p.Q, K: p.K, V: p.V, Out: p.Out, LSE: p.LSE, Scale: p.Scale}
				return func() error { return a.be.AttnBwd(bp) }, a.err
			}},
		{name: "masked_ce", shape: fmt.Sprintf("r=%d,v=%d,%s,dlogits in place", R, V, dn), bytes: 2 * esz * float64(R) * float64(V),
			setup: func(a *arena) (func() error, error) {
				lg, tg, w, loss := a.t(dt, 3, R, V), a.t(ops.I32, 0, R), a.t(ops.F64, 1, R), a.t(ops.F64, 0, R)
				return func() error {
					return a.be.MaskedCE(&ops.MaskedCEParams{Logits: lg, Targets: tg, Weights: w, Loss: loss, DLogits: lg})
				}, a.err
			}},
		{name: "sample", shape: fmt.Sprintf("r=%d,v=%d,%s,exact-f64", R, V, dn), bytes: esz * float64(R) * float64(V),
			setup: func(a *arena) (func() error, error) {
				sb, sl := max(R/1024, 1), min(R, 1024)
				lg, z, out, rows := a.t(dt, 3, R, V), a.t(ops.I32, 0, sb, sl), a.t(ops.I32, 0, sb, sl), a.t(ops.I32, 0, R)
				if a.err != nil {
					return nil, a.err
				}
				zs, rs := make([]int32, R), make([]int32, R)
				for i := range zs {
					zs[i], rs[i] = int32(V), int32(i)
				}
				if err := errors.Join(a.be.Upload(z, zs), a.be.Upload(rows, rs)); err != nil {
					return nil, err
				}
				step := uint64(0)
				return func() error {
					step++
					return a.be.SampleStep(&ops.SampleParams{Out: out, Z: z, Logits: lg, Rows: rows, PUnmask: 0.5,
						Mode: ops.SampleExact, MaskID: int32(V), Seed: 1, Step: step})
				}, nil
			}},
		{name: "layernorm_fwd", shape: fmt.Sprintf("n=%d,d=%d,%s,adaLN", N, D, dn), bytes: 2 * esz * float64(N) * float64(D),
			setup: func(a *arena) (func() error, error) {
				p := &ops.NormParams{Kind: ops.LayerNorm, Eps: 1e-5, X: a.t(dt, 1, N, D), Out: a.t(dt, 0, N, D),
					Mean: a.t(ops.F32, 0, N), Rstd: a.t(ops.F32, 0, N), Shift: a.t(dt, 0.1, B, D), Scale: a.t(dt, 0.1, B, D), RowsPerGroup: L}
				return func() error { return a.be.NormFwd(p) }, a.err
			}},
		{name: "adamw", shape: fmt.Sprintf("p=%d,f32+ema%s", P, map[bool]string{true: "+bf16 shadow"}[dt == ops.BF16]),
			bytes: map[bool]float64{true: 38, false: 36}[dt == ops.BF16] * float64(P),
			setup: func(a *arena) (func() error, error) {
				p := &ops.AdamWParams{Param: a.t(ops.F32, 1, P), Grad: a.t(ops.F32, 1, P), M: a.t(ops.F32, 0, P), V: a.t(ops.F32, 0, P),
					EMA: a.t(ops.F32, 1, P), LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.03, EMADecay: 0.9999,
					GradScale: 1, Step: 1}
				if dt == ops.BF16 {
					p.Shadow = a.t(ops.BF16, 0, P)
				}
				return func() error { p.Step++; return a.be.AdamW(p) }, a.err
			}},
	}
}

// RunKernels times the kernel benchmarks on be and returns one result per kernel
// (unsupported kernels carry Err). peakTFLOPs and peakBW (bytes/s) may be 0 (unknown).
func RunKernels(be ops.Backend, o KernelOptions, peakTFLOPs, peakBW float64) []KernelResult {
	if o.MinTime <= 0 {
		o.MinTime = 300 * time.Millisecond
	}
	var res []KernelResult
	copyBW := 0.0
	for _, k := range kernels(o) {
		r := KernelResult{Name: k.name, Shape: k.shape}
		a := &arena{be: be, dt: o.DType, rnd: 0x9e3779b97f4a7c15}
		sec, iters, err := timeKernel(be, a, k, o.MinTime)
		a.free()
		if err != nil {
			r.Err = err.Error()
			res = append(res, r)
			continue
		}
		r.Seconds, r.Iters = sec, iters
		if k.flops > 0 {
			r.TFLOPs = k.flops / sec / 1e12
			if peakTFLOPs > 0 {
				r.PctPeak = 100 * r.TFLOPs / peakTFLOPs
			}
		}
		if k.bytes > 0 {
			r.GBps = k.bytes / sec / 1e9
			if peakBW > 0 {
				r.PctPeak = 100 * r.GBps * 1e9 / peakBW
			}
			if k.name == "copy" {
				copyBW = r.GBps
			} else if copyBW > 0 {
				r.PctCopy = 100 * r.GBps / copyBW
			}
		}
		res = append(res, r)
	}
	return res
}

func timeKernel(be ops.Backend, a *arena, k kernel, minTime time.Duration) (float64, int, error) {
	call, err := k.setup(a)
	if err != nil {
		return 0, 0, err
	}
	for range 2 {
		if err := call(); err != nil {
			return 0, 0, err
		}
	}
	if err := be.Sync(); err != nil {
		return 0, 0, err
	}
	n := 1
	for {
		t0 := time.Now()
		for range n {
			if err := call(); err != nil {
				return 0, 0, err
			}
		}
		if err := be.Sync(); err != nil {
			return 0, 0, err
		}
		el := time.Since(t0)
		if el >= minTime || n >= 1<<16 {
			return el.Seconds() / float64(n), n, nil
		}
		n = min(n*2, max(2*n, int(float64(n)*1.2*float64(minTime)/float64(max(el, time.Microsecond)))))
	}
}

// TorchKernels is md4.py --kernels' output: PyTorch's seconds per call for our kernel
// names, and the PyTorch op each stands for.
type TorchKernels struct {
	Results []struct {
		Name    string  `json:"name"`
		Op      string  `json:"op"`
		Seconds float64 `json:"seconds"`
	} `json:"results"`
	Versions map[string]any `json:"versions"`
}

// AttachTorch fills the PyTorch columns of res from t.
func AttachTorch(res []KernelResult, t *TorchKernels) {
	for i := range res {
		for _, x := range t.Results {
			if x.Name == res[i].Name && x.Seconds > 0 {
				res[i].Torch, res[i].TorchOp = x.Seconds, x.Op
				if res[i].Seconds > 0 {
					res[i].Speedup = x.Seconds / res[i].Seconds
				}
			}
		}
	}
}

// GPUPeaks returns the bf16 TFLOP/s and HBM bytes/s peaks of the backend's device (0 for
// unknown devices, the simulator and the CPU).
func GPUPeaks(name string) (tflops, bw float64) {
	return cuda.PeakBF16TFLOPs(name), PeakBandwidth(name)
}
