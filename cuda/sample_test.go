package cuda

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// TestSampleParity runs the opstest SampleStep cases.
func TestSampleParity(t *testing.T) { parityOp(t, ops.OpSampleStep) }

// sampleCase is one SampleStep call: a state Z [b, l], rows listing masked positions, logits.
type sampleCase struct {
	name        string
	b, l, v     int
	mode        ops.SampleMode
	punmask     float64
	topP        float64
	seed, step  uint64
	offset      uint64
	inplace     bool
	z, rows     []int32
	logits      []float32 // float32 values (bf16-representable when dt is BF16)
	dt          ops.DType
	wantUnmasks bool // the data must produce at least one token draw (guards against vacuous cases)
}

// logitStyle fills n logits.
type logitStyle func(r *testRand, n, v int) []float32

var (
	styleNormal = func(sigma float64) logitStyle {
		return func(r *testRand, n, _ int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(sigma * r.normal())
			}
			return x
		}
	}
	// Some −Inf entries (never drawn), a few very large ones (±1e4: everything else underflows).
	styleInf = func(r *testRand, n, v int) []float32 {
		x := styleNormal(3)(r, n, v)
		for i := range x {
			switch r.intn(13) {
			case 0:
				x[i] = float32(math.Inf(-1))
			case 1:
				x[i] = -1e4
			}
		}
		return x
	}
	styleHuge = func(r *testRand, n, v int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(1e4 * (2*r.u64() - 1))
		}
		return x
	}
	// Small integers: many exact ties (argmax takes the lowest index).
	styleTies = func(r *testRand, n, _ int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.intn(4))
		}
		return x
	}
)

func bf16Round(x float32) float32 { return opstest.BF16Float(opstest.BF16Bits(x)) }

// newSampleCase builds a state with about half the positions masked and rows listing the masked
// positions in a shuffled order.
func newSampleCase(name string, b, l, v int, mode ops.SampleMode, punmask, topP float64, style logitStyle, dt ops.DType, salt uint64) sampleCase {
	r := &testRand{seed: 0xC0FFEE ^ salt ^ uint64(v)<<20 ^ uint64(b*l)}
	c := sampleCase{name: name, b: b, l: l, v: v, mode: mode, punmask: punmask, topP: topP, dt: dt,
		seed: 0x9E3779B97F4A7C15 ^ salt, step: 0x0000_0123_4567_89AB + salt, offset: salt * 1000003}
	c.z = make([]int32, b*l)
	var masked []int32
	for i := range c.z {
		c.z[i] = int32(r.intn(v))
		if r.u64() < 0.6 {
			c.z[i] = int32(v)
			masked = append(masked, int32(i))
		}
	}
	for i := len(masked) - 1; i > 0; i-- { // shuffle
		j := r.intn(i + 1)
		masked[i], masked[j] = masked[j], masked[i]
	}
	c.rows = masked
	c.logits = style(r, len(masked)*v, v)
	if dt == ops.BF16 {
		for i, x := range c.logits {
			c.logits[i] = bf16Round(x)
		}
	}
	return c
}

func (c sampleCase) String() string {
	return fmt.Sprintf("%s(v=%d,rows=%d,mode=%v,p=%g,topp=%g,dt=%v,inplace=%v)", c.name, c.v, len(c.rows), c.mode, c.punmask, c.topP, c.dt, c.inplace)
}

