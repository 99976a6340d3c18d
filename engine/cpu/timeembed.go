package cpu

import (
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TimeEmbed writes the sinusoidal time features Out[b, k] = sin(Scale·T[b]·f_k) and
// Out[b, half+k] = cos(Scale·T[b]·f_k), f_k = exp(−k·ln(10⁴)/(half−1)), in float64.
// Times must be in [0, 1].
func (b *Backend) TimeEmbed(p *ops.TimeEmbedParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch p.Out.DType() {
	case ops.F32:
		return timeEmbed[float32](p)
	case ops.F64:
		return timeEmbed[float64](p)
	}
	return unsupported(ops.OpTimeEmbed, p.Out.DType())
}

func timeEmbed[T float](p *ops.TimeEmbedParams) error {
	const op = ops.OpTimeEmbed
	out, e1 := fl[T](op, "Out", p.Out)
	ts, e2 := f64(op, "T", p.T)
	if err := errs(e1, e2); err != nil {
		return err
	}
	for i, t := range ts {
		if !(t >= 0 && t <= 1) {
			return ops.Errorf(op, "T", ops.ErrValue, "time %v at index %d is not in [0, 1]", t, i)
		}
	}
	dc := p.Out.Dim(1)
	half := dc / 2
	for bi, t := range ts {
		row := out[bi*dc : (bi+1)*dc]
		for k := range half {
			f := math.Exp(-float64(k) * math.Log(1e4) / float64(half-1))
			s, c := math.Sincos(p.Scale * t * f)
			row[k], row[half+k] = T(s), T(c)
		}
	}
	return nil
}
