package diffusion

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DefaultEps is the endpoint shift ε of the md4 code's MaskingSchedule (md4.md §1.2,
// paper App. J.1): α^code = (1−2ε)·α^base + ε, so α(0) = 1−ε and α(1) = ε.
const DefaultEps = 1e-4

// Default parameters of the geometric schedule, as plotted in the paper (Fig. 1, Tab. 4).
const (
	DefaultGeometricBetaMin = 1e-5
	DefaultGeometricBetaMax = 20
)

// MinTime is the smallest positive time the time samplers produce (one step of the
// 2⁻⁵³ grid of rng.Uniform64). SampleTimes moves t = 0 here for schedules whose weight is
// infinite at 0, and shifted schedules whose base derivative is infinite at t = 0 (poly<k>
// with k < 1) evaluate the derivative here instead (see NewShifted).
const MinTime = 0x1p-53

// ErrSchedule is wrapped by every error about a schedule name or parameter.
var ErrSchedule = errors.New("diffusion: invalid schedule")

// Schedule is a masking schedule α_t on t ∈ [0, 1] (md4.md §1.2, paper Tab. 4). All values
// are dimensionless probabilities or rates per unit time, in float64.
//
// Unshifted schedules (linear, poly<k>, cosine) have α_0 = 1, so w(0) = −∞ and the
// reconstruction term is 0; SampleTimes never returns t = 0 for them. Shifted schedules
// (NewShifted, md4.md §1.2 "Endpoint shift") have finite weights on all of [0, 1].
type Schedule interface {
	// Name is the schedule's name as ParseSchedule accepts it ("linear", "cosine",
	// "poly3", "poly0.5", "geometric", "geometric(1e-05,20)"); the shift is not part of
	// the name (see Eps).
	Name() string
	// Eps is the endpoint shift ε (0 for an unshifted schedule).
	Eps() float64
	// Alpha is α_t, the probability that a token is still unmasked at time t.
	Alpha(t float64) float64
	// MaskProb is 1 − α_t, the probability that a token is masked at time t (what
	// ops.MaskParams.MaskProb takes), computed without cancellation.
	MaskProb(t float64) float64
	// DAlpha is α'_t = dα_t/dt ≤ 0.
	DAlpha(t float64) float64
	// Weight is the ELBO weight w(t) = α'_t/(1−α_t) ≤ 0 (md4.md §0), computed in a form
	// that is accurate at both ends.
	Weight(t float64) float64
	// AlphaDiff is α_s − α_t ≥ 0 for 0 ≤ s ≤ t ≤ 1, computed without cancellation where
	// the schedule allows (used for discrete-time weights and unmask probabilities).
	AlphaDiff(s, t float64) float64
}

// ParseSchedule returns the schedule named by name: "linear", "cosine", "poly<k>" with k a
// positive float ("poly3", "poly0.5"), "geometric" (β̄_min = 1e−5, β̄_max = 20) or
// "geometric(<β̄_min>,<β̄_max>)". With shifted, the md4 code's endpoint shift with ε = eps
// is applied (NewShifted; eps must be in (0, 0.5), normally DefaultEps); without it eps is
// ignored. Errors wrap ErrSchedule, name the bad string and list the valid ones.
func ParseSchedule(name string, shifted bool, eps float64) (Schedule, error) {
	base, err := parseBase(name)
	if err != nil {
		return nil, err
	}
	if !shifted {
		return base, nil
	}
	return NewShifted(base, eps)
}

const validSchedules = `valid: "linear", "cosine", "poly<k>" with k > 0 (e.g. "poly3", "poly0.5"), ` +
	`"geometric", "geometric(<beta_min>,<beta_max>)" with 0 < beta_min < beta_max`

