// Package cpu is the reference backend of mdm-gpu: every op of the contract in
// engine/ops, written in plain Go, which every other backend is checked against
// (architecture.md §2, style.md "one simple, obviously correct reference").
//
// # Storage and dtypes
//
// A tensor's Storage is a []float32 (F32), []float64 (F64), []int32 (I32) or []uint16
// (BF16 bits) of exactly Len elements. Every op runs for F32 and for F64 (Go generics over
// float32 | float64): all floating tensors of one call share one element type, except the
// tensors the contract fixes to F64 (MaskedCE Weights and Loss, MaskProb, SumSquares Out,
// TimeEmbed T). F64 exists so that tests can finite-difference the whole model in float64.
// BF16 is supported by Convert only (and by the AdamW Shadow output).
//
// # Numerics
//
// Reductions (norm statistics, softmax and log-sum-exp sums, bias, gate, shift and scale
// gradient sums, cross-entropy, SumSquares, embedding gradients) accumulate in float64 even
// for F32 data; row reductions use four interleaved accumulators in a fixed order
// (reduce.go). Transcendental functions (exp, log, tanh, sin, cos) are evaluated in float64
// and rounded once to the element type; for F32 data the exponentials of attention and of
// the sigmoid gate use fexp, a float64 polynomial with relative error below 1e-8, far below
// float32 rounding (fastexp.go; F64 data keep math.Exp for the finite-difference checks).
//
// MatMul cuts each product into tiles that depend only on the shape (gemm.go) and runs
// them on the worker pool with a serial kernel: in the default build, for float32 on CPUs
// with AVX2 and FMA, a blocked GEMM around an assembly 6×16 micro-kernel (sgemm.go,
// internal/vmath) that accumulates in float32 with fused multiply-adds, as BLAS libraries
// do; otherwise gonum's Sgemm / Dgemm; with the build tags openblas and cgo, OpenBLAS
// (single-threaded, one call per tile). The F32 hot loops of attention, the sigmoid GLU and
// LayerNorm run in the AVX2 kernels of internal/vmath, which do the scalar code's float64
// operations in the same order (same bits).
//
// # Parallelism and determinism
//
// Work is split into chunks whose boundaries do not depend on the number of workers, and
// every reduction is summed in a fixed order (per-chunk partials added sequentially, or one
// worker per output element). Results are therefore bit-identical for any worker count and
// from run to run. The hot paths reuse per-backend and per-worker scratch, so steady-state
// calls do not allocate.
//
// A Backend, like every ops.Device, is used from one goroutine at a time.
package cpu
