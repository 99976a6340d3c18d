package diffusion

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// uniformModelRun runs the MD4 estimator for a "uniform model" (every masked position has
// CE = ln V, md4.md §8) through the real pipeline: times → mask probabilities → MaskRef →
// MaskedCE row weights. It returns the accumulator of per-sequence estimates and checks
// that each batch's MaskedCE-style loss (Σ rows weight·CE + ConstBits) equals the batch
// mean of the per-sequence objective in bits per token.
func uniformModelRun(t *testing.T, est Estimator, steps, B int, seed uint64) *Accumulator {
	t.Helper()
	if err := est.Validate(); err != nil {
		t.Fatal(err)
	}
	L, V := est.L, est.V
	lnV := math.Log(float64(V))
	x0 := make([]int32, B*L) // token values do not matter (TestMaskedCountBinomial)
	xt := make([]int32, B*L)
	ts := make([]float64, B)
	p := make([]float64, B)
	w := make([]float64, B)
	acc := &Accumulator{}
	for step := 0; step < steps; step++ {
		est.SampleTimes(ts, seed, uint64(step), true)
		MaskProbs(p, est.Sched, ts)
		if err := MaskRef(xt, x0, B, L, nil, p, int32(V), seed, uint64(step), rng.PurposeMask); err != nil {
			t.Fatal(err)
		}
		est.RowWeights(w, ts)
		var rows, objBits float64
		for b := 0; b < B; b++ {
			k := CountMasked(xt[b*L:(b+1)*L], int32(V))
			rows += float64(k) * w[b] * lnV // Σ over masked rows of Weights[r]·CE
			s := est.Seq(ts[b], float64(k)*lnV)
			objBits += BitsPerToken(est.Objective(s), L) / float64(B)
			acc.Add(s)
		}
		if loss := rows + est.ConstBits(); relErr(loss, objBits) > 1e-12 {
			t.Fatalf("step %d: MaskedCE path %v != per-sequence path %v", step, loss, objBits)
		}
	}
	return acc
}

func within(t *testing.T, what string, got, se, want float64, k float64) {
	t.Helper()
	if !(math.Abs(got-want) <= k*se) {
		t.Errorf("%s: got %.6f ± %.6f (SE), want %.6f (%.1f SE off)", what, got, se, want, math.Abs(got-want)/se)
	}
}

// §8 item 3: for a uniform model the expected paper-code loss is (1−ε)·log2 V bits per token
// (4.754412 text8, 7.999200 images, 15.615475 OWT), and exactly log2 V with the prior.
func TestUniformModelContinuousELBO(t *testing.T) {
	for _, c := range []struct {
		V       int
		printed float64
	}{{27, 4.754412}, {256, 7.999200}, {50257, 15.615475}} {
		want := (1 - eps) * math.Log2(float64(c.V))
		if math.Abs(want-c.printed) > 5e-7 {
			t.Errorf("V=%d: (1−ε)log2 V = %.7f, md4.md prints %.6f", c.V, want, c.printed)
		}
		est := Estimator{Sched: mustSched(t, "linear", true), L: 256, V: c.V, Bound: BoundPaperCode}
		acc := uniformModelRun(t, est, 32, 128, 100+uint64(c.V))
		r := acc.Result()
		if r.Sequences != 4096 || r.Tokens != 4096*256 {
			t.Fatalf("counted %d sequences, %d tokens", r.Sequences, r.Tokens)
		}
		t.Logf("V=%d: paper-code %.6f ± %.6f (want %.6f), exact %.6f ± %.6f (want %.6f)", c.V,
			r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want, r.Exact.BitsPerToken, r.Exact.StdErrBits, math.Log2(float64(c.V)))
		within(t, "paper-code bits/token", r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want, 4)
		within(t, "exact bits/token", r.Exact.BitsPerToken, r.Exact.StdErrBits, math.Log2(float64(c.V)), 4)
		// The two bounds differ by exactly the prior εL·ln V per sequence.
		checkRel(t, "exact − paper-code", r.Exact.NatsPerToken-r.PaperCode.NatsPerToken, eps*math.Log(float64(c.V)), 1e-9)
		// Shifted linear: E[loss_diff | t] = (1−2ε)L ln V for every t, so the SE is small.
		if r.PaperCode.StdErrBits > 0.01*want {
			t.Errorf("V=%d: standard error %v unexpectedly large", c.V, r.PaperCode.StdErrBits)
		}
	}
	// Other schedules: same expectation (only the variance differs, md4.md §2.2).
	for _, n := range []string{"cosine", "poly3", "geometric"} {
		s := mustSched(t, n, true)
		est := Estimator{Sched: s, L: 256, V: 27, Bound: BoundPaperCode}
		r := uniformModelRun(t, est, 16, 128, 7).Result()
		want := (s.Alpha(0) - s.Alpha(1) + s.MaskProb(0)) * math.Log2(27)
		t.Logf("%s: %.6f ± %.6f, want %.6f", n, r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want)
		within(t, n+" paper-code bits/token", r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want, 4)
	}
}

