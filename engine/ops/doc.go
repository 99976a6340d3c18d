// Package ops is the backend contract of mdm-gpu: what a device must provide (memory,
// copies, synchronisation) and the mathematical operations the MD4 model, its loss, its
// optimiser and its samplers are built from.
//
// # Design
//
//   - Tensors are handles owned by a Device (CPU memory, simulated device memory or GPU
//     memory). They are dense, row-major and contiguous. Model code never touches storage;
//     it moves data with Device.Upload and Device.Download.
//   - Every op is destination-passing: outputs are arguments, so the hot path never
//     allocates behind the caller's back. Each op takes one parameter struct holding its
//     tensors and scalars.
//   - Every parameter struct has Validate, which checks dtypes, shapes and scalars. All
//     backends call it first, so every backend agrees on what is legal. Data-dependent
//     checks (token ids in range, finite values) are made by the CPU backend as it computes
//     and by the checked wrapper (package ops/checked) for any backend.
//   - Shapes use the names of the MD4 model: B sequences of L positions, N = B·L rows,
//     model width D = H·Dh (H heads of Dh channels), MLP width Hm, vocabulary V (the mask
//     id is V, so embeddings have V+1 rows and logits have V columns), conditioning width Dc.
//   - The contract is ready for bf16 device tensors (DType BF16) and asynchronous streams
//     (the optional Streamer interface), although the CPU backend computes in float32 with
//     float64 accumulation and has no streams.
//
// Errors are *OpError values wrapping one of the sentinel errors (ErrShape, ErrDType,
// ErrValue, ErrNonFinite, ErrUnsupported), so callers can test them with errors.Is and
// users read which op, which tensor and which value was wrong.
package ops
