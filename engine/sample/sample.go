// Package sample generates sequences from a trained MD4 or GenMD4 model.
//
//   - The ancestral sampler (md4.md §5.1, paper Alg. 2; Sampler): start from masks (or a
//     template with fixed tokens), run T reverse steps on a uniform or cosine time grid, each
//     one network call followed by one SampleStep on the device (exact float64 two-stage
//     draws by default), then decode any position still masked by argmax at t = 0 (pitfalls
//     B05). For a GenMD4 model it uses GenMD4's per-token reverse step (genmd4.go).
//   - The first-hitting sampler (Zheng et al. 2024; FirstHitting, firsthit.go): samples the
//     next unmasking time directly and unmasks one position per network call, at most L
//     calls per sequence whatever the time resolution.
//   - Templates for infilling and prefix/suffix conditioning (template.go), batched runs with
//     a progress callback (Generate, batch.go).
//
// Every run returns a Report stating the sampler, the precision mode (the jax-compat float32
// mode is labelled as biased), the number of network calls, the time and the unigram entropy
// of the generated tokens (pitfalls B01, B02).
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
	Steps int            // T reverse steps (1000 for text in MD4); ancestral sampler only
	Grid  diffusion.Grid // cosine (MD4 default) or uniform; ancestral sampler only
	Mode  ops.SampleMode // ops.SampleExact (default) or ops.SampleJAXCompat
	TopP  float64        // nucleus filtering in (0, 1); 0 or 1 disables
	Seed  uint64
	// Sched is the schedule an MD4 model was trained with. It must be nil for a GenMD4 model,
	// which samples with its own learned per-token schedule.
	Sched diffusion.Schedule
	// IndexOffset is added to the flat position b·L + l in the Philox index of every draw
	// (ops.SampleParams.IndexOffset): give batch k of a multi-batch run the offset
	// (first sequence of the batch)·L so that its draws differ from every other batch's.
	IndexOffset uint64
	// GenMD4 states that the model is a GenMD4 model (with schedule.w_raw). It must match
	// the model: GenMD4 options on an MD4 model, or MD4 options on a GenMD4 model, are
	// refused with a clear error.
	GenMD4 bool
}

// Sampler names used in reports and accepted by ParseSampler.
const (
	NameAncestral    = "ancestral"
	NameFirstHitting = "first-hitting"
)

// Report describes how samples were produced; it is printed beside them (String).
type Report struct {
	Sampler string // "ancestral" or "first-hitting"
	// Schedule is "md4:<name>" or "genmd4 (learned per-token powers)".
	Schedule string
	Mode     string // precision/draw mode: "exact-f64" or "jax-compat-f32-gumbel"
	Grid     string // ancestral only
	Steps    int    // T (ancestral); 0 for first-hitting, which has no grid
	TopP     float64
	NFE      int // network evaluations (forward passes of the batch), including the final decode
	Decoded  int // positions filled by the final argmax decode
	Duration time.Duration
	// Sequences and Generated count the sequences and the generated (initially masked)
	// positions; Entropy is the unigram entropy in bits of the generated tokens.
	Sequences, Generated int
	Entropy              float64
}

// Biased reports whether the draws came from the jax-compat float32 Gumbel mode, which
// truncates rare tokens (pitfalls B01) and exists only to reproduce the paper's samples.
func (r Report) Biased() bool { return r.Mode == ops.SampleJAXCompat.String() }

// String renders the report on one line, e.g. "sampler=ancestral mode=exact-f64
// schedule=md4:linear grid=cosine T=1000 top-p=off NFE=1001 final-decode=0 time=1.2s
// sequences=8 generated=1024 entropy=4.12 bits". The jax-compat mode is always flagged.
func (r Report) String() string {
	mode := r.Mode
	if r.Biased() {
		mode += " (JAX-COMPAT: float32 Gumbel, biased against rare tokens; for reproducing the paper only)"
	}
	topP := "off"
	if r.TopP > 0 && r.TopP < 1 {
		topP = fmt.Sprint(r.TopP)
	}
	grid := fmt.Sprintf("grid=%s T=%d", r.Grid, r.Steps)
	if r.Sampler == NameFirstHitting {
		grid = "grid=none (event times sampled exactly)"
	}
	return fmt.Sprintf("sampler=%s mode=%s schedule=%s %s top-p=%s NFE=%d final-decode=%d time=%v sequences=%d generated=%d entropy=%.4f bits",
		r.Sampler, mode, r.Schedule, grid, topP, r.NFE, r.Decoded, r.Duration.Round(time.Millisecond), r.Sequences, r.Generated, r.Entropy)
}

