package cuda

import (
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func TestNormParity(t *testing.T) {
	enrParity(t, []ops.Op{ops.OpNormFwd, ops.OpNormBwd})
}

// TestNormBwdAliasedDX: DX may alias DOut or X (as in the CPU reference): the parameter
// gradients are computed before DX is written, and each DX element is written by the lane
// that read it. The results equal those of a separate DX bit for bit.
func TestNormBwdAliasedDX(t *testing.T) {
	const b, l, d = 2, 13, 37
	n := b * l
	s := uint64(99)
	rnd := func() float32 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return float32(int64(s%2001)-1000) / 500 }
	fill := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = rnd()
		}
		return v
	}
	x, dout, scale, weight := fill(n*d), fill(n*d), fill(b*d), fill(d)
	want := map[string]map[string][]uint64{} // the non-aliased results per kind and schedule
	for _, kind := range []ops.NormKind{ops.LayerNorm, ops.RMSNorm} {
		for _, alias := range []string{"none", "DOut", "X"} {
			for _, cfg := range enrSimConfigs[:2] {
				be := NewBackend(NewSimDevice(cfg.opts...), WithGuardBands(256))
				xt := enrUpload(t, be, ops.F32, x, n, d)
				dyt := enrUpload(t, be, ops.F32, dout, n, d)
				p := &ops.NormBwdParams{Kind: kind, DOut: dyt, X: xt, RowsPerGroup: l,
					Scale:  enrUpload(t, be, ops.F32, scale, b, d),
					DShift: enrUpload(t, be, ops.F32, make([]float32, b*d), b, d),
					DScale: enrUpload(t, be, ops.F32, make([]float32, b*d), b, d),
					Rstd:   enrUpload(t, be, ops.F32, make([]float32, n), n),
				}
				// statistics from the forward pass
				fp := &ops.NormParams{Kind: kind, Eps: 1e-5, X: xt, Out: enrUpload(t, be, ops.F32, make([]float32, n*d), n, d),
					Rstd: p.Rstd}
				if kind == ops.LayerNorm {
					p.Mean = enrUpload(t, be, ops.F32, make([]float32, n), n)
					fp.Mean = p.Mean
				} else {
					p.Weight = enrUpload(t, be, ops.F32, weight, d)
					p.DWeight = enrUpload(t, be, ops.F32, make([]float32, d), d)
					fp.Weight = p.Weight
				}
				if err := be.NormFwd(fp); err != nil {
					t.Fatal(err)
				}
				switch alias {
				case "none":
					p.DX = enrUpload(t, be, ops.F32, make([]float32, n*d), n, d)
				case "DOut":
					p.DX = dyt
				case "X":
					p.DX = xt
				}
				if err := be.NormBwd(p); err != nil {
					t.Fatal(err)
				}
				got := map[string][]uint64{"DX": enrBits(t, be, p.DX), "DShift": enrBits(t, be, p.DShift), "DScale": enrBits(t, be, p.DScale)}
				if p.DWeight != nil {
					got["DWeight"] = enrBits(t, be, p.DWeight)
				}
				if err := be.CheckGuards(); err != nil {
					t.Fatal(err)
				}
				key := kind.String() + "/" + cfg.name
				if alias == "none" {
					want[key] = got
					continue
				}
				for name, w := range want[key] {
					for i := range w {
						if got[name][i] != w[i] {
							t.Errorf("%s, DX aliasing %s: %s[%d] = %v, want %v", key, alias, name, i,
								math.Float32frombits(uint32(got[name][i])), math.Float32frombits(uint32(w[i])))
							break
						}
					}
				}
			}
		}
	}
}
