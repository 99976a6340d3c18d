package diffusion

import (
	"encoding/json"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func seqs(n int, r *rand.Rand, varTokens bool) []SeqNLL {
	out := make([]SeqNLL, n)
	for i := range out {
		tok := 256
		if varTokens {
			tok = 1 + r.IntN(300)
		}
		d := float64(tok) * (1 + r.ExpFloat64()) * math.Exp(10*r.NormFloat64()/10)
		out[i] = SeqNLL{Tokens: tok, Diffusion: d, DiffusionExact: d * 0.999, Recon: 1e-3 * float64(tok), Prior: 2e-3 * float64(tok)}
	}
	return out
}

func TestExactSumCorrectlyRounded(t *testing.T) {
	cases := [][]float64{
		{1e100, 1, -1e100},
		{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1},
		{1, 0x1p-53, 0x1p-106}, // the tie is broken by the tiny third term
		{1, 0x1p-53},           // an exact tie rounds to even
		{},
		{math.Copysign(0, -1)},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 200; k++ {
		x := make([]float64, 1+r.IntN(50))
		for i := range x {
			x[i] = r.NormFloat64() * math.Exp2(float64(r.IntN(120)-60))
		}
		cases = append(cases, x)
	}
	for _, xs := range cases {
		var s exactSum
		exact := new(big.Float).SetPrec(4096)
		for _, x := range xs {
			s.add(x)
			exact.Add(exact, new(big.Float).SetPrec(4096).SetFloat64(x))
		}
		want, _ := exact.Float64() // round to nearest even
		if got := s.value(); got != want {
			t.Errorf("exact sum of %v: got %.17g, want %.17g", xs, got, want)
		}
	}
	var s exactSum
	s.add(1)
	s.add(math.NaN())
	if !math.IsNaN(s.value()) {
		t.Error("NaN lost")
	}
}

// The standard error of a known sample: equal lengths, Y/L = {0.1, ..., 0.5}: mean 0.3,
// sample s.d. sqrt(0.025), SE = sqrt(0.025/5).
func TestAccumulatorKnownSample(t *testing.T) {
	var a Accumulator
	for i := 1; i <= 5; i++ {
		a.Add(SeqNLL{Tokens: 10, Diffusion: float64(i), DiffusionExact: float64(i)})
	}
	r := a.Result()
	checkRel(t, "nats/token", r.PaperCode.NatsPerToken, 0.3, 1e-15)
	checkRel(t, "SE", r.PaperCode.StdErrNats, math.Sqrt(0.025/5), 1e-14)
	checkRel(t, "SE bits", r.PaperCode.StdErrBits, math.Sqrt(0.025/5)/math.Ln2, 1e-14)
	checkRel(t, "bits", r.PaperCode.BitsPerToken, 0.3/math.Ln2, 1e-15)
	checkRel(t, "ppl", r.PaperCode.Perplexity, math.Exp(0.3), 1e-15)
	if r.Exact != r.PaperCode {
		t.Errorf("with no recon/prior and equal diffusion terms the bounds must agree: %+v vs %+v", r.Exact, r.PaperCode)
	}
	var one Accumulator
	one.Add(SeqNLL{Tokens: 3, Diffusion: 1})
	if !math.IsNaN(one.Result().PaperCode.StdErrNats) {
		t.Error("SE with one sequence must be NaN")
	}
	var empty Accumulator
	empty.Add(SeqNLL{Tokens: 0, Diffusion: 5})
	if r := empty.Result(); r.Sequences != 0 || !math.IsNaN(r.PaperCode.NatsPerToken) {
		t.Errorf("empty accumulator: %+v", r)
	}
}

// Pitfalls B10: unequal batch sizes and token counts. The bound is exp(total NLL / total
// tokens), not a mean of per-batch perplexities; the SE is the ratio estimator's.
func TestAccumulatorUnequalBatches(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	all := seqs(1+7+64+3, r, true)
	batches := [][]SeqNLL{all[:1], all[1:8], all[8:72], all[72:]}
	var a Accumulator
	var meanPPL float64
	for _, b := range batches {
		var ba Accumulator
		for _, s := range b {
			a.Add(s)
			ba.Add(s)
		}
		meanPPL += ba.Result().PaperCode.Perplexity / float64(len(batches))
	}
	var sy, sx float64
	for _, s := range all {
		sy += s.Nats(BoundPaperCode)
		sx += float64(s.Tokens)
	}
	res := a.Result()
	checkRel(t, "nats/token", res.PaperCode.NatsPerToken, sy/sx, 1e-13)
	checkRel(t, "perplexity", res.PaperCode.Perplexity, math.Exp(sy/sx), 1e-13)
	if relErr(meanPPL, res.PaperCode.Perplexity) < 1e-3 {
		t.Errorf("test is weak: mean of batch perplexities %v ≈ pooled %v", meanPPL, res.PaperCode.Perplexity)
	}
	R := sy / sx
	var q float64
	for _, s := range all {
		d := s.Nats(BoundPaperCode) - R*float64(s.Tokens)
		q += d * d
	}
	n := float64(len(all))
	checkRel(t, "ratio SE", res.PaperCode.StdErrNats, math.Sqrt(q/(n*(n-1)))/(sx/n), 1e-10)
	// Components.
	var sd, sr, sp float64
	for _, s := range all {
		sd += s.Diffusion
		sr += s.Recon
		sp += s.Prior
	}
	checkRel(t, "diffusion/token", res.DiffusionNats, sd/sx, 1e-13)
	checkRel(t, "recon/token", res.ReconNats, sr/sx, 1e-13)
	checkRel(t, "prior/token", res.PriorNats, sp/sx, 1e-13)
	checkRel(t, "exact = diffusion_exact + recon + prior", res.Exact.NatsPerToken,
		res.DiffusionExactNats+res.ReconNats+res.PriorNats, 1e-13)
}

// Merging two halves (or any split, in any order, through the exported state) gives the
// same result as one pass, bit for bit.
func TestAccumulatorMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	all := seqs(1000, r, true)
	var one Accumulator
	for _, s := range all {
		one.Add(s)
	}
	want := one.Result()
	for _, cut := range []int{0, 1, 333, 999, 1000} {
		var a, b Accumulator
		for _, s := range all[:cut] {
			a.Add(s)
		}
		for i := len(all) - 1; i >= cut; i-- { // the other half in reverse order
			b.Add(all[i])
		}
		a.Merge(&b)
		if got := a.Result(); got != want {
			t.Errorf("cut %d: merged %+v\n one pass %+v", cut, got, want)
		}
	}
	// Four ranks, shuffled, through JSON.
	perm := r.Perm(len(all))
	var ranks [4]Accumulator
	for i, p := range perm {
		ranks[i%4].Add(all[p])
	}
	var root Accumulator
	for i := range ranks {
		buf, err := json.Marshal(ranks[i].State())
		if err != nil {
			t.Fatal(err)
		}
		var st AccumulatorState
		if err := json.Unmarshal(buf, &st); err != nil {
			t.Fatal(err)
		}
		if !root.MergeState(st) {
			t.Fatal("MergeState rejected a valid state")
		}
	}
	if got := root.Result(); got != want {
		t.Errorf("4 ranks via State: %+v\n one pass %+v", got, want)
	}
	if root.MergeState(AccumulatorState{Sums: [][]float64{{1}}}) {
		t.Error("MergeState accepted a bad layout")
	}
	// Self-merge doubles.
	c := one.Clone()
	c.Merge(&c)
	if got := c.Result(); got.Sequences != 2*want.Sequences || got.PaperCode.TotalNats != 2*want.PaperCode.TotalNats {
		t.Errorf("self-merge: %+v", got)
	}
}