// ParseSampler checks a sampler name ("ancestral" or "first-hitting").
func ParseSampler(name string) (string, error) {
	switch name {
	case NameAncestral, NameFirstHitting:
		return name, nil
	}
	return "", fmt.Errorf("sample: unknown sampler %q; valid: %q, %q", name, NameAncestral, NameFirstHitting)
}

// checkConfig validates the fields shared by the samplers against the model.
func checkConfig(m *model.Model, cfg *Config) error {
	if cfg.Mode == 0 {
		cfg.Mode = ops.SampleExact
	}
	switch {
	case cfg.Mode == ops.SampleArgmax:
		return fmt.Errorf("sample: argmax is the final-decode mode, not a sampler; use exact or jax-compat")
	case cfg.Mode != ops.SampleExact && cfg.Mode != ops.SampleJAXCompat:
		return fmt.Errorf("sample: unknown sampling mode %v; use exact or jax-compat", cfg.Mode)
	case cfg.TopP < 0 || cfg.TopP > 1 || math.IsNaN(cfg.TopP):
		return fmt.Errorf("sample: top-p %v must be in [0, 1] (0 or 1 disables it)", cfg.TopP)
	}
	isGen := m.GenSchedule() != nil
	switch {
	case cfg.GenMD4 && !isGen:
		return fmt.Errorf("sample: GenMD4 sampling needs a GenMD4 model (with the learned schedule schedule.w_raw); this is an MD4 model: drop the GenMD4 option")
	case !cfg.GenMD4 && isGen:
		return fmt.Errorf("sample: this is a GenMD4 model (it has the learned schedule schedule.w_raw): sample it with the GenMD4 option, not with an MD4 schedule")
	case isGen && cfg.Sched != nil:
		return fmt.Errorf("sample: a GenMD4 model samples with its learned per-token schedule; an MD4 schedule (%s) does not apply", cfg.Sched.Name())
	case !isGen && cfg.Sched == nil:
		return fmt.Errorf("sample: no schedule given")
	case isGen && cfg.Mode == ops.SampleJAXCompat:
		return fmt.Errorf("sample: the jax-compat mode reproduces the MD4 paper code, which has no GenMD4 sampler; use the exact mode")
	}
	return nil
}

// netEval is the network as the samplers see it: a device state [B, L] that the caller
// updates, and an evaluation of the logits of listed rows at per-sequence times.
type netEval interface {
	backend() ops.Backend
	dims() (B, L, V int)
	state() *ops.Tensor // [B, L] I32 on the backend
	// eval returns the logits [len(rows), V] of μ_θ(state, t) at the listed flat positions
	// (valid until the next call) and the rows as a device tensor.
	eval(ts []float64, rows []int32) (logits, rowsT *ops.Tensor, err error)
	free()
}

// modelNet evaluates a model.Model.
type modelNet struct {
	m  *model.Model
	ws *model.Workspace
}

func newModelNet(m *model.Model, b int) (*modelNet, error) {
	if err := m.SyncHalf(); err != nil {
		return nil, err
	}
	ws, err := m.NewWorkspace(b)
	if err != nil {
		return nil, err
	}
	return &modelNet{m: m, ws: ws}, nil
}

func (n *modelNet) backend() ops.Backend  { return n.m.Backend() }
func (n *modelNet) dims() (int, int, int) { return n.ws.B, n.m.Cfg.SeqLen, n.m.Cfg.Vocab }
func (n *modelNet) state() *ops.Tensor    { return n.ws.XT }
func (n *modelNet) free()                 { n.ws.Free() }
func (n *modelNet) eval(ts []float64, rows []int32) (*ops.Tensor, *ops.Tensor, error) {
	if err := n.m.Forward(n.ws, ts, nil, rows); err != nil {
		return nil, nil, err
	}
	rowsT, err := n.m.Backend().View(n.ws.RowsTensor(), 0, len(rows))
	if err != nil {
		return nil, nil, err
	}
	return n.ws.Logits(), rowsT, nil
}

