package diffusion

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// §8 item 8: linear α on the uniform grid has p_unmask = 1/i at t = i/T; the last step
// unmasks everything when α_0 = 1.
func TestPUnmaskLinearUniformGrid(t *testing.T) {
	const T = 1000
	plan, err := SamplerPlan(Linear(), GridUniform, T)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range plan {
		i := T - st.I // paper indexing: t = i/T
		checkRel(t, "p_unmask = 1/i", st.PUnmask, 1/float64(i), 1e-12)
	}
	if last := plan[T-1]; last.PUnmask != 1 || last.S != 0 || last.T != 1.0/T {
		t.Errorf("last step %+v, want t = 1/T, s = 0, p_unmask = 1", last)
	}
	if first := plan[0]; first.T != 1 {
		t.Errorf("first step starts at t = %v, want 1", first.T)
	}
}

// §8 item 10: cosine grid at T = 1000, linear α unshifted: first-step p_unmask =
// 1 − cos(π/2000) ≈ 1.2337e−6; the last grid point before 0 is t_1 = sin(π/2000) ≈ 1.5708e−3.
func TestCosineGrid(t *testing.T) {
	const T = 1000
	plan, _ := SamplerPlan(Linear(), GridCosine, T)
	p0 := plan[0].PUnmask
	want := 2 * math.Pow(math.Sin(math.Pi/4000), 2) // 1 − cos(π/2000) without cancellation
	checkRel(t, "first-step p_unmask", p0, want, 1e-9)
	if math.Abs(p0-1.2337e-6) > 5e-11 {
		t.Errorf("first-step p_unmask %.5g, md4.md: 1.2337e−6", p0)
	}
	tt, s := GridTimes(GridCosine, T-1, T)
	checkRel(t, "t_1", tt, math.Sin(math.Pi/2000), 1e-15)
	if s != 0 || math.Abs(tt-1.5708e-3) > 5e-8 {
		t.Errorf("last step (t, s) = (%v, %v), want (≈1.5708e−3, 0)", tt, s)
	}
	// Linear α on the cosine grid = cosine α on the uniform grid (md4.md §5.2).
	cp, _ := SamplerPlan(Cosine(), GridUniform, T)
	for i := range plan {
		checkRel(t, "linear∘cosine-grid vs cosine∘uniform-grid", plan[i].PUnmask, cp[i].PUnmask, 1e-8)
	}
}

// §8 item 8: the reverse-step probabilities are in [0, 1] and sum to 1 with any μ.
func TestReverseStepSumsToOne(t *testing.T) {
	mu := make([]float64, 50)
	var z float64
	for j := range mu {
		mu[j] = math.Exp(3 * math.Sin(float64(j)))
		z += mu[j]
	}
	for j := range mu {
		mu[j] /= z
	}
	for name, s := range allSchedules(t) {
		for _, g := range []Grid{GridUniform, GridCosine} {
			for _, T := range []int{1, 2, 7, 256, 1000} {
				plan, err := SamplerPlan(s, g, T)
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range plan {
					if !(st.PUnmask >= 0 && st.PUnmask <= 1) || !(st.S < st.T) {
						t.Fatalf("%s %v T=%d: step %+v", name, g, T, st)
					}
					var sum float64
					for _, m := range mu {
						sum += st.PUnmask * m
					}
					if got := sum + (1 - st.PUnmask); math.Abs(got-1) > 1e-14 {
						t.Fatalf("%s %v T=%d step %d: probabilities sum to %.17g", name, g, T, st.I, got)
					}
				}
			}
		}
	}
}

// §8 item 9, analytically: the survival factors telescope to (1−α_0)/(1−α_1), and expected
// reveals plus leftovers account for every position.
func TestLeftoverTelescopes(t *testing.T) {
	for name, s := range allSchedules(t) {
		for _, g := range []Grid{GridUniform, GridCosine} {
			for _, T := range []int{1, 7, 1000} {
				plan, _ := SamplerPlan(s, g, T)
				surv, reveals := 1.0, 0.0
				for _, st := range plan {
					surv *= 1 - st.PUnmask
					reveals += ExpectedReveals(s, st.S, st.T, 1)
				}
				want := ExpectedLeftover(s, 1)
				// 1 − p cancels when p ≈ 1 (e.g. T = 1), so allow 1e−16/(1−p) relative error.
				if math.Abs(surv-want) > 1e-9*want || (want == 0 && surv != 0) {
					t.Errorf("%s %v T=%d: Π(1−p) = %.15g, want (1−α_0)/(1−α_1) = %.15g", name, g, T, surv, want)
				}
				if math.Abs(reveals+want-1) > 1e-12 {
					t.Errorf("%s %v T=%d: reveals %v + leftover %v != 1", name, g, T, reveals, want)
				}
			}
		}
	}
	if got := ExpectedLeftover(mustSched(t, "linear", true), 1024); math.Abs(got-0.1024) > 5e-5 {
		t.Errorf("E[#left] for L = 1024: %v, md4.md: ≈ 0.1024", got)
	}
	checkRel(t, "L·ε/(1−ε)", ExpectedLeftover(mustSched(t, "cosine", true), 1024), 1024*eps/(1-eps), 1e-12)
}