// The same expectation analytically: ∫ −w(t)·L(1−α_t) dt·ln V = (α_0 − α_1)·L ln V, by
// Gauss–Legendre quadrature of the implemented weight and mask probability.
func TestUniformModelContinuousAnalytic(t *testing.T) {
	for name, s := range allSchedules(t) {
		if name == "poly0.5" || name == "poly0.5/shifted" {
			continue // α' has an integrable t^(−1/2) singularity; the quadrature is not exact
		}
		got := gaussLegendre(func(tt float64) float64 { return ContinuousWeight(s, tt) * s.MaskProb(tt) }, 200)
		want := s.Alpha(0) - s.Alpha(1)
		checkRel(t, name+" ∫−w(1−α)dt", got, want, 1e-9)
	}
}

// gaussLegendre integrates f over [0, 1] with n panels of 5-point Gauss–Legendre.
func gaussLegendre(f func(float64) float64, n int) float64 {
	x := []float64{0, -0.5384693101056831, 0.5384693101056831, -0.9061798459386640, 0.9061798459386640}
	w := []float64{0.5688888888888889, 0.4786286704993665, 0.4786286704993665, 0.2369268850561891, 0.2369268850561891}
	h := 1 / float64(n)
	var s float64
	for i := 0; i < n; i++ {
		c := (float64(i) + 0.5) * h
		for k := range x {
			s += w[k] * f(c+x[k]*h/2) * h / 2
		}
	}
	return s
}

// §8 item 4: the discrete NELBO of a uniform model equals the continuous one for every T,
// analytically (the telescoping sum, to 1e−12) ...
func TestUniformModelDiscreteAnalytic(t *testing.T) {
	for name, s := range allSchedules(t) {
		for _, T := range []int{1, 2, 10, 1000} {
			var sum float64
			for i := 1; i <= T; i++ {
				// E over the bin: weight × E[K]/L = T·(α_s−α_t)/(1−α_t) × (1−α_t), times 1/T.
				ss, tt := float64(i-1)/float64(T), float64(i)/float64(T)
				sum += DiscreteWeight(s, ss, tt, T) * s.MaskProb(tt) / float64(T)
			}
			want := s.Alpha(0) - s.Alpha(1)
			if math.Abs(sum-want) > 1e-12 {
				t.Errorf("%s T=%d: Σ (α_s−α_t) = %.15g, want α_0−α_1 = %.15g", name, T, sum, want)
			}
		}
	}
}

// ... and by Monte Carlo.
func TestUniformModelDiscreteMC(t *testing.T) {
	s := mustSched(t, "linear", true)
	want := (1 - eps) * math.Log2(27)
	for _, T := range []int{1, 2, 10, 1000} {
		est := Estimator{Sched: s, L: 256, V: 27, T: T, Bound: BoundPaperCode}
		r := uniformModelRun(t, est, 16, 128, 200+uint64(T)).Result()
		t.Logf("T=%d: %.6f ± %.6f, want %.6f", T, r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want)
		within(t, "discrete paper-code bits/token", r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, want, 4)
		if T == 1 && r.PaperCode.StdErrBits > 1e-3 {
			// T = 1: weight (α_0−α_1)/(1−α_1) and K ~ Bin(L, 1−α_1): only binomial noise.
			t.Errorf("T=1 standard error %v too large", r.PaperCode.StdErrBits)
		}
	}
}

// §8 item 18: T·expm1(γ_t−γ_s)·α_s ≡ −T·(α_s−α_t)/(1−α_t).
func TestDiscreteWeightIdentity(t *testing.T) {
	for name, s := range allSchedules(t) {
		if s.Eps() == 0 && name != "geometric" && name != "geometric(0.01,5)" {
			continue // γ_0 = +∞ unshifted; the identity holds only as a limit there
		}
		for _, T := range []int{1, 2, 10, 1000} {
			for i := 1; i <= T; i++ {
				ss, tt := float64(i-1)/float64(T), float64(i)/float64(T)
				code := float64(T) * math.Expm1(LogSNR(s, tt)-LogSNR(s, ss)) * s.Alpha(ss)
				ours := DiscreteWeight(s, ss, tt, T)
				if relErr(-code, ours) > 1e-9 {
					t.Fatalf("%s T=%d i=%d: T·expm1(γ_t−γ_s)·α_s = %.15g, −DiscreteWeight = %.15g", name, T, i, code, -ours)
				}
			}
		}
	}
	// Snapped times reproduce the grid weight.
	est := Estimator{Sched: mustSched(t, "cosine", true), L: 8, V: 3, T: 10, Bound: BoundExact}
	for _, u := range []float64{0, 0.05, 0.1, 0.55, 1 - 0x1p-53} {
		ss, tt := SnapDiscrete(u, 10)
		if got, want := est.SeqWeight(tt), DiscreteWeight(est.Sched, ss, tt, 10); got != want {
			t.Errorf("SeqWeight(%v) = %v, want %v", tt, got, want)
		}
	}
}

