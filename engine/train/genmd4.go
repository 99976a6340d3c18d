package train

import (
	"fmt"
	"math"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// GenMD4 training (md4.md §4; paper §6, App. I; the md4 code's genmd4.py).
//
// The schedule α_{t,i} = 1 − (1−ε)·t^{w_i} has one power w_i = softplus(w_raw_i) per token
// value, held in the model parameter schedule.w_raw (model.Config.GenMD4), so AdamW (with its
// weight decay, as in the md4 code) and the EMA update it with the network, and checkpoints
// carry it. One step, for a batch of B sequences x0:
//
//  1. Times t_b = t1 + (1−t1)·u_b, u_b antithetic (or i.i.d.) on [0, 1), t1 = 10⁻³.
//  2. Two masks per sequence from the [B, V] table (1−ε)·t_b^{w_i}, at the same t_b:
//     z¹ with rng.PurposeMask and z² with rng.PurposeMask2 (ops.MaskTokens on the device).
//  3. Two forward/backward passes. Per masked position with clean token i the diffusion
//     integrand is (1/t)·(w_i·CE + Σ_j w_j μ_j − w_i) (ops.GenMaskedCE): with
//     α'_{t,j}/(1−α_{t,j}) = −w_j/t, md4.md's eq. 12 per position is
//     −(1/t)·Σ_j w_j·(x0_j − μ_j + x0_j·log μ_x0) = (1/t)·(Σ_j w_j μ_j − w_i − w_i·log μ_i),
//     and −log μ_i = CE. Row factors ½·(1/t_b)/(L·ln 2)/B make the θ-gradient that of the
//     batch-mean ½(l¹ + l²) in bits per token; the op also accumulates the pathwise w-gradient.
//  4. On the host: the reconstruction term on [0, t1] with its w-gradient
//     (diffusion.GenRecon), and the REINFORCE leave-one-out term
//     r = ½·stopgrad(l¹ − l²)·(log q(z¹|x0) − log q(z²|x0)), whose w-gradient comes from
//     diffusion.GenLogQ (the masks' dependence on w, which autodiff misses and which biases
//     w towards 0 without it: App. I.2). The total w-gradient is chained through softplus
//     (∂w/∂w_raw = sigmoid(w_raw)) into schedule.w_raw's gradient buffer.
//  5. AdamW on every parameter, schedule.w_raw included.
//
// Bounds (diffusion.Bound): the md4 code's objective (BoundPaperCode) is
// mean_t[diffusion] + recon, whose diffusion term estimates (1/(1−t1))∫_{t1}^1, ~0.1% high,
// and omits the prior; the exact bound (BoundExact) is (1−t1)·mean_t[diffusion] + recon +
// L·ε·ln V. Both are reported every step; GenConfig.Bound picks the one optimised.

// GenConfig describes GenMD4 training steps.
type GenConfig struct {
	Batch      int    // global batch B
	MicroBatch int    // sequences per forward/backward pass; 0 → Batch; must divide Batch
	Seed       uint64 // seeds times and masks: Philox (Seed, step, purpose, index)
	Antithetic bool   // stratified times (md4 default true)
	Eps        float64
	T1         float64
	// Bound is the objective optimised (and reported as LossBits): BoundPaperCode (the md4
	// code; the default when 0) or BoundExact.
	Bound diffusion.Bound
	// NoRLOO drops the REINFORCE term: the w-gradient is then the pathwise part only (biased;
	// for comparisons and tests).
	NoRLOO        bool
	SkipNonFinite bool
}

// WithDefaults fills ε = 1e−4, t1 = 1e−3, the paper-code bound and MicroBatch = Batch.
func (c GenConfig) WithDefaults() GenConfig {
	if c.Eps == 0 {
		c.Eps = diffusion.DefaultEps
	}
	if c.T1 == 0 {
		c.T1 = diffusion.GenDefaultT1
	}
	if c.Bound == 0 {
		c.Bound = diffusion.BoundPaperCode
	}
	if c.MicroBatch == 0 {
		c.MicroBatch = c.Batch
	}
	return c
}

// Validate checks the batch arithmetic and the schedule constants.
func (c GenConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.Batch < 1:
		return fmt.Errorf("train: batch %d must be at least 1", c.Batch)
	case c.MicroBatch < 1 || c.Batch%c.MicroBatch != 0:
		return fmt.Errorf("train: micro-batch %d must divide the global batch %d (e.g. %d)", c.MicroBatch, c.Batch, largestDivisorAtMost(c.Batch, c.MicroBatch))
	case !(c.Eps > 0 && c.Eps < 0.5):
		return fmt.Errorf("train: GenMD4 ε = %v must be in (0, 0.5)", c.Eps)
	case !(c.T1 > 0 && c.T1 < 1):
		return fmt.Errorf("train: GenMD4 t1 = %v must be in (0, 1)", c.T1)
	case c.Bound != diffusion.BoundPaperCode && c.Bound != diffusion.BoundExact:
		return fmt.Errorf("train: bound %v; valid: paper-code, exact", c.Bound)
	}
	return nil
}

