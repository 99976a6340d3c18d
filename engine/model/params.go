package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// InitKind says how a parameter is initialised (md4.md §6.1, Flax defaults).
type InitKind uint8

const (
	// InitZero: adaLN projections and the output head (adaLN-Zero; zero logits at init),
	// and every bias.
	InitZero InitKind = iota + 1
	// InitOne: RMSNorm scales.
	InitOne
	// InitTruncNormal: variance_scaling(Scale, "fan_in", "truncated_normal"): a normal
	// truncated to ±2 standard deviations, rescaled to variance Scale/FanIn. Scale 1 is
	// Flax's LeCun normal (Dense default); the MLP uses Scale = 2/Layers
	// (depth_scaled_init).
	InitTruncNormal
	// InitNormal: normal with variance Scale/FanIn; the token embedding uses 1/D.
	InitNormal
	// InitConst: every element equals Scale (GenMD4's schedule.w_raw: log(e − 1)).
	InitConst
)

// GenRawInit is the initial value of GenMD4's schedule.w_raw, log(e − 1) ≈ 0.5413, for which
// the power softplus(w_raw) is 1 (diffusion.GenRawInit).
var GenRawInit = math.Log(math.E - 1)

// Spec is one parameter tensor: its canonical name (architecture.md §5), shape ([out, in]
// for linear weights, PyTorch convention) and initialisation.
type Spec struct {
	Name  string
	Shape []int
	Init  InitKind
	FanIn int
	Scale float64
}

// Numel returns the number of elements.
func (s Spec) Numel() int {
	n := 1
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// ParamSpecs lists the parameters of c (after WithDefaults) in canonical order.
func (c Config) ParamSpecs() []Spec {
	D, Dc, Hm, E, V := c.Dim, c.CondDim, c.MLPHidden, c.EmbedDim, c.Vocab
	var s []Spec
	lin := func(name string, out, in int, init InitKind, scale float64) {
		s = append(s, Spec{Name: name, Shape: []int{out, in}, Init: init, FanIn: in, Scale: scale})
	}
	vec := func(name string, n int, init InitKind) {
		s = append(s, Spec{Name: name, Shape: []int{n}, Init: init, FanIn: n, Scale: 1})
	}
	s = append(s, Spec{Name: "token_embed.weight", Shape: []int{V + 1, E}, Init: InitNormal, FanIn: E, Scale: 1})
	if c.Pixels() {
		for _, pe := range []struct {
			name string
			n    int
		}{{"row", c.PixelH}, {"col", c.PixelW}, {"channel", c.PixelC}} {
			s = append(s, Spec{Name: "pos_embed." + pe.name + ".weight", Shape: []int{pe.n, E}, Init: InitNormal, FanIn: E, Scale: 1})
		}
	}
	if E != D {
		lin("embed_proj.weight", D, E, InitTruncNormal, 1)
		vec("embed_proj.bias", D, InitZero)
	}
	if c.TimeCond {
		lin("time_embed.fc1.weight", 4*Dc, Dc, InitTruncNormal, 1)
		vec("time_embed.fc1.bias", 4*Dc, InitZero)
		lin("time_embed.fc2.weight", Dc, 4*Dc, InitTruncNormal, 1)
		vec("time_embed.fc2.bias", Dc, InitZero)
	}
	mlpScale := 2 / float64(c.Layers)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		if c.TimeCond {
			lin(p+"adaln.weight", 6*D, Dc, InitZero, 1)
			vec(p+"adaln.bias", 6*D, InitZero)
		} else {
			vec(p+"norm1.weight", D, InitOne)
		}
		for _, n := range []string{"q", "k", "v", "o"} {
			lin(p+"attn."+n+".weight", D, D, InitTruncNormal, 1)
		}
		if !c.TimeCond {
			vec(p+"norm2.weight", D, InitOne)
		}
		lin(p+"mlp.w1.weight", Hm, D, InitTruncNormal, mlpScale)
		lin(p+"mlp.w3.weight", Hm, D, InitTruncNormal, mlpScale)
		lin(p+"mlp.w2.weight", D, Hm, InitTruncNormal, mlpScale)
	}
	if c.TimeCond {
		lin("final.adaln.weight", 2*D, Dc, InitZero, 1)
		vec("final.adaln.bias", 2*D, InitZero)
	} else {
		vec("final.norm.weight", D, InitOne)
	}
	lin("head.weight", V, D, InitZero, 1)
	if c.GenMD4 {
		s = append(s, Spec{Name: "schedule.w_raw", Shape: []int{V}, Init: InitConst, FanIn: V, Scale: GenRawInit})
	}
	return s
}

// NumParams returns the total parameter count of c (after WithDefaults). md4.md §8.15:
// text8 88,734,272; OWT-S 165,857,344; OWT-M 416,240,960.
func (c Config) NumParams() int {
	n := 0
	for _, s := range c.WithDefaults().ParamSpecs() {
		n += s.Numel()
	}
	return n
}

// truncNormalStd is the standard deviation of a standard normal truncated to [−2, 2]; Flax
// divides by it so that the truncated draw has the requested variance.
const truncNormalStd = 0.87962566103423978

// InitValues returns the initial values of parameter number id (its index in ParamSpecs)
// in float64, drawn from Philox at (seed, step = id·64 + attempt, PurposeInit, element):
// truncated normals use rejection with up to 64 attempts per element (then clamp; the
// chance of needing it is below 10^−85).
func InitValues(s Spec, id int, seed uint64) []float64 {
	out := make([]float64, s.Numel())
	switch s.Init {
	case InitZero:
	case InitOne:
		for i := range out {
			out[i] = 1
		}
	case InitConst:
		for i := range out {
			out[i] = s.Scale
		}
	case InitNormal:
		std := math.Sqrt(s.Scale / float64(s.FanIn))
		for i := range out {
			out[i] = std * rng.Normal64(seed, uint64(id)*64, rng.PurposeInit, uint64(i))
		}
	case InitTruncNormal:
		std := math.Sqrt(s.Scale/float64(s.FanIn)) / truncNormalStd
		for i := range out {
			z := 2.0
			for a := uint64(0); a < 64; a++ {
				v := rng.Normal64(seed, uint64(id)*64+a, rng.PurposeInit, uint64(i))
				if v >= -2 && v <= 2 {
					z = v
					break
				}
			}
			out[i] = std * z
		}
	}
	return out
}

// Param is one parameter tensor on the backend with its gradient buffer.
type Param struct {
	Spec
	W    *ops.Tensor // value (the fp32 master weight in mixed precision)
	Grad *ops.Tensor // gradient, accumulated by Backward; zeroed by ZeroGrad
	// Half is the bf16 copy that the forward and backward passes read in mixed precision
	// (nil otherwise, and for parameters used in fp32: norms, biases, the conditioning
	// path). Model.SyncHalf refreshes it from W; AdamW refreshes it as its Shadow output.
	Half *ops.Tensor
}

// fwd returns the tensor the passes read: Half in mixed precision, else W.
func (p *Param) fwd() *ops.Tensor {
	if p.Half != nil {
		return p.Half
	}
	return p.W
}

// halfParam reports whether the parameter named name is read by bf16 ops in mixed
// precision (the embedding table and every matmul weight outside the conditioning path).
func halfParam(name string) bool {
	switch {
	case name == "token_embed.weight", name == "embed_proj.weight", name == "head.weight", strings.HasPrefix(name, "pos_embed."):
		return true
	case strings.HasPrefix(name, "blocks.") && (strings.Contains(name, ".attn.") || strings.Contains(name, ".mlp.")):
		return true
	}
	return false
}