// run executes the case on be (logits in c.dt on the device under test; F32 on the CPU, which
// holds the same values) and returns Out.
func (c sampleCase) run(t testing.TB, be ops.Backend) ([]int32, error) {
	t.Helper()
	dt := c.dt
	if _, isCPU := be.(*cpu.Backend); isCPU {
		dt = ops.F32
	}
	z := upload(t, be, ops.I32, c.z, c.b, c.l)
	defer be.Free(z)
	out := z
	if !c.inplace {
		fill := make([]int32, len(c.z))
		for i := range fill {
			fill[i] = -777
		}
		out = upload(t, be, ops.I32, fill, c.b, c.l)
		defer be.Free(out)
	}
	rows := upload(t, be, ops.I32, c.rows, len(c.rows))
	defer be.Free(rows)
	logits, err := be.Alloc(dt, len(c.rows), c.v)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Free(logits)
	if dt == ops.BF16 {
		h := make([]uint16, len(c.logits))
		for i, x := range c.logits {
			h[i] = opstest.BF16Bits(x)
		}
		err = be.Upload(logits, h)
	} else {
		err = be.Upload(logits, c.logits)
	}
	if err != nil {
		t.Fatal(err)
	}
	serr := be.SampleStep(&ops.SampleParams{Out: out, Z: z, Logits: logits, Rows: rows, PUnmask: c.punmask, TopP: c.topP,
		Mode: c.mode, MaskID: int32(c.v), Seed: c.seed, Step: c.step, IndexOffset: c.offset})
	if sb, ok := be.(*Backend); ok {
		checkGuards(t, sb)
	}
	return downloadI32(t, be, out), serr
}

// compareWithCPU runs c on the CPU and on b and requires identical outputs.
func compareWithCPU(t *testing.T, b *Backend, c sampleCase) {
	t.Helper()
	want, err := c.run(t, cpu.New())
	if err != nil {
		t.Fatalf("%v: cpu: %v", c, err)
	}
	got, err := c.run(t, b)
	if err != nil {
		t.Fatalf("%v: sim: %v", c, err)
	}
	draws := 0
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v: Out[%d] = %d, want %d (CPU)", c, i, got[i], want[i])
		}
		if c.z[i] == int32(c.v) && want[i] != int32(c.v) {
			draws++
		}
	}
	if c.wantUnmasks && draws == 0 {
		t.Errorf("%v: no position was unmasked: the case tests nothing", c)
	}
}

// sampleMatrix is the bit-identity table: every mode, vocabularies that are multiples of nothing
// (1, 2, 27, 257, 1000, 4097 — more chunks than a warp, 256 threads —, 50257), top-p, ±Inf and
// huge logits, ties, in-place calls, bf16 logits.
func sampleMatrix(short bool) []sampleCase {
	type spec struct {
		b, l, v int
		mode    ops.SampleMode
		p, topP float64
		style   logitStyle
		sname   string
		unmask  bool
	}
	specs := []spec{
		{3, 41, 1, ops.SampleExact, 0.5, 0, styleNormal(1), "normal", true},
		{3, 41, 2, ops.SampleExact, 0.5, 0, styleNormal(1), "normal", true},
		{4, 97, 27, ops.SampleExact, 0.37, 0, styleNormal(2), "normal", true},
		{4, 97, 27, ops.SampleExact, 1, 0, styleInf, "inf", true},
		{2, 65, 27, ops.SampleExact, 1, 0, styleHuge, "huge", true},
		{3, 33, 257, ops.SampleExact, 0.8, 0, styleNormal(4), "normal", true},
		{2, 40, 257, ops.SampleExact, 1, 0.9, styleNormal(2), "normal", true},
		{2, 40, 1000, ops.SampleExact, 1, 0.5, styleNormal(3), "normal", true},
		{2, 40, 1000, ops.SampleExact, 0.7, 0.999, styleInf, "inf", true},
		{2, 20, 4097, ops.SampleExact, 1, 0, styleNormal(2), "normal", true},
		{2, 20, 4097, ops.SampleExact, 1, 0.95, styleNormal(1), "normal", true},
		{4, 97, 27, ops.SampleJAXCompat, 0.5, 0, styleNormal(2), "normal", true},
		{4, 97, 27, ops.SampleJAXCompat, 1e-3, 0, styleNormal(2), "normal", false},
		{2, 50, 27, ops.SampleJAXCompat, 1, 0, styleInf, "inf", true},
		{2, 40, 257, ops.SampleJAXCompat, 0.9, 0.8, styleNormal(2), "normal", true},
		{2, 40, 1000, ops.SampleJAXCompat, 0.5, 0, styleHuge, "huge", true},
		{3, 50, 27, ops.SampleArgmax, 1, 0, styleTies, "ties", true},
		{2, 40, 1000, ops.SampleArgmax, 1, 0, styleInf, "inf", true},
		{2, 20, 4097, ops.SampleArgmax, 1, 0, styleTies, "ties", true},
	}
	if !short {
		specs = append(specs,
			spec{1, 12, 50257, ops.SampleExact, 1, 0, styleNormal(2), "normal", true},
			spec{1, 6, 50257, ops.SampleExact, 1, 0.9, styleNormal(2), "normal", true},
			spec{1, 12, 50257, ops.SampleJAXCompat, 0.5, 0, styleNormal(2), "normal", true},
			spec{1, 12, 50257, ops.SampleArgmax, 1, 0, styleTies, "ties", true},
		)
	}
	var cs []sampleCase
	for k, s := range specs {
		for _, dt := range []ops.DType{ops.F32, ops.BF16} {
			c := newSampleCase(s.sname, s.b, s.l, s.v, s.mode, s.p, s.topP, s.style, dt, uint64(k))
			c.wantUnmasks = s.unmask
			c.inplace = k%3 == 1
			cs = append(cs, c)
		}
	}
	return cs
}