func parseBase(name string) (Schedule, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch {
	case n == "linear":
		return Linear(), nil
	case n == "cosine":
		return Cosine(), nil
	case n == "geometric":
		return NewGeometric(DefaultGeometricBetaMin, DefaultGeometricBetaMax)
	case strings.HasPrefix(n, "geometric(") && strings.HasSuffix(n, ")"):
		args := strings.Split(n[len("geometric("):len(n)-1], ",")
		if len(args) != 2 {
			return nil, fmt.Errorf("%w %q: geometric takes two parameters; %s", ErrSchedule, name, validSchedules)
		}
		lo, err1 := strconv.ParseFloat(strings.TrimSpace(args[0]), 64)
		hi, err2 := strconv.ParseFloat(strings.TrimSpace(args[1]), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w %q: geometric parameters must be numbers; %s", ErrSchedule, name, validSchedules)
		}
		s, err := NewGeometric(lo, hi)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v; %s", ErrSchedule, name, err, validSchedules)
		}
		return s, nil
	case strings.HasPrefix(n, "poly"):
		k, err := strconv.ParseFloat(n[len("poly"):], 64)
		if err != nil {
			return nil, fmt.Errorf("%w %q: the exponent after \"poly\" must be a number; %s", ErrSchedule, name, validSchedules)
		}
		s, err := NewPoly(k)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v; %s", ErrSchedule, name, err, validSchedules)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: unknown schedule %q; %s", ErrSchedule, name, validSchedules)
}

// ---------------------------------------------------------------------------------------
// linear: α = 1 − t

type linear struct{}

// Linear returns the unshifted linear schedule α_t = 1 − t, α' = −1, w = −1/t (md4.md
// §1.2). w(0) = −∞.
func Linear() Schedule { return linear{} }

func (linear) Name() string                   { return "linear" }
func (linear) Eps() float64                   { return 0 }
func (linear) Alpha(t float64) float64        { return 1 - t }
func (linear) MaskProb(t float64) float64     { return t }
func (linear) DAlpha(float64) float64         { return -1 }
func (linear) Weight(t float64) float64       { return -1 / t }
func (linear) AlphaDiff(s, t float64) float64 { return t - s }

// ---------------------------------------------------------------------------------------
// poly<k>: α = 1 − t^k

type poly struct{ k float64 }

// NewPoly returns the unshifted polynomial schedule α_t = 1 − t^k, α' = −k·t^(k−1),
// w = −k/t (md4.md §1.2; the md4 code's "poly<k>"). k must be finite and > 0. w(0) = −∞;
// for k < 1 also α'(0) = −∞.
func NewPoly(k float64) (Schedule, error) {
	if !(k > 0) || math.IsInf(k, 0) {
		return nil, fmt.Errorf("%w: poly exponent k must be finite and > 0, got %v", ErrSchedule, k)
	}
	return poly{k}, nil
}

func (p poly) Name() string               { return "poly" + strconv.FormatFloat(p.k, 'g', -1, 64) }
func (poly) Eps() float64                 { return 0 }
func (p poly) Alpha(t float64) float64    { return -math.Expm1(p.k * math.Log(t)) } // 1 − t^k, accurate near t = 1
func (p poly) MaskProb(t float64) float64 { return math.Pow(t, p.k) }
func (p poly) DAlpha(t float64) float64 {
	if p.k == 1 {
		return -1
	}
	return -p.k * math.Pow(t, p.k-1)
}
func (p poly) Weight(t float64) float64 { return -p.k / t }

// AlphaDiff: t^k − s^k = −t^k·expm1(k·log1p((s−t)/t)).
func (p poly) AlphaDiff(s, t float64) float64 {
	if t <= 0 {
		return 0
	}
	return -math.Pow(t, p.k) * math.Expm1(p.k*math.Log1p((s-t)/t))
}

// ---------------------------------------------------------------------------------------
// cosine (MaskGIT): α = 1 − cos(π/2·(1−t))

type cosine struct{}

