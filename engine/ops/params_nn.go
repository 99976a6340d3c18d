package ops

import "fmt"

// MatMulParams: Out = Alpha·op(A)·op(B) + Beta·Out, where op(X) is X or Xᵀ. With Beta = 0
// Out is overwritten without being read (so it may hold garbage). All tensors are 2-D,
// row-major. Linear layers use the PyTorch convention y = x·Wᵀ with W [out, in], i.e.
// A = x [N, in], B = W [out, in], TransB = true. A and B share a dtype (F32, or BF16 on
// GPU); Out is F32 or BF16.
type MatMulParams struct {
	Out, A, B      *Tensor
	TransA, TransB bool
	Alpha, Beta    float32
}

// Dims returns M, N, K of the product (op(A) is M×K, op(B) is K×N).
func (p *MatMulParams) Dims() (m, n, k int) {
	m, k = p.A.Dim(0), p.A.Dim(1)
	if p.TransA {
		m, k = k, m
	}
	n = p.B.Dim(1)
	if p.TransB {
		n = p.B.Dim(0)
	}
	return m, n, k
}

// Validate checks dtypes and that op(A) [M,K], op(B) [K,N] and Out [M,N] agree.
func (p *MatMulParams) Validate() error {
	c := checker{op: OpMatMul}
	if c.need("A", p.A, sFlt, -1, -1) && c.need("B", p.B, sFlt, -1, -1) && c.need("Out", p.Out, sFlt, -1, -1) {
		c.same("A", p.A, "B", p.B)
		m, n, k := p.Dims()
		kb := p.B.Dim(0)
		if p.TransB {
			kb = p.B.Dim(1)
		}
		c.that(k == kb, "B", "inner dimensions differ: op(A) is %dx%d, op(B) is %dx%d", m, k, kb, n)
		c.need("Out", p.Out, sFlt, m, n)
	}
	c.finite("Alpha", float64(p.Alpha))
	c.finite("Beta", float64(p.Beta))
	return c.err
}

// EmbedParams: Out[n, :] = Table[IDs[n], :]. Table [V+1, D] (row V embeds the mask), IDs [N]
// I32, Out [N, D]. An id outside [0, V+1) is an ErrValue naming the id and its index.
type EmbedParams struct {
	Out, Table, IDs *Tensor
}

// Validate checks shapes and dtypes.
func (p *EmbedParams) Validate() error {
	c := checker{op: OpEmbedFwd}
	if c.need("Table", p.Table, sFlt, -1, -1) && c.need("IDs", p.IDs, sI32, -1) {
		c.need("Out", p.Out, sFlt, p.IDs.Dim(0), p.Table.Dim(1))
		c.same("Table", p.Table, "Out", p.Out)
	}
	return c.err
}

// EmbedBwdParams: DTable[IDs[n], :] += DOut[n, :] (accumulates into DTable; rows never
// referenced are unchanged). Deterministic: no order-dependent float atomics.
type EmbedBwdParams struct {
	DTable, DOut, IDs *Tensor
}

// Validate checks shapes and dtypes.
func (p *EmbedBwdParams) Validate() error {
	c := checker{op: OpEmbedBwd}
	if c.need("DTable", p.DTable, sAcc, -1, -1) && c.need("IDs", p.IDs, sI32, -1) {
		c.need("DOut", p.DOut, sFlt, p.IDs.Dim(0), p.DTable.Dim(1))
	}
	return c.err
}

// NormKind selects the normalisation.
type NormKind uint8

const (
	// LayerNorm without learnable scale or bias: x̂ = (x − mean)·rstd, rstd = 1/sqrt(var + Eps)
	// with the biased variance (md4.md §6.1, adaLN blocks).
	LayerNorm NormKind = iota + 1
	// RMSNorm with a learnable scale: x̂ = x·rstd·Weight, rstd = 1/sqrt(mean(x²) + Eps) (the
	// blocks without time conditioning).
	RMSNorm
)

func (k NormKind) String() string {
	switch k {
	case LayerNorm:
		return "layernorm"
	case RMSNorm:
		return "rmsnorm"
	}
	return fmt.Sprintf("NormKind(%d)", uint8(k))
}

