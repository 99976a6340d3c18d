package model

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Workspace holds every activation and scratch buffer of one forward/backward pass for a
// fixed batch size B (N = B·L rows). Allocate it once with NewWorkspace and reuse it; the
// passes never allocate.
type Workspace struct {
	B, N int
	// XT [B, L] I32: the noised tokens x_t. The caller fills it (Upload, or the MaskTokens
	// op on the device) before Forward.
	XT *ops.Tensor

	m        *Model
	tT       *ops.Tensor // [B] F64 times
	seqLens  *ops.Tensor // [B] I32
	hasLens  bool
	temb     *ops.Tensor    // [B, Dc] sinusoidal features
	h1, a1   *ops.Tensor    // [B, 4Dc] fc1 output, swish
	c, ca    *ops.Tensor    // [B, Dc] conditioning vector, act(c)
	emb      *ops.Tensor    // [N, E] when E ≠ D
	posIDs   [3]*ops.Tensor // pixel models: row, column, channel of every position [N] I32
	posTmp   *ops.Tensor    // [N, E] one position embedding before it is added
	xs       []*ops.Tensor
	layers   []layerActs
	fmod     *ops.Tensor // [B, 2D]
	fshift   *ops.Tensor // [B, D]
	fscale   *ops.Tensor // [B, D]
	fshiftC  *ops.Tensor // the same in the compute dtype
	fscaleC  *ops.Tensor
	nf       *ops.Tensor // [N, D] final normed
	fmean    *ops.Tensor
	frstd    *ops.Tensor
	rows     *ops.Tensor // [N] I32 capacity
	targets  *ops.Tensor // [N] I32
	weights  *ops.Tensor // [N] F64
	loss     *ops.Tensor // [N] F64
	hr       *ops.Tensor // [N, D] gathered rows
	logits   *ops.Tensor // [N, V]
	r        int         // rows in the current pass
	rowsV    *ops.Tensor // views of the first r rows
	hrV      *ops.Tensor
	logitsV  *ops.Tensor
	haveLoss bool

	// backward scratch
	dx, dx2, dtmp, dn, dproj, do, dq, dk, dv, dy *ops.Tensor // [N, D]
	dgm, da, dbm                                 *ops.Tensor // [N, Hm]
	dmod                                         *ops.Tensor // [B, 6D]
	dchunks                                      [6]*ops.Tensor
	dfmod                                        *ops.Tensor // [B, 2D]
	dca, dc                                      *ops.Tensor // [B, Dc]
	da1, dh1                                     *ops.Tensor // [B, 4Dc]
	dhr                                          *ops.Tensor // [N, D]
	demb                                         *ops.Tensor // [N, E]
	all                                          []*ops.Tensor
}

type layerActs struct {
	mod          *ops.Tensor    // [B, 6D] adaLN output (parameter dtype)
	chunks       [6]*ops.Tensor // shift_a, scale_a, gate_a, shift_m, scale_m, gate_m [B, D]
	chunksC      [6]*ops.Tensor // the chunks in the compute dtype (= chunks unless mixed precision)
	n1, n2       *ops.Tensor    // [N, D] modulated norms
	mean1, rstd1 *ops.Tensor    // [N]
	mean2, rstd2 *ops.Tensor
	q, k, v, o   *ops.Tensor // [N, D]; q and k after RoPE
	q4, k4, v4   *ops.Tensor // the same as [B, L, H, Dh]
	o4           *ops.Tensor
	lse          *ops.Tensor // [B, H, L]
	proj, x2     *ops.Tensor // [N, D]
	a, bm, g     *ops.Tensor // [N, Hm]
	y            *ops.Tensor // [N, D]
}

// Chunk order of blocks.{i}.adaln (architecture.md §5).
const (
	shiftA = iota
	scaleA
	gateA
	shiftM
	scaleM
	gateM
)

