package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// ropeTable caches cos and sin of the RoPE angles pos·Theta^(−2k/Dh) in float64 for one
// (L, Dh, Theta); entry pos·(Dh/2) + k.
type ropeTable struct {
	l, dh    int
	theta    float64
	cos, sin []float64
}

func (r *ropeTable) get(l, dh int, theta float64) {
	if r.l == l && r.dh == dh && r.theta == theta && r.cos != nil {
		return
	}
	half := dh / 2
	if cap(r.cos) < l*half {
		r.cos = make([]float64, l*half)
		r.sin = make([]float64, l*half)
	}
	r.cos, r.sin = r.cos[:l*half], r.sin[:l*half]
	for k := range half {
		freq := math.Pow(theta, -float64(2*k)/float64(dh))
		for pos := range l {
			s, c := math.Sincos(float64(pos) * freq)
			r.cos[pos*half+k], r.sin[pos*half+k] = c, s
		}
	}
	r.l, r.dh, r.theta = l, dh, theta
}

// RoPE rotates the adjacent channel pairs (2k, 2k+1) of every head by pos·Theta^(−2k/Dh)
// (by the negative angle with Inverse). The rotation is computed in float64. Out may be X.
func (b *Backend) RoPE(p *ops.RoPEParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.X.DType() {
	case ops.F32:
		return rope[float32](b, p)
	case ops.F64:
		return rope[float64](b, p)
	}
	return unsupported(ops.OpRoPE, p.X.DType())
}

type ropeJob[T float] struct {
	out, x   []T
	cos, sin []float64
	l, h, dh int
	inverse  bool
}

// run rotates rows (b, l) of [B·L, H·Dh] in [lo, hi).
func (j *ropeJob[T]) run(_, lo, hi int) {
	half := j.dh / 2
	d := j.h * j.dh
	for r := lo; r < hi; r++ {
		pos := r % j.l
		cs, sn := j.cos[pos*half:(pos+1)*half], j.sin[pos*half:(pos+1)*half]
		for h := 0; h < j.h; h++ {
			base := r*d + h*j.dh
			x := j.x[base : base+j.dh]
			out := j.out[base : base+j.dh]
			for k := range half {
				c, s := cs[k], sn[k]
				if j.inverse {
					s = -s
				}
				x0, x1 := float64(x[2*k]), float64(x[2*k+1])
				out[2*k] = T(x0*c - x1*s)
				out[2*k+1] = T(x0*s + x1*c)
			}
		}
	}
}

func rope[T float](b *Backend, p *ops.RoPEParams) error {
	const op = ops.OpRoPE
	x, e1 := fl[T](op, "X", p.X)
	out, e2 := fl[T](op, "Out", p.Out)
	if err := errs(e1, e2); err != nil {
		return err
	}
	bs, l, h, dh := p.X.Dim(0), p.X.Dim(1), p.X.Dim(2), p.X.Dim(3)
	b.rope.get(l, dh, p.Theta)
	j := getJob[ropeJob[T]](b, jobRoPE, dtIndex[T]())
	*j = ropeJob[T]{out: out, x: x, cos: b.rope.cos, sin: b.rope.sin, l: l, h: h, dh: dh, inverse: p.Inverse}
	b.pool.run(j, bs*l, b.grainFor(h*dh))
	*j = ropeJob[T]{}
	return nil
}