// GenStepStats reports one GenMD4 training step. Losses are batch means in bits per token
// (normalised by L·ln 2 per sequence, like the md4 code's loss2bpt).
type GenStepStats struct {
	Step      int
	LossBits  float64 // the optimised bound (GenConfig.Bound), the md4 code's loss_nelbo for paper-code
	PaperBits float64 // diffusion (mean of the two samples) + recon
	ExactBits float64 // (1−t1)·diffusion + recon + prior
	DiffBits  float64 // diffusion term (paper-code, no (1−t1))
	ReconBits float64
	PriorBits float64
	RLOOBits  float64 // the surrogate's REINFORCE term (zero-mean; not part of any bound)
	GradNorm  float64
	LR        float64
	Masked    [2]int // masked positions of the two samples
	Tokens    int
	Skipped   bool
	Duration  time.Duration
	// PowerMin, PowerMax and PowerMean summarise the powers w = softplus(w_raw) used by the step.
	PowerMin, PowerMax, PowerMean float64
	// GradW is the total gradient of the surrogate with respect to w (bits per token), and
	// GradRaw the one with respect to w_raw written into schedule.w_raw's gradient.
	GradW, GradRaw []float64
	// SeqDiff holds each sequence's two diffusion-term estimates in nats (paper-code).
	SeqDiff [2][]float64
}

// GenTrainer runs GenMD4 training steps for one model (built with Config.GenMD4) on its
// backend.
type GenTrainer struct {
	Cfg     GenConfig
	M       *model.Model
	Opt     *Optimizer
	Step    int // steps completed (= index of the next step)
	Skipped int

	r      *genRunner
	ts     []float64
	table  []float64
	scales []float64
	zs     [2][]int32
	loss   [2][]float64
}

// NewGenTrainer allocates the step's buffers. The model must have GenMD4's schedule
// parameter (model.Config.GenMD4).
func NewGenTrainer(m *model.Model, opt *Optimizer, cfg GenConfig) (*GenTrainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if m.GenSchedule() == nil {
		return nil, fmt.Errorf("train: GenMD4 training needs a model with the learned schedule schedule.w_raw (model.Config.GenMD4); this is an MD4 model")
	}
	r, err := newGenRunner(m, cfg.MicroBatch)
	if err != nil {
		return nil, err
	}
	B, L, V := cfg.Batch, m.Cfg.SeqLen, m.Cfg.Vocab
	tr := &GenTrainer{Cfg: cfg, M: m, Opt: opt, r: r, ts: make([]float64, B), table: make([]float64, B*V), scales: make([]float64, B)}
	for k := range tr.zs {
		tr.zs[k] = make([]int32, B*L)
		tr.loss[k] = make([]float64, B)
	}
	return tr, nil
}

// Free releases the trainer's buffers (not the model or optimizer).
func (tr *GenTrainer) Free() { tr.r.free() }

