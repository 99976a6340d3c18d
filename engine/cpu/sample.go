package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// SampleStep is one ancestral sampling step (ops.SampleParams, ops.SampleMode). Every
// listed position must be in range, distinct and currently masked. The draws are computed
// first and committed to Out only when every row succeeded, so on error Out is unchanged
// (apart from the copy of Z when Out is not Z).
func (b *Backend) SampleStep(p *ops.SampleParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Logits.DType() {
	case ops.F32:
		return sampleStep[float32](b, p)
	case ops.F64:
		return sampleStep[float64](b, p)
	}
	return unsupported(ops.OpSampleStep, p.Logits.DType())
}

// Row failure codes of a sampleJob.
const (
	sampleOK = iota
	sampleNonFinite
)

type sampleJob[T float] struct {
	b       *Backend
	logits  []T
	rows    []int32
	tokens  []int32
	rowErr  []int32
	v       int
	mode    ops.SampleMode
	pUnmask float64
	topP    float64
	maskID  int32
	seed    uint64
	step    uint64
	offset  uint64    // IndexOffset
	classQ  []float64 // ClassUnmask (GenMD4), or nil
}

func (j *sampleJob[T]) run(w, lo, hi int) {
	ws := &j.b.pool.scratch[w]
	for i := lo; i < hi; i++ {
		tok, ok := j.draw(ws, i)
		j.tokens[i] = tok
		j.rowErr[i] = sampleOK
		if !ok {
			j.rowErr[i] = sampleNonFinite
		}
	}
}

// draw returns the new value of row i's position; ok is false when the row's logits are
// not finite where they were needed.
func (j *sampleJob[T]) draw(ws *wscratch, i int) (tok int32, ok bool) {
	v := j.v
	row := j.logits[i*v : (i+1)*v]
	pos := j.offset + uint64(j.rows[i]) // Philox index of the position
	switch j.mode {
	case ops.SampleArgmax:
		best := -1
		for c, x := range row {
			if x != x {
				return 0, false
			}
			if best < 0 || x > row[best] {
				best = c
			}
		}
		if best < 0 {
			return 0, false // empty vocabulary
		}
		return int32(best), true
	case ops.SampleExact:
		if j.classQ != nil {
			break // GenMD4: the unmask decision depends on the drawn token (below)
		}
		u1 := rng.Uniform64(j.seed, j.step, rng.PurposeSampleUnmask, pos)
		if !(u1 < j.pUnmask) {
			return j.maskID, true
		}
	}
	// Unnormalised probabilities e_j = exp(l_j − max) in float64.
	e := ws.accBuf(0, v)
	m := math.Inf(-1)
	for _, x := range row {
		xf := float64(x)
		if xf != xf || xf > math.MaxFloat64 {
			return 0, false
		}
		if xf > m {
			m = xf
		}
	}
	if math.IsInf(m, -1) {
		return 0, false // every logit is −Inf: no distribution
	}
	for c, x := range row {
		e[c] = math.Exp(float64(x) - m)
	}
	if j.topP > 0 && j.topP < 1 {
		topPFilter(e, j.topP, ws)
	}
	if j.mode == ops.SampleExact {
		u2 := rng.Uniform64(j.seed, j.step, rng.PurposeSampleToken, pos)
		tok := inverseCDF(e, u2)
		if j.classQ != nil {
			// GenMD4 (ops.SampleParams.ClassUnmask): token tok with probability
			// μ_tok·q_tok, else stay masked.
			if u1 := rng.Uniform64(j.seed, j.step, rng.PurposeSampleUnmask, pos); !(u1 < j.classQ[tok]) {
				return j.maskID, true
			}
		}
		return int32(tok), true
	}
	return j.gumbel(e, pos, ws), true
}

// chunkSum sums e in the reference order of ops.SampleCDFChunk: sequentially within each
// chunk, then the chunk sums sequentially.
func chunkSum(e []float64) float64 {
	var total float64
	for c0 := 0; c0 < len(e); c0 += ops.SampleCDFChunk {
		var s float64
		for _, x := range e[c0:min(c0+ops.SampleCDFChunk, len(e))] {
			s += x
		}
		total += s
	}
	return total
}

// inverseCDF draws from e (unnormalised, ≥ 0, at least one > 0) at the uniform u, as
// documented at ops.SampleExact: target t = u·total; the first chunk c whose prefix
// P_c + C_c exceeds t; in it, the first j whose in-chunk partial sum exceeds t − P_c;
// when rounding leaves none, the last j with e_j > 0 (in that chunk, else overall).
func inverseCDF(e []float64, u float64) int {
	t := u * chunkSum(e)
	var prefix float64
	for c0 := 0; c0 < len(e); c0 += ops.SampleCDFChunk {
		chunk := e[c0:min(c0+ops.SampleCDFChunk, len(e))]
		var cs float64
		for _, x := range chunk {
			cs += x
		}
		if prefix+cs > t {
			r := t - prefix
			var s float64
			last := -1
			for k, x := range chunk {
				s += x
				if x > 0 {
					last = k
				}
				if s > r && x > 0 {
					return c0 + k
				}
			}
			if last >= 0 {
				return c0 + last
			}
		}
		prefix += cs
	}
	for k := len(e) - 1; k > 0; k-- {
		if e[k] > 0 {
			return k
		}
	}
	return 0
}

