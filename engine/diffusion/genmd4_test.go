package diffusion

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

func TestSoftplusInit(t *testing.T) {
	if math.Abs(GenRawInit-0.5413248546129181) > 1e-15 {
		t.Errorf("GenRawInit = %.17g, want log(e−1) ≈ 0.5413", GenRawInit)
	}
	checkRel(t, "softplus(log(e−1))", Softplus(GenRawInit), 1, 1e-15)
	for _, x := range []float64{-800, -30, -1, 0, 1, 30, 800} {
		want := math.Log1p(math.Exp(x))
		if x > 30 {
			want = x
		}
		checkRel(t, "softplus", Softplus(x), want, 1e-15)
		h := 1e-6
		if math.Abs(x) < 50 {
			fd := (Softplus(x+h) - Softplus(x-h)) / (2 * h)
			if math.Abs(fd-Sigmoid(x)) > 1e-8 {
				t.Errorf("sigmoid(%v) = %v, d softplus = %v", x, Sigmoid(x), fd)
			}
		}
	}
	raw := []float64{GenRawInit, -3, 2}
	w := make([]float64, 3)
	GenPowers(w, raw)
	g := []float64{1, 2, 3}
	GenRawGrad(g, g, raw)
	checkRel(t, "raw grad", g[1], 2*Sigmoid(-3), 1e-15)
}

func TestGenScheduleBasics(t *testing.T) {
	for _, w := range []float64{0.2, 1, 3} {
		if GenAlpha(0, w, eps) != 1 {
			t.Errorf("α_0 = %v, want 1 exactly", GenAlpha(0, w, eps))
		}
		if a := GenAlpha(1, w, eps); math.Abs(a-eps) > 1e-15 {
			t.Errorf("α_1 = %v, want ε", a)
		}
		for _, tt := range []float64{0.01, 0.3, 0.7, 0.99} {
			h := 1e-6
			fd := (GenAlpha(tt+h, w, eps) - GenAlpha(tt-h, w, eps)) / (2 * h)
			if math.Abs(fd-GenDAlpha(tt, w, eps)) > 1e-7*math.Max(1, math.Abs(fd)) {
				t.Errorf("GenMD4 α'(%v; w=%v) = %v, finite difference %v", tt, w, GenDAlpha(tt, w, eps), fd)
			}
		}
	}
	// The [B, V] table.
	ts := []float64{0.25, 1}
	pw := []float64{1, 2, 0.5}
	tab := make([]float64, 6)
	GenMaskProbTable(tab, ts, pw, eps)
	for b := range ts {
		for i := range pw {
			if tab[b*3+i] != (1-eps)*math.Pow(ts[b], pw[i]) {
				t.Errorf("table[%d,%d] = %v", b, i, tab[b*3+i])
			}
		}
	}
}

// §8 item 5: recon at w = 1 is (1−ε)·t1·L·ln V = 0.8436 nats per sequence on text8.
func TestGenReconAtInit(t *testing.T) {
	const L, V = 256, 27
	pw := make([]float64, V)
	for i := range pw {
		pw[i] = 1
	}
	x0 := make([]int32, L)
	randTokens(x0, V, 8)
	r, err := GenRecon(x0, pw, eps, GenDefaultT1, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRel(t, "recon at init", r, (1-eps)*GenDefaultT1*L*math.Log(V), 1e-12)
	if math.Abs(r-0.8436) > 5e-5 {
		t.Errorf("recon = %v, md4.md: 0.8436", r)
	}
	x0[3] = V
	if _, err := GenRecon(x0, pw, eps, GenDefaultT1, nil); !errors.Is(err, ops.ErrValue) {
		t.Errorf("token V accepted: %v", err)
	}
}

// The gradients of recon, log q and the position term, by central differences.
func TestGenGradientsFD(t *testing.T) {
	const V, L = 7, 40
	pw := make([]float64, V)
	for i := range pw {
		pw[i] = 0.3 + 0.4*float64(i)
	}
	x0 := make([]int32, L)
	randTokens(x0, V, 9)
	z := append([]int32(nil), x0...)
	for n := range z {
		if n%3 != 1 {
			z[n] = V
		}
	}
	mu := make([]float64, V)
	var sum float64
	for j := range mu {
		mu[j] = 1 + float64(j*j%5)
		sum += mu[j]
	}
	for j := range mu {
		mu[j] /= sum
	}
	fns := map[string]func(pw, grad []float64) float64{
		"recon": func(pw, grad []float64) float64 {
			v, err := GenRecon(x0, pw, eps, GenDefaultT1, grad)
			if err != nil {
				t.Fatal(err)
			}
			return v
		},
		"logq": func(pw, grad []float64) float64 {
			v, err := GenLogQ(z, x0, V, pw, 0.37, eps, grad)
			if err != nil {
				t.Fatal(err)
			}
			return v
		},
		"position": func(pw, grad []float64) float64 { return GenPositionTerm(mu, 4, pw, 0.37, grad) },
	}
	for name, f := range fns {
		grad := make([]float64, V)
		f(pw, grad)
		for k := 0; k < V; k++ {
			h := 1e-6
			p := append([]float64(nil), pw...)
			p[k] += h
			up := f(p, nil)
			p[k] -= 2 * h
			dn := f(p, nil)
			fd := (up - dn) / (2 * h)
			if math.Abs(fd-grad[k]) > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Errorf("%s: ∂/∂w_%d = %.10g, finite difference %.10g", name, k, grad[k], fd)
			}
		}
	}
}