// TestSampleMatchesCPU compares every mode bit for bit with the CPU backend over many rows and
// seeds (forward order: the whole table; reverse order and two workers: the small cases).
func TestSampleMatchesCPU(t *testing.T) {
	forEachSim(t, func(t *testing.T, b *Backend) {
		short := testing.Short() || b.dev.(*SimDevice).opt.Reverse || b.dev.(*SimDevice).opt.Workers > 1
		for _, c := range sampleMatrix(short) {
			compareWithCPU(t, b, c)
		}
	})
}

// TestSampleUnmaskBoundary sets PUnmask to exactly the unmask uniform u1 drawn at one position (the
// position must stay masked: u1 < PUnmask is false) and then to the next float64 above it (it must
// unmask), on the simulator and the CPU.
func TestSampleUnmaskBoundary(t *testing.T) {
	b := newSimBackend()
	const v, l = 27, 64
	for k, pos := range []int{0, 17, 63} {
		c := newSampleCase("unmask-boundary", 1, l, v, ops.SampleExact, 0, 0, styleNormal(1), ops.F32, uint64(k))
		for i := range c.z {
			c.z[i] = v
		}
		c.rows = iota32(l)
		c.logits = styleNormal(1)(&testRand{seed: uint64(k)}, l*v, v)
		u1 := rng.Uniform64(c.seed, c.step, rng.PurposeSampleUnmask, c.offset+uint64(pos))
		for _, tc := range []struct {
			p      float64
			masked bool
		}{{u1, true}, {math.Nextafter(u1, 2), false}} {
			c.punmask = tc.p
			compareWithCPU(t, b, c)
			got, err := c.run(t, b)
			if err != nil {
				t.Fatal(err)
			}
			if (got[pos] == v) != tc.masked {
				t.Fatalf("position %d with PUnmask = u1%s: Out = %d", pos, map[bool]string{true: "", false: " + 1 ulp"}[tc.masked], got[pos])
			}
		}
	}
}

