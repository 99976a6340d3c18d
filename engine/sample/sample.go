// Package sample generates sequences from a trained MD4 model with the ancestral sampler
// (md4.md §5.1, paper Alg. 2): start from masks (or a template with fixed tokens), run T
// reverse steps on a uniform or cosine time grid, each one network call followed by one
// SampleStep on the device (exact float64 two-stage draws by default), then decode any
// position still masked by argmax at t = 0 (pitfalls B05).
package sample

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Config describes one sampling run.
type Config struct {
	Steps int            // T reverse steps (1000 for text in MD4)
	Grid  diffusion.Grid // cosine (MD4 default) or uniform
	Mode  ops.SampleMode // ops.SampleExact (default) or ops.SampleJAXCompat
	TopP  float64        // nucleus filtering in (0, 1); 0 or 1 disables
	Seed  uint64
	Sched diffusion.Schedule // the schedule the model was trained with
	// IndexOffset is added to the flat position b·L + l in the Philox index of every draw
	// (ops.SampleParams.IndexOffset): give batch k of a multi-batch run the offset
	// k·B·L so that its sequences differ from batch 0's.
	IndexOffset uint64
}

// Report describes how samples were produced; it is printed beside them.
type Report struct {
	Sampler  string // "ancestral"
	Mode     string // precision/draw mode, e.g. "exact-f64"
	Grid     string
	Steps    int
	TopP     float64
	NFE      int // network evaluations (forward passes), including the final decode
	Decoded  int // positions filled by the final argmax decode
	Duration time.Duration
}

// Sampler runs the ancestral sampler for batches of B sequences on a model (use the EMA
// weights, model.WithWeights).
type Sampler struct {
	Cfg   Config
	m     *model.Model
	ws    *model.Workspace
	zT    *ops.Tensor // [B, L] I32 current state (aliases ws.XT)
	rowsT *ops.Tensor
	plan  []diffusion.SamplerStep
}

// New validates cfg and allocates buffers for batches of b sequences.
func New(m *model.Model, cfg Config, b int) (*Sampler, error) {
	if cfg.Sched == nil {
		return nil, fmt.Errorf("sample: no schedule given")
	}
	if cfg.Mode == 0 {
		cfg.Mode = ops.SampleExact
	}
	if cfg.Mode == ops.SampleArgmax {
		return nil, fmt.Errorf("sample: argmax is the final-decode mode, not a sampler; use exact or jax-compat")
	}
	if cfg.TopP < 0 || cfg.TopP > 1 || math.IsNaN(cfg.TopP) {
		return nil, fmt.Errorf("sample: top-p %v must be in [0, 1] (0 or 1 disables it)", cfg.TopP)
	}
	plan, err := diffusion.SamplerPlan(cfg.Sched, cfg.Grid, cfg.Steps)
	if err != nil {
		return nil, err
	}
	ws, err := m.NewWorkspace(b)
	if err != nil {
		return nil, err
	}
	return &Sampler{Cfg: cfg, m: m, ws: ws, zT: ws.XT, plan: plan}, nil
}

// Free releases the buffers.
func (s *Sampler) Free() { s.ws.Free() }

// Sample runs the sampler on init ([B·L] token ids: MaskID (= V) where a token is to be
// generated, a real token where it is fixed, as in infilling or prefix conditioning) and
// returns the completed sequences, which never contain the mask id. progress, if non-nil,
// is called after every step with (step, T).
func (s *Sampler) Sample(init []int32, progress func(step, total int)) ([]int32, Report, error) {
	start := time.Now()
	m, be := s.m, s.m.Backend()
	B, L, V := s.ws.B, m.Cfg.SeqLen, m.Cfg.Vocab
	rep := Report{Sampler: "ancestral", Mode: s.Cfg.Mode.String(), Grid: s.Cfg.Grid.String(), Steps: s.Cfg.Steps, TopP: s.Cfg.TopP}
	if len(init) != B*L {
		return nil, rep, fmt.Errorf("sample: init has %d tokens, want B·L = %d", len(init), B*L)
	}
	for i, v := range init {
		if v < 0 || int(v) > V {
			return nil, rep, fmt.Errorf("sample: init token %d at position %d is outside [0, %d] (%d = mask)", v, i, V, V)
		}
	}
	z := append([]int32(nil), init...)
	if err := be.Upload(s.zT, z); err != nil {
		return nil, rep, err
	}
	ts := make([]float64, B)
	var rows []int32
	for k, st := range s.plan {
		rows = diffusion.MaskedRows(rows[:0], z, int32(V))
		if len(rows) == 0 {
			break // nothing left to unmask: the remaining steps would not change z
		}
		for b := range ts {
			ts[b] = st.T
		}
		if err := s.step(ts, rows, &ops.SampleParams{PUnmask: st.PUnmask, TopP: s.Cfg.TopP, Mode: s.Cfg.Mode, Step: uint64(st.I)}); err != nil {
			return nil, rep, fmt.Errorf("sample: step %d of %d: %w", k+1, len(s.plan), err)
		}
		rep.NFE++
		if err := be.Download(z, s.zT); err != nil {
			return nil, rep, err
		}
		if progress != nil {
			progress(k+1, len(s.plan))
		}
	}
	// Final decode: argmax μ(z, t=0) at every position still masked.
	rows = diffusion.MaskedRows(rows[:0], z, int32(V))
	if len(rows) > 0 {
		for b := range ts {
			ts[b] = diffusion.FinalDecodeTime
		}
		if err := s.step(ts, rows, &ops.SampleParams{Mode: ops.SampleArgmax, Step: uint64(len(s.plan))}); err != nil {
			return nil, rep, fmt.Errorf("sample: final decode: %w", err)
		}
		rep.NFE++
		rep.Decoded = len(rows)
		if err := be.Download(z, s.zT); err != nil {
			return nil, rep, err
		}
	}
	for i, v := range z {
		if v < 0 || int(v) >= V {
			return nil, rep, fmt.Errorf("sample: internal error: token %d left at position %d after the final decode", v, i)
		}
	}
	rep.Duration = time.Since(start)
	return z, rep, nil
}

// step runs the network on the current state at times ts for the given masked rows and
// applies one SampleStep in place.
func (s *Sampler) step(ts []float64, rows []int32, p *ops.SampleParams) error {
	m := s.m
	if err := m.Forward(s.ws, ts, nil, rows); err != nil {
		return err
	}
	rowsT, err := m.Backend().View(s.ws.RowsTensor(), 0, len(rows))
	if err != nil {
		return err
	}
	p.Out, p.Z, p.Logits, p.Rows = s.zT, s.zT, s.ws.Logits(), rowsT
	p.MaskID, p.Seed, p.IndexOffset = int32(m.Cfg.Vocab), s.Cfg.Seed, s.Cfg.IndexOffset
	return m.Backend().SampleStep(p)
}

// UnigramEntropy returns the entropy in bits of the token frequencies of seqs (the
// diversity check printed beside samples; pitfalls B02).
func UnigramEntropy(seqs []int32) float64 {
	counts := map[int32]int{}
	for _, v := range seqs {
		counts[v]++
	}
	keys := make([]int32, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // fixed summation order: the same bits every run
	var h float64
	n := float64(len(seqs))
	for _, k := range keys {
		p := float64(counts[k]) / n
		h -= p * math.Log2(p)
	}
	return h
}
