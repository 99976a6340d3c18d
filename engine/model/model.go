package model

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Model holds the parameters of one MD4 network on a backend.
type Model struct {
	Cfg    Config
	be     ops.Backend
	Params []*Param // canonical order (Config.ParamSpecs)
	byName map[string]*Param

	tokEmbed, projW, projB *Param
	posEmbed               [3]*Param // pixel models: row, column, channel embeddings
	fc1W, fc1B, fc2W, fc2B *Param
	blocks                 []blockParams
	finW, finB, finNorm    *Param
	head                   *Param
	shared                 bool // from WithWeights: Free does not release the weights
}

type blockParams struct {
	adaW, adaB, norm1, norm2 *Param
	q, k, v, o               *Param
	w1, w3, w2               *Param
}

// New validates cfg (after WithDefaults), allocates every parameter and its gradient on be
// (zero-filled; call Init for MD4's initialisation) and returns the model.
func New(be ops.Backend, cfg Config) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg, be: be, byName: map[string]*Param{}}
	for _, s := range cfg.ParamSpecs() {
		w, err := be.Alloc(cfg.DType, s.Shape...)
		if err != nil {
			m.Free()
			return nil, fmt.Errorf("model: allocating %s %v: %w", s.Name, s.Shape, err)
		}
		w.Name = s.Name
		g, err := be.Alloc(cfg.DType, s.Shape...)
		if err != nil {
			m.Free()
			return nil, fmt.Errorf("model: allocating gradient of %s %v: %w", s.Name, s.Shape, err)
		}
		g.Name = "grad." + s.Name
		p := &Param{Spec: s, W: w, Grad: g}
		if cfg.Mixed() && halfParam(s.Name) {
			if p.Half, err = be.Alloc(cfg.Compute, s.Shape...); err != nil {
				m.Free()
				return nil, fmt.Errorf("model: allocating the %v copy of %s %v: %w", cfg.Compute, s.Name, s.Shape, err)
			}
			p.Half.Name = "half." + s.Name
		}
		m.Params = append(m.Params, p)
		m.byName[s.Name] = p
	}
	n := m.byName
	m.tokEmbed, m.projW, m.projB = n["token_embed.weight"], n["embed_proj.weight"], n["embed_proj.bias"]
	m.posEmbed = [3]*Param{n["pos_embed.row.weight"], n["pos_embed.col.weight"], n["pos_embed.channel.weight"]}
	m.fc1W, m.fc1B = n["time_embed.fc1.weight"], n["time_embed.fc1.bias"]
	m.fc2W, m.fc2B = n["time_embed.fc2.weight"], n["time_embed.fc2.bias"]
	for i := 0; i < cfg.Layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		m.blocks = append(m.blocks, blockParams{
			adaW: n[p+"adaln.weight"], adaB: n[p+"adaln.bias"],
			norm1: n[p+"norm1.weight"], norm2: n[p+"norm2.weight"],
			q: n[p+"attn.q.weight"], k: n[p+"attn.k.weight"], v: n[p+"attn.v.weight"], o: n[p+"attn.o.weight"],
			w1: n[p+"mlp.w1.weight"], w3: n[p+"mlp.w3.weight"], w2: n[p+"mlp.w2.weight"],
		})
	}
	m.finW, m.finB, m.finNorm = n["final.adaln.weight"], n["final.adaln.bias"], n["final.norm.weight"]
	m.head = n["head.weight"]
	return m, nil
}

// Backend returns the backend the model lives on.
func (m *Model) Backend() ops.Backend { return m.be }

// Param returns the parameter with the canonical name, or nil.
func (m *Model) Param(name string) *Param { return m.byName[name] }

// Init sets every parameter to MD4's initialisation (md4.md §6.1) drawn from seed; see
// InitValues. The result is the same on every backend.
func (m *Model) Init(seed uint64) error {
	for id, p := range m.Params {
		if err := m.SetParam(p, InitValues(p.Spec, id, seed)); err != nil {
			return err
		}
	}
	return nil
}

// SetParam uploads float64 host values (len = Numel) into p, converting to the model
// dtype (and refreshing its bf16 copy in mixed precision).
func (m *Model) SetParam(p *Param, v []float64) error {
	if err := Upload(m.be, p.W, v); err != nil {
		return err
	}
	return m.syncHalf(p)
}

// SyncHalf refreshes every bf16 weight copy from the master weights (mixed precision; a
// no-op otherwise). Call it after writing W directly (e.g. loading a checkpoint).
func (m *Model) SyncHalf() error {
	for _, p := range m.Params {
		if err := m.syncHalf(p); err != nil {
			return err
		}
	}
	return nil
}

func (m *Model) syncHalf(p *Param) error {
	if p.Half == nil {
		return nil
	}
	return m.be.Convert(&ops.ConvertParams{Out: p.Half, In: p.W})
}