// TestSampleTopPBoundary sets TopP to exactly the mass Σ_{μ_j ≥ μ_(k)} μ_j of the k+1 most likely
// tokens, computed as the reference does (μ_j = float32(e_j / S), float64 sums in chunk order), so
// the boundary token (k) is kept only because the comparison is mass ≥ TopP and τ is the largest
// float32 passing it ("ties at τ are kept"). A kernel comparing with > (or stopping the bit search
// early) drops that token, which carries ≥ 1% of the mass here, and its draws differ from the CPU.
// (The masses of a few float32 values ≥ 1e-3 are exact in float64, so this does not probe the
// summation order; no draw-level test can, as order changes only move sums by ulps.)
func TestSampleTopPBoundary(t *testing.T) {
	b := newSimBackend()
	const v, rows = 777, 300
	for k, rank := range []int{1, 2, 4, 6} {
		r := &testRand{seed: uint64(100 + k)}
		row := make([]float32, v)
		for j := range row {
			row[j] = float32(2.5 * r.normal())
		}
		// The reference's μ_j = float32(e_j / S), e_j = exp(l_j − m), S in chunk order.
		m := math.Inf(-1)
		for _, x := range row {
			m = math.Max(m, float64(x))
		}
		e := make([]float64, v)
		for j, x := range row {
			e[j] = math.Exp(float64(x) - m)
		}
		chunkSum := func(f func(j int) float64) float64 {
			var total float64
			for c0 := 0; c0 < v; c0 += ops.SampleCDFChunk {
				var s float64
				for j := c0; j < min(c0+ops.SampleCDFChunk, v); j++ {
					s += f(j)
				}
				total += s
			}
			return total
		}
		s := chunkSum(func(j int) float64 { return e[j] })
		mu := make([]float32, v)
		for j := range mu {
			mu[j] = float32(e[j] / s)
		}
		sorted := append([]float32(nil), mu...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] > sorted[b] })
		tau := sorted[rank]
		if tau < 0.02 {
			t.Fatalf("rank %d: the boundary token has μ = %v: too rare to be seen in %d draws", rank, tau, rows)
		}
		topP := chunkSum(func(j int) float64 {
			if mu[j] >= tau {
				return float64(mu[j])
			}
			return 0
		})
		c := sampleCase{name: fmt.Sprintf("topp-boundary-%d", rank), b: 1, l: rows, v: v, mode: ops.SampleExact, punmask: 1,
			topP: topP, seed: uint64(k), step: 3, dt: ops.F32, wantUnmasks: true}
		c.z = make([]int32, rows)
		c.rows = make([]int32, rows)
		for i := range c.z {
			c.z[i] = v
			c.rows[i] = int32(i)
		}
		for i := 0; i < rows; i++ {
			c.logits = append(c.logits, row...)
		}
		compareWithCPU(t, b, c)
		// The boundary token is drawn (the case is not vacuous).
		got, _ := c.run(t, b)
		hit := 0
		for _, x := range got {
			if x >= 0 && x < v && mu[x] == tau {
				hit++
			}
		}
		if hit == 0 {
			t.Errorf("rank %d: the boundary token (μ = %v) was never drawn in %d rows", rank, tau, rows)
		}
	}
}

// TestSampleErrors checks that invalid rows and non-finite logits are refused with the CPU
// backend's messages and that Out is left unchanged.
func TestSampleErrors(t *testing.T) {
	base := func(mode ops.SampleMode) sampleCase {
		c := newSampleCase("err", 2, 30, 27, mode, 1, 0, styleNormal(1), ops.F32, 99)
		return c
	}
	type tc struct {
		name string
		c    sampleCase
		kind error
	}
	var cases []tc
	{
		c := base(ops.SampleExact)
		c.rows = append([]int32(nil), c.rows...)
		c.rows[3] = int32(c.b * c.l) // out of range
		cases = append(cases, tc{"row out of range", c, ops.ErrValue})
	}
	{
		c := base(ops.SampleExact)
		c.rows = append([]int32(nil), c.rows...)
		c.rows[5] = -1
		cases = append(cases, tc{"negative row", c, ops.ErrValue})
	}
	{
		c := base(ops.SampleJAXCompat)
		c.rows = append([]int32(nil), c.rows...)
		c.rows[7] = c.rows[2] // repeated
		cases = append(cases, tc{"repeated row", c, ops.ErrValue})
	}
	{
		c := base(ops.SampleArgmax)
		c.rows = append([]int32(nil), c.rows...)
		for p, x := range c.z { // a position that is not masked
			if x != int32(c.v) {
				c.rows[4] = int32(p)
				break
			}
		}
		cases = append(cases, tc{"unmasked position", c, ops.ErrValue})
	}
	for _, mode := range []ops.SampleMode{ops.SampleExact, ops.SampleJAXCompat, ops.SampleArgmax} {
		c := base(mode)
		c.logits = append([]float32(nil), c.logits...)
		c.logits[6*c.v+5] = float32(math.NaN())
		c.logits[9*c.v+1] = float32(math.NaN())
		cases = append(cases, tc{"NaN logit " + mode.String(), c, ops.ErrNonFinite})
	}
	{
		c := base(ops.SampleExact)
		c.logits = append([]float32(nil), c.logits...)
		c.logits[2*c.v+26] = float32(math.Inf(1))
		cases = append(cases, tc{"+Inf logit", c, ops.ErrNonFinite})
	}
	{
		c := base(ops.SampleJAXCompat)
		c.logits = append([]float32(nil), c.logits...)
		for j := 0; j < c.v; j++ {
			c.logits[8*c.v+j] = float32(math.Inf(-1))
		}
		cases = append(cases, tc{"only -Inf logits", c, ops.ErrNonFinite})
	}
	forEachSim(t, func(t *testing.T, b *Backend) {
		for _, x := range cases {
			for _, inplace := range []bool{false, true} {
				c := x.c
				c.inplace = inplace
				_, werr := c.run(t, cpu.New())
				got, err := c.run(t, b)
				var oe *ops.OpError
				if !errors.As(err, &oe) || !errors.Is(err, x.kind) {
					t.Fatalf("%s: got error %v, want an *ops.OpError wrapping %v", x.name, err, x.kind)
				}
				if werr == nil || err.Error() != werr.Error() {
					t.Fatalf("%s: error\n  %v\nwant (CPU)\n  %v", x.name, err, werr)
				}
				for i, v := range got {
					want := int32(-777)
					if inplace {
						want = c.z[i]
					}
					if v != want {
						t.Fatalf("%s (inplace=%v): Out[%d] = %d after a failed call, want it unchanged (%d)", x.name, inplace, i, v, want)
					}
				}
			}
		}
	})
}