// Sampler runs the ancestral sampler for batches of B sequences on a model (use the EMA
// weights, model.WithWeights).
type Sampler struct {
	Cfg    Config
	net    netEval
	plan   []diffusion.SamplerStep
	powers []float64   // GenMD4: the learned powers w = softplus(w_raw); nil for MD4
	classT *ops.Tensor // GenMD4: [V] F64 per-class unmask probabilities of the step
	sched  string
}

// New validates cfg against the model and allocates buffers for batches of b sequences.
// For a GenMD4 model (cfg.GenMD4) the reverse step is GenMD4's (GenClassUnmask) with the
// model's own powers.
func New(m *model.Model, cfg Config, b int) (*Sampler, error) {
	if err := checkConfig(m, &cfg); err != nil {
		return nil, err
	}
	var powers []float64
	if cfg.GenMD4 {
		var err error
		if powers, err = ModelPowers(m); err != nil {
			return nil, err
		}
	}
	net, err := newModelNet(m, b)
	if err != nil {
		return nil, err
	}
	s, err := newSampler(net, cfg, powers)
	if err != nil {
		net.free()
		return nil, err
	}
	return s, nil
}

// newSampler builds an ancestral sampler on any netEval (tests use analytic denoisers).
// cfg must already be checked; powers is nil for MD4.
func newSampler(net netEval, cfg Config, powers []float64) (*Sampler, error) {
	if cfg.Mode == 0 {
		cfg.Mode = ops.SampleExact
	}
	s := &Sampler{Cfg: cfg, net: net, powers: powers}
	if powers == nil {
		if cfg.Sched == nil {
			return nil, fmt.Errorf("sample: no schedule given")
		}
		plan, err := diffusion.SamplerPlan(cfg.Sched, cfg.Grid, cfg.Steps)
		if err != nil {
			return nil, err
		}
		s.plan, s.sched = plan, "md4:"+cfg.Sched.Name()
		return s, nil
	}
	plan, err := GenPlan(cfg.Grid, cfg.Steps)
	if err != nil {
		return nil, err
	}
	_, _, V := net.dims()
	if len(powers) != V {
		return nil, fmt.Errorf("sample: %d GenMD4 powers for a vocabulary of %d", len(powers), V)
	}
	if s.classT, err = net.backend().Alloc(ops.F64, V); err != nil {
		return nil, err
	}
	s.plan, s.sched = plan, "genmd4 (learned per-token powers)"
	return s, nil
}

// Free releases the buffers.
func (s *Sampler) Free() {
	if s.classT != nil {
		s.net.backend().Free(s.classT)
	}
	s.net.free()
}

// Sample runs the sampler on init ([B·L] token ids: MaskID (= V) where a token is to be
// generated, a real token where it is fixed, as in infilling or prefix conditioning; see
// Template) and returns the completed sequences, which never contain the mask id and keep
// every fixed token. progress, if non-nil, is called after every step with (step, T).
func (s *Sampler) Sample(init []int32, progress func(step, total int)) ([]int32, Report, error) {
	start := time.Now()
	be := s.net.backend()
	B, L, V := s.net.dims()
	rep := Report{Sampler: NameAncestral, Schedule: s.sched, Mode: s.Cfg.Mode.String(), Grid: s.Cfg.Grid.String(), Steps: s.Cfg.Steps,
		TopP: s.Cfg.TopP, Sequences: B}
	if err := checkInit(init, B, L, V); err != nil {
		return nil, rep, err
	}
	z := append([]int32(nil), init...)
	zT := s.net.state()
	if err := be.Upload(zT, z); err != nil {
		return nil, rep, err
	}
	ts := make([]float64, B)
	q := make([]float64, V)
	var rows []int32
	for k, st := range s.plan {
		rows = diffusion.MaskedRows(rows[:0], z, int32(V))
		if len(rows) == 0 {
			break // nothing left to unmask: the remaining steps would not change z
		}
		for b := range ts {
			ts[b] = st.T
		}
		p := &ops.SampleParams{PUnmask: st.PUnmask, TopP: s.Cfg.TopP, Mode: s.Cfg.Mode, Step: uint64(st.I)}
		if s.powers != nil {
			GenClassUnmask(q, s.powers, st.S, st.T)
			if err := be.Upload(s.classT, q); err != nil {
				return nil, rep, err
			}
			p.ClassUnmask = s.classT
		}
		if err := s.step(ts, rows, p); err != nil {
			return nil, rep, fmt.Errorf("sample: step %d of %d: %w", k+1, len(s.plan), err)
		}
		rep.NFE++
		if err := be.Download(z, zT); err != nil {
			return nil, rep, err
		}
		if progress != nil {
			progress(k+1, len(s.plan))
		}
	}
	if err := finish(s.net, z, ts, uint64(len(s.plan)), s.Cfg, &rep, init, V, start); err != nil {
		return nil, rep, err
	}
	return z, rep, nil
}