// Cosine returns the unshifted MaskGIT cosine schedule α_t = 1 − cos(π/2·(1−t)),
// α' = −(π/2)·sin(π/2·(1−t)), w = −(π/2)·tan(π/2·(1−t)) (md4.md §1.2). w(0) = −∞ and
// w(1) = 0. Internally 1 − α_t = sin(πt/2), and α_t = 2·sin²(π(1−t)/4) for t ≥ 1/2, which
// stay accurate at both ends.
func Cosine() Schedule { return cosine{} }

func (cosine) Name() string { return "cosine" }
func (cosine) Eps() float64 { return 0 }
func (cosine) Alpha(t float64) float64 {
	if t < 0.5 {
		return 1 - math.Sin(math.Pi/2*t)
	}
	x := math.Sin(math.Pi / 4 * (1 - t))
	return 2 * x * x
}
func (cosine) MaskProb(t float64) float64 { return math.Sin(math.Pi / 2 * t) }
func (cosine) DAlpha(t float64) float64   { return -math.Pi / 2 * math.Sin(math.Pi/2*(1-t)) }

// Weight = −(π/2)·sin(π(1−t)/2)/sin(πt/2): −∞ at t = 0 and exactly 0 at t = 1.
func (cosine) Weight(t float64) float64 {
	return -math.Pi/2*(math.Sin(math.Pi/2*(1-t))/math.Sin(math.Pi/2*t)) + 0 // + 0 turns −0 into 0
}

// AlphaDiff: sin(πt/2) − sin(πs/2) = 2·cos(π(t+s)/4)·sin(π(t−s)/4).
func (cosine) AlphaDiff(s, t float64) float64 {
	if s == 0 {
		return math.Sin(math.Pi / 2 * t) // = 1 − α_t exactly as MaskProb, so p_unmask(0, t) = 1
	}
	return 2 * math.Cos(math.Pi/4*(t+s)) * math.Sin(math.Pi/4*(t-s))
}

// ---------------------------------------------------------------------------------------
// geometric: α = exp(−B(t)), B(t) = β̄_min^(1−t)·β̄_max^t

type geometric struct {
	bmin, bmax     float64
	lnMin, lnRatio float64
}

// NewGeometric returns the geometric schedule of paper Tab. 4 (not in the md4 code):
// α_t = exp(−B(t)) with B(t) = β̄_min^(1−t)·β̄_max^t, α' = −α_t·B(t)·ln(β̄_max/β̄_min) and
// w = −B(t)·ln(β̄_max/β̄_min)/expm1(B(t)) < 0 (md4.md §1.2: Tab. 4 prints this weight with
// the wrong sign). α_0 = e^(−β̄_min) < 1 and α_1 = e^(−β̄_max) > 0, so its weight is finite
// on all of [0, 1] even unshifted. Requires 0 < β̄_min < β̄_max < ∞.
func NewGeometric(betaMin, betaMax float64) (Schedule, error) {
	if !(betaMin > 0) || !(betaMax > betaMin) || math.IsInf(betaMax, 0) {
		return nil, fmt.Errorf("%w: geometric needs 0 < beta_min < beta_max < inf, got beta_min=%v beta_max=%v",
			ErrSchedule, betaMin, betaMax)
	}
	return geometric{betaMin, betaMax, math.Log(betaMin), math.Log(betaMax / betaMin)}, nil
}

func (g geometric) Name() string {
	if g.bmin == DefaultGeometricBetaMin && g.bmax == DefaultGeometricBetaMax {
		return "geometric"
	}
	return "geometric(" + strconv.FormatFloat(g.bmin, 'g', -1, 64) + "," + strconv.FormatFloat(g.bmax, 'g', -1, 64) + ")"
}
func (geometric) Eps() float64 { return 0 }

// b returns B(t), exact at the endpoints.
func (g geometric) b(t float64) float64 {
	switch t {
	case 0:
		return g.bmin
	case 1:
		return g.bmax
	}
	return math.Exp(g.lnMin + t*g.lnRatio)
}
func (g geometric) Alpha(t float64) float64    { return math.Exp(-g.b(t)) }
func (g geometric) MaskProb(t float64) float64 { return -math.Expm1(-g.b(t)) }
func (g geometric) DAlpha(t float64) float64 {
	b := g.b(t)
	return -math.Exp(-b) * b * g.lnRatio
}