// Powers downloads the current schedule powers w = softplus(w_raw) of m (a GenMD4 model),
// with the raw values.
func Powers(m *model.Model) (powers, raw []float64, err error) {
	p := m.GenSchedule()
	if p == nil {
		return nil, nil, fmt.Errorf("train: model has no GenMD4 schedule (schedule.w_raw)")
	}
	raw, err = m.GetParam(p)
	if err != nil {
		return nil, nil, err
	}
	powers = make([]float64, len(raw))
	diffusion.GenPowers(powers, raw)
	return powers, raw, nil
}

// TrainStep runs step tr.Step on the global batch x0 ([B·L] clean ids; seqLens nil or [B]
// real lengths with padding at the end) and applies the update. Like Trainer.TrainStep it is
// a pure function of the state, the batch and the step index.
func (tr *GenTrainer) TrainStep(x0, seqLens []int32) (GenStepStats, error) {
	start := time.Now()
	st, err := tr.Gradients(x0, seqLens, uint64(tr.Step))
	if err != nil {
		return st, err
	}
	st.Step = tr.Step
	if st.GradNorm, st.LR, st.Skipped, err = update(tr.Opt, tr.Cfg.SkipNonFinite, "GenMD4 step", tr.Step, st.LossBits); err != nil {
		return st, err
	}
	if st.Skipped {
		tr.Skipped++
	}
	tr.Step++
	st.Duration = time.Since(start)
	return st, nil
}

// Gradients computes the objective of step index step and leaves the gradients of every
// parameter (schedule.w_raw included) in the model's Grad buffers, without updating anything.
func (tr *GenTrainer) Gradients(x0, seqLens []int32, step uint64) (GenStepStats, error) {
	c, m := tr.Cfg, tr.M
	B, L, V := c.Batch, m.Cfg.SeqLen, m.Cfg.Vocab
	var st GenStepStats
	if len(x0) != B*L {
		return st, fmt.Errorf("train: batch has %d tokens, want B·L = %d·%d = %d", len(x0), B, L, B*L)
	}
	if err := checkLens(seqLens, B, L); err != nil {
		return st, err
	}
	if err := checkTokens(x0, V, "training batch"); err != nil {
		return st, err
	}
	powers, raw, err := Powers(m)
	if err != nil {
		return st, err
	}
	st.PowerMin, st.PowerMax, st.PowerMean = powerStats(powers)
	genTimes(tr.ts, c.T1, c.Seed, step, rng.PurposeTime, c.Antithetic)
	diffusion.GenMaskProbTable(tr.table, tr.ts, powers, c.Eps)
	scale := diffusion.GenDiffusionScale(c.Bound, c.T1)
	norm := 1 / (float64(L) * math.Ln2 * float64(B))
	for b, t := range tr.ts {
		tr.scales[b] = scale * 0.5 * norm / t
	}
	if err := m.ZeroGrad(); err != nil {
		return st, err
	}
	if err := tr.r.setPowers(powers, true); err != nil {
		return st, err
	}
	for k, purpose := range [2]rng.Purpose{rng.PurposeMask, rng.PurposeMask2} {
		clear(tr.loss[k])
		n, err := tr.r.run(&genPass{x0: x0, seqLens: seqLens, ts: tr.ts, table: tr.table, scales: tr.scales,
			seed: c.Seed, step: step, purpose: purpose, grad: true}, tr.loss[k], tr.zs[k])
		if err != nil {
			return st, err
		}
		st.Masked[k] = n
	}
	gradW, err := tr.r.dpowers()
	if err != nil {
		return st, err
	}
	// Host terms: per-sequence diffusion estimates (nats), reconstruction, prior, RLOO.
	gRecon := make([]float64, V)
	gq := [2][]float64{make([]float64, V), make([]float64, V)}
	st.SeqDiff = [2][]float64{make([]float64, B), make([]float64, B)}
	unit := scale * 0.5 * norm // seqLoss = unit·(1/t)·Σ terms = unit·d
	for b := 0; b < B; b++ {
		n := L
		if seqLens != nil {
			n = int(seqLens[b])
		}
		st.Tokens += n
		xb := x0[b*L : b*L+n]
		d0, d1 := tr.loss[0][b]/unit, tr.loss[1][b]/unit
		st.SeqDiff[0][b], st.SeqDiff[1][b] = d0, d1
		diff := 0.5 * (d0 + d1)
		recon, err := diffusion.GenRecon(xb, powers, c.Eps, c.T1, gRecon)
		if err != nil {
			return st, err
		}
		prior := diffusion.GenPriorNats(n, V, c.Eps)
		st.DiffBits += norm * diff
		st.ReconBits += norm * recon
		st.PriorBits += norm * prior
		if c.NoRLOO {
			continue
		}
		var lq [2]float64
		for k := range lq {
			clear(gq[k])
			lq[k], err = diffusion.GenLogQ(tr.zs[k][b*L:b*L+n], xb, int32(V), powers, tr.ts[b], c.Eps, gq[k])
			if err != nil {
				return st, err
			}
		}
		// r = ½·sg(l¹ − l²)·(log q¹ − log q²) with l in the optimised units (scale·d·norm).
		c1, c2 := diffusion.RLOOCoefs(scale*d0, scale*d1)
		st.RLOOBits += norm * diffusion.RLOO(scale*d0, scale*d1, lq[0], lq[1])
		for j := range gradW {
			gradW[j] += norm * (c1*gq[0][j] + c2*gq[1][j])
		}
	}
	for j := range gradW {
		gradW[j] += norm * gRecon[j]
	}
	st.PaperBits = st.DiffBits + st.ReconBits
	st.ExactBits = (1-c.T1)*st.DiffBits + st.ReconBits + st.PriorBits
	st.LossBits = st.PaperBits
	if c.Bound == diffusion.BoundExact {
		st.LossBits = st.ExactBits
	}
	gradRaw := make([]float64, V)
	diffusion.GenRawGrad(gradRaw, gradW, raw)
	st.GradW, st.GradRaw = gradW, gradRaw
	if err := model.Upload(m.Backend(), m.GenSchedule().Grad, gradRaw); err != nil {
		return st, err
	}
	return st, nil
}

