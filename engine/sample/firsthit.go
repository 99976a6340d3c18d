package sample

import (
	"fmt"
	"math"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// The first-hitting sampler (Zheng et al. 2024, "Masked Diffusion Models are Secretly
// Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling", arXiv 2409.02908;
// md4.md §5.4).
//
// In MD4's continuous-time reverse process every masked position leaves the mask at rate
// −w(t)·Σ_j μ_j = −α'_t/(1−α_t), whatever the network says (μ sums to 1), and independently
// of the other positions. So with n positions masked at time t, none unmasks in (s, t] with
// probability ((1−α_s)/(1−α_t))^n, the first one to unmask is uniform among the n, and its
// token is drawn from μ_θ(z, s) at that event time s. The sampler draws these quantities
// directly:
//
//	u1, u2 ~ U[0, 1) (rng.PurposeSampleEvent, step = event k, index = IndexOffset + b·L)
//	1 − α_s = (1 − α_t)·u1^{1/n}   (inverted by bisection on the schedule's MaskProb)
//	position = the ⌊u2·n⌋-th masked position of the sequence (in position order)
//	token ~ μ_θ(z, s) at that position (SampleStep with PUnmask = 1: exact float64 draw)
//
// one network call per event, so at most L calls per sequence whatever the time resolution
// (the batch makes max over its sequences of events calls). If the drawn 1 − α_s falls below
// 1 − α_0 (shifted schedules, α_0 = 1 − ε) the sequence has no further event before t = 0 and
// its remaining masks are decoded by argmax at t = 0, as in the ancestral sampler (pitfalls B05).
//
// Exactness. Because the exit rate does not depend on μ, the event times are exact for any
// model. The token is drawn from μ_θ(z, s) evaluated at the event time s, with z the state
// just before the event: for a time-agnostic network (model.Config.TimeCond = false) the time
// is ignored and the sampler is exactly the T → ∞ limit of the ancestral sampler; for a
// time-conditioned MD4 network it is also exactly the continuous-time reverse process (the
// jump to a token at time s has rate −w(s)·μ_θ(z, s)), which the T-step ancestral sampler
// approximates. GenMD4's exit rate Σ_i μ_i·w_i/t depends on μ, so first-hitting does not apply
// to GenMD4 models (New refuses them; use the ancestral sampler).

// FirstHitting is the first-hitting sampler for batches of B sequences of an MD4 model.
type FirstHitting struct {
	Cfg Config
	net netEval
}

// NewFirstHitting validates cfg (Sched is the model's MD4 schedule; Steps and Grid are not
// used; only the exact mode is supported) and allocates buffers for batches of b sequences.
func NewFirstHitting(m *model.Model, cfg Config, b int) (*FirstHitting, error) {
	if m.GenSchedule() != nil || cfg.GenMD4 {
		return nil, fmt.Errorf("sample: the first-hitting sampler needs MD4's shared schedule (its event times do not depend on the network); GenMD4's per-token schedules make them depend on μ: use the ancestral sampler for GenMD4 models")
	}
	if err := checkConfig(m, &cfg); err != nil {
		return nil, err
	}
	net, err := newModelNet(m, b)
	if err != nil {
		return nil, err
	}
	s, err := newFirstHitting(net, cfg)
	if err != nil {
		net.free()
		return nil, err
	}
	return s, nil
}

func newFirstHitting(net netEval, cfg Config) (*FirstHitting, error) {
	if cfg.Mode == 0 {
		cfg.Mode = ops.SampleExact
	}
	if cfg.Mode != ops.SampleExact {
		return nil, fmt.Errorf("sample: the first-hitting sampler draws tokens exactly (float64); the %v mode applies to the ancestral sampler only", cfg.Mode)
	}
	if cfg.Sched == nil {
		return nil, fmt.Errorf("sample: no schedule given")
	}
	return &FirstHitting{Cfg: cfg, net: net}, nil
}

// Free releases the buffers.
func (s *FirstHitting) Free() { s.net.free() }

// Sample runs the sampler on init ([B·L], MaskID where a token is generated; see
// Sampler.Sample) and returns the completed sequences. progress, if non-nil, is called after
// every network call with (call, L), L being the most calls a sequence can need.
func (s *FirstHitting) Sample(init []int32, progress func(step, total int)) ([]int32, Report, error) {
	start := time.Now()
	be := s.net.backend()
	B, L, V := s.net.dims()
	sc := s.Cfg.Sched
	rep := Report{Sampler: NameFirstHitting, Schedule: "md4:" + sc.Name(), Mode: s.Cfg.Mode.String(), TopP: s.Cfg.TopP, Sequences: B}
	if err := checkInit(init, B, L, V); err != nil {
		return nil, rep, err
	}
	z := append([]int32(nil), init...)
	zT := s.net.state()
	if err := be.Upload(zT, z); err != nil {
		return nil, rep, err
	}
	cur := make([]float64, B) // current time of each sequence
	done := make([]bool, B)   // no further event before t = 0
	for b := range cur {
		cur[b] = 1
	}
	m0 := sc.MaskProb(0)
	ts := make([]float64, B)
	var rows []int32
	for k := 0; ; k++ {
		rows = rows[:0]
		for b := 0; b < B; b++ {
			ts[b] = cur[b]
			if done[b] {
				continue
			}
			seq := z[b*L : (b+1)*L]
			n := diffusion.CountMasked(seq, int32(V))
			if n == 0 {
				done[b] = true
				continue
			}
			u1, u2 := rng.Uniform64Pair(s.Cfg.Seed, uint64(k), rng.PurposeSampleEvent, s.Cfg.IndexOffset+uint64(b*L))
			mt := sc.MaskProb(cur[b])
			ms := mt * math.Exp(math.Log(u1)/float64(n)) // (1−α_s) = (1−α_t)·u1^{1/n}; u1 = 0 → 0
			if ms < m0 || !(mt > 0) {
				done[b] = true // the next event would come after t = 0: final decode
				continue
			}
			t := invMaskProb(sc, ms, cur[b])
			cur[b], ts[b] = t, t
			idx := min(int(u2*float64(n)), n-1)
			for l, v := range seq {
				if v == int32(V) {
					if idx == 0 {
						rows = append(rows, int32(b*L+l))
						break
					}
					idx--
				}
			}
		}
		if len(rows) == 0 {
			break
		}
		p := &ops.SampleParams{PUnmask: 1, TopP: s.Cfg.TopP, Mode: ops.SampleExact, Step: uint64(k)}
		if err := sampleStep(s.net, s.Cfg, ts, rows, p); err != nil {
			return nil, rep, fmt.Errorf("sample: first-hitting event %d: %w", k+1, err)
		}
		rep.NFE++
		if err := be.Download(z, zT); err != nil {
			return nil, rep, err
		}
		if progress != nil {
			progress(k+1, L)
		}
	}
	if err := finish(s.net, z, ts, uint64(L+1), s.Cfg, &rep, init, V, start); err != nil {
		return nil, rep, err
	}
	return z, rep, nil
}

// invMaskProb returns the time s ∈ [0, hi] with MaskProb(s) = m (MaskProb is increasing),
// by bisection to the float64 resolution of the interval.
func invMaskProb(sc diffusion.Schedule, m, hi float64) float64 {
	lo := 0.0
	if sc.MaskProb(hi) <= m {
		return hi
	}
	for i := 0; i < 200; i++ {
		mid := 0.5 * (lo + hi)
		if mid <= lo || mid >= hi {
			break
		}
		if sc.MaskProb(mid) < m {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
