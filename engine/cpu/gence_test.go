package cpu

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// genCEData is one GenMaskedCE problem on the host.
type genCEData struct {
	r, v    int
	logits  []float64
	targets []int32
	scales  []float64
	powers  []float64
	dpow0   []float64
}

func newGenCEData(seed uint64, r, v int, lscale float64) genCEData {
	rd := newRand(seed)
	d := genCEData{r: r, v: v, logits: randVec(rd, r*v, lscale), targets: make([]int32, r), scales: make([]float64, r),
		powers: make([]float64, v), dpow0: randVec(rd, v, 1)}
	for i := range d.targets {
		d.targets[i] = int32(rd.IntN(v))
		d.scales[i] = 2 * rd.Float64()
	}
	for j := range d.powers {
		d.powers[j] = 0.2 + 2.8*rd.Float64()
	}
	return d
}

// run runs the op on b in dtype dt and returns Loss, DLogits and DPowers.
func (d genCEData) run(t testing.TB, b *Backend, dt ops.DType, alias bool) (loss, dl, dpow []float64) {
	t.Helper()
	lg := mk(t, b, dt, d.logits, d.r, d.v)
	p := &ops.GenMaskedCEParams{Logits: lg, Targets: mkI(t, b, d.targets, d.r), Scales: mk(t, b, ops.F64, d.scales, d.r),
		Powers: mk(t, b, ops.F64, d.powers, d.v), Loss: zeros(t, b, ops.F64, d.r), DPowers: mk(t, b, ops.F64, d.dpow0, d.v)}
	if alias {
		p.DLogits = lg
	} else {
		p.DLogits = zeros(t, b, dt, d.r, d.v)
	}
	must(t, b.GenMaskedCE(p))
	return get(t, b, p.Loss), get(t, b, p.DLogits), get(t, b, p.DPowers)
}