func powerStats(w []float64) (lo, hi, mean float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range w {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
		mean += x
	}
	return lo, hi, mean / float64(len(w))
}

// genTimes fills dst with GenMD4 times t_b = t1 + (1−t1)·u_b ∈ [t1, 1] from the given random
// stream (diffusion.GenTimes for rng.PurposeTime; evaluation uses rng.PurposeEvalTime).
func genTimes(dst []float64, t1 float64, seed, step uint64, purpose rng.Purpose, antithetic bool) {
	diffusion.TimesFor(dst, seed, step, purpose, antithetic)
	for b, u := range dst {
		dst[b] = math.Min(t1+(1-t1)*u, 1)
	}
}

func checkLens(seqLens []int32, B, L int) error {
	if seqLens == nil {
		return nil
	}
	if len(seqLens) != B {
		return fmt.Errorf("train: got %d sequence lengths for %d sequences", len(seqLens), B)
	}
	for b, n := range seqLens {
		if n < 1 || int(n) > L {
			return fmt.Errorf("train: sequence %d has length %d, outside [1, %d]", b, n, L)
		}
	}
	return nil
}

// genRunner is the GenMD4 analogue of runner: upload x0 and the [mb, V] masking table, mask
// on the device, gather the masked rows, Forward, GenMaskedCE (→ Backward).
type genRunner struct {
	m      *model.Model
	mb     int
	ws     *model.Workspace
	x0T    *ops.Tensor // [mb, L] I32
	probT  *ops.Tensor // [mb, V] F64
	lensT  *ops.Tensor // [mb] I32
	powT   *ops.Tensor // [V] F64 powers
	dpowT  *ops.Tensor // [V] F64 pathwise w-gradient accumulator
	xt     []int32
	rows   []int32
	tgt    []int32
	rowSc  []float64
	rowSeq []int
}

