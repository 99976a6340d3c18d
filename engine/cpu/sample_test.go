package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// refChunkSum sums xs sequentially within chunks of 256 and the chunk sums sequentially.
func refChunkSum(xs []float64) float64 {
	total := 0.0
	for c := 0; c < len(xs); c += 256 {
		s := 0.0
		for j := c; j < len(xs) && j < c+256; j++ {
			s += xs[j]
		}
		total += s
	}
	return total
}

// refProbs returns e_j = exp(l_j − max) after the top-p filter of ops.SampleParams, with
// τ found directly as the largest μ value whose mass reaches topP.
func refProbs(logits []float64, topP float64) []float64 {
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = math.Max(mx, l)
	}
	e := make([]float64, len(logits))
	for j, l := range logits {
		e[j] = math.Exp(l - mx)
	}
	if topP <= 0 || topP >= 1 {
		return e
	}
	s := refChunkSum(e)
	mu := make([]float32, len(e))
	for j := range e {
		mu[j] = float32(e[j] / s)
	}
	mass := func(tau float32) float64 {
		kept := make([]float64, len(mu))
		for j, m := range mu {
			if m >= tau {
				kept[j] = float64(m)
			}
		}
		return refChunkSum(kept)
	}
	tau := float32(0)
	for _, cand := range mu {
		if cand > tau && mass(cand) >= topP {
			tau = cand
		}
	}
	for j := range e {
		if mu[j] < tau {
			e[j] = 0
		}
	}
	return e
}

// refExactDraw is the inverse CDF of ops.SampleExact written out plainly.
func refExactDraw(e []float64, u float64) int {
	t := u * refChunkSum(e)
	prefix := 0.0
	for c := 0; c < len(e); c += 256 {
		end := min(c+256, len(e))
		cs := 0.0
		for j := c; j < end; j++ {
			cs += e[j]
		}
		if prefix+cs > t {
			s := 0.0
			for j := c; j < end; j++ {
				s += e[j]
				if s > t-prefix {
					return j
				}
			}
			for j := end - 1; j >= c; j-- {
				if e[j] > 0 {
					return j
				}
			}
		}
		prefix += cs
	}
	for j := len(e) - 1; j >= 0; j-- {
		if e[j] > 0 {
			return j
		}
	}
	return -1
}

// refJAXDraw is ops.SampleJAXCompat written out plainly.
func refJAXDraw(e []float64, pUnmask float64, seed, step, pos uint64) int {
	v := len(e)
	s := refChunkSum(e)
	scores := make([]float32, v+1)
	valid := make([]bool, v+1)
	pu := float32(pUnmask)
	for j := 0; j <= v; j++ {
		var p float32
		if j < v {
			p = pu * float32(e[j]/s)
		} else {
			p = 1 - pu
		}
		if p <= 0 {
			continue
		}
		u := rng.Uniform32JAX(seed, step, rng.PurposeSampleToken, pos*uint64(v+1)+uint64(j))
		g := -float32(math.Log(float64(-float32(math.Log(float64(u))))))
		scores[j], valid[j] = float32(math.Log(float64(p)))+g, true
	}
	best := -1
	for j := 0; j <= v; j++ {
		if valid[j] && (best < 0 || scores[j] > scores[best]) {
			best = j
		}
	}
	return best
}

// sampleSetup builds Z [bs, l] with the listed positions masked (others hold token 1) and
// logits for them.
type sampleSetup struct {
	bs, l, v int
	rows     []int32
	logits   []float64
	z        []int32
	offset   uint64 // IndexOffset
}

func newSampleSetup(bs, l, v int, rows []int32, logits []float64) sampleSetup {
	z := make([]int32, bs*l)
	for i := range z {
		z[i] = int32(i % v)
	}
	for _, r := range rows {
		z[r] = int32(v)
	}
	return sampleSetup{bs, l, v, rows, logits, z, 0}
}

