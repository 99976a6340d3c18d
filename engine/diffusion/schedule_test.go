package diffusion

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

const eps = DefaultEps

func mustSched(t *testing.T, name string, shifted bool) Schedule {
	t.Helper()
	s, err := ParseSchedule(name, shifted, eps)
	if err != nil {
		t.Fatalf("ParseSchedule(%q, %v): %v", name, shifted, err)
	}
	return s
}

// allSchedules returns every schedule kind, shifted and unshifted, labelled.
func allSchedules(t *testing.T) map[string]Schedule {
	t.Helper()
	m := map[string]Schedule{}
	for _, n := range []string{"linear", "cosine", "poly3", "poly0.5", "poly1", "geometric", "geometric(0.01,5)"} {
		m[n] = mustSched(t, n, false)
		m[n+"/shifted"] = mustSched(t, n, true)
	}
	return m
}

func relErr(got, want float64) float64 {
	if got == want {
		return 0
	}
	return math.Abs(got-want) / math.Max(math.Abs(want), math.SmallestNonzeroFloat64)
}

func checkRel(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if r := relErr(got, want); !(r <= tol) {
		t.Errorf("%s: got %.17g, want %.17g (rel err %.3g > %.3g)", what, got, want, r, tol)
	}
}

// §8 item 1: weights at named points.
func TestWeightsNamedPoints(t *testing.T) {
	lin := mustSched(t, "linear", true)
	// w(t) = −(1−2ε)/((1−2ε)t+ε); with ε = 1e−4 the exact values are −9998, −1.9996 and
	// −0.9998/0.9999 = −0.99989998999899989999…
	checkRel(t, "shifted linear w(0)", lin.Weight(0), -9998, 1e-12)
	checkRel(t, "shifted linear w(0.5)", lin.Weight(0.5), -1.9996, 1e-14)
	checkRel(t, "shifted linear w(1)", lin.Weight(1), -0.99989998999899989999, 1e-14)
	for _, c := range []struct {
		t    float64
		want string
	}{{0, "-9998.0"}, {0.5, "-1.9996"}, {1, "-0.99990"}} {
		if got := strconvF(lin.Weight(c.t), len(c.want)-strings.Index(c.want, ".")-1); got != c.want {
			t.Errorf("shifted linear w(%v) printed: got %s, want %s", c.t, got, c.want)
		}
	}
	for _, tt := range []float64{0, 1e-300, MinTime, 0.1, 0.37, 0.5, 0.999, 1} {
		want := -(1 - 2*eps) / ((1-2*eps)*tt + eps)
		checkRel(t, "shifted linear formula", lin.Weight(tt), want, 1e-15)
	}

	cos := mustSched(t, "cosine", false)
	if got := cos.Weight(0.5); got != -math.Pi/2 {
		t.Errorf("cosine w(0.5): got %.17g, want −π/2 = %.17g", got, -math.Pi/2)
	}
	if got := cos.Weight(1); got != 0 || math.Signbit(got) {
		t.Errorf("cosine w(1): got %v, want 0", got)
	}
	if got := mustSched(t, "cosine", true).Weight(1); got != 0 {
		t.Errorf("shifted cosine w(1): got %v, want 0", got)
	}
	for _, tt := range []float64{0.01, 0.2, 0.5, 0.75, 0.99} {
		want := -math.Pi / 2 * math.Tan(math.Pi/2*(1-tt))
		checkRel(t, "cosine w = −(π/2)tan(π/2(1−t))", cos.Weight(tt), want, 1e-13)
	}

	for _, k := range []float64{0.5, 1, 2, 3, 7.5} {
		p, err := NewPoly(k)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []float64{1e-9, 0.1, 0.5, 0.9, 1} {
			if got, want := p.Weight(tt), -k/tt; got != want {
				t.Errorf("poly%v w(%v): got %v, want −k/t = %v exactly", k, tt, got, want)
			}
			// and the ratio α'/(1−α) agrees
			checkRel(t, "poly ratio", p.DAlpha(tt)/p.MaskProb(tt), -k/tt, 1e-14)
		}
	}
	if got := mustSched(t, "linear", false).Weight(0.25); got != -4 {
		t.Errorf("linear w(0.25) = %v, want −4", got)
	}
	// GenMD4: −w_i/t exactly, and the ratio α'/(1−α) agrees to rounding.
	for _, w := range []float64{0.3, 1, 2.5} {
		for _, tt := range []float64{GenDefaultT1, 0.3, 1} {
			if got := GenWeight(tt, w); got != -w/tt {
				t.Errorf("GenWeight(%v, %v) = %v, want %v", tt, w, got, -w/tt)
			}
			checkRel(t, "GenMD4 ratio", GenDAlpha(tt, w, eps)/GenMaskProb(tt, w, eps), -w/tt, 1e-14)
		}
	}
}

