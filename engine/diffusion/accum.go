package diffusion

import (
	"math"
)

// exactSum holds the exact sum of float64 values as a list of non-overlapping partials
// (Shewchuk, "Adaptive Precision Floating-Point Arithmetic and Fast Robust Geometric
// Predicates", 1997), so that its value, correctly rounded once at the end, does not depend
// on the order of additions or on how the values were split and merged. Non-finite inputs
// are summed separately and dominate the result.
type exactSum struct {
	p       []float64 // non-overlapping partials, increasing magnitude
	special float64   // sum of non-finite inputs (0 if none)
	nonFin  bool
}

func (s *exactSum) add(x float64) {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		s.special += x
		s.nonFin = true
		return
	}
	i := 0
	for _, y := range s.p {
		if math.Abs(x) < math.Abs(y) {
			x, y = y, x
		}
		hi := x + y
		lo := y - (hi - x)
		if lo != 0 {
			s.p[i] = lo
			i++
		}
		x = hi
	}
	if math.IsInf(x, 0) { // intermediate overflow of finite inputs
		s.special += x
		s.nonFin = true
		s.p = s.p[:i]
		return
	}
	s.p = append(s.p[:i], x)
}

// addProduct adds a·b exactly (its rounded value and the rounding error, via FMA).
func (s *exactSum) addProduct(a, b float64) {
	hi := a * b
	s.add(hi)
	if !math.IsInf(hi, 0) && !math.IsNaN(hi) {
		s.add(math.FMA(a, b, -hi))
	}
}

func (s *exactSum) merge(o *exactSum) {
	for _, x := range o.p {
		s.add(x)
	}
	if o.nonFin {
		s.special += o.special
		s.nonFin = true
	}
}

// value returns the exact sum correctly rounded to float64 (round half to even).
func (s *exactSum) value() float64 {
	if s.nonFin {
		return s.special
	}
	n := len(s.p)
	if n == 0 {
		return 0
	}
	n--
	hi := s.p[n]
	lo := 0.0
	for n > 0 {
		x := hi
		n--
		y := s.p[n]
		hi = x + y
		lo = y - (hi - x)
		if lo != 0 {
			break
		}
	}
	// hi + lo is exact; the partials below p[n] (if any) decide ties: if lo is exactly half
	// an ulp of hi and the rest has the same sign, the correctly rounded result is hi + 2lo.
	if n > 0 && ((lo < 0 && s.p[n-1] < 0) || (lo > 0 && s.p[n-1] > 0)) {
		y := 2 * lo
		x := hi + y
		if y == x-hi {
			hi = x
		}
	}
	return hi
}

func (s *exactSum) clone() exactSum {
	return exactSum{p: append([]float64(nil), s.p...), special: s.special, nonFin: s.nonFin}
}

// Accumulator aggregates single-sample NELBO estimates over an evaluation split
// (md4.md §2.3 "Evaluation", pitfalls B10): the reported bound is total NLL / total tokens
// (never a mean of per-batch perplexities), perplexity is exp of that, and the Monte Carlo
// standard error comes from per-sequence sums of squares. All sums are exact (correctly
// rounded only when a result is read), so results do not depend on the order in which
// sequences were added or on how they were split over batches, workers or ranks: merging
// accumulators gives bit-for-bit the result of one pass. The zero value is ready to use;
// an Accumulator is not safe for concurrent use (give each worker its own and Merge).
type Accumulator struct {
	n, tokens int64
	// Per bound (0 paper-code, 1 exact) with Y the sequence's NELBO in nats and X its
	// token count: Σ Y, Σ Y², Σ X·Y.
	sy, syy, sxy [2]exactSum
	sxx          exactSum
	// Components: Σ Diffusion, Σ DiffusionExact, Σ Recon, Σ Prior.
	sd, sde, sr, sp exactSum
}

// Add adds one sequence's estimate. A sequence with Tokens ≤ 0 is ignored (it has nothing
// to score).
func (a *Accumulator) Add(s SeqNLL) {
	if s.Tokens <= 0 {
		return
	}
	x := float64(s.Tokens)
	a.n++
	a.tokens += int64(s.Tokens)
	for i, b := range [2]Bound{BoundPaperCode, BoundExact} {
		y := s.Nats(b)
		a.sy[i].add(y)
		a.syy[i].addProduct(y, y)
		a.sxy[i].addProduct(x, y)
	}
	a.sxx.addProduct(x, x)
	a.sd.add(s.Diffusion)
	a.sde.add(s.DiffusionExact)
	a.sr.add(s.Recon)
	a.sp.add(s.Prior)
}

// Merge adds everything o has accumulated to a (o is unchanged). Use it to combine
// workers or ranks; the result equals a single pass over all sequences bit for bit.
func (a *Accumulator) Merge(o *Accumulator) {
	if o == a {
		c := a.Clone()
		o = &c
	}
	a.n += o.n
	a.tokens += o.tokens
	for i := range a.sy {
		a.sy[i].merge(&o.sy[i])
		a.syy[i].merge(&o.syy[i])
		a.sxy[i].merge(&o.sxy[i])
	}
	a.sxx.merge(&o.sxx)
	a.sd.merge(&o.sd)
	a.sde.merge(&o.sde)
	a.sr.merge(&o.sr)
	a.sp.merge(&o.sp)
}