func newGenRunner(m *model.Model, mb int) (*genRunner, error) {
	be := m.Backend()
	ws, err := m.NewWorkspace(mb)
	if err != nil {
		return nil, err
	}
	L, V := m.Cfg.SeqLen, m.Cfg.Vocab
	r := &genRunner{m: m, mb: mb, ws: ws, xt: make([]int32, mb*L)}
	alloc := func(dt ops.DType, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		t, err = be.Alloc(dt, shape...)
		return t
	}
	r.x0T = alloc(ops.I32, mb, L)
	r.probT = alloc(ops.F64, mb, V)
	r.lensT = alloc(ops.I32, mb)
	r.powT = alloc(ops.F64, V)
	r.dpowT = alloc(ops.F64, V)
	if err != nil {
		r.free()
		return nil, err
	}
	return r, nil
}

func (r *genRunner) free() {
	be := r.m.Backend()
	r.ws.Free()
	for _, t := range []*ops.Tensor{r.x0T, r.probT, r.lensT, r.powT, r.dpowT} {
		if t != nil {
			be.Free(t)
		}
	}
}

// setPowers uploads the powers and, with zeroGrad, zeroes the w-gradient accumulator.
func (r *genRunner) setPowers(powers []float64, zeroGrad bool) error {
	be := r.m.Backend()
	if err := be.Upload(r.powT, powers); err != nil {
		return err
	}
	if zeroGrad {
		return be.Upload(r.dpowT, make([]float64, len(powers)))
	}
	return nil
}

// dpowers downloads the accumulated pathwise w-gradient.
func (r *genRunner) dpowers() ([]float64, error) {
	out := make([]float64, r.dpowT.Len())
	return out, r.m.Backend().Download(out, r.dpowT)
}

// genPass is one batch of passes over global-batch sequences [0, B) with one mask sample.
type genPass struct {
	x0      []int32   // [B·L]
	seqLens []int32   // [B] or nil
	ts      []float64 // [B]
	table   []float64 // [B·V] masking probabilities (1−ε)·t_b^{w_i}
	scales  []float64 // [B] GenMaskedCE row factor of each sequence
	seed    uint64
	step    uint64
	purpose rng.Purpose
	grad    bool
}

// run processes p in micro-batches; seqLoss[b] receives the sum of the row losses of sequence
// b and z (if not nil, [B·L]) the noised tokens. It returns the number of masked positions.
func (r *genRunner) run(p *genPass, seqLoss []float64, z []int32) (int, error) {
	m, be := r.m, r.m.Backend()
	L, V := m.Cfg.SeqLen, m.Cfg.Vocab
	B := len(p.ts)
	if B%r.mb != 0 || len(p.x0) != B*L || len(p.table) != B*V {
		return 0, fmt.Errorf("train: GenMD4 batch of %d sequences (%d tokens) is not a multiple of the pass size %d × L=%d", B, len(p.x0), r.mb, L)
	}
	masked := 0
	for b0 := 0; b0 < B; b0 += r.mb {
		var lens []int32
		var lensT *ops.Tensor
		if p.seqLens != nil {
			lens = p.seqLens[b0 : b0+r.mb]
			if err := be.Upload(r.lensT, lens); err != nil {
				return 0, err
			}
			lensT = r.lensT
		}
		if err := be.Upload(r.x0T, p.x0[b0*L:(b0+r.mb)*L]); err != nil {
			return 0, err
		}
		if err := be.Upload(r.probT, p.table[b0*V:(b0+r.mb)*V]); err != nil {
			return 0, err
		}
		err := be.MaskTokens(&ops.MaskParams{XT: r.ws.XT, X0: r.x0T, MaskProb: r.probT, SeqLens: lensT,
			MaskID: int32(V), Seed: p.seed, Step: p.step, Purpose: uint8(p.purpose), IndexOffset: uint64(b0 * L)})
		if err != nil {
			return 0, err
		}
		if err := be.Download(r.xt, r.ws.XT); err != nil {
			return 0, err
		}
		if z != nil {
			copy(z[b0*L:], r.xt)
		}
		r.rows, r.tgt, r.rowSc, r.rowSeq = r.rows[:0], r.tgt[:0], r.rowSc[:0], r.rowSeq[:0]
		for i, v := range r.xt {
			if v == int32(V) {
				b := b0 + i/L
				r.rows = append(r.rows, int32(i))
				r.tgt = append(r.tgt, p.x0[b0*L+i])
				r.rowSc = append(r.rowSc, p.scales[b])
				r.rowSeq = append(r.rowSeq, b)
			}
		}
		masked += len(r.rows)
		if err := m.Forward(r.ws, p.ts[b0:b0+r.mb], lens, r.rows); err != nil {
			return 0, err
		}
		rowLoss, err := m.GenLoss(r.ws, r.tgt, r.rowSc, r.powT, r.dpowT, p.grad)
		if err != nil {
			return 0, err
		}
		for i, l := range rowLoss {
			seqLoss[r.rowSeq[i]] += l
		}
		if p.grad {
			if err := m.Backward(r.ws); err != nil {
				return 0, err
			}
		}
	}
	return masked, nil
}