// step runs the network on the current state at times ts for the given masked rows and
// applies one SampleStep in place.
func (s *Sampler) step(ts []float64, rows []int32, p *ops.SampleParams) error {
	return sampleStep(s.net, s.Cfg, ts, rows, p)
}

func sampleStep(net netEval, cfg Config, ts []float64, rows []int32, p *ops.SampleParams) error {
	logits, rowsT, err := net.eval(ts, rows)
	if err != nil {
		return err
	}
	_, _, V := net.dims()
	zT := net.state()
	p.Out, p.Z, p.Logits, p.Rows = zT, zT, logits, rowsT
	p.MaskID, p.Seed, p.IndexOffset = int32(V), cfg.Seed, cfg.IndexOffset
	return net.backend().SampleStep(p)
}

// finish ends a sampler's run: the final argmax decode at step index decodeStep (one more
// network call, counted, when a position was still masked), then finishReport.
func finish(net netEval, z []int32, ts []float64, decodeStep uint64, cfg Config, rep *Report, init []int32, V int, start time.Time) error {
	n, err := finalDecode(net, z, ts, decodeStep, cfg)
	if err != nil {
		return err
	}
	if n > 0 {
		rep.NFE++
		rep.Decoded = n
	}
	return finishReport(rep, init, z, V, start)
}

// finalDecode sets every position of z still masked to argmax μ_θ(z, t = 0) (md4.md §5.1
// step 3, pitfalls B05), on the device state and in z, and returns how many it decoded.
func finalDecode(net netEval, z []int32, ts []float64, step uint64, cfg Config) (int, error) {
	_, _, V := net.dims()
	rows := diffusion.MaskedRows(nil, z, int32(V))
	if len(rows) == 0 {
		return 0, nil
	}
	for b := range ts {
		ts[b] = diffusion.FinalDecodeTime
	}
	if err := sampleStep(net, cfg, ts, rows, &ops.SampleParams{Mode: ops.SampleArgmax, Step: step}); err != nil {
		return 0, fmt.Errorf("sample: final decode: %w", err)
	}
	if err := net.backend().Download(z, net.state()); err != nil {
		return 0, err
	}
	return len(rows), nil
}

func checkInit(init []int32, B, L, V int) error {
	if len(init) != B*L {
		return fmt.Errorf("sample: init has %d tokens, want B·L = %d·%d = %d", len(init), B, L, B*L)
	}
	for i, v := range init {
		if v < 0 || int(v) > V {
			return fmt.Errorf("sample: init token %d at position %d is outside [0, %d] (%d = mask)", v, i, V, V)
		}
	}
	return nil
}

// finishReport checks the output (no mask left, fixed tokens unchanged) and fills the
// generated-token count, the entropy and the duration.
func finishReport(rep *Report, init, z []int32, V int, start time.Time) error {
	var gen []int32
	for i, v := range z {
		if v < 0 || int(v) >= V {
			return fmt.Errorf("sample: internal error: token %d left at position %d after the final decode", v, i)
		}
		if init[i] == int32(V) {
			gen = append(gen, v)
		} else if v != init[i] {
			return fmt.Errorf("sample: internal error: fixed token %d at position %d changed to %d", init[i], i, v)
		}
	}
	rep.Generated = len(gen)
	rep.Entropy = UnigramEntropy(gen)
	rep.Duration = time.Since(start)
	return nil
}

// UnigramEntropy returns the entropy in bits of the token frequencies of seqs (the
// diversity check printed beside samples; pitfalls B02). It is 0 for an empty input.
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