// q(z|x0) is a distribution: Σ_z exp(log q) = 1 over all mask patterns of a short sequence.
func TestGenLogQNormalised(t *testing.T) {
	const V = 4
	pw := []float64{0.5, 1, 2, 3}
	x0 := []int32{0, 3, 1, 2, 3}
	for _, tt := range []float64{GenDefaultT1, 0.5, 1} {
		var total float64
		for m := 0; m < 1<<len(x0); m++ {
			z := append([]int32(nil), x0...)
			for n := range z {
				if m>>n&1 == 1 {
					z[n] = V
				}
			}
			lq, err := GenLogQ(z, x0, V, pw, tt, eps, nil)
			if err != nil {
				t.Fatal(err)
			}
			total += math.Exp(lq)
		}
		if math.Abs(total-1) > 1e-13 {
			t.Errorf("t=%v: Σ_z q(z|x0) = %.17g", tt, total)
		}
	}
	z := append([]int32(nil), x0...)
	z[0] = 2
	if _, err := GenLogQ(z, x0, V, pw, 0.5, eps, nil); !errors.Is(err, ops.ErrValue) {
		t.Errorf("impossible z accepted: %v", err)
	}
}

// RLOO with two samples is an unbiased gradient of E_q[f(z)]: enumerate every pair of
// masks of a two-token sequence and compare with the exact gradient.
func TestRLOOUnbiased(t *testing.T) {
	const V = 3
	pw := []float64{0.7, 1.3, 2}
	x0 := []int32{1, 2}
	tt := 0.4
	f := func(z []int32) float64 { // any loss of the mask pattern
		return 3*float64(btoi(z[0] == V)) + 5*float64(btoi(z[1] == V)) + 7*float64(btoi(z[0] == V && z[1] == V))
	}
	pats := [][]int32{}
	for m := 0; m < 4; m++ {
		z := append([]int32(nil), x0...)
		for n := range z {
			if m>>n&1 == 1 {
				z[n] = V
			}
		}
		pats = append(pats, z)
	}
	q := func(pw []float64, z []int32, grad []float64) float64 {
		lq, err := GenLogQ(z, x0, V, pw, tt, eps, grad)
		if err != nil {
			t.Fatal(err)
		}
		return lq
	}
	expect := func(pw []float64) float64 {
		var e float64
		for _, z := range pats {
			e += math.Exp(q(pw, z, nil)) * f(z)
		}
		return e
	}
	est := make([]float64, V)
	for _, z1 := range pats {
		for _, z2 := range pats {
			g1, g2 := make([]float64, V), make([]float64, V)
			p := math.Exp(q(pw, z1, g1) + q(pw, z2, g2))
			c1, c2 := RLOOCoefs(f(z1), f(z2))
			for k := range est {
				est[k] += p * (c1*g1[k] + c2*g2[k])
			}
			// RLOO's value has the same pieces.
			lq1, lq2 := q(pw, z1, nil), q(pw, z2, nil)
			checkRel(t, "RLOO value", RLOO(f(z1), f(z2), lq1, lq2)+0, 0.5*(f(z1)-f(z2))*(lq1-lq2), 1e-15)
		}
	}
	for k := range est {
		h := 1e-6
		a := append([]float64(nil), pw...)
		a[k] += h
		up := expect(a)
		a[k] -= 2 * h
		fd := (up - expect(a)) / (2 * h)
		if math.Abs(fd-est[k]) > 1e-7*math.Max(1, math.Abs(fd)) {
			t.Errorf("∂E[f]/∂w_%d: RLOO expectation %.10g, exact %.10g", k, est[k], fd)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// With all powers equal to c the GenMD4 integrand is (c/t)·CE: MD4 with poly-c; at w = 1
// and uniform μ it is ln V/t.
func TestGenPositionTermReducesToMD4(t *testing.T) {
	const V = 6
	mu := []float64{0.1, 0.3, 0.05, 0.25, 0.2, 0.1}
	for _, c := range []float64{0.5, 1, 3} {
		pw := []float64{c, c, c, c, c, c}
		for x := int32(0); x < V; x++ {
			for _, tt := range []float64{0.01, 0.5, 1} {
				checkRel(t, "constant w", GenPositionTerm(mu, x, pw, tt, nil), -c/tt*math.Log(mu[x]), 1e-13)
			}
		}
	}
	uni := []float64{1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6}
	checkRel(t, "uniform μ", GenPositionTerm(uni, 2, []float64{1, 1, 1, 1, 1, 1}, 0.2, nil), math.Log(6)/0.2, 1e-14)
	// Every component of the bracket is ≤ 0, so the term is ≥ 0 for any w > 0.
	if v := GenPositionTerm(mu, 2, []float64{0.1, 5, 0.3, 2, 1, 0.7}, 0.3, nil); v < 0 {
		t.Errorf("negative integrand %v", v)
	}
}

// §8 item 5: GenMD4 at initialisation (w = 1, uniform μ) on text8 (L = 256, V = 27): the
// code's loss_nelbo ≈ (1−ε)(1+t1)·log2 V = 4.7592 bits/char; the exact bound without the
// prior is (1−ε)·log2 V, and log2 V with it.
func TestGenMD4AtInit(t *testing.T) {
	const L, V, B, steps = 256, 27, 128, 32
	lnV := math.Log(V)
	pw := make([]float64, V)
	for i := range pw {
		pw[i] = Softplus(GenRawInit)
	}
	wantCode := (1 - eps) * (1 + GenDefaultT1) * math.Log2(V)
	if math.Abs(wantCode-4.7592) > 5e-5 {
		t.Fatalf("(1−ε)(1+t1)log2 V = %v, md4.md: 4.7592", wantCode)
	}
	// Analytically: E[diffusion | t] = Σ_n (1−ε)t^1·ln V/t = (1−ε)L ln V for every t.
	uni := make([]float64, V)
	for i := range uni {
		uni[i] = 1.0 / V
	}
	for _, tt := range []float64{GenDefaultT1, 0.5, 1} {
		e := float64(L) * GenMaskProb(tt, 1, eps) * GenPositionTerm(uni, 0, pw, tt, nil)
		checkRel(t, "E[diffusion|t]", e, (1-eps)*L*lnV, 1e-12)
	}
	// Monte Carlo through the real pipeline.
	x0 := make([]int32, B*L)
	randTokens(x0, V, 12)
	xt := make([]int32, B*L)
	ts := make([]float64, B)
	tab := make([]float64, B*V)
	var acc Accumulator
	for step := uint64(0); step < steps; step++ {
		GenTimes(ts, GenDefaultT1, 21, step, true)
		GenMaskProbTable(tab, ts, pw, eps)
		if err := MaskRef(xt, x0, B, L, nil, tab, V, 21, step, rng.PurposeMask); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < B; b++ {
			var diff float64
			for l := 0; l < L; l++ {
				if xt[b*L+l] == V {
					diff += GenPositionTerm(uni, x0[b*L+l], pw, ts[b], nil)
				}
			}
			recon, err := GenRecon(x0[b*L:(b+1)*L], pw, eps, GenDefaultT1, nil)
			if err != nil {
				t.Fatal(err)
			}
			acc.Add(GenSeq(diff, recon, L, V, eps, GenDefaultT1))
		}
	}
	r := acc.Result()
	t.Logf("paper-code %.5f ± %.5f (want %.5f); exact %.5f (want %.5f)", r.PaperCode.BitsPerToken,
		r.PaperCode.StdErrBits, wantCode, r.Exact.BitsPerToken, math.Log2(V))
	within(t, "GenMD4 paper-code bits/char", r.PaperCode.BitsPerToken, r.PaperCode.StdErrBits, wantCode, 4)
	within(t, "GenMD4 exact bits/char", r.Exact.BitsPerToken, r.Exact.StdErrBits, math.Log2(V), 4)
	// The recon term is deterministic: (1−ε)t1·ln V per token.
	checkRel(t, "recon per token", r.ReconNats, (1-eps)*GenDefaultT1*lnV, 1e-12)
	checkRel(t, "prior per token", r.PriorNats, eps*lnV, 1e-12)
	// Exact without the prior: (1−t1)·E[diffusion] + recon → (1−ε)·ln V per token in
	// expectation; the two diffusion terms differ by exactly (1−t1).
	checkRel(t, "(1−t1) factor", r.DiffusionExactNats/r.DiffusionNats, 1-GenDefaultT1, 1e-12)
	noPrior := BitsFromNats(r.DiffusionExactNats + r.ReconNats)
	within(t, "GenMD4 exact bound without prior", noPrior, r.Exact.StdErrBits, (1-eps)*math.Log2(V), 4)
	if GenDiffusionScale(BoundPaperCode, GenDefaultT1) != 1 || GenDiffusionScale(BoundExact, GenDefaultT1) != 1-GenDefaultT1 {
		t.Error("GenDiffusionScale")
	}
	checkRel(t, "GenPriorNats", GenPriorNats(L, V, eps), L*eps*lnV, 1e-15)
}
