package train

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

func genModel(t testing.TB, be ops.Backend, cfg model.Config) *model.Model {
	t.Helper()
	m, err := model.New(be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(3); err != nil {
		t.Fatal(err)
	}
	return m
}

func genOpt(t testing.TB, m *model.Model) *Optimizer {
	t.Helper()
	o, err := NewOptimizer(m, OptimConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.03, TotalSteps: 100, EMADecay: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func randTokens(n, V int, seed uint64) []int32 {
	x := make([]int32, n)
	for i := range x {
		x[i] = int32(rng.Uniform64(seed, 0, rng.PurposeData, uint64(i)) * float64(V))
	}
	return x
}

// setRawPowers sets schedule.w_raw so that softplus(w_raw) = powers.
func setRawPowers(t testing.TB, m *model.Model, powers []float64) {
	t.Helper()
	raw := make([]float64, len(powers))
	for i, w := range powers {
		raw[i] = math.Log(math.Expm1(w))
	}
	if err := m.SetParam(m.GenSchedule(), raw); err != nil {
		t.Fatal(err)
	}
}

// TestGenMD4InitNELBO checks md4.md §8 item 5. At initialisation (w = 1, zero head so μ is
// uniform) every masked position contributes exactly ln V/t, so each sequence's diffusion
// estimate is K·ln V/t for its K masked positions (checked exactly), the reconstruction term is
// (1−ε)·t1·L·ln V and the prior ε·L·ln V. In expectation (E[K | t] = L(1−ε)t) the paper-code
// NELBO is (1−ε)(1+t1)·log2 V = 4.7592 bits/char for V = 27 and the exact bound log2 V exactly;
// the batch means over many steps agree within 4 standard errors.
func TestGenMD4InitNELBO(t *testing.T) {
	const V, L, B, steps = 27, 32, 64, 100
	cfg := model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, TimeCond: true, CondDim: 8, GenMD4: true}
	m := genModel(t, cpu.New(), cfg)
	tr, err := NewGenTrainer(m, genOpt(t, m), GenConfig{Batch: B, Seed: 11, Antithetic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Free()
	eps, t1, lnV := diffusion.DefaultEps, diffusion.GenDefaultT1, math.Log(V)
	var paper, exact []float64
	for s := 0; s < steps; s++ {
		x0 := randTokens(B*L, V, uint64(s))
		st, err := tr.Gradients(x0, nil, uint64(s))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(st.PowerMin-1) > 1e-6 || math.Abs(st.PowerMax-1) > 1e-6 {
			t.Fatalf("initial powers in [%v, %v], want 1", st.PowerMin, st.PowerMax)
		}
		genTimes(tr.ts, tr.Cfg.T1, tr.Cfg.Seed, uint64(s), rng.PurposeTime, true)
		for k := 0; k < 2; k++ {
			for b := 0; b < B; b++ {
				K := diffusion.CountMasked(tr.zs[k][b*L:(b+1)*L], V)
				want := float64(K) * lnV / tr.ts[b]
				if got := st.SeqDiff[k][b]; math.Abs(got-want) > 1e-9*math.Max(1, want) {
					t.Fatalf("step %d sample %d seq %d: diffusion %v nats, want K·ln V/t = %d·%v/%v = %v", s, k, b, got, K, lnV, tr.ts[b], want)
				}
			}
		}
		// (w_raw is stored in float32, so softplus(w_raw) = 1 only to ~1e-8.)
		if want := (1 - eps) * t1 * lnV / math.Ln2; math.Abs(st.ReconBits-want) > 1e-7*want {
			t.Fatalf("recon %v bits/token, want (1−ε)·t1·log2 V = %v", st.ReconBits, want)
		}
		if want := eps * lnV / math.Ln2; math.Abs(st.PriorBits-want) > 1e-12 {
			t.Fatalf("prior %v bits/token, want ε·log2 V = %v", st.PriorBits, want)
		}
		paper = append(paper, st.PaperBits)
		exact = append(exact, st.ExactBits)
	}
	for _, c := range []struct {
		name string
		v    []float64
		want float64
	}{{"paper-code", paper, (1 - eps) * (1 + t1) * math.Log2(V)}, {"exact", exact, math.Log2(V)}} {
		mean, se := meanSE(c.v)
		t.Logf("GenMD4 at init, %s NELBO: %.4f ± %.4f bits/char over %d×%d sequences (expected %.4f)", c.name, mean, se, steps, B, c.want)
		if math.Abs(mean-c.want) > 4*se {
			t.Errorf("%s NELBO at init %.4f ± %.4f, want %.4f", c.name, mean, se, c.want)
		}
	}
}

func meanSE(v []float64) (mean, se float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1) / float64(len(v)))
}

// perturb adds small noise to every network parameter (not the schedule) so that μ is not
// uniform and no gradient is trivially zero.
func perturb(t testing.TB, m *model.Model, seed uint64) {
	t.Helper()
	for id, p := range m.Params {
		if p.Name == "schedule.w_raw" {
			continue
		}
		v, err := m.GetParam(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] += 0.3 * rng.Normal64(seed, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGenMD4EqualPowersIsPolyK: with every w_i = k, GenMD4 is MD4 with the (unshifted) poly-k
// schedule, whose weight is −w(t) = k/t, masked with probability (1−ε)t^k. On the same model,
// times and masks (both samples), the GenMD4 trainer's two passes give the θ-gradient of MD4's
// fused masked CE with weight k/t, the same per-sequence losses, and Σ_j ∂/∂w_j (pathwise) =
// ∂/∂k of the MD4 loss = loss/k.
func TestGenMD4EqualPowersIsPolyK(t *testing.T) {
	const V, L, B, k = 11, 12, 6, 2.5
	be := cpu.New()
	cfg := model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, TimeCond: true, CondDim: 8, GenMD4: true, DType: ops.F64}
	m := genModel(t, be, cfg)
	perturb(t, m, 4)
	powers := make([]float64, V)
	for i := range powers {
		powers[i] = k
	}
	setRawPowers(t, m, powers)
	tr, err := NewGenTrainer(m, genOpt(t, m), GenConfig{Batch: B, MicroBatch: 3, Seed: 5, Antithetic: true, NoRLOO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Free()
	x0 := randTokens(B*L, V, 9)
	st, err := tr.Gradients(x0, nil, 7)
	if err != nil {
		t.Fatal(err)
	}
	genGrads := map[string][]float64{}
	for _, p := range m.Params {
		if genGrads[p.Name], err = m.GetGrad(p); err != nil {
			t.Fatal(err)
		}
	}

	// The MD4 path: the poly-k schedule's weight, the same times and mask probabilities.
	poly, err := diffusion.ParseSchedule("poly2.5", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]float64, B)
	genTimes(ts, diffusion.GenDefaultT1, 5, 7, rng.PurposeTime, true)
	probs, weights := make([]float64, B), make([]float64, B)
	norm := 1 / (float64(L) * math.Ln2 * B)
	for b, tb := range ts {
		probs[b] = (1 - diffusion.DefaultEps) * math.Pow(tb, k)
		weights[b] = 0.5 * norm * diffusion.ContinuousWeight(poly, tb) // ½: the mean of the two samples
		if w := diffusion.ContinuousWeight(poly, tb); math.Abs(w-k/tb) > 1e-12*w {
			t.Fatalf("poly-k weight %v, want k/t = %v", w, k/tb)
		}
	}
	r, err := newRunner(m, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer r.free()
	if err := m.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	var md4Loss [2][]float64
	for s, purpose := range []rng.Purpose{rng.PurposeMask, rng.PurposeMask2} {
		md4Loss[s] = make([]float64, B)
		n, err := r.run(&pass{x0: x0, ts: ts, probs: probs, weights: weights, seed: 5, step: 7, purpose: purpose, grad: true}, md4Loss[s])
		if err != nil {
			t.Fatal(err)
		}
		if n != st.Masked[s] {
			t.Fatalf("sample %d: MD4 path masked %d positions, GenMD4 %d: the masks differ", s, n, st.Masked[s])
		}
	}
	for s := range md4Loss {
		for b := range md4Loss[s] {
			got := st.SeqDiff[s][b]
			want := md4Loss[s][b] / (0.5 * norm)
			if math.Abs(got-want) > 1e-10*math.Max(1, want) {
				t.Errorf("sample %d seq %d: GenMD4 diffusion %v nats, MD4 poly-k %v", s, b, got, want)
			}
		}
	}
	for _, p := range m.Params {
		if p.Name == "schedule.w_raw" {
			continue
		}
		want, err := m.GetGrad(p)
		if err != nil {
			t.Fatal(err)
		}
		got := genGrads[p.Name]
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-10*(1+math.Abs(want[i])) {
				t.Fatalf("%s[%d]: GenMD4 gradient %v, MD4 poly-k %v", p.Name, i, got[i], want[i])
			}
		}
	}
	// Σ_j ∂/∂w_j (pathwise + reconstruction) = d/dk of the same objective.
	var sum float64
	for _, g := range st.GradW {
		sum += g
	}
	want := st.DiffBits / k
	gr := make([]float64, V)
	for b := 0; b < B; b++ {
		if _, err := diffusion.GenRecon(x0[b*L:(b+1)*L], powers, diffusion.DefaultEps, diffusion.GenDefaultT1, gr); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range gr {
		want += norm * g
	}
	if math.Abs(sum-want) > 1e-10*math.Abs(want) {
		t.Errorf("Σ_j ∂L/∂w_j = %.15g, want ∂L/∂k = %.15g", sum, want)
	}
}

// fixedMu makes the network's output independent of its input: the final adaLN gets scale
// −1 (so LN(h)·(1+scale) = 0) and shift s, and the logits are head·s, the same at every
// position, time and state. It returns μ = softmax(head·s).
func fixedMu(t testing.TB, m *model.Model, seed uint64) []float64 {
	t.Helper()
	D, V := m.Cfg.Dim, m.Cfg.Vocab
	fb := m.Param("final.adaln.bias")
	fw := m.Param("final.adaln.weight")
	bias := make([]float64, 2*D)
	for i := 0; i < D; i++ {
		bias[i] = rng.Normal64(seed, 1, rng.PurposeInit, uint64(i)) // shift
		bias[D+i] = -1                                              // scale
	}
	if err := m.SetParam(fb, bias); err != nil {
		t.Fatal(err)
	}
	if err := m.SetParam(fw, make([]float64, fw.Numel())); err != nil {
		t.Fatal(err)
	}
	head := make([]float64, V*D)
	for i := range head {
		head[i] = 0.8 * rng.Normal64(seed, 2, rng.PurposeInit, uint64(i))
	}
	if err := m.SetParam(m.Param("head.weight"), head); err != nil {
		t.Fatal(err)
	}
	logits := make([]float64, V)
	for v := 0; v < V; v++ {
		for i := 0; i < D; i++ {
			logits[v] += head[v*D+i] * bias[i]
		}
	}
	return softmax(logits)
}

func softmax(l []float64) []float64 {
	mx := math.Inf(-1)
	for _, x := range l {
		mx = math.Max(mx, x)
	}
	out := make([]float64, len(l))
	var s float64
	for i, x := range l {
		out[i] = math.Exp(x - mx)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// exactGenObjective is the expectation of GenMD4's paper-code surrogate for the sequences
// x0s (length L each, batch-mean in bits per token) with a fixed μ: for each sequence,
// (1/(1−t1))∫_{t1}^1 Σ_z q_w(z|x0,t)·d(z,t) dt + recon, where the sum enumerates all 2^L masks
// z and d(z,t) = Σ_{n masked} (1/t)(Σ_j w_j μ_j − w_{x_n}(1 + log μ_{x_n})). The t-integral uses
// 64-point Gauss–Legendre in s = ln t (the integrand is then smooth: t^w terms).
func exactGenObjective(x0s [][]int32, mu, w []float64, eps, t1 float64) float64 {
	nodes, weights := gaussLegendre(64)
	a, b := math.Log(t1), 0.0
	var wmu float64
	for j := range w {
		wmu += w[j] * mu[j]
	}
	var total float64
	for _, x0 := range x0s {
		L := len(x0)
		var integral float64
		for q, xi := range nodes {
			s := 0.5*(b-a)*xi + 0.5*(b+a)
			tt := math.Exp(s)
			var ez float64
			for mask := 0; mask < 1<<L; mask++ {
				p, d := 1.0, 0.0
				for n, x := range x0 {
					pm := (1 - eps) * math.Pow(tt, w[x])
					if mask>>n&1 == 1 {
						p *= pm
						d += (wmu - w[x]*(1+math.Log(mu[x]))) / tt
					} else {
						p *= 1 - pm
					}
				}
				ez += p * d
			}
			integral += weights[q] * 0.5 * (b - a) * tt * ez // dt = t ds
		}
		recon, _ := diffusion.GenRecon(x0, w, eps, t1, nil)
		total += (integral/(1-t1) + recon) / (float64(L) * math.Ln2 * float64(len(x0s)))
	}
	return total
}

// gaussLegendre returns the n nodes and weights on [−1, 1] (Newton iteration on P_n).
func gaussLegendre(n int) (x, w []float64) {
	x, w = make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		z := math.Cos(math.Pi * (float64(i) + 0.75) / (float64(n) + 0.5))
		var dp float64
		for it := 0; it < 100; it++ {
			p0, p1 := 1.0, z
			for k := 2; k <= n; k++ {
				p0, p1 = p1, ((2*float64(k)-1)*z*p1-(float64(k)-1)*p0)/float64(k)
			}
			dp = float64(n) * (z*p1 - p0) / (z*z - 1)
			dz := p1 / dp
			z -= dz
			if math.Abs(dz) < 1e-16 {
				break
			}
		}
		x[i], w[i] = z, 2/((1-z*z)*dp*dp)
	}
	return x, w
}

// TestGenMD4RLOOUnbiased: on a tiny problem (V = 3, L = 3, every one of the 27 sequences in
// the batch, a fixed μ and chosen powers), the mean of many RLOO gradient estimates w.r.t. w
// matches the exact gradient of the expected objective (masks enumerated, t integrated by
// quadrature, central finite differences in w) within 4 standard errors per component, while
// the pathwise-only estimate (NoRLOO, plain autodiff) is off by many standard errors (the bias
// of App. I.2). MDM_RLOO_STEPS overrides the number of estimates (3000; 12000 gives
// |z| ≤ 1.6 for RLOO and |z| ≥ 80 without it).
func TestGenMD4RLOOUnbiased(t *testing.T) {
	const V, L = 3, 3
	steps := 3000
	if s := os.Getenv("MDM_RLOO_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		steps = 800
	}
	var x0s [][]int32
	var x0 []int32
	for c := 0; c < 27; c++ {
		s := []int32{int32(c % 3), int32(c / 3 % 3), int32(c / 9)}
		x0s = append(x0s, s)
		x0 = append(x0, s...)
	}
	B := len(x0s)
	w := []float64{0.6, 1.4, 2.3}
	cfg := model.Config{Vocab: V, SeqLen: L, Dim: 8, Layers: 1, Heads: 2, TimeCond: true, CondDim: 4, GenMD4: true, DType: ops.F64}
	m := genModel(t, cpu.New(), cfg)
	mu := fixedMu(t, m, 17)
	setRawPowers(t, m, w)
	eps, t1 := diffusion.DefaultEps, diffusion.GenDefaultT1
	exact := make([]float64, V)
	for j := range w {
		const h = 1e-5
		wp, wm := append([]float64(nil), w...), append([]float64(nil), w...)
		wp[j] += h
		wm[j] -= h
		exact[j] = (exactGenObjective(x0s, mu, wp, eps, t1) - exactGenObjective(x0s, mu, wm, eps, t1)) / (2 * h)
	}
	t.Logf("μ = %.4f, w = %v, exact ∂J/∂w = %.6f (bits/token), J = %.6f", mu, w, exact, exactGenObjective(x0s, mu, w, eps, t1))
	for _, noRLOO := range []bool{false, true} {
		tr, err := NewGenTrainer(m, genOpt(t, m), GenConfig{Batch: B, Seed: 23, Antithetic: true, NoRLOO: noRLOO})
		if err != nil {
			t.Fatal(err)
		}
		est := make([][]float64, V)
		for s := 0; s < steps; s++ {
			st, err := tr.Gradients(x0, nil, uint64(s))
			if err != nil {
				t.Fatal(err)
			}
			for j, g := range st.GradW {
				est[j] = append(est[j], g)
			}
		}
		tr.Free()
		maxZ := 0.0
		for j := range est {
			mean, se := meanSE(est[j])
			z := (mean - exact[j]) / se
			maxZ = math.Max(maxZ, math.Abs(z))
			t.Logf("NoRLOO=%v w_%d: mean estimate %.6f ± %.6f, exact %.6f, z = %+.2f", noRLOO, j, mean, se, exact[j], z)
		}
		if !noRLOO && maxZ > 4 {
			t.Errorf("RLOO estimate is biased: max |z| = %.2f over %d estimates", maxZ, steps)
		}
		if noRLOO && maxZ < 6 {
			t.Errorf("the pathwise-only estimate should be visibly biased, got max |z| = %.2f", maxZ)
		}
	}
}

// TestGenMD4TrainsAndResumes: a few GenMD4 steps lower the loss and move the powers;
// SaveGenState → LoadGenState resumes bit for bit; checkpoint kinds are checked.
func TestGenMD4TrainsAndResumes(t *testing.T) {
	const V, L, B = 7, 16, 8
	cfg := model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, TimeCond: true, CondDim: 8, GenMD4: true}
	newTr := func() *GenTrainer {
		m := genModel(t, cpu.New(), cfg)
		tr, err := NewGenTrainer(m, genOpt(t, m), GenConfig{Batch: B, MicroBatch: 4, Seed: 2, Antithetic: true})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	// A repetitive corpus: "0123456" over and over, so the model can learn it.
	data := func(s int) []int32 {
		x := make([]int32, B*L)
		for i := range x {
			x[i] = int32((i + s) % V)
		}
		return x
	}
	tr := newTr()
	var first, last float64
	for s := 0; s < 30; s++ {
		st, err := tr.TrainStep(data(s), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s < 5 {
			first += st.LossBits / 5
		}
		if s >= 25 {
			last += st.LossBits / 5
		}
	}
	w, _, err := Powers(tr.M)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GenMD4 loss %.3f → %.3f bits/token; powers %.3f", first, last, w)
	if !(last < first) {
		t.Errorf("loss did not decrease: %.3f → %.3f", first, last)
	}
	moved := false
	for _, x := range w {
		moved = moved || math.Abs(x-1) > 1e-3
	}
	if !moved {
		t.Errorf("powers did not move from 1: %v", w)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "gen.safetensors")
	if err := SaveGenState(path, tr, map[string]string{"note": "test"}); err != nil {
		t.Fatal(err)
	}
	a, err := tr.TrainStep(data(30), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr2 := newTr()
	meta, err := LoadGenState(path, tr2)
	if err != nil {
		t.Fatal(err)
	}
	if meta[MetaGenMD4] != "1" || tr2.Step != 30 {
		t.Fatalf("metadata %v, step %d", meta, tr2.Step)
	}
	b, err := tr2.TrainStep(data(30), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.LossBits != b.LossBits || a.GradNorm != b.GradNorm {
		t.Fatalf("resumed step: loss %v grad norm %v, want %v %v", b.LossBits, b.GradNorm, a.LossBits, a.GradNorm)
	}
	// Kinds: an MD4 checkpoint is refused as GenMD4 and vice versa.
	if err := CheckGenCheckpoint(path, false); err == nil || !strings.Contains(err.Error(), "GenMD4 checkpoint") {
		t.Errorf("GenMD4 checkpoint accepted as MD4: %v", err)
	}
	md4 := model.Config{Vocab: V, SeqLen: L, Dim: 16, Layers: 1, Heads: 2, TimeCond: true, CondDim: 8}
	m4 := genModel(t, cpu.New(), md4)
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	tr4, err := NewTrainer(m4, genOpt(t, m4), StepConfig{Batch: B, Est: diffusion.Estimator{Sched: sched, L: L, V: V, Bound: diffusion.BoundPaperCode}})
	if err != nil {
		t.Fatal(err)
	}
	p4 := filepath.Join(dir, "md4.safetensors")
	if err := SaveState(p4, tr4, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGenState(p4, newTr()); err == nil || !strings.Contains(err.Error(), "MD4 checkpoint") {
		t.Errorf("MD4 checkpoint loaded as GenMD4: %v", err)
	}
	if _, err := NewGenTrainer(m4, genOpt(t, m4), GenConfig{Batch: B}); err == nil || !strings.Contains(err.Error(), "MD4 model") {
		t.Errorf("GenMD4 trainer on an MD4 model: %v", err)
	}
	// Evaluation reports both bounds; exact = (1−t1)·diffusion + recon + prior.
	ev, err := NewGenEvaluator(tr.M, GenEvalConfig{Batch: 4, Samples: 2, Seed: 1, Antithetic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Free()
	res, err := ev.Eval(data(0)[:8*L], nil)
	if err != nil {
		t.Fatal(err)
	}
	t1 := diffusion.GenDefaultT1
	wantExact := (1-t1)*res.DiffusionNats + res.ReconNats + res.PriorNats
	if math.Abs(res.Exact.NatsPerToken-wantExact) > 1e-12 || math.Abs(res.PaperCode.NatsPerToken-res.DiffusionNats-res.ReconNats) > 1e-12 {
		t.Errorf("eval bounds %+v inconsistent", res)
	}
}