// NewWorkspace allocates the buffers for batch size b.
func (m *Model) NewWorkspace(b int) (*Workspace, error) {
	if b < 1 {
		return nil, fmt.Errorf("model: batch size %d must be at least 1", b)
	}
	c := m.Cfg
	L, D, Hm, Dc, E, V, H := c.SeqLen, c.Dim, c.MLPHidden, c.CondDim, c.EmbedDim, c.Vocab, c.Heads
	N := b * L
	ws := &Workspace{B: b, N: N, m: m}
	var err error
	alloc := func(dt ops.DType, name string, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		t, err = m.be.Alloc(dt, shape...)
		if err != nil {
			err = fmt.Errorf("model: workspace for batch %d: allocating %s %v: %w", b, name, shape, err)
			return nil
		}
		t.Name = name
		ws.all = append(ws.all, t)
		return t
	}
	// Activations use the compute dtype; the conditioning path (B rows) and everything
	// accumulated (statistics, parameter-gradient sums) use the parameter dtype.
	f, p32 := c.Compute, c.DType
	// convCopy returns a compute-dtype copy buffer of t in mixed precision, else t itself.
	convCopy := func(t *ops.Tensor, name string, shape ...int) *ops.Tensor {
		if !c.Mixed() {
			return t
		}
		return alloc(f, name, shape...)
	}
	reshape := func(t *ops.Tensor, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var r *ops.Tensor
		r, err = t.Reshape(shape...)
		return r
	}
	ws.XT = alloc(ops.I32, "x_t", b, L)
	ws.tT = alloc(ops.F64, "t", b)
	ws.seqLens = alloc(ops.I32, "seq_lens", b)
	if c.TimeCond {
		ws.temb = alloc(p32, "time_features", b, Dc)
		ws.h1 = alloc(p32, "time_fc1", b, 4*Dc)
		ws.a1 = alloc(p32, "time_fc1_act", b, 4*Dc)
		ws.c = alloc(p32, "cond", b, Dc)
		ws.ca = alloc(p32, "cond_act", b, Dc)
		ws.dca = alloc(p32, "d_cond_act", b, Dc)
		ws.dc = alloc(p32, "d_cond", b, Dc)
		ws.da1 = alloc(p32, "d_time_fc1_act", b, 4*Dc)
		ws.dh1 = alloc(p32, "d_time_fc1", b, 4*Dc)
		ws.fmod = alloc(p32, "final_mod", b, 2*D)
		ws.fshift = alloc(p32, "final_shift", b, D)
		ws.fscale = alloc(p32, "final_scale", b, D)
		ws.fshiftC = convCopy(ws.fshift, "final_shift_c", b, D)
		ws.fscaleC = convCopy(ws.fscale, "final_scale_c", b, D)
		ws.dfmod = alloc(p32, "d_final_mod", b, 2*D)
		ws.dmod = alloc(p32, "d_mod", b, 6*D)
		for j := range ws.dchunks {
			ws.dchunks[j] = alloc(p32, "d_mod_chunk", b, D)
		}
	}
	if E != D {
		ws.emb = alloc(f, "embed", N, E)
		ws.demb = alloc(f, "d_embed", N, E)
	}
	if c.Pixels() {
		ws.posTmp = alloc(f, "pos_embed", N, E)
		ids := [3][]int32{make([]int32, N), make([]int32, N), make([]int32, N)}
		for i := 0; i < N; i++ {
			p := i % L // position in its sequence: (row·W + col)·C + channel
			ids[2][i] = int32(p % c.PixelC)
			q := p / c.PixelC
			ids[0][i], ids[1][i] = int32(q/c.PixelW), int32(q%c.PixelW)
		}
		for k, name := range []string{"pos_row", "pos_col", "pos_channel"} {
			ws.posIDs[k] = alloc(ops.I32, name, N)
			if err == nil {
				err = m.be.Upload(ws.posIDs[k], ids[k])
			}
		}
	}
	for i := 0; i <= c.Layers; i++ {
		ws.xs = append(ws.xs, alloc(f, fmt.Sprintf("residual.%d", i), N, D))
	}
	ws.layers = make([]layerActs, c.Layers)
	for i := range ws.layers {
		la := &ws.layers[i]
		p := fmt.Sprintf("blocks.%d.", i)
		if c.TimeCond {
			la.mod = alloc(p32, p+"mod", b, 6*D)
			for j := range la.chunks {
				la.chunks[j] = alloc(p32, p+"mod_chunk", b, D)
				la.chunksC[j] = convCopy(la.chunks[j], p+"mod_chunk_c", b, D)
			}
		}
		la.n1 = alloc(f, p+"norm1", N, D)
		la.n2 = alloc(f, p+"norm2", N, D)
		if c.TimeCond {
			la.mean1 = alloc(p32, p+"mean1", N)
			la.mean2 = alloc(p32, p+"mean2", N)
		}
		la.rstd1 = alloc(p32, p+"rstd1", N)
		la.rstd2 = alloc(p32, p+"rstd2", N)
		la.q = alloc(f, p+"q", N, D)
		la.k = alloc(f, p+"k", N, D)
		la.v = alloc(f, p+"v", N, D)
		la.o = alloc(f, p+"attn_out", N, D)
		la.q4 = reshape(la.q, b, L, H, D/H)
		la.k4 = reshape(la.k, b, L, H, D/H)
		la.v4 = reshape(la.v, b, L, H, D/H)
		la.o4 = reshape(la.o, b, L, H, D/H)
		la.lse = alloc(p32, p+"lse", b, H, L)
		la.proj = alloc(f, p+"attn_proj", N, D)
		la.x2 = alloc(f, p+"residual_mid", N, D)
		la.a = alloc(f, p+"mlp_w1", N, Hm)
		la.bm = alloc(f, p+"mlp_w3", N, Hm)
		la.g = alloc(f, p+"mlp_gated", N, Hm)
		la.y = alloc(f, p+"mlp_out", N, D)
	}
	ws.nf = alloc(f, "final_norm", N, D)
	if c.TimeCond {
		ws.fmean = alloc(p32, "final_mean", N)
	}
	ws.frstd = alloc(p32, "final_rstd", N)
	ws.rows = alloc(ops.I32, "rows", N)
	ws.targets = alloc(ops.I32, "targets", N)
	ws.weights = alloc(ops.F64, "weights", N)
	ws.loss = alloc(ops.F64, "row_loss", N)
	ws.hr = alloc(f, "head_in", N, D)
	ws.logits = alloc(f, "logits", N, V)
	for _, p := range []**ops.Tensor{&ws.dx, &ws.dx2, &ws.dtmp, &ws.dn, &ws.dproj, &ws.do, &ws.dq, &ws.dk, &ws.dv, &ws.dy, &ws.dhr} {
		*p = alloc(f, "grad_scratch", N, D)
	}
	ws.dgm = alloc(f, "d_mlp_gated", N, Hm)
	ws.da = alloc(f, "d_mlp_w1", N, Hm)
	ws.dbm = alloc(f, "d_mlp_w3", N, Hm)
	if err != nil {
		ws.Free()
		return nil, err
	}
	return ws, nil
}

// Free releases the workspace's buffers.
func (ws *Workspace) Free() {
	for _, t := range ws.all {
		ws.m.be.Free(t)
	}
	ws.all = nil
}

// Logits returns the [R, V] logits of the rows of the last Forward (a view into the
// workspace, valid until the next Forward; after Loss with gradients it holds dlogits).
func (ws *Workspace) Logits() *ops.Tensor { return ws.logitsV }

// Rows returns R, the number of head rows of the last Forward.
func (ws *Workspace) Rows() int { return ws.r }

// RowsTensor returns the [N] I32 device buffer holding the head rows of the last Forward
// (its first Rows() entries are valid).
func (ws *Workspace) RowsTensor() *ops.Tensor { return ws.rows }
