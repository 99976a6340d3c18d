package sample

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
	"gonum.org/v1/gonum/stat/distuv"
)

// genPosteriorNet is an analytic denoiser: the exact posterior of GenMD4's forward process
// for i.i.d. tokens with marginal π, μ_i(t) = π_i·t^{w_i}/Σ_j π_j·t^{w_j}, the same at every
// masked position (logits log π_i + w_i·log t).
type genPosteriorNet struct {
	be       ops.Backend
	B, L, V  int
	pi, w    []float64
	z        *ops.Tensor
	logits   *ops.Tensor // [B·L, V] F64
	rowsT    *ops.Tensor
	hostLogs []float64
}

func newGenPosteriorNet(t testing.TB, B, L int, pi, w []float64) *genPosteriorNet {
	be := cpu.New()
	n := &genPosteriorNet{be: be, B: B, L: L, V: len(pi), pi: pi, w: w}
	var err error
	if n.z, err = be.Alloc(ops.I32, B, L); err != nil {
		t.Fatal(err)
	}
	if n.logits, err = be.Alloc(ops.F64, B*L, n.V); err != nil {
		t.Fatal(err)
	}
	if n.rowsT, err = be.Alloc(ops.I32, B*L); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *genPosteriorNet) backend() ops.Backend  { return n.be }
func (n *genPosteriorNet) dims() (int, int, int) { return n.B, n.L, n.V }
func (n *genPosteriorNet) state() *ops.Tensor    { return n.z }
func (n *genPosteriorNet) free()                 {}
func (n *genPosteriorNet) eval(ts []float64, rows []int32) (*ops.Tensor, *ops.Tensor, error) {
	n.hostLogs = n.hostLogs[:0]
	for _, r := range rows {
		t := math.Max(ts[int(r)/n.L], 1e-300)
		for i := range n.pi {
			n.hostLogs = append(n.hostLogs, math.Log(n.pi[i])+n.w[i]*math.Log(t))
		}
	}
	lg, err := n.be.View(n.logits, 0, len(rows))
	if err != nil {
		return nil, nil, err
	}
	rt, err := n.be.View(n.rowsT, 0, len(rows))
	if err != nil {
		return nil, nil, err
	}
	if err := n.be.Upload(lg, n.hostLogs); err != nil {
		return nil, nil, err
	}
	return lg, rt, n.be.Upload(rt, rows)
}

// chi2P returns the χ² statistic of observed counts against expected counts (cells with
// expectation below 5 are pooled) and its p-value.
func chi2P(obs []int, exp []float64) (x2 float64, df int, p float64) {
	var po, pe float64
	cells := 0
	for i := range obs {
		if exp[i] < 5 {
			po += float64(obs[i])
			pe += exp[i]
			continue
		}
		d := float64(obs[i]) - exp[i]
		x2 += d * d / exp[i]
		cells++
	}
	if pe > 0 {
		x2 += (po - pe) * (po - pe) / math.Max(pe, 1e-300)
		cells++
	}
	df = cells - 1
	return x2, df, distuv.ChiSquared{K: float64(df)}.Survival(x2)
}