// §8 item 9 by Monte Carlo of the unmask decisions alone (the SampleExact rule:
// u = Uniform64(seed, step i, PurposeSampleUnmask, pos) < p_unmask): masks left after the
// loop ≈ L·ε/(1−ε), and the reveals of each step ≈ L(α_s−α_t)/(1−ε).
func TestLeftoverMonteCarlo(t *testing.T) {
	for _, c := range []struct {
		e    float64
		g    Grid
		T    int
		nPos int
	}{{1e-4, GridCosine, 16, 600 * 1024}, {1e-2, GridUniform, 16, 100000}, {1e-2, GridCosine, 5, 100000}} {
		s, err := NewShifted(Linear(), c.e)
		if err != nil {
			t.Fatal(err)
		}
		plan, _ := SamplerPlan(s, c.g, c.T)
		reveals := make([]int, c.T)
		left := 0
		for pos := 0; pos < c.nPos; pos++ {
			masked := true
			for _, st := range plan {
				if rng.Uniform64(77, uint64(st.I), rng.PurposeSampleUnmask, uint64(pos)) < st.PUnmask {
					reveals[st.I]++
					masked = false
					break
				}
			}
			if masked {
				left++
			}
		}
		n := float64(c.nPos)
		q := ExpectedLeftover(s, 1)
		if se := math.Sqrt(n * q * (1 - q)); math.Abs(float64(left)-n*q) > 4*se {
			t.Errorf("ε=%v %v T=%d: %d masks left of %d, want %.1f ± %.1f", c.e, c.g, c.T, left, c.nPos, n*q, se)
		}
		for _, st := range plan {
			r := ExpectedReveals(s, st.S, st.T, 1)
			if se := math.Sqrt(n * r * (1 - r)); math.Abs(float64(reveals[st.I])-n*r) > 4*se+1e-9 {
				t.Errorf("ε=%v %v T=%d step %d: %d reveals, want %.1f ± %.1f", c.e, c.g, c.T, st.I, reveals[st.I], n*r, se)
			}
		}
	}
}

// Pitfalls B05: a full sampler loop with a mock uniform denoiser, then the final decode,
// leaves no mask for any schedule, grid, step count (including T = 1) or length.
func TestSamplerLoopLeavesNoMasks(t *testing.T) {
	const V = 11
	for _, name := range []string{"linear", "cosine", "poly0.5", "geometric"} {
		s := mustSched(t, name, true)
		for _, g := range []Grid{GridUniform, GridCosine} {
			for _, T := range []int{1, 2, 7, 64} {
				for _, L := range []int{1, 97} {
					const B = 64
					z := make([]int32, B*L)
					for i := range z {
						z[i] = V
					}
					plan, _ := SamplerPlan(s, g, T)
					for _, st := range plan {
						for pos, x := range z {
							if x != V {
								continue // unmasked tokens are carried over
							}
							u1, u2 := rng.Uniform64(5, uint64(st.I), rng.PurposeSampleUnmask, uint64(pos)),
								rng.Uniform64(5, uint64(st.I), rng.PurposeSampleToken, uint64(pos))
							if u1 < st.PUnmask {
								z[pos] = int32(u2 * V)
							}
						}
					}
					rows := MaskedRows(nil, z, V)
					logits := make([]float32, len(rows)*V)
					for r := range rows {
						logits[r*V+r%V] = 1
					}
					FinalDecodeRef(z, rows, logits, V)
					for pos, x := range z {
						if x < 0 || x >= V {
							t.Fatalf("%s %v T=%d L=%d: position %d holds %d after the final decode", name, g, T, L, pos, x)
						}
					}
				}
			}
		}
	}
}

func TestFinalDecodeRef(t *testing.T) {
	z := []int32{3, 3, 0, 3, 3}
	rows := MaskedRows(nil, z, 3)
	if len(rows) != 4 || rows[0] != 0 || rows[3] != 4 {
		t.Fatalf("MaskedRows = %v", rows)
	}
	inf := float32(math.Inf(-1))
	nan := float32(math.NaN())
	logits := []float32{
		1, 2, 2, // tie → lowest index 1
		inf, inf, inf, // all −∞ → 0
		nan, 0, -1, // NaN never wins
		-5, -4, -3,
	}
	FinalDecodeRef(z, rows, logits, 3)
	want := []int32{1, 0, 0, 1, 2}
	for i := range want {
		if z[i] != want[i] {
			t.Fatalf("after final decode z = %v, want %v", z, want)
		}
	}
	if FinalDecodeTime != 0 {
		t.Error("final decode must evaluate at t = 0")
	}
}

func TestGridParsingAndErrors(t *testing.T) {
	for _, g := range []Grid{GridUniform, GridCosine} {
		if got, err := ParseGrid(g.String()); err != nil || got != g {
			t.Errorf("ParseGrid(%q) = %v, %v", g.String(), got, err)
		}
	}
	if _, err := ParseGrid("linear"); err == nil {
		t.Error("ParseGrid accepted \"linear\"")
	}
	if _, err := SamplerPlan(Linear(), GridCosine, 0); err == nil {
		t.Error("T = 0 accepted")
	}
	if _, err := SamplerPlan(Linear(), Grid(9), 3); err == nil {
		t.Error("unknown grid accepted")
	}
	if GridCosine.Warp(1) != 1 || GridCosine.Warp(0) != 0 {
		t.Error("cosine warp not exact at the ends")
	}
	defer func() {
		if recover() == nil {
			t.Error("GridTimes(i = T) did not panic")
		}
	}()
	GridTimes(GridUniform, 3, 3)
}

func TestPUnmaskEdges(t *testing.T) {
	// 1 − α_t = 0: nothing can be masked; p = 1.
	if p := PUnmask(Linear(), 0, 0); p != 1 {
		t.Errorf("PUnmask at t = 0 unshifted = %v, want 1", p)
	}
	s := mustSched(t, "linear", true)
	if p := PUnmask(s, 0.5, 0.5); p != 0 {
		t.Errorf("PUnmask(s = t) = %v, want 0", p)
	}
	checkRel(t, "T=1 shifted", PUnmask(s, 0, 1), (1-2*eps)/(1-eps), 1e-15)
}