// topPFilter zeroes the entries of e outside the nucleus (ops.SampleParams): with
// μ_j = float32(e_j/S) (S in the chunk order), τ is the largest non-negative float32 with
// Σ_{μ_j ≥ τ} μ_j ≥ topP (float64 sum in the chunk order), found by a greedy search over
// bits 30..0 of τ's bit pattern; entries with μ_j < τ are set to 0. The largest entry
// always survives.
func topPFilter(e []float64, topP float64, ws *wscratch) {
	s := chunkSum(e)
	if cap(ws.f32[2]) < len(e) {
		ws.f32[2] = make([]float32, len(e))
	}
	mu := ws.f32[2][:len(e)]
	for c, x := range e {
		mu[c] = float32(x / s)
	}
	mass := func(tau float32) float64 {
		var total float64
		for c0 := 0; c0 < len(mu); c0 += ops.SampleCDFChunk {
			var cs float64
			for _, x := range mu[c0:min(c0+ops.SampleCDFChunk, len(mu))] {
				if x >= tau {
					cs += float64(x)
				}
			}
			total += cs
		}
		return total
	}
	var bits uint32
	for bit := 30; bit >= 0; bit-- {
		cand := bits | 1<<bit
		if cand > 0x7F800000 { // beyond +Inf: NaN patterns
			continue
		}
		if mass(math.Float32frombits(cand)) >= topP {
			bits = cand
		}
	}
	tau := math.Float32frombits(bits)
	for c := range e {
		if mu[c] < tau {
			e[c] = 0
		}
	}
}

// gumbel is the jax-compat draw (ops.SampleJAXCompat): float32 Gumbel-max over
// [log(PUnmask·μ_j), log(1 − PUnmask)] with index V meaning "stay masked".
func (j *sampleJob[T]) gumbel(e []float64, pos uint64, ws *wscratch) int32 {
	v := j.v
	s := chunkSum(e)
	pu := float32(j.pUnmask)
	pm := 1 - pu
	base := pos * uint64(v+1)
	best, bestScore := -1, float32(0)
	consider := func(c int, prob float32) {
		if !(prob > 0) {
			return // log 0 = −Inf never wins (select, not arithmetic on −Inf)
		}
		u := rng.Uniform32JAX(j.seed, j.step, rng.PurposeSampleToken, base+uint64(c))
		g := -float32(math.Log(float64(-float32(math.Log(float64(u))))))
		score := float32(math.Log(float64(prob))) + g
		if best < 0 || score > bestScore {
			best, bestScore = c, score
		}
	}
	for c, x := range e {
		consider(c, pu*float32(x/s))
	}
	consider(v, pm)
	if best < 0 || best == v {
		return j.maskID
	}
	return int32(best)
}

func sampleStep[T float](b *Backend, p *ops.SampleParams) error {
	const op = ops.OpSampleStep
	z, e1 := i32(op, "Z", p.Z)
	out, e2 := i32(op, "Out", p.Out)
	logits, e3 := fl[T](op, "Logits", p.Logits)
	rowsIdx, e4 := i32(op, "Rows", p.Rows)
	classQ, e5 := f64(op, "ClassUnmask", p.ClassUnmask)
	if err := errs(e1, e2, e3, e4, e5); err != nil {
		return err
	}
	if p.Mode != ops.SampleExact {
		classQ = nil // argmax ignores it (jax-compat is refused by Validate)
	}
	if err := b.checkDistinct(op, "Rows", rowsIdx, len(z)); err != nil {
		return err
	}
	l := max(p.Z.Dim(1), 1)
	for i, r := range rowsIdx {
		if z[r] != p.MaskID {
			return ops.Errorf(op, "Rows", ops.ErrValue, "position %d (Z[%d, %d], row %d) holds %d, not the mask id %d; only masked positions can be sampled",
				r, int(r)/l, int(r)%l, i, z[r], p.MaskID)
		}
	}
	n := len(rowsIdx)
	if n > 0 {
		for k, q := range classQ {
			if !(q >= 0 && q <= 1) {
				return ops.Errorf(op, "ClassUnmask", ops.ErrValue, "probability %v of token %d is not in [0, 1]", q, k)
			}
		}
	}
	if cap(b.tokens) < n {
		b.tokens = make([]int32, n)
		b.rowErr = make([]int32, n)
	}
	j := getJob[sampleJob[T]](b, jobSample, dtIndex[T]())
	*j = sampleJob[T]{b: b, logits: logits, rows: rowsIdx, tokens: b.tokens[:n], rowErr: b.rowErr[:n],
		v: p.Logits.Dim(1), mode: p.Mode, pUnmask: p.PUnmask, topP: p.TopP, maskID: p.MaskID, seed: p.Seed, step: p.Step, offset: p.IndexOffset, classQ: classQ}
	b.pool.run(j, n, b.grainFor(8*p.Logits.Dim(1)))
	*j = sampleJob[T]{}
	for i, code := range b.rowErr[:n] {
		if code != sampleOK {
			return ops.Errorf(op, "Logits", ops.ErrNonFinite, "row %d (position %d) has a NaN or +Inf logit, or only −Inf logits", i, rowsIdx[i])
		}
	}
	if !sameStorage(out, z) {
		copy(out, z)
	}
	for i, r := range rowsIdx {
		out[r] = b.tokens[i]
	}
	return nil
}
