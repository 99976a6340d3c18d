// Package model is the MD4 text transformer (md4.md §6.1; the md4 code's
// networks/transformer.py): a bidirectional LLaMA-style network with RoPE attention, a
// sigmoid-gated GLU MLP, adaLN-Zero time conditioning (or RMSNorm without it), an untied
// output head over the V real tokens, and MD4's initialisation (zero adaLN and zero head, so
// the initial logits are exactly 0 and μ is uniform).
//
// The model is written only against ops.Backend: the forward and backward passes are
// explicit (llm.c style, no autograd), all buffers are allocated once per batch size in a
// Workspace, and parameters carry the canonical names of architecture.md §5.
package model

import (
	"fmt"
	"math"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Config describes the network. Zero values of optional fields take MD4's defaults in
// WithDefaults.
type Config struct {
	Vocab     int            // V real tokens; the mask id is V (embedding has V+1 rows, head V outputs)
	SeqLen    int            // L positions (RoPE positions 0..L−1)
	Dim       int            // D = Heads·HeadDim
	Layers    int            // number of transformer blocks
	Heads     int            // attention heads H (head dim Dh = D/H, must be even)
	MLPHidden int            // Hm; 0 → 32·ceil(floor(8D/3)/32) (md4.md §6.1)
	EmbedDim  int            // E; 0 → D. E ≠ D embeds into E then projects E→D with bias (text8's outside_embed)
	TimeCond  bool           // adaLN-Zero conditioning on t (time_features='t'); false → RMSNorm blocks, no t
	CondDim   int            // Dc, the time-conditioning width (64 for text); required with TimeCond
	MLPAct    ops.Activation // gate activation; MD4 text configs use Sigmoid ("glu")
	NormEps   float32        // LayerNorm/RMSNorm epsilon; 0 → 1e−5
	RoPETheta float64        // 0 → 10000
	TimeScale float64        // sinusoidal time-feature scale; 0 → 1000 (md4.md §3)
	DType     ops.DType      // parameter (master weight) and gradient dtype; 0 → F32 (F64 for gradient checks on the CPU)
	// Compute is the activation dtype; 0 → DType. BF16 with DType F32 is mixed precision
	// (GPU backends): bf16 activations and bf16 copies of the matmul/embedding weights
	// (Param.Half, refreshed by AdamW's Shadow output), fp32 master weights, gradients,
	// optimizer state, normalisation statistics and the (tiny) time-conditioning path.
	Compute ops.DType
	// GenMD4 adds GenMD4's learned per-token schedule (md4.md §4) as the parameter
	// schedule.w_raw [V] (architecture.md §5), initialised to log(e − 1) so that the powers
	// softplus(w_raw) start at 1 (linear). The network does not read it; the GenMD4 trainer
	// (engine/train) fills its gradient and AdamW updates it with the other parameters.
	GenMD4 bool
	// PixelH, PixelW, PixelC (all 0 for text) make this a pixel-token model: the sequence is
	// an H×W×C image in raster order with channels innermost (position (row·W + col)·C + c,
	// data.PixelIndex), and learned row, column and channel embeddings (pos_embed.*) are
	// added to the token embedding so that positions know where they are in the image
	// (issue 7; the paper's image models are U-Nets, md4.md §6.2). SeqLen must be H·W·C.
	PixelH, PixelW, PixelC int
}

// DefaultMLPHidden is MD4's MLP width for model width d: 32·ceil(floor(8d/3)/32)
// (md4.md §6.1): 2048 for d=768, 2752 for d=1024, 352 for d=128.
func DefaultMLPHidden(d int) int {
	h := 8 * d / 3
	return 32 * ((h + 31) / 32)
}

// WithDefaults returns c with zero optional fields replaced by MD4's defaults.
func (c Config) WithDefaults() Config {
	if c.MLPHidden == 0 {
		c.MLPHidden = DefaultMLPHidden(c.Dim)
	}
	if c.EmbedDim == 0 {
		c.EmbedDim = c.Dim
	}
	if c.MLPAct == 0 {
		c.MLPAct = ops.Sigmoid
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
	if c.RoPETheta == 0 {
		c.RoPETheta = 10000
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1000
	}
	if c.DType == 0 {
		c.DType = ops.F32
	}
	if c.Compute == 0 {
		c.Compute = c.DType
	}
	return c
}

// Pixels reports whether c is a pixel-token (image) model.
func (c Config) Pixels() bool { return c.PixelH > 0 }

// Mixed reports whether c (after WithDefaults) is bf16 mixed precision.
func (c Config) Mixed() bool { return c.Compute != c.DType }

// HeadDim returns Dh = D/H.
func (c Config) HeadDim() int { return c.Dim / c.Heads }

// Validate reports the first invalid field with its value and what to do.
func (c Config) Validate() error {
	switch {
	case c.Vocab < 2:
		return fmt.Errorf("model: vocabulary size %d must be at least 2", c.Vocab)
	case c.SeqLen < 1:
		return fmt.Errorf("model: sequence length %d must be at least 1", c.SeqLen)
	case c.Dim < 2 || c.Layers < 1 || c.Heads < 1:
		return fmt.Errorf("model: dim=%d, layers=%d, heads=%d must all be positive (dim ≥ 2)", c.Dim, c.Layers, c.Heads)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("model: dim %d is not divisible by heads %d", c.Dim, c.Heads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("model: head dim %d (= dim %d / heads %d) must be even for RoPE", c.HeadDim(), c.Dim, c.Heads)
	case c.MLPHidden < 1 || c.EmbedDim < 1:
		return fmt.Errorf("model: mlp hidden %d and embed dim %d must be positive", c.MLPHidden, c.EmbedDim)
	case c.TimeCond && (c.CondDim < 4 || c.CondDim%2 != 0):
		return fmt.Errorf("model: time conditioning needs an even cond dim ≥ 4, got %d", c.CondDim)
	case (c.PixelH != 0 || c.PixelW != 0 || c.PixelC != 0) && (c.PixelH < 1 || c.PixelW < 1 || c.PixelC < 1 || c.PixelH*c.PixelW*c.PixelC != c.SeqLen):
		return fmt.Errorf("model: image shape %d×%d×%d must be positive and have H·W·C = sequence length %d", c.PixelH, c.PixelW, c.PixelC, c.SeqLen)
	case c.MLPAct < ops.Sigmoid || c.MLPAct > ops.GELU:
		return fmt.Errorf("model: unknown MLP activation %v", c.MLPAct)
	case c.NormEps <= 0 || c.RoPETheta <= 1 || c.TimeScale <= 0:
		return fmt.Errorf("model: norm eps %v, RoPE theta %v and time scale %v must be positive (theta > 1)", c.NormEps, c.RoPETheta, c.TimeScale)
	case c.DType != ops.F32 && c.DType != ops.F64:
		return fmt.Errorf("model: dtype %v not supported (use f32, or f64 for gradient checks)", c.DType)
	case c.Compute != c.DType && !(c.Compute == ops.BF16 && c.DType == ops.F32):
		return fmt.Errorf("model: compute dtype %v with parameter dtype %v is not supported (use the same dtype, or bf16 compute with f32 parameters)", c.Compute, c.DType)
	}
	return nil
}

func sqrtf(x float64) float64 { return math.Sqrt(x) }