// TestGenMD4SamplerUnmaskTimes validates GenMD4's reverse step (genmd4.go): with the exact
// posterior of i.i.d. tokens as the network, the sampled sequences reproduce the forward
// process. Over the grid steps (t_k, s_k], token i is revealed with probability
// π_i·(t_k^{w_i} − s_k^{w_i}), i.e. its unmask time has CDF t^{w_i} = (1 − α_{t,i})/(1 − ε), the
// learned schedule: a χ² test over the (token, step) cells, and the largest deviation of each
// token's empirical unmask-time CDF from t^{w_i} (a KS statistic on the grid) is logged.
func TestGenMD4SamplerUnmaskTimes(t *testing.T) {
	pi := []float64{0.1, 0.2, 0.3, 0.4}
	w := []float64{0.4, 1, 2.5, 6}
	const B, L, T, runs = 64, 32, 16, 6
	V := len(pi)
	counts := make([]int, V*T) // (token, step) of each reveal
	for run := 0; run < runs; run++ {
		net := newGenPosteriorNet(t, B, L, pi, w)
		s, err := newSampler(net, Config{Steps: T, Grid: diffusion.GridUniform, Seed: uint64(100 + run), GenMD4: true}, w)
		if err != nil {
			t.Fatal(err)
		}
		init := Repeat(maskRow(V, L), B)
		prev := append([]int32(nil), init...)
		cur := make([]int32, B*L)
		z, rep, err := s.Sample(init, func(step, total int) {
			if err := net.be.Download(cur, net.z); err != nil {
				t.Fatal(err)
			}
			for i, v := range cur {
				if prev[i] == int32(V) && v != int32(V) {
					counts[int(v)*T+step-1]++
				}
			}
			copy(prev, cur)
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Decoded != 0 {
			t.Errorf("run %d: %d positions left for the final decode; GenMD4's last step (s = 0) unmasks everything", run, rep.Decoded)
		}
		if run == 0 {
			t.Logf("report: %v", rep)
		}
		_ = z
	}
	n := float64(B * L * runs)
	exp := make([]float64, V*T)
	for i := range pi {
		for k := 0; k < T; k++ {
			tk, sk := diffusion.GridTimes(diffusion.GridUniform, k, T)
			exp[i*T+k] = n * pi[i] * (math.Pow(tk, w[i]) - math.Pow(sk, w[i]))
		}
	}
	x2, df, p := chi2P(counts, exp)
	t.Logf("reveal (token, step) χ² = %.1f, df = %d, p = %.3f over %d tokens", x2, df, p, int(n))
	if p < 1e-3 {
		t.Errorf("reveal times do not follow the schedules: χ² = %.1f, df = %d, p = %.2g", x2, df, p)
	}
	// Per-token KS statistic of the unmask time on the grid: the empirical P(τ ≤ s_k | i) vs s_k^{w_i}.
	for i := range pi {
		tot := 0
		for k := 0; k < T; k++ {
			tot += counts[i*T+k]
		}
		below, ks := 0, 0.0
		for k := T - 1; k >= 0; k-- { // τ ≤ s_k ⇔ revealed at step k' > k
			_, sk := diffusion.GridTimes(diffusion.GridUniform, k, T)
			ks = math.Max(ks, math.Abs(float64(below)/float64(tot)-math.Pow(sk, w[i])))
			below += counts[i*T+k]
		}
		crit := 1.63 / math.Sqrt(float64(tot)) // KS 1% critical value (conservative on a grid)
		t.Logf("token %d (w = %.1f): %d reveals (expected %.0f), KS distance of the unmask-time CDF from t^w: %.4f (1%% critical %.4f)",
			i, w[i], tot, n*pi[i], ks, crit)
		if ks > crit {
			t.Errorf("token %d: unmask-time CDF deviates from t^%v by %.4f > %.4f", i, w[i], ks, crit)
		}
	}
}

// peakedModel builds a small time-agnostic MD4 network (no time conditioning) with random
// weights scaled up so that its conditionals are peaked and depend on the context.
func peakedModel(t testing.TB, V, L int) *model.Model {
	t.Helper()
	m, err := model.New(cpu.New(), model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, MLPHidden: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(7); err != nil {
		t.Fatal(err)
	}
	for id, p := range m.Params {
		v, err := m.GetParam(p)
		if err != nil {
			t.Fatal(err)
		}
		scale := 1.0
		switch {
		case p.Name == "head.weight":
			scale = 1.5
		case strings.HasPrefix(p.Name, "token_embed"):
			scale = 1.0
		}
		for i := range v {
			v[i] += scale * rng.Normal64(21, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// tokenStats returns the counts of unigrams (V cells), bigrams of adjacent positions (V²
// cells) and position-token pairs (L·V cells) of seqs.
func tokenStats(seqs []int32, V, L int) (uni, bi, pos []int) {
	uni, bi, pos = make([]int, V), make([]int, V*V), make([]int, L*V)
	for s := 0; s+L <= len(seqs); s += L {
		for l := 0; l < L; l++ {
			x := seqs[s+l]
			uni[x]++
			pos[l*V+int(x)]++
			if l > 0 {
				bi[int(seqs[s+l-1])*V+int(x)]++
			}
		}
	}
	return
}

// twoSample returns the χ² homogeneity test of two count vectors (cells empty in both are
// dropped): statistic, degrees of freedom and p-value.
func twoSample(a, b []int) (x2 float64, df int, p float64) {
	var na, nb float64
	for i := range a {
		na += float64(a[i])
		nb += float64(b[i])
	}
	cells := 0
	for i := range a {
		tot := float64(a[i] + b[i])
		if tot == 0 {
			continue
		}
		ea, eb := tot*na/(na+nb), tot*nb/(na+nb)
		x2 += (float64(a[i])-ea)*(float64(a[i])-ea)/ea + (float64(b[i])-eb)*(float64(b[i])-eb)/eb
		cells++
	}
	df = cells - 1
	return x2, df, distuv.ChiSquared{K: float64(df)}.Survival(x2)
}

// TestFirstHittingMatchesAncestral: on a small random-but-peaked time-agnostic model, the
// first-hitting sampler and the ancestral sampler (T = 400, uniform grid: two positions
// unmask in the same step in ~4% of the sequences, too rare to show) give the same
// distribution of sequences (two-sample χ² tests on unigram, bigram and position-token
// counts over 2400 samples each), while first-hitting makes at most L (+1 final decode)
// network calls per batch against the ancestral sampler's ~T. As a check of the test's power,
// the one-step ancestral sampler (every token drawn independently given the all-mask state)
// is rejected.
func TestFirstHittingMatchesAncestral(t *testing.T) {
	const V, L, N, T = 5, 6, 2400, 400
	m := peakedModel(t, V, L)
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	run := func(sampler string, T int, seed uint64) ([]int32, Report) {
		z, rep, err := Generate(m, Config{Steps: T, Grid: diffusion.GridUniform, Seed: seed, Sched: sched},
			GenerateConfig{Sampler: sampler, N: N, Batch: N / 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%v", rep)
		return z, rep
	}
	fh, fhRep := run(NameFirstHitting, 0, 1)
	an, anRep := run(NameAncestral, T, 2)
	if fhRep.NFE > 2*(L+1) {
		t.Errorf("first-hitting made %d network calls for 2 batches, want ≤ 2·(L+1) = %d", fhRep.NFE, 2*(L+1))
	}
	ua, ba, pa := tokenStats(fh, V, L)
	ub, bb, pb := tokenStats(an, V, L)
	for _, c := range []struct {
		name string
		a, b []int
	}{{"unigram", ua, ub}, {"bigram", ba, bb}, {"position-token", pa, pb}} {
		x2, df, p := twoSample(c.a, c.b)
		t.Logf("first-hitting vs ancestral, %s: χ² = %.1f, df = %d, p = %.3f", c.name, x2, df, p)
		if p < 1e-3 {
			t.Errorf("%s statistics differ: χ² = %.1f, df = %d, p = %.2g", c.name, x2, df, p)
		}
	}
	t.Logf("NFE: first-hitting %d (%v), ancestral %d (%v); entropy %.4f vs %.4f bits",
		fhRep.NFE, fhRep.Duration.Round(time.Millisecond), anRep.NFE, anRep.Duration.Round(time.Millisecond), fhRep.Entropy, anRep.Entropy)
	one, _ := run(NameAncestral, 1, 3)
	_, b1, _ := tokenStats(one, V, L)
	x2, df, p := twoSample(ba, b1)
	t.Logf("power check, first-hitting vs one-step ancestral bigrams: χ² = %.1f, df = %d, p = %.2g", x2, df, p)
	if p > 1e-3 {
		t.Errorf("the test cannot tell first-hitting from the one-step sampler (p = %.3f): the model is not contextual enough", p)
	}
}

// TestTemplatesAndBadInput: prefix/suffix and infill templates keep their fixed tokens with
// both samplers (and for GenMD4); bad input gives clear errors.
func TestTemplatesAndBadInput(t *testing.T) {
	tok, err := data.NewCharFromRunes([]rune("abcde "))
	if err != nil {
		t.Fatal(err)
	}
	V, L := tok.VocabSize(), 12
	m := peakedModel(t, V, L)
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	cfg := Config{Steps: 50, Grid: diffusion.GridCosine, Seed: 3, Sched: sched}

	ps, err := PrefixSuffixTemplate(tok, "abc", "de", L)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := InfillTemplate(tok, "a_c d_", "_", L)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Decode(inf); got != "a_c d_______" {
		t.Fatalf("infill template decodes to %q", got)
	}
	for _, sampler := range []string{NameAncestral, NameFirstHitting} {
		for _, tmpl := range [][]int32{ps, inf} {
			z, rep, err := Generate(m, cfg, GenerateConfig{Sampler: sampler, N: 5, Batch: 2, Template: tmpl})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range z {
				if tmpl[i%L] != int32(V) && v != tmpl[i%L] {
					t.Fatalf("%s: fixed token %d at position %d became %d", sampler, tmpl[i%L], i%L, v)
				}
				if v == int32(V) {
					t.Fatalf("%s: mask left at %d", sampler, i)
				}
			}
			if !strings.Contains(rep.String(), "sampler="+sampler) || !strings.Contains(rep.String(), "entropy=") || rep.NFE == 0 {
				t.Errorf("report %q", rep)
			}
			if sampler == NameFirstHitting && rep.NFE > 3*(L+1) {
				t.Errorf("first-hitting NFE %d > 3·(L+1)", rep.NFE)
			}
		}
	}
	// jax-compat is labelled in the report.
	_, rep, err := Generate(m, Config{Steps: 20, Grid: diffusion.GridCosine, Seed: 3, Sched: sched, Mode: ops.SampleJAXCompat},
		GenerateConfig{N: 2, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Biased() || !strings.Contains(rep.String(), "JAX-COMPAT") {
		t.Errorf("jax-compat report %q is not labelled", rep)
	}

	bad := []struct {
		name string
		err  func() error
		want string
	}{
		{"top-p > 1", func() error {
			_, err := New(m, Config{Steps: 5, Grid: diffusion.GridCosine, TopP: 1.5, Sched: sched}, 1)
			return err
		}, "top-p 1.5"},
		{"top-p < 0", func() error {
			_, err := NewFirstHitting(m, Config{TopP: -0.1, Sched: sched}, 1)
			return err
		}, "top-p -0.1"},
		{"unknown sampler", func() error {
			_, _, err := Generate(m, cfg, GenerateConfig{Sampler: "euler", N: 1, Batch: 1})
			return err
		}, `unknown sampler "euler"`},
		{"GenMD4 option on an MD4 model", func() error {
			_, err := New(m, Config{Steps: 5, Grid: diffusion.GridCosine, GenMD4: true}, 1)
			return err
		}, "this is an MD4 model"},
		{"template too long", func() error { _, err := PrefixSuffixTemplate(tok, "abcdeabcde", "abc", L); return err }, "13 tokens"},
		{"infill too long", func() error { _, err := InfillTemplate(tok, "abcde_abcde_a", "_", L); return err }, "longer than the model's context L = 12"},
		{"unknown character", func() error { _, err := PrefixSuffixTemplate(tok, "abz", "", L); return err }, "character 'z'"},
		{"jax-compat first-hitting", func() error {
			_, err := NewFirstHitting(m, Config{Sched: sched, Mode: ops.SampleJAXCompat}, 1)
			return err
		}, "ancestral sampler only"},
		{"wrong template length", func() error {
			_, _, err := Generate(m, cfg, GenerateConfig{N: 1, Batch: 1, Template: ps[:5]})
			return err
		}, "L = 12"},
	}
	gm, err := model.New(cpu.New(), model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, TimeCond: true, CondDim: 8, GenMD4: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := gm.Init(1); err != nil {
		t.Fatal(err)
	}
	bad = append(bad, []struct {
		name string
		err  func() error
		want string
	}{
		{"MD4 options on a GenMD4 model", func() error { _, err := New(gm, cfg, 1); return err }, "this is a GenMD4 model"},
		{"MD4 schedule with GenMD4", func() error {
			c := cfg
			c.GenMD4 = true
			_, err := New(gm, c, 1)
			return err
		}, "does not apply"},
		{"first-hitting on GenMD4", func() error { _, err := NewFirstHitting(gm, Config{GenMD4: true}, 1); return err }, "use the ancestral sampler for GenMD4"},
		{"jax-compat GenMD4", func() error {
			_, err := New(gm, Config{Steps: 5, Grid: diffusion.GridCosine, GenMD4: true, Mode: ops.SampleJAXCompat}, 1)
			return err
		}, "no GenMD4 sampler"},
	}...)
	for _, c := range bad {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// A GenMD4 model samples with its own schedule and keeps fixed tokens.
	z, rep, err := Generate(gm, Config{Steps: 30, Grid: diffusion.GridCosine, Seed: 4, GenMD4: true}, GenerateConfig{N: 3, Batch: 3, Template: inf})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range z {
		if v == int32(V) || (inf[i%L] != int32(V) && v != inf[i%L]) {
			t.Fatalf("GenMD4 sample %v does not keep the template %v", z, inf)
		}
	}
	t.Logf("GenMD4: %v", rep)
}