// GetParam downloads p's value as float64.
func (m *Model) GetParam(p *Param) ([]float64, error) { return Download(m.be, p.W) }

// GetGrad downloads p's gradient as float64.
func (m *Model) GetGrad(p *Param) ([]float64, error) { return Download(m.be, p.Grad) }

// ZeroGrad sets every gradient to 0 (Backward accumulates, so that micro-batches add up).
func (m *Model) ZeroGrad() error {
	e := exec{b: m.be}
	for _, p := range m.Params {
		e.zero(p.Grad)
	}
	return e.err
}

// Free releases the parameters and gradients (and cached workspaces).
func (m *Model) Free() {
	if m.shared { // the weights belong to someone else; the bf16 copies are ours
		for _, p := range m.Params {
			if p.Half != nil {
				m.be.Free(p.Half)
			}
		}
		m.Params = nil
		return
	}
	for _, p := range m.Params {
		for _, t := range []*ops.Tensor{p.W, p.Grad, p.Half} {
			if t != nil {
				m.be.Free(t)
			}
		}
	}
	m.Params = nil
}

// Upload copies float64 host values into a float tensor of dtype F32 or F64.
func Upload(be ops.Backend, t *ops.Tensor, v []float64) error {
	if len(v) != t.Len() {
		return fmt.Errorf("model: %v needs %d values, got %d", t, t.Len(), len(v))
	}
	switch t.DType() {
	case ops.F64:
		return be.Upload(t, v)
	case ops.F32:
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		return be.Upload(t, f)
	}
	return fmt.Errorf("model: cannot upload float64 values into %v", t)
}

// Download copies a float tensor (F32 or F64) to float64 host values.
func Download(be ops.Backend, t *ops.Tensor) ([]float64, error) {
	out := make([]float64, t.Len())
	switch t.DType() {
	case ops.F64:
		return out, be.Download(out, t)
	case ops.F32:
		f := make([]float32, t.Len())
		if err := be.Download(f, t); err != nil {
			return nil, err
		}
		for i, x := range f {
			out[i] = float64(x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("model: cannot download %v as float64", t)
}

// WithWeights returns a model that shares m's configuration and backend but reads its
// parameter values from weights (one tensor per parameter, in canonical order, e.g. the
// optimizer's EMA tensors). The returned model has no gradients: it is for evaluation and
// sampling only (Backward fails). In mixed precision it owns bf16 copies of the weights,
// filled now; call SyncHalf again after the weights change (e.g. before each evaluation of
// EMA weights during training).
func (m *Model) WithWeights(weights []*ops.Tensor) (*Model, error) {
	if len(weights) != len(m.Params) {
		return nil, fmt.Errorf("model: WithWeights got %d tensors for %d parameters", len(weights), len(m.Params))
	}
	w := *m
	w.Params = make([]*Param, len(m.Params))
	w.byName = map[string]*Param{}
	remap := map[*Param]*Param{}
	for i, p := range m.Params {
		if !sameShape(weights[i].Shape(), p.Shape) || weights[i].DType() != p.W.DType() {
			return nil, fmt.Errorf("model: WithWeights: %v does not match %s %v", weights[i], p.Name, p.Shape)
		}
		q := &Param{Spec: p.Spec, W: weights[i]}
		if p.Half != nil {
			h, err := m.be.Alloc(p.Half.DType(), p.Shape...)
			if err != nil {
				w.shared = true
				w.Params = w.Params[:i]
				w.Free()
				return nil, fmt.Errorf("model: WithWeights: allocating the bf16 copy of %s: %w", p.Name, err)
			}
			q.Half = h
		}
		w.Params[i] = q
		w.byName[p.Name] = q
		remap[p] = q
	}
	r := func(p *Param) *Param {
		if p == nil {
			return nil
		}
		return remap[p]
	}
	w.tokEmbed, w.projW, w.projB = r(m.tokEmbed), r(m.projW), r(m.projB)
	w.posEmbed = [3]*Param{r(m.posEmbed[0]), r(m.posEmbed[1]), r(m.posEmbed[2])}
	w.fc1W, w.fc1B, w.fc2W, w.fc2B = r(m.fc1W), r(m.fc1B), r(m.fc2W), r(m.fc2B)
	w.finW, w.finB, w.finNorm, w.head = r(m.finW), r(m.finB), r(m.finNorm), r(m.head)
	w.blocks = make([]blockParams, len(m.blocks))
	for i, b := range m.blocks {
		w.blocks[i] = blockParams{adaW: r(b.adaW), adaB: r(b.adaB), norm1: r(b.norm1), norm2: r(b.norm2),
			q: r(b.q), k: r(b.k), v: r(b.v), o: r(b.o), w1: r(b.w1), w3: r(b.w3), w2: r(b.w2)}
	}
	w.shared = true
	if err := w.SyncHalf(); err != nil {
		w.Free()
		return nil, err
	}
	return &w, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