func softmax64(l []float64) []float64 {
	m := math.Inf(-1)
	for _, x := range l {
		m = math.Max(m, x)
	}
	out := make([]float64, len(l))
	var s float64
	for i, x := range l {
		out[i] = math.Exp(x - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// TestGenMaskedCEMatchesHostMath compares the op with diffusion.GenPositionTerm (md4.md §4
// eq. 12 written per position): Loss[r] = c_r·term(t = 1) and DPowers += Σ_r c_r·∂term/∂w.
func TestGenMaskedCEMatchesHostMath(t *testing.T) {
	for _, w := range []int{1, 2} {
		d := newGenCEData(1, 137, 29, 2)
		loss, _, dpow := d.run(t, testBackend(w), ops.F64, false)
		wantLoss := make([]float64, d.r)
		wantDP := append([]float64(nil), d.dpow0...)
		for r := 0; r < d.r; r++ {
			mu := softmax64(d.logits[r*d.v : (r+1)*d.v])
			g := make([]float64, d.v)
			wantLoss[r] = d.scales[r] * diffusion.GenPositionTerm(mu, d.targets[r], d.powers, 1, g)
			for j := range g {
				wantDP[j] += d.scales[r] * g[j]
			}
			if !(loss[r] >= 0) {
				t.Errorf("Loss[%d] = %v, want ≥ 0", r, loss[r])
			}
		}
		closeTo(t, "Loss", loss, wantLoss, tol{1e-12, 1e-13})
		closeTo(t, "DPowers", dpow, wantDP, tol{1e-11, 1e-12})
	}
}

// TestGenMaskedCEGradFD checks DLogits and the DPowers increment against float64 central
// finite differences of Σ_r Loss[r].
func TestGenMaskedCEGradFD(t *testing.T) {
	b := testBackend(2)
	d := newGenCEData(2, 6, 7, 1.5)
	d.dpow0 = make([]float64, d.v)
	_, dl, dpow := d.run(t, b, ops.F64, false)
	total := func(d genCEData) float64 {
		l, _, _ := d.run(t, b, ops.F64, false)
		var s float64
		for _, x := range l {
			s += x
		}
		return s
	}
	const h = 1e-6
	fd := func(x []float64, i int) float64 {
		old := x[i]
		x[i] = old + h
		p := total(d)
		x[i] = old - h
		m := total(d)
		x[i] = old
		return (p - m) / (2 * h)
	}
	wantDL := make([]float64, len(d.logits))
	for i := range d.logits {
		wantDL[i] = fd(d.logits, i)
	}
	wantDP := make([]float64, d.v)
	for j := range d.powers {
		wantDP[j] = fd(d.powers, j)
	}
	closeTo(t, "DLogits vs finite differences", dl, wantDL, tol{1e-6, 1e-8})
	closeTo(t, "DPowers vs finite differences", dpow, wantDP, tol{1e-6, 1e-8})
}

// TestGenMaskedCEEqualPowersIsMD4: with every w_j = k the op is MaskedCE with weight k·c
// (MD4 with the poly-k schedule) and Σ_j of the DPowers increment is Σ_r c_r·CE_r.
func TestGenMaskedCEEqualPowersIsMD4(t *testing.T) {
	b := testBackend(2)
	for _, dt := range fwdTypes {
		d := newGenCEData(3, 41, 27, 2)
		const k = 2.5
		for j := range d.powers {
			d.powers[j] = k
		}
		d.dpow0 = make([]float64, d.v)
		loss, dl, dpow := d.run(t, b, dt.dt, false)
		w := make([]float64, d.r)
		ones := make([]float64, d.r)
		for r := range w {
			w[r] = k * d.scales[r]
			ones[r] = 1
		}
		lg := mk(t, b, dt.dt, d.logits, d.r, d.v)
		p := &ops.MaskedCEParams{Logits: lg, Targets: mkI(t, b, d.targets, d.r), Weights: mk(t, b, ops.F64, w, d.r),
			Loss: zeros(t, b, ops.F64, d.r), DLogits: zeros(t, b, dt.dt, d.r, d.v)}
		must(t, b.MaskedCE(p))
		closeTo(t, dt.dt.String()+" Loss vs MaskedCE(k·c)", loss, get(t, b, p.Loss), tol{1e-12, 1e-12})
		closeTo(t, dt.dt.String()+" DLogits vs MaskedCE(k·c)", dl, get(t, b, p.DLogits), tol{dt.tol.rtol * 10, dt.tol.atol * 10})
		var sum, want float64
		for _, x := range dpow {
			sum += x
		}
		for r, l := range loss {
			want += l / k // c·CE
			_ = r
		}
		if math.Abs(sum-want) > 1e-9*math.Abs(want) {
			t.Errorf("%v: Σ_j DPowers = %.15g, want Σ c·CE = %.15g", dt.dt, sum, want)
		}
	}
}

// TestGenMaskedCEF32AliasAndDeterminism: float32 agrees with float64; DLogits may alias
// Logits; results do not depend on the number of workers.
func TestGenMaskedCEF32AliasAndDeterminism(t *testing.T) {
	d := newGenCEData(4, 300, 53, 3)
	l64, dl64, dp64 := d.run(t, testBackend(1), ops.F64, false)
	var prev [3][]float64
	for i, w := range []int{1, 2, 3} {
		l, dl, dp := d.run(t, testBackend(w), ops.F32, true)
		closeTo(t, "f32 Loss", l, l64, tol{1e-5, 1e-6})
		closeTo(t, "f32 DLogits (aliased)", dl, dl64, tol{1e-4, 1e-6})
		closeTo(t, "f32 DPowers", dp, dp64, tol{1e-5, 1e-5})
		if i > 0 {
			for k, x := range [3][]float64{l, dl, dp} {
				for e := range x {
					if math.Float64bits(x[e]) != math.Float64bits(prev[k][e]) {
						t.Fatalf("workers=%d: output %d element %d differs from 1 worker: %v vs %v", w, k, e, x[e], prev[k][e])
					}
				}
			}
		}
		prev = [3][]float64{l, dl, dp}
	}
}

// TestGenMaskedCEEdges: R = 0 changes nothing; a bad target is an ErrValue naming the row
// and writes nothing; shapes are validated.
func TestGenMaskedCEEdges(t *testing.T) {
	b := testBackend(2)
	// R = 0.
	dp := mk(t, b, ops.F64, []float64{1, 2, 3}, 3)
	must(t, b.GenMaskedCE(&ops.GenMaskedCEParams{Logits: zeros(t, b, ops.F32, 0, 3), Targets: mkI(t, b, nil, 0),
		Scales: zeros(t, b, ops.F64, 0), Powers: mk(t, b, ops.F64, []float64{1, 1, 1}, 3), Loss: zeros(t, b, ops.F64, 0),
		DLogits: zeros(t, b, ops.F32, 0, 3), DPowers: dp}))
	closeTo(t, "DPowers after R = 0", get(t, b, dp), []float64{1, 2, 3}, tol{})
	// Bad target.
	d := newGenCEData(5, 4, 5, 1)
	d.targets[2] = 5
	loss := mk(t, b, ops.F64, []float64{7, 7, 7, 7}, 4)
	dp5 := mk(t, b, ops.F64, []float64{1, 2, 3, 4, 5}, 5)
	err := b.GenMaskedCE(&ops.GenMaskedCEParams{Logits: mk(t, b, ops.F32, d.logits, 4, 5), Targets: mkI(t, b, d.targets, 4),
		Scales: mk(t, b, ops.F64, d.scales, 4), Powers: mk(t, b, ops.F64, d.powers, 5), Loss: loss, DPowers: dp5})
	wantOpError(t, err, ops.OpGenMaskedCE, ops.ErrValue, "target 5 of row 2")
	closeTo(t, "Loss after a refused call", get(t, b, loss), []float64{7, 7, 7, 7}, tol{})
	closeTo(t, "DPowers after a refused call", get(t, b, dp5), []float64{1, 2, 3, 4, 5}, tol{})
	// Shapes.
	err = b.GenMaskedCE(&ops.GenMaskedCEParams{Logits: mk(t, b, ops.F32, d.logits, 4, 5), Targets: mkI(t, b, []int32{0, 1, 2, 3}, 4),
		Scales: mk(t, b, ops.F64, d.scales, 4), Powers: mk(t, b, ops.F64, []float64{1, 2, 3}, 3), Loss: loss})
	wantOpError(t, err, ops.OpGenMaskedCE, ops.ErrShape, "Powers")
}
