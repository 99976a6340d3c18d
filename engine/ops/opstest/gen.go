package opstest

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// gen draws a case's inputs from Philox: element i of the s-th draw of a case with seed
// k is addressed (k, s, PurposeInit, i), so inputs never depend on anything but the
// case's name and the order of its own draws.
type gen struct {
	seed   uint64
	stream uint64
}

func newGen(name string) *gen { return &gen{seed: seedOf(name)} }

func (g *gen) next() uint64 { g.stream++; return g.stream }

// uniform returns n values uniform in [lo, hi).
func (g *gen) uniform(n int, lo, hi float64) []float64 {
	s := g.next()
	out := make([]float64, n)
	for i := 0; i < n; i += 2 {
		u1, u2 := rng.Uniform64Pair(g.seed, s, rng.PurposeInit, uint64(i/2))
		out[i] = lo + (hi-lo)*u1
		if i+1 < n {
			out[i+1] = lo + (hi-lo)*u2
		}
	}
	return out
}

// normal returns n values from N(mean, std²).
func (g *gen) normal(n int, mean, std float64) []float64 {
	s := g.next()
	out := make([]float64, n)
	for i := range out {
		out[i] = mean + std*rng.Normal64(g.seed, s, rng.PurposeInit, uint64(i))
	}
	return out
}

// ints returns n integers uniform in [lo, hi).
func (g *gen) ints(n int, lo, hi int) []int32 {
	u := g.uniform(n, 0, 1)
	out := make([]int32, n)
	for i, v := range u {
		out[i] = int32(lo + int(v*float64(hi-lo)))
	}
	return out
}

// perm returns a random permutation of [0, n).
func (g *gen) perm(n int) []int32 {
	u := g.uniform(n, 0, 1)
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := int(u[i] * float64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// fillConst returns n copies of v.
func fillConst(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// nan returns n NaNs: the initial contents of outputs the op must overwrite without
// reading.
func nans(n int) []float64 { return fillConst(n, math.NaN()) }

// garbage returns n int32 values that are not valid tokens: the initial contents of
// integer outputs the op must overwrite.
func garbage(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = -12345
	}
	return out
}
