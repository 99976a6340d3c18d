package opstest

import (
	"errors"
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// compareCase runs the reference(s) for c and compares the device's outputs got.
func compareCase(ref ops.Backend, c *Case, inp *inputs, got map[string]*host, opts Options) (float64, error) {
	var want, oracle map[string]*host
	var err error
	if c.DType == ops.BF16 {
		// Honest low-precision reference: F32 compute on the bf16-rounded inputs, with the
		// outputs the device stores in bf16 rounded to bf16.
		if want, err = runRef(ref, c, inp, forHonest); err != nil {
			return 0, err
		}
		needOracle := false
		for _, a := range c.args {
			dt := a.dtype(c.DType, forDUT)
			if a.role != in && dt.Float() && !c.Exact && !a.exact {
				needOracle = true
			}
			if a.role != in && dt == ops.BF16 {
				want[a.name] = want[a.name].roundedTo(ops.BF16)
			}
		}
		if needOracle {
			if oracle, err = runRef(ref, c, inp, forOracle); err != nil {
				return 0, err
			}
		}
	} else {
		t := forDUT
		if opts.RefDType == ops.F64 {
			t = forOracle
		}
		if want, err = runRef(ref, c, inp, t); err != nil {
			return 0, err
		}
	}
	var errs []error
	worst := 0.0
	for _, a := range c.args {
		if a.role == in {
			continue
		}
		ratio := 0.0
		g := got[a.name]
		tol := c.Tol
		if a.tol != nil {
			tol = *a.tol
		}
		switch {
		case g.dt == ops.I32 || c.Exact || a.exact:
			err = compareExact(a, g, want[a.name])
		case c.DType == ops.BF16:
			ratio, err = compareBF16(a, g, oracle[a.name], want[a.name], tol)
		default:
			ratio, err = compareTol(a, g, want[a.name], tol)
		}
		worst = math.Max(worst, ratio)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return worst, errors.Join(errs...)
}

func nonFinite(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// sameNonFinite reports whether got matches a non-finite want (NaN matches any NaN).
func sameNonFinite(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return got == want
}

// compareExact requires equal values (bitwise when the dtypes agree; any NaN matches any
// NaN, since devices may produce different NaN payloads).
func compareExact(a arg, got, want *host) error {
	if got.len() != want.len() {
		return fmt.Errorf("output %s: %d elements, reference has %d", a.name, got.len(), want.len())
	}
	bad, first := 0, -1
	for k, n := 0, got.len(); k < n; k++ {
		g, w := got.at(k), want.at(k)
		if math.IsNaN(g) && math.IsNaN(w) {
			continue
		}
		eq := g == w && math.Signbit(g) == math.Signbit(w)
		if got.dt == want.dt {
			eq = got.bits(k) == want.bits(k)
		}
		if !eq {
			if first < 0 {
				first = k
			}
			bad++
		}
	}
	if bad == 0 {
		return nil
	}
	return fmt.Errorf("output %s must match exactly: %d of %d elements differ; first at %s: got %s, want %s",
		a.name, bad, got.len(), Index(a.shape, first), got.fmtBits(first), want.fmtBits(first))
}

// compareTol applies the NMSE and elementwise tolerances. It returns the largest
// observed fraction of an allowance (1 = at the limit).
func compareTol(a arg, got, want *host, tol Tolerance) (float64, error) {
	if got.len() != want.len() {
		return math.Inf(1), fmt.Errorf("output %s: %d elements, reference has %d", a.name, got.len(), want.len())
	}
	var sumE2, sumW2, maxW float64
	bad, worst, worstRatio := 0, -1, 0.0
	nfBad, nfFirst := 0, -1
	maxErr, maxErrAt := 0.0, -1
	for k, n := 0, got.len(); k < n; k++ {
		g, w := got.at(k), want.at(k)
		if nonFinite(w) || nonFinite(g) {
			if !sameNonFinite(g, w) {
				if nfFirst < 0 {
					nfFirst = k
				}
				nfBad++
			}
			continue
		}
		e := math.Abs(g - w)
		if e > maxErr {
			maxErr, maxErrAt = e, k
		}
		sumE2 += e * e
		sumW2 += w * w
		maxW = math.Max(maxW, math.Abs(w))
		allowed := tol.ATol + tol.RTol*math.Abs(w)
		r := e / allowed
		if e == 0 {
			r = 0
		}
		if r > worstRatio {
			worst, worstRatio = k, r
		}
		if e > allowed {
			bad++
		}
	}
	if nfBad > 0 {
		return math.Inf(1), fmt.Errorf("output %s: %d of %d elements non-finite where the reference is not (or the reverse); first at %s: got %v, want %v",
			a.name, nfBad, got.len(), Index(a.shape, nfFirst), got.at(nfFirst), want.at(nfFirst))
	}
	// An output whose reference is zero within ATol everywhere (e.g. gradients that cancel
	// exactly in exact arithmetic) has no scale for a relative measure: it is checked
	// elementwise only.
	nmse := 0.0
	if sumE2 > 0 && maxW > tol.ATol {
		nmse = sumE2 / sumW2
	}
	ratio := math.Max(worstRatio, nmse/tol.NMSE)
	if bad > 0 {
		return ratio, fmt.Errorf("output %s: %d of %d elements exceed %g + %g·|want|; worst at %s: got %v, want %v (|err| %.3g); nmse %.3g (limit %g)",
			a.name, bad, got.len(), tol.ATol, tol.RTol, Index(a.shape, worst), got.at(worst), want.at(worst),
			math.Abs(got.at(worst)-want.at(worst)), nmse, tol.NMSE)
	}
	if nmse > tol.NMSE {
		return ratio, fmt.Errorf("output %s: normalised MSE %.3g exceeds %g; largest error at %s: got %v, want %v (|err| %.3g)",
			a.name, nmse, tol.NMSE, Index(a.shape, maxErrAt), got.at(maxErrAt), want.at(maxErrAt), maxErr)
	}
	return ratio, nil
}

// compareBF16 applies the FlashAttention rule: the device's largest error against the
// float64 oracle may be at most BF16Factor times the honest bf16 reference's, plus a
// tiny allowance relative to the output's scale. It returns the observed fraction of
// the allowance.
func compareBF16(a arg, got, oracle, honest *host, tol Tolerance) (float64, error) {
	if got.len() != oracle.len() || honest.len() != oracle.len() {
		return math.Inf(1), fmt.Errorf("output %s: %d elements, oracle has %d, honest reference %d", a.name, got.len(), oracle.len(), honest.len())
	}
	var errG, errH, scale float64
	worst := -1
	nfBad, nfFirst := 0, -1
	for k, n := 0, got.len(); k < n; k++ {
		g, o, h := got.at(k), oracle.at(k), honest.at(k)
		if nonFinite(o) || nonFinite(g) {
			if !sameNonFinite(g, o) {
				if nfFirst < 0 {
					nfFirst = k
				}
				nfBad++
			}
			continue
		}
		scale = math.Max(scale, math.Abs(o))
		if e := math.Abs(g - o); e > errG || worst < 0 {
			errG, worst = e, k
		}
		if !nonFinite(h) {
			errH = math.Max(errH, math.Abs(h-o))
		}
	}
	if nfBad > 0 {
		return math.Inf(1), fmt.Errorf("output %s: %d of %d elements non-finite where the float64 oracle is not (or the reverse); first at %s: got %v, oracle %v",
			a.name, nfBad, got.len(), Index(a.shape, nfFirst), got.at(nfFirst), oracle.at(nfFirst))
	}
	// ATol (the float32 absolute tolerance, far below bf16 resolution for outputs of
	// order one) leaves room for rounding noise in outputs that are zero in exact
	// arithmetic, where both the oracle's scale and the honest error vanish.
	bound := tol.BF16Factor*errH + tol.BF16ATol*scale + tol.ATol
	ratio := 0.0
	if errG > 0 {
		ratio = errG / bound
	}
	if errG > bound {
		return ratio, fmt.Errorf("output %s: max error vs the float64 oracle %.4g at %s (got %v, oracle %v, honest bf16 reference %v) exceeds %g × %.4g (the honest bf16 reference's max error) + %.3g",
			a.name, errG, Index(a.shape, worst), got.at(worst), oracle.at(worst), honest.at(worst), tol.BF16Factor, errH, tol.BF16ATol*scale+tol.ATol)
	}
	return ratio, nil
}