// §8 item 14 and §2.3 step 6: recon εL·ln V = 0.08437 nats per sequence on text8
// (4.755e−4 bits/char); the App. E prior L·α_1·ln V is the same for shifted schedules.
func TestReconAndPrior(t *testing.T) {
	s := mustSched(t, "linear", true)
	r := ReconNats(s, 256, 27)
	checkRel(t, "recon", r, 256*eps*math.Log(27), 1e-12)
	if math.Abs(r-0.08437) > 5e-6 {
		t.Errorf("recon = %v, md4.md: 0.08437", r)
	}
	if b := BitsPerToken(r, 256); math.Abs(b-4.755e-4) > 5e-8 {
		t.Errorf("recon = %v bits/char, md4.md: 4.755e−4", b)
	}
	checkRel(t, "prior", PriorNats(s, 256, 27), 256*eps*math.Log(27), 1e-12)
	for _, n := range []string{"linear", "cosine", "poly3"} {
		u := mustSched(t, n, false)
		if ReconNats(u, 256, 27) != 0 || PriorNats(u, 256, 27) != 0 {
			t.Errorf("unshifted %s: recon %v, prior %v; want 0", n, ReconNats(u, 256, 27), PriorNats(u, 256, 27))
		}
	}
	est := Estimator{Sched: s, L: 256, V: 27, Bound: BoundPaperCode}
	checkRel(t, "ConstBits paper-code", est.ConstBits(), r/(256*math.Ln2), 1e-15)
	est.Bound = BoundExact
	checkRel(t, "ConstBits exact", est.ConstBits(), 2*r/(256*math.Ln2), 1e-15)
}

func TestRowWeights(t *testing.T) {
	s := mustSched(t, "linear", true)
	est := Estimator{Sched: s, L: 100, V: 10, Bound: BoundPaperCode}
	ts := []float64{0, 0.5, 1}
	w := make([]float64, 3)
	est.RowWeights(w, ts)
	for b, tt := range ts {
		want := -s.Weight(tt) / (100 * math.Ln2) / 3
		checkRel(t, "row weight", w[b], want, 1e-15)
	}
	// Pitfalls B08: nothing masked → diffusion term exactly 0, also at t = 0 unshifted.
	if d := est.Seq(0.5, 0).Diffusion; d != 0 {
		t.Errorf("diffusion with no masked token = %v", d)
	}
	un := Estimator{Sched: Linear(), L: 100, V: 10, Bound: BoundExact}
	if d := un.Seq(0, 0); d.Diffusion != 0 || d.Nats(BoundExact) != 0 {
		t.Errorf("unshifted, t = 0, nothing masked: %+v", d)
	}
	if c := un.SeqWeight(0); c != 0x1p53 {
		t.Errorf("unshifted SeqWeight(0) = %v, want −w(MinTime) = 2^53", c)
	}
	for _, bad := range []Estimator{{}, {Sched: s, L: 0, V: 1, Bound: BoundExact}, {Sched: s, L: 1, V: 0, Bound: BoundExact},
		{Sched: s, L: 1, V: 1, T: -1, Bound: BoundExact}, {Sched: s, L: 1, V: 1}} {
		if err := bad.Validate(); !errors.Is(err, ErrEstimator) {
			t.Errorf("Validate(%+v) = %v", bad, err)
		}
	}
}

func TestBoundNames(t *testing.T) {
	for _, b := range []Bound{BoundPaperCode, BoundExact} {
		got, err := ParseBound(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBound(%q) = %v, %v", b.String(), got, err)
		}
	}
	if _, err := ParseBound("tight"); err == nil {
		t.Error("ParseBound accepted an unknown name")
	}
}

// §8 item 13: bits/token = nats/(L ln 2); perplexity = 2^bits = e^nats.
func TestUnitConversions(t *testing.T) {
	for _, c := range []struct {
		ppl, nats, bits float64
	}{{22.13, 3.0969, 4.4679}, {16.64, 2.8118, math.NaN()}, {PerplexityFromBits(1.37), 0.9496, 1.37}} {
		if n := NatsFromPerplexity(c.ppl); math.Abs(n-c.nats) > 5e-5 {
			t.Errorf("ppl %v: %v nats, md4.md: %v", c.ppl, n, c.nats)
		}
		if !math.IsNaN(c.bits) {
			if b := BitsFromPerplexity(c.ppl); math.Abs(b-c.bits) > 5e-5 {
				t.Errorf("ppl %v: %v bits, md4.md: %v", c.ppl, b, c.bits)
			}
		}
	}
	for _, x := range []float64{0, 0.9496, 3.0969, 10} {
		checkRel(t, "bits→nats→bits", BitsFromNats(NatsFromBits(x)), x, 1e-15)
		checkRel(t, "e^nats = 2^bits", PerplexityFromNats(x), PerplexityFromBits(BitsFromNats(x)), 1e-14)
		checkRel(t, "ln ppl", NatsFromPerplexity(PerplexityFromNats(x)), x, 1e-14)
	}
	checkRel(t, "BitsPerToken", BitsPerToken(256*math.Ln2*1.37, 256), 1.37, 1e-15)
}