// TestSampleRefusesHugeVocab: the chunk sums must fit in the default shared memory; a larger
// vocabulary is refused before any launch with a clear error, and F64 logits are unsupported.
func TestSampleRefusesHugeVocab(t *testing.T) {
	b := newSimBackend()
	v := (48<<10)/8*ops.SampleCDFChunk + 1
	z := upload(t, b, ops.I32, []int32{int32(v)}, 1, 1)
	rows := upload(t, b, ops.I32, []int32{0}, 1)
	logits := upload(t, b, ops.F32, nil, 1, v)
	err := b.SampleStep(&ops.SampleParams{Out: z, Z: z, Logits: logits, Rows: rows, PUnmask: 1, Mode: ops.SampleExact, MaskID: int32(v)})
	if !errors.Is(err, ops.ErrUnsupported) || !strings.Contains(err.Error(), "shared memory") {
		t.Fatalf("V=%d: got %v, want an unsupported error naming shared memory", v, err)
	}
	if n := len(b.dev.(*SimDevice).recent); n != 0 {
		t.Fatalf("a kernel was launched (%s) before the refusal", b.dev.(*SimDevice).Recent())
	}
	if b.Supports(ops.OpSampleStep, ops.F64) {
		t.Fatal("Supports(SampleStep, F64) = true")
	}
}

// ---- the distribution test (pitfalls B01, md4.md §5.4) ----

// chi2P2 is the p-value of a chi-square statistic with 2 degrees of freedom: exp(−x/2).
func chi2P2(x float64) float64 { return math.Exp(-x / 2) }

// jaxGumbel is the jax-compat sampler's noise for the uniform u, computed exactly as the reference
// (engine/cpu gumbel): g = −float32(log(float64(−float32(log(float64(u)))))).
func jaxGumbel(u float32) float32 {
	lu := float32(math.Log(float64(u)))
	return -float32(math.Log(float64(-lu)))
}

