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
// for F32 data. Transcendental functions (exp, log, tanh, sin, cos) are evaluated in
// float64 and rounded once to the element type. GEMM goes through gonum's pure-Go BLAS
// (Sgemm / Dgemm); with the build tags openblas and cgo, MatMul uses OpenBLAS instead.
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
