package ops

// Device owns memory and orders work. Implementations: the CPU backend (engine/cpu), the
// simulated GPU and the real GPU (package cuda). All methods are safe to call from one
// goroutine at a time; a Device is not required to be safe for concurrent use.
type Device interface {
	// Name identifies the device, e.g. "cpu", "sim", "cuda:0 (NVIDIA H200)".
	Name() string
	// Alloc returns a new zero-filled tensor. It fails with a clear error when memory is
	// exhausted (requested and free bytes in the message).
	Alloc(dt DType, shape ...int) (*Tensor, error)
	// Free releases a tensor's storage. Using the tensor afterwards is an error. Freeing a
	// view (see View) is an error; free the tensor it was taken from.
	Free(t *Tensor) error
	// View returns a tensor sharing t's storage that covers rows [start, end) of t's first
	// dimension, with the remaining dimensions unchanged (e.g. the first R rows of a
	// [B·L, V] logits buffer when only R positions are masked). 0 ≤ start ≤ end ≤ t.Dim(0);
	// an empty view (start = end) is allowed. Writes through the view are writes to t.
	View(t *Tensor, start, end int) (*Tensor, error)
	// Upload copies host data into dst. src must be a []float32 (F32), []uint16 (BF16 bits),
	// []float64 (F64) or []int32 (I32) of exactly dst.Len() elements.
	Upload(dst *Tensor, src any) error
	// Download copies src into host memory dst, with the same typing rules as Upload.
	Download(dst any, src *Tensor) error
	// Sync waits for all queued work and returns the first asynchronous error (sticky: once
	// an asynchronous error occurred, Sync keeps returning it).
	Sync() error
	// MemInfo returns free and total device memory in bytes (the CPU reports the process's
	// view of system memory).
	MemInfo() (free, total int64, err error)
}

// Ops is one method per mathematical op, all destination-passing (see the package comment).
// Each method validates its Params first and returns an *OpError on bad input.
type Ops interface {
	MatMul(p *MatMulParams) error
	EmbedFwd(p *EmbedParams) error
	EmbedBwd(p *EmbedBwdParams) error
	NormFwd(p *NormParams) error
	NormBwd(p *NormBwdParams) error
	RoPE(p *RoPEParams) error
	AttnFwd(p *AttnParams) error
	AttnBwd(p *AttnBwdParams) error
	GLUFwd(p *GLUParams) error
	GLUBwd(p *GLUBwdParams) error
	ActFwd(p *ActParams) error
	ActBwd(p *ActBwdParams) error
	BiasAdd(p *BiasAddParams) error
	BiasGrad(p *BiasGradParams) error
	GateResidualFwd(p *GateResidualParams) error
	GateResidualBwd(p *GateResidualBwdParams) error
	CopyCols(p *CopyColsParams) error
	GatherRows(p *GatherRowsParams) error
	ScatterRows(p *ScatterRowsParams) error
	MaskedCE(p *MaskedCEParams) error
	MaskTokens(p *MaskParams) error
	SampleStep(p *SampleParams) error
	AdamW(p *AdamWParams) error
	SumSquares(p *SumSquaresParams) error
	Axpy(p *AxpyParams) error
	Convert(p *ConvertParams) error
	TimeEmbed(p *TimeEmbedParams) error
	GenMaskedCE(p *GenMaskedCEParams) error
}

// Backend is a Device plus its Ops. Model and training code see only this interface.
type Backend interface {
	Device
	Ops
	// Supports reports whether op is implemented for element type dt (the main floating
	// type of its data tensors). An unsupported call returns an error wrapping
	// ErrUnsupported; it never silently falls back.
	Supports(op Op, dt DType) bool
}

// Stream is an ordered queue of device work (a CUDA stream).
type Stream interface {
	// Sync waits for the stream's work and returns its first error.
	Sync() error
	// Close releases the stream after waiting for its work.
	Close() error
}

// Streamer is implemented by backends with asynchronous streams. On returns the backend's
// ops enqueued on s instead of the default stream. The CPU backend does not implement it:
// its ops complete before they return.
type Streamer interface {
	NewStream() (Stream, error)
	On(s Stream) Ops
}

// Op names one operation of the contract. The parity harness keeps one case list per Op,
// and a coverage test fails if an Op in AllOps has none.
type Op uint8

// The ops, one per Ops method.
const (
	OpMatMul Op = iota + 1
	OpEmbedFwd
	OpEmbedBwd
	OpNormFwd
	OpNormBwd
	OpRoPE
	OpAttnFwd
	OpAttnBwd
	OpGLUFwd
	OpGLUBwd
	OpActFwd
	OpActBwd
	OpBiasAdd
	OpBiasGrad
	OpGateResidualFwd
	OpGateResidualBwd
	OpCopyCols
	OpGatherRows
	OpScatterRows
	OpMaskedCE
	OpMaskTokens
	OpSampleStep
	OpAdamW
	OpSumSquares
	OpAxpy
	OpConvert
	OpTimeEmbed
	OpGenMaskedCE
	opEnd
)

var opNames = [...]string{
	OpMatMul: "MatMul", OpEmbedFwd: "EmbedFwd", OpEmbedBwd: "EmbedBwd", OpNormFwd: "NormFwd",
	OpNormBwd: "NormBwd", OpRoPE: "RoPE", OpAttnFwd: "AttnFwd", OpAttnBwd: "AttnBwd",
	OpGLUFwd: "GLUFwd", OpGLUBwd: "GLUBwd", OpActFwd: "ActFwd", OpActBwd: "ActBwd",
	OpBiasAdd: "BiasAdd", OpBiasGrad: "BiasGrad", OpGateResidualFwd: "GateResidualFwd",
	OpGateResidualBwd: "GateResidualBwd", OpCopyCols: "CopyCols", OpGatherRows: "GatherRows",
	OpScatterRows: "ScatterRows", OpMaskedCE: "MaskedCE", OpMaskTokens: "MaskTokens",
	OpSampleStep: "SampleStep", OpAdamW: "AdamW", OpSumSquares: "SumSquares", OpAxpy: "Axpy",
	OpConvert: "Convert", OpTimeEmbed: "TimeEmbed", OpGenMaskedCE: "GenMaskedCE",
}

// String returns the op's name, which is also its Ops method name.
func (o Op) String() string {
	if o > 0 && o < opEnd {
		return opNames[o]
	}
	return "Op(?)"
}

// AllOps lists every op of the contract, in declaration order.
func AllOps() []Op {
	out := make([]Op, 0, int(opEnd)-1)
	for o := OpMatMul; o < opEnd; o++ {
		out = append(out, o)
	}
	return out
}