func strconvF(x float64, decimals int) string { return strconv.FormatFloat(x, 'f', decimals, 64) }

// Finite differences of Alpha against DAlpha, and internal consistency of MaskProb,
// Weight and AlphaDiff, for every schedule shifted and not.
func TestScheduleDerivativesAndConsistency(t *testing.T) {
	const h = 1e-6
	for name, s := range allSchedules(t) {
		for i := 1; i < 99; i++ {
			tt := float64(i) / 99
			fd := (s.Alpha(tt+h) - s.Alpha(tt-h)) / (2 * h)
			d := s.DAlpha(tt)
			if math.Abs(fd-d) > 1e-7*math.Max(1, math.Abs(d)) {
				t.Errorf("%s: α'(%v) = %.12g, finite difference %.12g", name, tt, d, fd)
			}
			if got := s.MaskProb(tt) + s.Alpha(tt); math.Abs(got-1) > 4e-16 {
				t.Errorf("%s: α + (1−α) at %v = %.17g", name, tt, got)
			}
			checkRel(t, name+" weight = α'/(1−α)", s.Weight(tt), s.DAlpha(tt)/s.MaskProb(tt), 1e-13)
			for _, ss := range []float64{0, tt / 3, tt * 0.999, tt} {
				want := s.Alpha(ss) - s.Alpha(tt)
				if got := s.AlphaDiff(ss, tt); math.Abs(got-want) > 1e-15 || got < 0 {
					t.Errorf("%s: AlphaDiff(%v, %v) = %.17g, α_s − α_t = %.17g", name, ss, tt, got, want)
				}
			}
			if tt > 0 && s.Alpha(tt) > s.Alpha(tt-0.01) {
				t.Errorf("%s: α increases at %v", name, tt)
			}
		}
	}
}

// AlphaDiff keeps full relative precision for nearby times, where α_s − α_t cancels.
func TestAlphaDiffRelativePrecision(t *testing.T) {
	for name, s := range allSchedules(t) {
		for _, tt := range []float64{1e-3, 0.3, 0.9, 1} {
			d := 1e-7
			ss := tt - d
			want := -s.DAlpha(tt-d/2) * d // midpoint rule, error O(d³α''')
			checkRel(t, name+" AlphaDiff small gap", s.AlphaDiff(ss, tt), want, 1e-6)
		}
	}
}

// Pitfalls B06: finite, non-positive weights on all of [0, 1] for shifted schedules,
// including t exactly 0 and 1; strictly negative except where the formula gives 0.
func TestShiftedWeightsFiniteEverywhere(t *testing.T) {
	ts := []float64{0, MinTime, 1e-300, 1e-12, 1e-6, 0.5, 1 - 1e-12, math.Nextafter(1, 0), 1}
	for i := 0; i <= 1000; i++ {
		ts = append(ts, float64(i)/1000)
	}
	for name, s := range allSchedules(t) {
		if !strings.HasSuffix(name, "/shifted") {
			continue
		}
		for _, tt := range ts {
			w := s.Weight(tt)
			zeroOK := (strings.HasPrefix(name, "cosine") && tt == 1) ||
				(strings.HasPrefix(name, "poly3") && tt < 1e-150) // 0 exactly, or t² underflows
			if math.IsInf(w, 0) || math.IsNaN(w) || w > 0 || (w == 0 && !zeroOK) {
				t.Errorf("%s: w(%v) = %v, want finite and < 0", name, tt, w)
			}
			if c := ContinuousWeight(s, tt); c < 0 || math.Signbit(c) {
				t.Errorf("%s: ContinuousWeight(%v) = %v", name, tt, c)
			}
		}
		if a0, a1 := s.Alpha(0), s.Alpha(1); name != "geometric/shifted" && name != "geometric(0.01,5)/shifted" &&
			(math.Abs(a0-(1-eps)) > 1e-16 || math.Abs(a1-eps) > 1e-16) {
			t.Errorf("%s: α(0) = %v, α(1) = %v; want 1−ε, ε", name, a0, a1)
		}
	}
	// Unshifted: w(0) = −∞ for linear, poly and cosine (documented); geometric is finite.
	for _, n := range []string{"linear", "cosine", "poly3", "poly0.5"} {
		s := mustSched(t, n, false)
		if w := s.Weight(0); !math.IsInf(w, -1) {
			t.Errorf("unshifted %s: w(0) = %v, want −Inf", n, w)
		}
		if s.Alpha(0) != 1 || s.Alpha(1) != 0 || s.MaskProb(0) != 0 || s.MaskProb(1) != 1 {
			t.Errorf("unshifted %s endpoints: α(0)=%v α(1)=%v", n, s.Alpha(0), s.Alpha(1))
		}
		if w := s.Weight(MinTime); math.IsInf(w, 0) || w >= 0 {
			t.Errorf("unshifted %s: w(MinTime) = %v", n, w)
		}
	}
	g := mustSched(t, "geometric", false)
	checkRel(t, "geometric α(0)", g.Alpha(0), math.Exp(-1e-5), 1e-15)
	checkRel(t, "geometric α(1)", g.Alpha(1), math.Exp(-20), 1e-15)
	for _, tt := range []float64{0, 0.5, 1} {
		if w := g.Weight(tt); math.IsInf(w, 0) || !(w < 0) {
			t.Errorf("unshifted geometric: w(%v) = %v, want finite < 0", tt, w)
		}
	}
	// The geometric weight is −[α/(1−α)]·B·ln(β̄max/β̄min) < 0 (Tab. 4's sign slip).
	tt := 0.3
	B := math.Pow(1e-5, 1-tt) * math.Pow(20, tt)
	a := math.Exp(-B)
	checkRel(t, "geometric weight", g.Weight(tt), -a/(1-a)*B*math.Log(20/1e-5), 1e-10)
}