func (s sampleSetup) run(t testing.TB, b *Backend, dt ops.DType, mode ops.SampleMode, pUnmask, topP float64, seed, step uint64, inPlace bool) []int32 {
	t.Helper()
	Z := mkI(t, b, s.z, s.bs, s.l)
	out := Z
	if !inPlace {
		out = mkI(t, b, make([]int32, s.bs*s.l), s.bs, s.l)
	}
	must(t, b.SampleStep(&ops.SampleParams{Out: out, Z: Z, Logits: mk(t, b, dt, s.logits, len(s.rows), s.v),
		Rows: mkI(t, b, s.rows, len(s.rows)), PUnmask: pUnmask, TopP: topP, Mode: mode, MaskID: int32(s.v), Seed: seed, Step: step,
		IndexOffset: s.offset}))
	return getI(t, b, out)
}

func TestSampleStepReference(t *testing.T) {
	r := newRand(40)
	for _, c := range []struct{ v, nrows int }{{5, 9}, {2, 6}, {600, 5}, {1, 3}} {
		for _, dc := range fwdTypes {
			for _, mode := range []ops.SampleMode{ops.SampleExact, ops.SampleJAXCompat, ops.SampleArgmax} {
				for _, pu := range []float64{0, 0.37, 1} {
					for _, topP := range []float64{0, 0.5, 0.9, 1} {
						name := fmt.Sprintf("V=%d/%v/%v/PUnmask=%v/TopP=%v", c.v, dc.dt, mode, pu, topP)
						t.Run(name, func(t *testing.T) {
							b := testBackend(3)
							const bs, l = 2, 7
							perm := r.Perm(bs * l)
							rows := make([]int32, c.nrows)
							for i := range rows {
								rows[i] = int32(perm[i])
							}
							logits := roundTo(dc.dt, randVec(r, c.nrows*c.v, 3))
							s := newSampleSetup(bs, l, c.v, rows, logits)
							s.offset = 3 << 33
							const seed, step = 0xabcdef, 12
							got := s.run(t, b, dc.dt, mode, pu, topP, seed, step, false)
							want := append([]int32(nil), s.z...)
							for i, row := range rows {
								lg := logits[i*c.v : (i+1)*c.v]
								switch mode {
								case ops.SampleArgmax:
									best := 0
									for j := range lg {
										if lg[j] > lg[best] {
											best = j
										}
									}
									want[row] = int32(best)
								case ops.SampleExact:
									pos := s.offset + uint64(row)
									if rng.Uniform64(seed, step, rng.PurposeSampleUnmask, pos) < pu {
										want[row] = int32(refExactDraw(refProbs(lg, topP), rng.Uniform64(seed, step, rng.PurposeSampleToken, pos)))
									}
								case ops.SampleJAXCompat:
									want[row] = int32(refJAXDraw(refProbs(lg, topP), pu, seed, step, s.offset+uint64(row)))
								}
							}
							equalI(t, "Out", got, want)
							if mode != ops.SampleArgmax && pu == 0 {
								equalI(t, "Out with PUnmask 0 (nothing changes)", got, s.z)
							}
							if pu == 1 || mode == ops.SampleArgmax {
								for _, row := range rows {
									if got[row] < 0 || got[row] >= int32(c.v) {
										t.Errorf("position %d: got %d, want a token in [0, %d) when PUnmask = 1", row, got[row], c.v)
									}
								}
							}
							// In place gives the same result.
							equalI(t, "Out in place", s.run(t, b, dc.dt, mode, pu, topP, seed, step, true), got)
						})
					}
				}
			}
		}
	}
}

