package bench

import (
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/sample"
)

// SampleResult is one sampler's throughput.
type SampleResult struct {
	Sampler   string  `json:"sampler"`
	Mode      string  `json:"mode"`
	Steps     int     `json:"steps"` // T (ancestral); 0 for first-hitting
	Sequences int     `json:"sequences"`
	SeqLen    int     `json:"seq_len"`
	NFE       int     `json:"network_calls"`         // forward passes of a batch, summed over batches
	NFEPerSeq float64 `json:"network_calls_per_seq"` // NFE / batches
	Seconds   float64 `json:"seconds"`               //
	TokensSec float64 `json:"tokens_per_second"`     // generated tokens per second
	CallsSec  float64 `json:"network_calls_per_sec"` //
	Entropy   float64 `json:"unigram_entropy_bits"`  // sanity: not a quality measure with random weights
	Err       string  `json:"error,omitempty"`       //
}

// SampleOptions configures RunSample.
type SampleOptions struct {
	N, Batch int // sequences and batch size
	Steps    int // ancestral steps T (0: L)
}

// RunSample generates opt.N sequences of the shape's length with each sampler (ancestral
// exact-f64, ancestral jax-compat, first-hitting) from a model with benchmark weights
// (initWeights; throughput does not depend on them, except first-hitting's number of
// calls), and reports tokens/s and network calls.
func RunSample(be ops.Backend, s Shape, compute ops.DType, opt SampleOptions) ([]SampleResult, error) {
	cfg := s.ModelConfig()
	cfg.Compute = compute
	m, err := model.New(be, cfg)
	if err != nil {
		return nil, err
	}
	defer m.Free()
	if err := initWeights(m, 1); err != nil {
		return nil, err
	}
	sched, err := diffusion.ParseSchedule("linear", true, s.SchedEps)
	if err != nil {
		return nil, err
	}
	T := opt.Steps
	if T <= 0 {
		T = s.SeqLen
	}
	var res []SampleResult
	for _, c := range []struct {
		sampler string
		mode    ops.SampleMode
		steps   int
	}{
		{sample.NameAncestral, ops.SampleExact, T},
		{sample.NameAncestral, ops.SampleJAXCompat, T},
		{sample.NameFirstHitting, ops.SampleExact, 0},
	} {
		r := SampleResult{Sampler: c.sampler, Mode: c.mode.String(), Steps: c.steps, SeqLen: s.SeqLen}
		_, rep, err := sample.Generate(m, sample.Config{Steps: max(c.steps, 1), Grid: diffusion.GridCosine, Mode: c.mode, Seed: 7, Sched: sched},
			sample.GenerateConfig{Sampler: c.sampler, N: opt.N, Batch: opt.Batch})
		if err != nil {
			r.Err = err.Error()
			res = append(res, r)
			continue
		}
		batches := (opt.N + opt.Batch - 1) / opt.Batch
		r.Sequences, r.NFE, r.Seconds, r.Entropy = rep.Sequences, rep.NFE, rep.Duration.Seconds(), rep.Entropy
		r.NFEPerSeq = float64(rep.NFE) / float64(batches)
		r.TokensSec = float64(rep.Generated) / r.Seconds
		r.CallsSec = float64(rep.NFE) / r.Seconds
		res = append(res, r)
	}
	return res, nil
}