func TestParseSchedule(t *testing.T) {
	for _, c := range []struct{ in, name string }{
		{"linear", "linear"}, {" Cosine ", "cosine"}, {"poly3", "poly3"}, {"poly0.5", "poly0.5"},
		{"poly1", "poly1"}, {"geometric", "geometric"}, {"geometric(1e-5, 20)", "geometric"},
		{"geometric(0.01,5)", "geometric(0.01,5)"},
	} {
		for _, sh := range []bool{false, true} {
			s, err := ParseSchedule(c.in, sh, eps)
			if err != nil {
				t.Errorf("ParseSchedule(%q): %v", c.in, err)
				continue
			}
			if s.Name() != c.name {
				t.Errorf("ParseSchedule(%q).Name() = %q, want %q", c.in, s.Name(), c.name)
			}
			wantEps := 0.0
			if sh {
				wantEps = eps
			}
			if s.Eps() != wantEps {
				t.Errorf("ParseSchedule(%q, %v).Eps() = %v", c.in, sh, s.Eps())
			}
			if s2, err := ParseSchedule(s.Name(), sh, eps); err != nil || s2.Weight(0.3) != s.Weight(0.3) {
				t.Errorf("name %q does not round-trip: %v", s.Name(), err)
			}
		}
	}
	for _, bad := range []string{"", "linera", "poly", "polyx", "poly-1", "poly0", "polyinf", "polyNaN",
		"geometric(1)", "geometric(20,1e-5)", "geometric(a,b)", "sigmoid"} {
		_, err := ParseSchedule(bad, true, eps)
		if err == nil {
			t.Errorf("ParseSchedule(%q) succeeded", bad)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrSchedule) || !strings.Contains(msg, `"`+bad+`"`) || !strings.Contains(msg, "valid:") {
			t.Errorf("ParseSchedule(%q) error %q must wrap ErrSchedule, quote the input and list valid names", bad, msg)
		}
	}
	for _, e := range []float64{0, -1e-4, 0.5, math.NaN()} {
		if _, err := ParseSchedule("linear", true, e); !errors.Is(err, ErrSchedule) {
			t.Errorf("eps=%v accepted (err %v)", e, err)
		}
	}
	if _, err := ParseSchedule("linear", false, 0); err != nil {
		t.Errorf("unshifted with eps=0: %v", err)
	}
	if _, err := NewShifted(mustSched(t, "linear", true), eps); err == nil {
		t.Error("shifting twice succeeded")
	}
}

func TestLogSNR(t *testing.T) {
	s := mustSched(t, "linear", true)
	for _, tt := range []float64{0, 0.25, 1} {
		a, m := (1-2*eps)*(1-tt)+eps, (1-2*eps)*tt+eps
		checkRel(t, "γ", LogSNR(s, tt), math.Log(a/m), 1e-14)
	}
}