// Weight: α/(1−α) = 1/expm1(B).
func (g geometric) Weight(t float64) float64 {
	b := g.b(t)
	return -b * g.lnRatio / math.Expm1(b)
}

// AlphaDiff: e^(−B_s) − e^(−B_t) = −e^(−B_s)·expm1(−(B_t−B_s)), B_t − B_s =
// B_s·expm1((t−s)·ln(β̄_max/β̄_min)).
func (g geometric) AlphaDiff(s, t float64) float64 {
	bs := g.b(s)
	d := bs * math.Expm1((t-s)*g.lnRatio)
	return -math.Exp(-bs) * math.Expm1(-d)
}

// ---------------------------------------------------------------------------------------
// endpoint shift

type shifted struct {
	base  Schedule
	eps   float64
	scale float64 // 1 − 2ε
}

// NewShifted applies the md4 code's endpoint shift (md4.md §1.2, paper App. J.1) to an
// unshifted base schedule: α_t = (1−2ε)·α^base_t + ε, α'_t = (1−2ε)·α'^base_t,
// 1 − α_t = (1−2ε)·(1−α^base_t) + ε and w(t) = (1−2ε)·α'^base_t/((1−2ε)(1−α^base_t) + ε).
// So α(0) = 1−ε, α(1) = ε and the weight is finite on [0, 1]; e.g. shifted linear has
// w(t) = −(1−2ε)/((1−2ε)t + ε): w(0) = −9998, w(1) = −0.9999 for ε = 1e−4.
//
// Where the base derivative is infinite (poly<k> with k < 1 at t = 0, an integrable
// singularity of measure zero) the derivative at MinTime is used instead, so the weight
// stays finite at t = 0 exactly (pitfalls B06). eps must be in (0, 0.5); base must be
// unshifted.
func NewShifted(base Schedule, eps float64) (Schedule, error) {
	if !(eps > 0 && eps < 0.5) {
		return nil, fmt.Errorf("%w: endpoint shift eps must be in (0, 0.5) (md4 code: %v), got %v", ErrSchedule, DefaultEps, eps)
	}
	if base == nil {
		return nil, fmt.Errorf("%w: nil base schedule", ErrSchedule)
	}
	if base.Eps() != 0 {
		return nil, fmt.Errorf("%w: schedule %q is already shifted (eps=%v)", ErrSchedule, base.Name(), base.Eps())
	}
	return shifted{base, eps, 1 - 2*eps}, nil
}

func (s shifted) Name() string               { return s.base.Name() }
func (s shifted) Eps() float64               { return s.eps }
func (s shifted) Alpha(t float64) float64    { return s.scale*s.base.Alpha(t) + s.eps }
func (s shifted) MaskProb(t float64) float64 { return s.scale*s.base.MaskProb(t) + s.eps }
func (s shifted) DAlpha(t float64) float64 {
	d := s.base.DAlpha(t)
	if math.IsInf(d, 0) {
		d = s.base.DAlpha(MinTime)
	}
	return s.scale * d
}
func (s shifted) Weight(t float64) float64 {
	return s.DAlpha(t)/s.MaskProb(t) + 0 // + 0 turns −0 into 0
}
func (s shifted) AlphaDiff(a, t float64) float64 { return s.scale * s.base.AlphaDiff(a, t) }

// LogSNR returns γ_t = log(α_t/(1−α_t)) (md4.md §0), the md4 code's log signal-to-noise
// ratio; +∞ where α_t = 1 and −∞ where α_t = 0.
func LogSNR(s Schedule, t float64) float64 {
	return math.Log(s.Alpha(t)) - math.Log(s.MaskProb(t))
}