// TestSampleTopPKeepsNucleus checks the nucleus on a known distribution: with μ = (0.4,
// 0.3, 0.2, 0.1) and TopP 0.5 only tokens 0 and 1 may be drawn, in ratio 4:3; ties at τ
// are kept.
func TestSampleTopPKeepsNucleus(t *testing.T) {
	b := testBackend(2)
	for _, c := range []struct {
		probs []float64
		topP  float64
		kept  []bool
	}{
		{[]float64{0.4, 0.3, 0.2, 0.1}, 0.5, []bool{true, true, false, false}},
		{[]float64{0.4, 0.3, 0.2, 0.1}, 0.4, []bool{true, false, false, false}},
		{[]float64{0.25, 0.25, 0.25, 0.25}, 0.3, []bool{true, true, true, true}},
		{[]float64{0.7, 0.1, 0.1, 0.1}, 0.75, []bool{true, true, true, true}},
		{[]float64{0.97, 0.01, 0.01, 0.01}, 0.01, []bool{true, false, false, false}},
	} {
		const n = 400
		rows := make([]int32, n)
		logits := make([]float64, 0, n*4)
		for i := range rows {
			rows[i] = int32(i)
			for _, p := range c.probs {
				logits = append(logits, math.Log(p))
			}
		}
		s := newSampleSetup(1, n, 4, rows, logits)
		counts := make([]int, 5)
		for step := range uint64(10) {
			for _, tok := range s.run(t, b, ops.F64, ops.SampleExact, 1, c.topP, 99, step, false) {
				counts[tok]++
			}
		}
		for j, k := range c.kept {
			if !k && counts[j] > 0 {
				t.Errorf("probs %v, TopP %v: token %d drawn %d times, want 0 (outside the nucleus)", c.probs, c.topP, j, counts[j])
			}
			if k && counts[j] == 0 {
				t.Errorf("probs %v, TopP %v: token %d never drawn, want it kept", c.probs, c.topP, j)
			}
		}
	}
}

// chiSquare returns Σ (obs − exp)²/exp.
func chiSquare(counts []int, probs []float64, n int) float64 {
	s := 0.0
	for j, p := range probs {
		e := p * float64(n)
		s += (float64(counts[j]) - e) * (float64(counts[j]) - e) / e
	}
	return s
}

func TestSampleStatistics(t *testing.T) {
	b := testBackend(2)
	probs := []float64{0.1, 0.2, 0.3, 0.4}
	const n, steps = 500, 40
	rows := make([]int32, n)
	logits := make([]float64, 0, n*4)
	for i := range rows {
		rows[i] = int32(i)
		for _, p := range probs {
			logits = append(logits, math.Log(p)+0.7) // unnormalised
		}
	}
	s := newSampleSetup(1, n, 4, rows, logits)
	// 3 degrees of freedom: P(χ² > 16.27) = 0.001.
	for _, mode := range []ops.SampleMode{ops.SampleExact, ops.SampleJAXCompat} {
		counts := make([]int, 5)
		for step := range uint64(steps) {
			for _, tok := range s.run(t, b, ops.F32, mode, 1, 0, 2024, step, false) {
				counts[tok]++
			}
		}
		if counts[4] != 0 {
			t.Errorf("%v: %d draws stayed masked with PUnmask = 1, want 0", mode, counts[4])
		}
		if x2 := chiSquare(counts[:4], probs, n*steps); x2 > 16.27 {
			t.Errorf("%v: χ² = %.2f over %d draws (counts %v), want ≤ 16.27", mode, x2, n*steps, counts)
		}
	}
	// Two-stage unmask frequency ≈ PUnmask (4σ band).
	for _, mode := range []ops.SampleMode{ops.SampleExact, ops.SampleJAXCompat} {
		const pu = 0.3
		unmasked := 0
		for step := range uint64(steps) {
			for _, tok := range s.run(t, b, ops.F64, mode, pu, 0, 7, step, false) {
				if tok != 4 {
					unmasked++
				}
			}
		}
		total := float64(n * steps)
		freq := float64(unmasked) / total
		if sigma := math.Sqrt(pu * (1 - pu) / total); math.Abs(freq-pu) > 4*sigma {
			t.Errorf("%v: unmask frequency %.4f, want %.2f ± %.4f", mode, freq, pu, 4*sigma)
		}
	}
}