// TestSampleChiSquare is the statistical test of pitfalls B01: one masked position per draw, a
// near-certain mask class (1 − 3.6e-5) and V = 2002 tokens: 2 "moderate" ones with scaled
// probability 8e-6 each (group A) and 2000 "tiny" ones with 1e-8 each (group B, total 2e-5, more
// than group A). Over N = 2^22 draws the expected counts are ≈ 67 (A) and 84 (B).
//
//   - exact (the default, float64 two-stage draw) passes a chi-square test over {mask, A, B};
//   - jax-compat (float32 Gumbel-max, as the md4 code) fails the same test: a tiny token needs
//     Gumbel noise above the float32 cap 15.94 over the mask's, so group B is (almost) never drawn
//     while group A comes out right.
//
// Cost: the exact draws run through the CPU backend (N rows, O(1) each unless the row unmasks). The
// jax-compat draws over N·(V+1) categories would take minutes, so they are computed by a faithful
// shortcut of the same function: a token whose best possible score fl(log p_j + g_max) is below the
// mask's score cannot win, so its Gumbel is not evaluated (group B is skipped in all but ~7e-6 of
// the rows). The shortcut is then checked against the real jax-compat mode, on the simulator and the
// CPU, on every row where it drew a token, every row where group B was contested, and random rows;
// and the exact draws of the simulator are checked against the CPU on every row that unmasked.
func TestSampleChiSquare(t *testing.T) {
	const (
		nA, nB  = 2, 2000
		v       = nA + nB
		aAt     = 1000 // group A sits at indices 1000, 1001 (the rest is group B)
		punmask = 3.6e-5
		seed    = 0x5EED
		step    = 77
	)
	const n = 1 << 22                // at 2^21 the float32 sampler's p-value is only ~1e-9
	logitA := float32(math.Log(800)) // μ_A / μ_B = 800: q_A = 8e-6, q_B = 1e-8
	row := make([]float32, v)
	for j := range row {
		if j >= aAt && j < aAt+nA {
			row[j] = logitA
		}
	}
	group := func(tok int32) int { // 0 = mask, 1 = A, 2 = B
		switch {
		case tok == v:
			return 0
		case tok >= aAt && tok < aAt+nA:
			return 1
		}
		return 2
	}
	// Target probabilities of {mask, A, B}, from the float32 logits in float64.
	// e_j and their total exactly as the reference computes them (max-subtracted, chunk order).
	eA := math.Exp(float64(logitA) - float64(logitA))
	eB := math.Exp(0 - float64(logitA))
	var total float64
	for c0 := 0; c0 < v; c0 += ops.SampleCDFChunk {
		var cs float64
		for j := c0; j < min(c0+ops.SampleCDFChunk, v); j++ {
			cs += math.Exp(float64(row[j]) - float64(logitA))
		}
		total += cs
	}
	pA, pB := punmask*nA*eA/total, punmask*nB*eB/total
	probs := []float64{1 - pA - pB, pA, pB}
	chi2 := func(counts [3]int) float64 {
		var x float64
		for k, c := range counts {
			want := probs[k] * float64(n)
			x += (float64(c) - want) * (float64(c) - want) / want
		}
		return x
	}

	// ---- exact: CPU backend, R rows per call, position = call·R + i ----
	ref := cpu.New()
	const r = 4096
	z := upload(t, ref, ops.I32, fillI32(r, v), 1, r)
	out := upload(t, ref, ops.I32, nil, 1, r)
	rowsT := upload(t, ref, ops.I32, iota32(r), r)
	lg := make([]float32, 0, r*v)
	for i := 0; i < r; i++ {
		lg = append(lg, row...)
	}
	logits := upload(t, ref, ops.F32, lg, r, v)
	var exact [3]int
	var exactDraws []uint64 // positions that unmasked
	for call := 0; call < n/r; call++ {
		if err := ref.SampleStep(&ops.SampleParams{Out: out, Z: z, Logits: logits, Rows: rowsT, PUnmask: punmask,
			Mode: ops.SampleExact, MaskID: v, Seed: seed, Step: step, IndexOffset: uint64(call * r)}); err != nil {
			t.Fatal(err)
		}
		for i, tok := range downloadI32(t, ref, out) {
			exact[group(tok)]++
			if tok != v {
				exactDraws = append(exactDraws, uint64(call*r+i))
			}
		}
	}

	// ---- jax-compat: the shortcut model, over the same positions ----
	pu := float32(punmask)
	pm := 1 - pu
	lpA := float32(math.Log(float64(pu * float32(eA/total))))
	lpB := float32(math.Log(float64(pu * float32(eB/total))))
	lpMask := float32(math.Log(float64(pm)))
	gmax := jaxGumbel(1 - 0x1p-23)
	type jaxRow struct {
		tok       int32
		contested bool // group B had to be evaluated
	}
	jaxDraw := func(pos uint64) jaxRow {
		base := pos * (v + 1)
		u := func(j int) float32 { return rng.Uniform32JAX(seed, step, rng.PurposeSampleToken, base+uint64(j)) }
		best, bestScore := int32(v), lpMask+jaxGumbel(u(v))
		sV := bestScore
		consider := func(j int, lp float32) {
			if s := lp + jaxGumbel(u(j)); s > bestScore || (s == bestScore && int32(j) < best) {
				best, bestScore = int32(j), s
			}
		}
		var out jaxRow
		if lpB+gmax >= sV { // otherwise no token of B can reach the mask's score
			out.contested = true
			for j := 0; j < v; j++ {
				if group(int32(j)) == 2 {
					consider(j, lpB)
				}
			}
		}
		if lpA+gmax >= sV {
			for j := aAt; j < aAt+nA; j++ {
				consider(j, lpA)
			}
		}
		out.tok = best
		return out
	}
	var jax [3]int
	var jaxCheck []uint64
	var mu sync.Mutex
	var wg sync.WaitGroup
	const workers = 2
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var cnt [3]int
			var check []uint64
			for pos := w; pos < n; pos += workers {
				jr := jaxDraw(uint64(pos))
				cnt[group(jr.tok)]++
				if jr.tok != v || jr.contested {
					check = append(check, uint64(pos))
				}
			}
			mu.Lock()
			for k := range cnt {
				jax[k] += cnt[k]
			}
			jaxCheck = append(jaxCheck, check...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()

	x2e, x2j := chi2(exact), chi2(jax)
	pe, pj := chi2P2(x2e), chi2P2(x2j)
	t.Logf("N = %d draws; expected {mask, A, B} = {%.1f, %.1f, %.1f}", n, probs[0]*float64(n), probs[1]*float64(n), probs[2]*float64(n))
	t.Logf("exact      : counts %v, chi2 = %.2f, p = %.3g", exact, x2e, pe)
	t.Logf("jax-compat : counts %v, chi2 = %.2f, p = %.3g", jax, x2j, pj)
	if pe < 1e-3 {
		t.Errorf("the exact sampler fails the chi-square test (p = %.3g)", pe)
	}
	if pj > 1e-10 {
		t.Errorf("the float32 Gumbel sampler passes the chi-square test (p = %.3g); the test has no power", pj)
	}
	if jax[1] < int(probs[1]*float64(n)/2) {
		t.Errorf("jax-compat under-draws group A too (%d): the shortcut model is suspect", jax[1])
	}

	// ---- the shortcut model and the sim are the real thing on the rows that matter ----
	for i := 0; i < 48; i++ {
		jaxCheck = append(jaxCheck, uint64((i*2654435761)%n))
	}
	sim := newSimBackend()
	one := func(be ops.Backend, mode ops.SampleMode, pos uint64) int32 {
		z := upload(t, be, ops.I32, []int32{v}, 1, 1)
		rows := upload(t, be, ops.I32, []int32{0}, 1)
		lt := upload(t, be, ops.F32, row, 1, v)
		defer func() { be.Free(z); be.Free(rows); be.Free(lt) }()
		if err := be.SampleStep(&ops.SampleParams{Out: z, Z: z, Logits: lt, Rows: rows, PUnmask: punmask,
			Mode: mode, MaskID: v, Seed: seed, Step: step, IndexOffset: pos}); err != nil {
			t.Fatal(err)
		}
		return downloadI32(t, be, z)[0]
	}
	for _, pos := range jaxCheck {
		want := jaxDraw(pos).tok
		if got := one(ref, ops.SampleJAXCompat, pos); got != want {
			t.Fatalf("position %d: CPU jax-compat draws %d, the shortcut model %d", pos, got, want)
		}
		if got := one(sim, ops.SampleJAXCompat, pos); got != want {
			t.Fatalf("position %d: sim jax-compat draws %d, the shortcut model %d", pos, got, want)
		}
	}
	for _, pos := range exactDraws {
		if got, want := one(sim, ops.SampleExact, pos), one(ref, ops.SampleExact, pos); got != want {
			t.Fatalf("position %d: sim exact draws %d, CPU %d", pos, got, want)
		}
	}
	t.Logf("checked against the real jax-compat mode on %d rows and the sim's exact draws on %d rows", len(jaxCheck), len(exactDraws))
}

func fillI32(n int, x int32) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = x
	}
	return s
}

func iota32(n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(i)
	}
	return s
}