// NormParams: per row r of X [N, D], Out[r] = x̂[r]·(1 + Scale[g]) + Shift[g] with
// g = r / RowsPerGroup (adaLN modulate, md4.md §6.1), or Out[r] = x̂[r] when Shift and Scale
// are nil. For RMSNorm x̂ includes Weight [D] if given. Saves Rstd [N] (and Mean [N] for
// LayerNorm) for the backward pass. Statistics are accumulated in float64 on the CPU.
type NormParams struct {
	Kind         NormKind
	Eps          float32
	Out, X       *Tensor
	Weight       *Tensor // RMSNorm scale [D], optional
	Shift, Scale *Tensor // [B, D], optional (both or neither)
	RowsPerGroup int     // L: rows sharing one modulation row; ignored without Shift/Scale
	Mean, Rstd   *Tensor // [N] F32 outputs (Mean nil for RMSNorm)
}

// Validate checks kinds, shapes, dtypes and Eps > 0.
func (p *NormParams) Validate() error {
	c := checker{op: OpNormFwd}
	c.that(p.Kind == LayerNorm || p.Kind == RMSNorm, "Kind", "unknown norm kind %v", p.Kind)
	c.that(p.Eps > 0, "Eps", "Eps must be > 0, got %v", p.Eps)
	if !c.need("X", p.X, sFlt, -1, -1) {
		return c.err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	c.need("Out", p.Out, sFlt, n, d)
	c.need("Rstd", p.Rstd, sAcc, n)
	if p.Kind == LayerNorm {
		c.need("Mean", p.Mean, sAcc, n)
		c.that(p.Weight == nil, "Weight", "LayerNorm here has no learnable scale; pass nil")
	} else {
		c.opt("Weight", p.Weight, sAcc, d)
	}
	c.that((p.Shift == nil) == (p.Scale == nil), "Shift", "Shift and Scale must both be set or both nil")
	if p.Shift != nil {
		b := c.groups("RowsPerGroup", n, p.RowsPerGroup)
		c.need("Shift", p.Shift, sFlt, b, d)
		c.need("Scale", p.Scale, sFlt, b, d)
	}
	return c.err
}

// NormBwdParams is the backward of NormParams: given DOut [N, D] it writes DX [N, D]
// (overwritten), accumulates DWeight [D] (RMSNorm with Weight) and overwrites DShift and
// DScale [B, D] (sums over each group's rows) when modulation was used. Kind, Eps, Weight,
// Scale and RowsPerGroup must be those of the forward call; Mean and Rstd are its outputs.
type NormBwdParams struct {
	Kind           NormKind
	DX, DOut, X    *Tensor
	Mean, Rstd     *Tensor
	Weight, Scale  *Tensor
	RowsPerGroup   int
	DWeight        *Tensor // [D], accumulated; required iff Weight != nil
	DShift, DScale *Tensor // [B, D], overwritten; required iff Scale != nil
}

// Validate checks shapes and that the optional tensors come in the right combinations.
func (p *NormBwdParams) Validate() error {
	c := checker{op: OpNormBwd}
	c.that(p.Kind == LayerNorm || p.Kind == RMSNorm, "Kind", "unknown norm kind %v", p.Kind)
	if !c.need("X", p.X, sFlt, -1, -1) {
		return c.err
	}
	n, d := p.X.Dim(0), p.X.Dim(1)
	c.need("DX", p.DX, sFlt, n, d)
	c.need("DOut", p.DOut, sFlt, n, d)
	c.need("Rstd", p.Rstd, sAcc, n)
	if p.Kind == LayerNorm {
		c.need("Mean", p.Mean, sAcc, n)
	}
	c.that((p.Weight == nil) == (p.DWeight == nil), "DWeight", "DWeight is required exactly when Weight is given")
	if p.Weight != nil {
		c.that(p.Kind == RMSNorm, "Weight", "only RMSNorm has a Weight")
		c.need("Weight", p.Weight, sAcc, d)
		c.need("DWeight", p.DWeight, sAcc, d)
	}
	c.that((p.Scale == nil) == (p.DScale == nil) && (p.DScale == nil) == (p.DShift == nil),
		"DScale", "DShift and DScale are required exactly when Scale is given")
	if p.Scale != nil {
		b := c.groups("RowsPerGroup", n, p.RowsPerGroup)
		c.need("Scale", p.Scale, sFlt, b, d)
		c.need("DShift", p.DShift, sAcc, b, d)
		c.need("DScale", p.DScale, sAcc, b, d)
	}
	return c.err
}

// RoPEParams rotates adjacent channel pairs (2k, 2k+1) of every head of X [B, L, H, Dh] by
// the angle pos·Theta^(−2k/Dh), pos = 0..L−1 (md4.md §6.1). With Inverse it rotates by the
// negative angle, which is the backward pass (the rotation is orthogonal). Out may be X.
type RoPEParams struct {
	Out, X  *Tensor
	Theta   float64 // 10000 in MD4
	Inverse bool
}

// Validate checks shapes, an even head dimension and Theta > 1.
func (p *RoPEParams) Validate() error {
	c := checker{op: OpRoPE}
	if c.need("X", p.X, sFlt, -1, -1, -1, -1) {
		c.need("Out", p.Out, sFlt, p.X.Shape()...)
		c.that(p.X.Dim(3)%2 == 0, "X", "head dimension %d must be even for RoPE", p.X.Dim(3))
	}
	c.that(p.Theta > 1, "Theta", "Theta must be > 1, got %v", p.Theta)
	return c.err
}

// AttnParams: non-causal multi-head attention, Out = softmax(Q·Kᵀ·Scale + mask)·V per
// (sequence, head), with Q, K, V, Out [B, L, H, Dh] and LSE [B, H, L] F32 the log-sum-exp of
// each query row's scaled scores (saved for the backward pass). SeqLens [B] I32, optional,
// gives each sequence's number of real positions: keys at positions ≥ SeqLens[b] get weight
// exactly 0 (key padding mask, pitfalls B07). Query rows at padded positions are computed
// like any other and are finite. Scale is usually 1/sqrt(Dh).
type AttnParams struct {
	Out, LSE, Q, K, V *Tensor
	SeqLens           *Tensor
	Scale             float32
}

// Validate checks shapes and Scale > 0.
func (p *AttnParams) Validate() error {
	c := checker{op: OpAttnFwd}
	c.that(p.Scale > 0, "Scale", "Scale must be > 0, got %v", p.Scale)
	validateAttn(&c, p.Q, p.K, p.V, p.Out, p.SeqLens)
	if c.err == nil {
		c.need("LSE", p.LSE, sAcc, p.Q.Dim(0), p.Q.Dim(2), p.Q.Dim(1))
	}
	return c.err
}

func validateAttn(c *checker, q, k, v, out, seqLens *Tensor) {
	if !c.need("Q", q, sFlt, -1, -1, -1, -1) {
		return
	}
	s := q.Shape()
	c.need("K", k, sFlt, s...)
	c.need("V", v, sFlt, s...)
	c.need("Out", out, sFlt, s...)
	c.same("Q", q, "K", k)
	c.same("Q", q, "V", v)
	c.same("Q", q, "Out", out)
	c.opt("SeqLens", seqLens, sI32, s[0])
}

// AttnBwdParams is the backward of AttnParams: from DOut it writes (overwrites) DQ, DK, DV
// [B, L, H, Dh]. Out and LSE are the forward outputs; SeqLens and Scale as in the forward.
type AttnBwdParams struct {
	DQ, DK, DV, DOut *Tensor
	Q, K, V, Out     *Tensor
	LSE, SeqLens     *Tensor
	Scale            float32
}

// Validate checks shapes and Scale > 0.
func (p *AttnBwdParams) Validate() error {
	c := checker{op: OpAttnBwd}
	c.that(p.Scale > 0, "Scale", "Scale must be > 0, got %v", p.Scale)
	validateAttn(&c, p.Q, p.K, p.V, p.Out, p.SeqLens)
	if c.err == nil {
		s := p.Q.Shape()
		c.need("DQ", p.DQ, sFlt, s...)
		c.need("DK", p.DK, sFlt, s...)
		c.need("DV", p.DV, sFlt, s...)
		c.need("DOut", p.DOut, sFlt, s...)
		c.need("LSE", p.LSE, sAcc, s[0], s[2], s[1])
	}
	return c.err
}

// Activation selects an elementwise nonlinearity.
type Activation uint8

const (
	// Sigmoid σ(x) = 1/(1+e^−x): MD4's "glu" MLP gate and adaLN input (md4.md §6.1).
	Sigmoid Activation = iota + 1
	// Swish x·σ(x) (SiLU): the time-embedding MLP (md4.md §3) and "swiglu".
	Swish
	// GELU with the tanh approximation, as flax.linen.gelu's default ("geglu").
	GELU
)

func (a Activation) String() string {
	switch a {
	case Sigmoid:
		return "sigmoid"
	case Swish:
		return "swish"
	case GELU:
		return "gelu"
	}
	return fmt.Sprintf("Activation(%d)", uint8(a))
}

func validAct(a Activation) bool { return a >= Sigmoid && a <= GELU }

// GLUParams: the gated MLP's middle, Out = act(A) ⊙ B elementwise, where A = W1·x and
// B = W3·x are [N, Hm] (md4.md §6.1: y = W2(act(W1 x) ⊙ W3 x)).
type GLUParams struct {
	Act       Activation
	Out, A, B *Tensor
}

// Validate checks that all three tensors have one shape.
func (p *GLUParams) Validate() error {
	c := checker{op: OpGLUFwd}
	c.that(validAct(p.Act), "Act", "unknown activation %v", p.Act)
	if c.need("A", p.A, sFlt, -1, -1) {
		c.need("B", p.B, sFlt, p.A.Shape()...)
		c.need("Out", p.Out, sFlt, p.A.Shape()...)
	}
	return c.err
}

// GLUBwdParams: DA = DOut ⊙ B ⊙ act'(A), DB = DOut ⊙ act(A) (both overwritten).
type GLUBwdParams struct {
	Act          Activation
	DA, DB, DOut *Tensor
	A, B         *Tensor
}

// Validate checks that all tensors have one shape.
func (p *GLUBwdParams) Validate() error {
	c := checker{op: OpGLUBwd}
	c.that(validAct(p.Act), "Act", "unknown activation %v", p.Act)
	if c.need("A", p.A, sFlt, -1, -1) {
		s := p.A.Shape()
		c.need("B", p.B, sFlt, s...)
		c.need("DA", p.DA, sFlt, s...)
		c.need("DB", p.DB, sFlt, s...)
		c.need("DOut", p.DOut, sFlt, s...)
	}
	return c.err
}

// ActParams: Out = act(X) elementwise; any shape; Out may be X.
type ActParams struct {
	Act    Activation
	Out, X *Tensor
}

// Validate checks that Out and X have one shape.
func (p *ActParams) Validate() error {
	c := checker{op: OpActFwd}
	c.that(validAct(p.Act), "Act", "unknown activation %v", p.Act)
	if c.need("X", p.X, sFlt) {
		c.need("Out", p.Out, sFlt, p.X.Shape()...)
	}
	return c.err
}

// ActBwdParams: DX = DOut ⊙ act'(X) (overwritten), X the forward input.
type ActBwdParams struct {
	Act         Activation
	DX, DOut, X *Tensor
}

// Validate checks that all tensors have one shape.
func (p *ActBwdParams) Validate() error {
	c := checker{op: OpActBwd}
	c.that(validAct(p.Act), "Act", "unknown activation %v", p.Act)
	if c.need("X", p.X, sFlt) {
		c.need("DX", p.DX, sFlt, p.X.Shape()...)
		c.need("DOut", p.DOut, sFlt, p.X.Shape()...)
	}
	return c.err
}

// BiasAddParams: Out[n, :] += Bias (in place), Out [N, M], Bias [M].
type BiasAddParams struct {
	Out, Bias *Tensor
}

// Validate checks shapes.
func (p *BiasAddParams) Validate() error {
	c := checker{op: OpBiasAdd}
	if c.need("Out", p.Out, sFlt, -1, -1) {
		c.need("Bias", p.Bias, sAcc, p.Out.Dim(1))
	}
	return c.err
}

// BiasGradParams: DBias += Σ_n DOut[n, :] (accumulated, float64 sums on the CPU).
type BiasGradParams struct {
	DBias, DOut *Tensor
}

// Validate checks shapes.
func (p *BiasGradParams) Validate() error {
	c := checker{op: OpBiasGrad}
	if c.need("DOut", p.DOut, sFlt, -1, -1) {
		c.need("DBias", p.DBias, sAcc, p.DOut.Dim(1))
	}
	return c.err
}

// GateResidualParams: Out[r] = X[r] + Gate[g] ⊙ Y[r], g = r / RowsPerGroup (the adaLN-Zero
// gated residual, md4.md §6.1), or Out = X + Y when Gate is nil. X, Y, Out [N, D], Gate
// [B, D]. Out may be X.
type GateResidualParams struct {
	Out, X, Y    *Tensor
	Gate         *Tensor
	RowsPerGroup int
}

// Validate checks shapes.
func (p *GateResidualParams) Validate() error {
	c := checker{op: OpGateResidualFwd}
	if c.need("X", p.X, sFlt, -1, -1) {
		s := p.X.Shape()
		c.need("Y", p.Y, sFlt, s...)
		c.need("Out", p.Out, sFlt, s...)
		if p.Gate != nil {
			b := c.groups("RowsPerGroup", s[0], p.RowsPerGroup)
			c.need("Gate", p.Gate, sFlt, b, s[1])
		}
	}
	return c.err
}

// GateResidualBwdParams is the backward of GateResidualParams for the gated branch:
// DY = Gate[g] ⊙ DOut (or DOut without Gate) and DGate[g] = Σ_{r in g} DOut[r] ⊙ Y[r]
// (overwritten). The residual path's gradient is DOut itself, which the caller reuses.
type GateResidualBwdParams struct {
	DY, DOut, Y  *Tensor
	Gate, DGate  *Tensor
	RowsPerGroup int
}

// Validate checks shapes; DGate is required exactly when Gate is given.
func (p *GateResidualBwdParams) Validate() error {
	c := checker{op: OpGateResidualBwd}
	if c.need("DOut", p.DOut, sFlt, -1, -1) {
		s := p.DOut.Shape()
		c.need("DY", p.DY, sFlt, s...)
		c.need("Y", p.Y, sFlt, s...)
		c.that((p.Gate == nil) == (p.DGate == nil), "DGate", "DGate is required exactly when Gate is given")
		if p.Gate != nil {
			b := c.groups("RowsPerGroup", s[0], p.RowsPerGroup)
			c.need("Gate", p.Gate, sFlt, b, s[1])
			c.need("DGate", p.DGate, sAcc, b, s[1])
		}
	}
	return c.err
}

// CopyColsParams: Dst[r, DstOff+j] (+)= Src[r, SrcOff+j] for j < Width and every row r;
// Dst [R, Cd], Src [R, Cs]. Accumulate adds instead of overwriting. Used to split the adaLN
// output [B, 6D] into its chunks and, with Accumulate, to assemble their gradients.
type CopyColsParams struct {
	Dst, Src       *Tensor
	DstOff, SrcOff int
	Width          int
	Accumulate     bool
}

// Validate checks the column ranges.
func (p *CopyColsParams) Validate() error {
	c := checker{op: OpCopyCols}
	if c.need("Src", p.Src, sFlt, -1, -1) && c.need("Dst", p.Dst, sFlt, p.Src.Dim(0), -1) {
		c.that(p.Width > 0 && p.SrcOff >= 0 && p.SrcOff+p.Width <= p.Src.Dim(1), "SrcOff",
			"columns [%d, %d) are outside Src's %d columns", p.SrcOff, p.SrcOff+p.Width, p.Src.Dim(1))
		c.that(p.DstOff >= 0 && p.DstOff+p.Width <= p.Dst.Dim(1), "DstOff",
			"columns [%d, %d) are outside Dst's %d columns", p.DstOff, p.DstOff+p.Width, p.Dst.Dim(1))
	}
	return c.err
}

// GatherRowsParams: Out[i, :] = In[Rows[i], :]; In [N, D], Rows [R] I32, Out [R, D]. Used
// to run the output head on masked positions only (architecture.md §3).
type GatherRowsParams struct {
	Out, In, Rows *Tensor
}

// Validate checks shapes.
func (p *GatherRowsParams) Validate() error {
	c := checker{op: OpGatherRows}
	if c.need("In", p.In, sFlt, -1, -1) && c.need("Rows", p.Rows, sI32, -1) {
		c.need("Out", p.Out, sFlt, p.Rows.Dim(0), p.In.Dim(1))
	}
	return c.err
}

// ScatterRowsParams: Out[Rows[i], :] (+)= In[i, :], the backward of GatherRows. Rows must
// be distinct (a repeated row is an ErrValue). Without Accumulate the rows not listed are
// left unchanged, not zeroed.
type ScatterRowsParams struct {
	Out, In, Rows *Tensor
	Accumulate    bool
}

// Validate checks shapes.
func (p *ScatterRowsParams) Validate() error {
	c := checker{op: OpScatterRows}
	if c.need("Out", p.Out, sFlt, -1, -1) && c.need("Rows", p.Rows, sI32, -1) {
		c.need("In", p.In, sFlt, p.Rows.Dim(0), p.Out.Dim(1))
	}
	return c.err
}
