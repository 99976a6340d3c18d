package sample

import (
	"fmt"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/model"
)

// Progress is what Generate reports after every network call.
type Progress struct {
	Batch, Batches int // current batch (1-based) and number of batches
	Step, Steps    int // network call within the batch and the most the batch can take
	Done, Total    int // sequences finished and requested
}

// GenerateConfig describes a batched sampling run.
type GenerateConfig struct {
	Sampler string // NameAncestral (default when empty) or NameFirstHitting
	N       int    // sequences to generate
	Batch   int    // sequences per batch (the last batch may be smaller)
	// Template is the initial state of every sequence ([L]; nil = all masks): fixed tokens
	// stay, masks are generated (PrefixSuffixTemplate, InfillTemplate).
	Template []int32
	// Progress, if non-nil, is called after every network call (e.g. to draw a progress bar).
	Progress func(Progress)
}

// Runner is what both samplers provide (*Sampler and *FirstHitting).
type Runner interface {
	// Sample completes one batch of sequences from its initial state (see Sampler.Sample).
	Sample(init []int32, progress func(step, total int)) ([]int32, Report, error)
	// SetIndexOffset sets the Philox index offset of the next Sample's draws.
	SetIndexOffset(off uint64)
	Free()
}

// NewRunner returns the named sampler (ParseSampler) for batches of b sequences.
func NewRunner(name string, m *model.Model, cfg Config, b int) (Runner, error) {
	if _, err := ParseSampler(name); err != nil {
		return nil, err
	}
	if name == NameFirstHitting {
		return NewFirstHitting(m, cfg, b)
	}
	return New(m, cfg, b)
}

// Generate samples gc.N sequences from m in batches of gc.Batch with the chosen sampler and
// cfg, and returns them ([N·L]) with one Report for the whole run (NFE summed over batches,
// the entropy of all generated tokens). Batch k's draws are addressed with IndexOffset =
// cfg.IndexOffset + (first sequence of the batch)·L, so every sequence gets its own random
// numbers and the result does not depend on the batch size of the last batch.
func Generate(m *model.Model, cfg Config, gc GenerateConfig) ([]int32, Report, error) {
	start := time.Now()
	name := gc.Sampler
	if name == "" {
		name = NameAncestral
	}
	if _, err := ParseSampler(name); err != nil {
		return nil, Report{}, err
	}
	L, V := m.Cfg.SeqLen, m.Cfg.Vocab
	if gc.N < 1 || gc.Batch < 1 {
		return nil, Report{}, fmt.Errorf("sample: %d sequences in batches of %d: both must be at least 1", gc.N, gc.Batch)
	}
	tmpl := gc.Template
	if tmpl == nil {
		tmpl = maskRow(V, L)
	}
	if len(tmpl) != L {
		return nil, Report{}, fmt.Errorf("sample: the template has %d positions; the model's context is L = %d", len(tmpl), L)
	}
	if err := checkInit(tmpl, 1, L, V); err != nil {
		return nil, Report{}, err
	}
	batches := (gc.N + gc.Batch - 1) / gc.Batch
	out := make([]int32, 0, gc.N*L)
	var total Report
	cache := map[int]Runner{}
	defer func() {
		for _, r := range cache {
			r.Free()
		}
	}()
	for k := 0; k < batches; k++ {
		first := k * gc.Batch
		bn := min(gc.Batch, gc.N-first)
		c := cfg
		c.IndexOffset = cfg.IndexOffset + uint64(first*L)
		r := cache[bn]
		var err error
		if r == nil {
			if r, err = NewRunner(name, m, c, bn); err != nil {
				return nil, total, err
			}
			cache[bn] = r
		}
		r.SetIndexOffset(c.IndexOffset)
		var prog func(int, int)
		if gc.Progress != nil {
			prog = func(step, steps int) {
				gc.Progress(Progress{Batch: k + 1, Batches: batches, Step: step, Steps: steps, Done: first, Total: gc.N})
			}
		}
		z, rep, err := r.Sample(Repeat(tmpl, bn), prog)
		if err != nil {
			return nil, total, fmt.Errorf("sample: batch %d of %d: %w", k+1, batches, err)
		}
		out = append(out, z...)
		if k == 0 {
			total = rep
			total.Sequences, total.Generated, total.NFE, total.Decoded = 0, 0, 0, 0
		}
		total.Sequences += rep.Sequences
		total.Generated += rep.Generated
		total.NFE += rep.NFE
		total.Decoded += rep.Decoded
		if gc.Progress != nil {
			gc.Progress(Progress{Batch: k + 1, Batches: batches, Step: rep.NFE, Steps: rep.NFE, Done: first + bn, Total: gc.N})
		}
	}
	var gen []int32
	for i, v := range out {
		if tmpl[i%L] == int32(V) {
			gen = append(gen, v)
		}
	}
	total.Entropy = UnigramEntropy(gen)
	total.Duration = time.Since(start)
	return out, total, nil
}

// SetIndexOffset sets Cfg.IndexOffset (the Philox index offset of the next run's draws).
func (s *Sampler) SetIndexOffset(off uint64) { s.Cfg.IndexOffset = off }

// SetIndexOffset sets Cfg.IndexOffset (the Philox index offset of the next run's draws).
func (s *FirstHitting) SetIndexOffset(off uint64) { s.Cfg.IndexOffset = off }