// GenEvalConfig describes an evaluation of GenMD4's NELBO.
type GenEvalConfig struct {
	Batch      int
	Samples    int // (time, mask) samples per sequence; ≥ 1
	Seed       uint64
	Antithetic bool
	Eps, T1    float64 // 0 → defaults
}

// GenEvaluator estimates a GenMD4 model's NELBO with one (time, mask) sample per sequence
// and draw (times on [t1, 1] from rng.PurposeEvalTime), the reconstruction term exactly and
// the prior term, reporting both bounds (diffusion.EvalResult: PaperCode is the md4 code's
// loss_nelbo, Exact the true bound).
type GenEvaluator struct {
	Cfg     GenEvalConfig
	m       *model.Model
	runners map[int]*genRunner
}

// NewGenEvaluator checks cfg; buffers are allocated on first use.
func NewGenEvaluator(m *model.Model, cfg GenEvalConfig) (*GenEvaluator, error) {
	if cfg.Batch < 1 || cfg.Samples < 1 {
		return nil, fmt.Errorf("train: eval batch %d and samples per sequence %d must be ≥ 1", cfg.Batch, cfg.Samples)
	}
	if m.GenSchedule() == nil {
		return nil, fmt.Errorf("train: GenMD4 evaluation needs a GenMD4 model (schedule.w_raw); this is an MD4 model")
	}
	if cfg.Eps == 0 {
		cfg.Eps = diffusion.DefaultEps
	}
	if cfg.T1 == 0 {
		cfg.T1 = diffusion.GenDefaultT1
	}
	return &GenEvaluator{Cfg: cfg, m: m, runners: map[int]*genRunner{}}, nil
}

// Free releases the evaluator's buffers.
func (ev *GenEvaluator) Free() {
	for _, r := range ev.runners {
		r.free()
	}
	ev.runners = map[int]*genRunner{}
}

