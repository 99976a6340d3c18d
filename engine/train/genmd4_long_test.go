package train_test

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestGenMD4VersusMD4TinyShakespeare is issue 8's training comparison: the same small
// network (char-level V=65, L=64, D=64, 2 layers, 2 heads, batch 32, AdamW lr 2e-3 with 50
// warmup steps then cosine, weight decay 0.03, no EMA) trained for the same number of steps
// (MDM_GEN_STEPS, default 2400) as MD4 (linear schedule, ε = 1e−4) and as GenMD4 (learned
// per-character powers, RLOO with two masks per sequence, so twice the network passes per
// step) on the first 90% of tinyshakespeare, then both bounds are estimated on the last 10%
// with 4 (time, mask) samples per window. GenMD4's exact bound must be no worse than MD4's
// (within 2 standard errors of the difference). It also runs
// MD4 for twice the steps (the same number of network passes as GenMD4) and reports it. The
// learned power of every character is logged. It takes about 20 minutes on 2 cores (GenMD4 ≈ 0.19 s per step, MD4 ≈ 0.1 s), so it
// runs only with MDM_LONG_TESTS=1.
func TestGenMD4VersusMD4TinyShakespeare(t *testing.T) {
	if os.Getenv("MDM_LONG_TESTS") == "" {
		t.Skip("skipping: long test (≈20 min); set MDM_LONG_TESTS=1 to run it")
	}
	tok, trainIDs, valIDs := tinyShakespeare(t)
	steps := envInt("MDM_GEN_STEPS", 2400)
	const L, B = 64, 32
	V := tok.VocabSize()
	base := model.Config{Vocab: V, SeqLen: L, Dim: 64, Layers: 2, Heads: 2, MLPHidden: 192, TimeCond: true, CondDim: 32}
	win, err := data.NewWindows(trainIDs, L)
	if err != nil {
		t.Fatal(err)
	}
	val := evalStream(t, valIDs, L)
	if max := envInt("MDM_GEN_VAL_WINDOWS", 1024); len(val)/L > max {
		val = val[:max*L]
	}
	optCfg := func(n int) train.OptimConfig {
		return train.OptimConfig{LR: 2e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.03, Warmup: 50, TotalSteps: n}
	}
	sched, _ := diffusion.ParseSchedule("linear", true, diffusion.DefaultEps)
	est := diffusion.Estimator{Sched: sched, L: L, V: V, Bound: diffusion.BoundPaperCode}
	const K = 4
	x0 := make([]int32, B*L)

	type result struct {
		name string
		res  diffusion.EvalResult
		wall time.Duration
		last float64
	}
	runMD4 := func(n int) result {
		start := time.Now()
		m, err := model.New(cpu.New(), base)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Init(1); err != nil {
			t.Fatal(err)
		}
		opt, err := train.NewOptimizer(m, optCfg(n))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := train.NewTrainer(m, opt, train.StepConfig{Batch: B, Seed: 1, Antithetic: true, Est: est})
		if err != nil {
			t.Fatal(err)
		}
		var last float64
		for s := 0; s < n; s++ {
			if err := win.TrainBatch(x0, B, 1, uint64(s)); err != nil {
				t.Fatal(err)
			}
			st, err := tr.TrainStep(x0, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = 0.98*last + 0.02*st.LossBits
			if s == 0 {
				last = st.LossBits
			}
			if (s+1)%envInt("MDM_GEN_LOG", 100) == 0 {
				t.Logf("MD4 step %d: train loss (EMA) %.4f bits/char, %v", s+1, last, time.Since(start).Round(time.Second))
			}
		}
		wall := time.Since(start)
		ev, err := train.NewEvaluator(m, train.EvalConfig{Batch: 64, Samples: K, Seed: 7, Antithetic: true, Est: est})
		if err != nil {
			t.Fatal(err)
		}
		res, err := ev.Eval(val, nil)
		if err != nil {
			t.Fatal(err)
		}
		return result{name: fmt.Sprintf("MD4 (%d steps)", n), res: res, wall: wall, last: last}
	}

	start := time.Now()
	gm, err := model.New(cpu.New(), func() model.Config { c := base; c.GenMD4 = true; return c }())
	if err != nil {
		t.Fatal(err)
	}
	if err := gm.Init(1); err != nil {
		t.Fatal(err)
	}
	gopt, err := train.NewOptimizer(gm, optCfg(steps))
	if err != nil {
		t.Fatal(err)
	}
	gtr, err := train.NewGenTrainer(gm, gopt, train.GenConfig{Batch: B, Seed: 1, Antithetic: true})
	if err != nil {
		t.Fatal(err)
	}
	var glast float64
	for s := 0; s < steps; s++ {
		if err := win.TrainBatch(x0, B, 1, uint64(s)); err != nil {
			t.Fatal(err)
		}
		st, err := gtr.TrainStep(x0, nil)
		if err != nil {
			t.Fatal(err)
		}
		glast = 0.98*glast + 0.02*st.LossBits
		if s == 0 {
			glast = st.LossBits
		}
		if (s+1)%envInt("MDM_GEN_LOG", 100) == 0 {
			t.Logf("GenMD4 step %d: train loss (EMA) %.4f bits/char, powers in [%.3f, %.3f] mean %.3f, %v", s+1, glast,
				st.PowerMin, st.PowerMax, st.PowerMean, time.Since(start).Round(time.Second))
		}
	}
	gwall := time.Since(start)
	gev, err := train.NewGenEvaluator(gm, train.GenEvalConfig{Batch: 64, Samples: K, Seed: 7, Antithetic: true})
	if err != nil {
		t.Fatal(err)
	}
	gres, err := gev.Eval(val, nil)
	if err != nil {
		t.Fatal(err)
	}
	gen := result{name: fmt.Sprintf("GenMD4 (%d steps)", steps), res: gres, wall: gwall, last: glast}

	md4 := runMD4(steps)
	md4x2 := runMD4(2 * steps)
	for _, r := range []result{md4, md4x2, gen} {
		t.Logf("%-20s validation (%d windows × %d samples): exact bound %.4f ± %.4f bits/char, paper-code %.4f ± %.4f; train loss (EMA) %.4f; training %v",
			r.name, r.res.Sequences, K, r.res.Exact.BitsPerToken, r.res.Exact.StdErrBits, r.res.PaperCode.BitsPerToken, r.res.PaperCode.StdErrBits,
			r.last, r.wall.Round(time.Second))
	}
	diff := func(a, b result) (float64, float64) {
		return a.res.Exact.BitsPerToken - b.res.Exact.BitsPerToken, math.Hypot(a.res.Exact.StdErrBits, b.res.Exact.StdErrBits)
	}
	dm, ds := diff(gen, md4)
	t.Logf("GenMD4 − MD4 (same steps), exact bound: %+.4f ± %.4f bits/char", dm, ds)
	dm2, ds2 := diff(gen, md4x2)
	t.Logf("GenMD4 − MD4 (same network passes), exact bound: %+.4f ± %.4f bits/char", dm2, ds2)

	powers, _, err := train.Powers(gm)
	if err != nil {
		t.Fatal(err)
	}
	type cw struct {
		c string
		w float64
	}
	var cws []cw
	for i, w := range powers {
		cws = append(cws, cw{strconv.Quote(tok.Decode([]int32{int32(i)})), w})
	}
	sort.Slice(cws, func(i, j int) bool { return cws[i].w < cws[j].w })
	var b strings.Builder
	for i, c := range cws {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.3f", c.c, c.w)
	}
	t.Logf("learned powers w per character (ascending; w < 1: unmasked later in generation / masked earlier in the forward process): %s", b.String())
	if dm > 2*ds {
		t.Errorf("GenMD4's exact bound is worse than MD4's at the same steps by %.4f ± %.4f bits/char", dm, ds)
	}
}