// Clone returns an independent copy of a.
func (a *Accumulator) Clone() Accumulator {
	c := Accumulator{n: a.n, tokens: a.tokens, sxx: a.sxx.clone(),
		sd: a.sd.clone(), sde: a.sde.clone(), sr: a.sr.clone(), sp: a.sp.clone()}
	for i := range a.sy {
		c.sy[i] = a.sy[i].clone()
		c.syy[i] = a.syy[i].clone()
		c.sxy[i] = a.sxy[i].clone()
	}
	return c
}

// Sequences returns the number of sequences added.
func (a *Accumulator) Sequences() int64 { return a.n }

// Tokens returns the total number of tokens added.
func (a *Accumulator) Tokens() int64 { return a.tokens }

// BoundResult is one bound aggregated over an evaluation.
type BoundResult struct {
	TotalNats    float64 // Σ per-sequence NELBO, nats
	NatsPerToken float64 // TotalNats / total tokens
	BitsPerToken float64 // NatsPerToken / ln 2 (BPC on text8, bits/dim on images)
	Perplexity   float64 // exp(NatsPerToken) = 2^BitsPerToken
	// StdErrNats is the Monte Carlo standard error of NatsPerToken (the ratio estimator
	// ΣY/ΣX over sequences, delta method: sqrt(Σ(Y_i − R·X_i)²/(n(n−1)))/X̄; with equal
	// lengths this is the sample standard deviation of Y_i/X_i over √n). NaN for n < 2.
	StdErrNats float64
	StdErrBits float64 // StdErrNats / ln 2
}

// EvalResult is what an evaluation reports: both bounds, always (md4.md open question 5),
// and the mean of each term per token.
type EvalResult struct {
	Sequences, Tokens int64
	PaperCode, Exact  BoundResult
	// Mean terms in nats per token: diffusion term (paper-code and exact), reconstruction
	// and prior.
	DiffusionNats, DiffusionExactNats, ReconNats, PriorNats float64
}

// Result returns the aggregate. With no tokens every per-token value is NaN.
func (a *Accumulator) Result() EvalResult {
	r := EvalResult{Sequences: a.n, Tokens: a.tokens}
	tok := float64(a.tokens)
	if a.tokens == 0 {
		tok = math.NaN()
	}
	for i, dst := range [2]*BoundResult{&r.PaperCode, &r.Exact} {
		tot := a.sy[i].value()
		npt := tot / tok
		*dst = BoundResult{TotalNats: tot, NatsPerToken: npt, BitsPerToken: BitsFromNats(npt),
			Perplexity: PerplexityFromNats(npt), StdErrNats: math.NaN(), StdErrBits: math.NaN()}
		if a.n >= 2 {
			// Q = Σ(Y − R·X)² = ΣY² − 2R·ΣXY + R²·ΣX², summed exactly from exact sums.
			var q exactSum
			q.merge(&a.syy[i])
			sxy, sxx := a.sxy[i].value(), a.sxx.value()
			q.addProduct(-2*npt, sxy)
			r2hi := npt * npt
			q.addProduct(r2hi, sxx)
			q.addProduct(math.FMA(npt, npt, -r2hi), sxx)
			qv := math.Max(q.value(), 0)
			n := float64(a.n)
			se := math.Sqrt(qv/(n*(n-1))) / (tok / n)
			dst.StdErrNats, dst.StdErrBits = se, BitsFromNats(se)
		}
	}
	r.DiffusionNats = a.sd.value() / tok
	r.DiffusionExactNats = a.sde.value() / tok
	r.ReconNats = a.sr.value() / tok
	r.PriorNats = a.sp.value() / tok
	return r
}

// AccumulatorState is the exported form of an Accumulator, for sending it to another
// worker or rank (e.g. with encoding/gob, or JSON while every sum is finite) and merging
// it there with MergeState. Each sum is a
// list of float64 partials whose exact sum is the value.
type AccumulatorState struct {
	Sequences, Tokens int64
	Sums              [][]float64 // in a fixed internal order; do not edit
}

func (a *Accumulator) sums() []*exactSum {
	return []*exactSum{&a.sy[0], &a.sy[1], &a.syy[0], &a.syy[1], &a.sxy[0], &a.sxy[1],
		&a.sxx, &a.sd, &a.sde, &a.sr, &a.sp}
}

// State returns a's state. Non-finite sums are carried as a single partial.
func (a *Accumulator) State() AccumulatorState {
	st := AccumulatorState{Sequences: a.n, Tokens: a.tokens}
	for _, s := range a.sums() {
		p := append([]float64(nil), s.p...)
		if s.nonFin {
			p = []float64{s.special}
		}
		st.Sums = append(st.Sums, p)
	}
	return st
}

// MergeState adds a state produced by State (on any worker or rank) to a. It returns
// false, changing nothing, if the state has the wrong layout.
func (a *Accumulator) MergeState(st AccumulatorState) bool {
	sums := a.sums()
	if len(st.Sums) != len(sums) {
		return false
	}
	a.n += st.Sequences
	a.tokens += st.Tokens
	for i, s := range sums {
		for _, x := range st.Sums[i] {
			s.add(x)
		}
	}
	return true
}