// Eval estimates the NELBO of the sequences in seqs ([n·L] ids), with the same addressing
// as Evaluator.Eval (batch k, sample s: step k·K + s). progress, if non-nil, is called after
// each pass.
func (ev *GenEvaluator) Eval(seqs []int32, progress func(done, total int)) (diffusion.EvalResult, error) {
	m := ev.m
	L, V := m.Cfg.SeqLen, m.Cfg.Vocab
	if len(seqs) == 0 || len(seqs)%L != 0 {
		return diffusion.EvalResult{}, fmt.Errorf("train: evaluation data has %d tokens, which is not a positive multiple of L=%d", len(seqs), L)
	}
	if err := checkTokens(seqs, V, "evaluation data"); err != nil {
		return diffusion.EvalResult{}, err
	}
	if err := m.SyncHalf(); err != nil {
		return diffusion.EvalResult{}, err
	}
	powers, _, err := Powers(m)
	if err != nil {
		return diffusion.EvalResult{}, err
	}
	c := ev.Cfg
	var acc diffusion.Accumulator
	n, B, K := len(seqs)/L, c.Batch, c.Samples
	done := 0
	for k, b0 := 0, 0; b0 < n; k, b0 = k+1, b0+B {
		bn := min(B, n-b0)
		r := ev.runners[bn]
		if r == nil {
			if r, err = newGenRunner(m, bn); err != nil {
				return diffusion.EvalResult{}, err
			}
			ev.runners[bn] = r
		}
		if err := r.setPowers(powers, false); err != nil {
			return diffusion.EvalResult{}, err
		}
		x0 := seqs[b0*L : (b0+bn)*L]
		ts, table, scales, d := make([]float64, bn), make([]float64, bn*V), make([]float64, bn), make([]float64, bn)
		avg := make([]float64, bn)
		for s := 0; s < K; s++ {
			step := uint64(k*K + s)
			genTimes(ts, c.T1, c.Seed, step, rng.PurposeEvalTime, c.Antithetic)
			diffusion.GenMaskProbTable(table, ts, powers, c.Eps)
			for j, t := range ts {
				scales[j] = 1 / t // rows carry nats
			}
			clear(d)
			if _, err := r.run(&genPass{x0: x0, ts: ts, table: table, scales: scales, seed: c.Seed, step: step,
				purpose: rng.PurposeMask}, d, nil); err != nil {
				return diffusion.EvalResult{}, err
			}
			for j := range d {
				avg[j] += d[j] / float64(K)
			}
			done += bn
			if progress != nil {
				progress(done, n*K)
			}
		}
		for j := range avg {
			recon, err := diffusion.GenRecon(x0[j*L:(j+1)*L], powers, c.Eps, c.T1, nil)
			if err != nil {
				return diffusion.EvalResult{}, err
			}
			acc.Add(diffusion.GenSeq(avg[j], recon, L, V, c.Eps, c.T1))
		}
	}
	return acc.Result(), nil
}

// Checkpoint metadata key marking a GenMD4 training state ("1").
const MetaGenMD4 = "mdm.genmd4"

// SaveGenState writes the GenMD4 training state like SaveState (schedule.w_raw, its EMA and
// its AdamW moments are ordinary parameters of the model) and marks it with MetaGenMD4.
func SaveGenState(path string, tr *GenTrainer, meta map[string]string) error {
	mm := map[string]string{MetaGenMD4: "1"}
	for k, v := range meta {
		mm[k] = v
	}
	return SaveState(path, &Trainer{M: tr.M, Opt: tr.Opt, Step: tr.Step, Skipped: tr.Skipped}, mm)
}

// LoadGenState restores a state written by SaveGenState into tr. A checkpoint without the
// GenMD4 schedule (an MD4 run) is refused with a clear error before anything changes.
func LoadGenState(path string, tr *GenTrainer) (map[string]string, error) {
	if err := CheckGenCheckpoint(path, true); err != nil {
		return nil, err
	}
	shim := &Trainer{M: tr.M, Opt: tr.Opt}
	meta, err := LoadState(path, shim)
	if err != nil {
		return nil, err
	}
	tr.Step, tr.Skipped = shim.Step, shim.Skipped
	return meta, nil
}

// CheckGenCheckpoint refuses a checkpoint of the wrong kind with a clear error: wantGen
// true requires GenMD4's learned schedule (schedule.w_raw), wantGen false requires an MD4
// checkpoint without it (LoadWeights would otherwise ignore the schedule and sample a
// GenMD4 model as if it had the MD4 schedule).
func CheckGenCheckpoint(path string, wantGen bool) error {
	info, err := ckpt.Inspect(path)
	if err != nil {
		return err
	}
	has := false
	for _, t := range info.Tensors {
		if t.Name == "schedule.w_raw" {
			has = true
		}
	}
	switch {
	case wantGen && !has:
		return fmt.Errorf("train: %s is an MD4 checkpoint (no learned schedule schedule.w_raw); GenMD4 options (--genmd4, the GenMD4 sampler) need a checkpoint trained with --genmd4", path)
	case !wantGen && has:
		return fmt.Errorf("train: %s is a GenMD4 checkpoint (it has the learned schedule schedule.w_raw); load it as GenMD4 (--genmd4): the MD4 schedule options do not apply to it", path)
	}
	return nil
}
