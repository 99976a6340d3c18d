package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

// Preset is a named starting configuration.
type Preset struct {
	Name        string
	Description string
	Config      RunConfig
}

// gpt2Vocab is the GPT-2 BPE vocabulary size (md4.md §6.4).
const gpt2Vocab = data.GPT2VocabSize

// base is what every preset shares: MD4's optimiser and diffusion settings (md4.md §6.3:
// AdamW b1 0.9, eps 1e-8, decoupled weight decay on all parameters, warmup then cosine, no
// clipping; linear schedule with the code's endpoint shift ε = 1e-4, antithetic times,
// continuous-time loss).
func base() RunConfig {
	return RunConfig{
		DataFormat: "auto", JSONLField: "text", Tokenizer: "text8", HeldOut: 0.1,
		TimeCond: true, CondDim: 64,
		Schedule: "linear", ScheduleEps: 1e-4, Antithetic: true,
		LRSchedule: "cosine", WeightDecay: 0.03, Beta1: 0.9, Beta2: 0.999, AdamEps: 1e-8,
		Seed: 1, EvalBatch: 32, EvalSamples: 1, EvalSeed: 1000,
		LogEvery: 10, Device: "auto", Precision: "auto",
		Pack: "blocks", ImageDownscale: 1, Accum: 1,
	}
}

// presets returns the named presets in display order.
func presets() []Preset {
	tiny := base()
	tiny.Preset = "tiny"
	tiny.SeqLen, tiny.Dim, tiny.Layers, tiny.Heads, tiny.MLPHidden = 128, 128, 4, 4, 352
	tiny.Steps, tiny.Batch, tiny.LR, tiny.Warmup = 600, 32, 2e-3, 50
	tiny.EMA = 0.99
	tiny.EvalEvery, tiny.EvalWindows, tiny.CkptEvery, tiny.LogEvery = 100, 128, 100, 50
	tiny.Out = "runs/tiny"

	text8 := base()
	text8.Preset = "text8"
	text8.SeqLen, text8.Dim, text8.Layers, text8.Heads, text8.EmbedDim = 256, 768, 12, 12, 64
	text8.Steps, text8.Batch, text8.LR, text8.Warmup = 1_000_000, 512, 3e-4, 2000
	text8.EMA = 0.9999
	text8.EvalEvery, text8.EvalWindows, text8.EvalBatch, text8.CkptEvery, text8.LogEvery = 10_000, 0, 64, 10_000, 100
	text8.Out = "runs/text8"

	owtS := base()
	owtS.Preset = "owt-small"
	owtS.Tokenizer, owtS.HeldOut, owtS.DataFormat = "gpt2", 0.02, "auto"
	owtS.SeqLen, owtS.Dim, owtS.Layers, owtS.Heads = 1024, 768, 12, 12
	owtS.Steps, owtS.Batch, owtS.LR, owtS.Warmup = 1_000_000, 512, 3e-4, 2000
	owtS.EMA = 0.9999
	owtS.EvalEvery, owtS.EvalWindows, owtS.EvalBatch, owtS.CkptEvery, owtS.LogEvery = 10_000, 2048, 16, 10_000, 100
	owtS.Out = "runs/owt-small"

	owtM := owtS
	owtM.Preset = "owt-medium"
	owtM.Dim, owtM.Layers, owtM.Heads = 1024, 24, 16
	owtM.Out = "runs/owt-medium"

	// Pixel-token transformers (issue 7): pixels as 256-way tokens, mask 256, positions that
	// know row, column and channel. The paper's image models are U-Nets (md4.md §6.2).
	pixT := base()
	pixT.Preset = "pixels-tiny"
	pixT.Data, pixT.Tokenizer, pixT.ImageDownscale = "mnist", "pixels", 2 // 14×14×1
	pixT.SeqLen, pixT.Dim, pixT.Layers, pixT.Heads, pixT.MLPHidden = 196, 128, 4, 4, 352
	pixT.Steps, pixT.Batch, pixT.LR, pixT.Warmup = 300, 32, 2e-3, 30
	pixT.WeightDecay, pixT.Beta2, pixT.EMA = 0.01, 0.99, 0.99
	pixT.EvalEvery, pixT.EvalWindows, pixT.CkptEvery, pixT.LogEvery = 100, 256, 100, 10
	pixT.Out = "runs/pixels-tiny"

	cifar := base()
	cifar.Preset = "cifar10-pixels"
	cifar.Data, cifar.Tokenizer = "cifar10", "pixels"
	cifar.SeqLen, cifar.Dim, cifar.Layers, cifar.Heads = 3072, 512, 8, 8
	cifar.Steps, cifar.Batch, cifar.LR, cifar.Warmup = 2_000_000, 256, 4e-4, 100
	cifar.WeightDecay, cifar.Beta2, cifar.EMA = 0.01, 0.99, 0.9999
	cifar.EvalEvery, cifar.EvalWindows, cifar.EvalBatch, cifar.CkptEvery, cifar.LogEvery = 10_000, 0, 16, 10_000, 100
	cifar.Out = "runs/cifar10-pixels"

	return []Preset{
		{Name: "tiny", Config: tiny, Description: "CPU demo: char-level (text8 tokenizer by default), L=128, D=128, 4 layers, 4 heads, MLP 352, " +
			"adaLN time conditioning Dc=64, batch 32, AdamW lr 2e-3, 50 warmup steps then cosine over 600 steps (the setup of issue 2's tinyshakespeare check; ~0.25–0.4 s each on 2 cores), " +
			"wd 0.03, b2 0.999. " +
			"EMA decay 0.99: an EMA averages over about 1/(1−decay) steps, so 0.99 follows the last ~100 steps of a " +
			"run of a few hundred steps; MD4's 0.9999 would leave the EMA weights at their initial values for ~10k steps."},
		{Name: "text8", Config: text8, Description: "MD4 text8 (md4.md §6.4): 12 layers, D=768, 12 heads, L=256, outside embedding E=64, V=27, " +
			"batch 512, lr 3e-4 (paper), 2000 warmup then cosine over 1M steps, wd 0.03, b2 0.999, EMA 0.9999; held-out 10% = the " +
			"paper's valid+test 10M characters. The paper trains with dropout 0.05; the engine has no dropout yet, so this preset " +
			"trains without it. GPU-sized: on a CPU one step takes minutes."},
		{Name: "owt-small", Config: owtS, Description: "MD4-S on OpenWebText (md4.md §6.4): GPT-2 small shape 12/768/12, L=1024, V=50257 GPT-2 BPE, " +
			"batch 512, lr 3e-4, 2000 warmup then cosine over 1M steps, wd 0.03, b2 0.999, EMA 0.9999. Train on a corpus prepared with " +
			"'mdm-gpu prepare' (--data NAME.manifest.json: documents with EOS after each, packed into aligned 1024-token blocks, 2% of " +
			"the documents held out); evaluation uses 2048 evenly spaced validation blocks (--eval-windows 0 for all). Paper dropout " +
			"0.02 (no dropout in the engine yet). GPU-sized."},
		{Name: "owt-medium", Config: owtM, Description: "MD4-M on OpenWebText: 24 layers, D=1024, 16 heads, otherwise as owt-small."},
		{Name: "pixels-tiny", Config: pixT, Description: "CPU pixel model: MNIST (--data mnist, --data-dir) average-pooled 2×2 to 14×14×1 " +
			"(L=196; --image-downscale 1 for the full 28×28), pixels as 256-way tokens (mask 256), a transformer with learned row/column/" +
			"channel embeddings, D=128, 4 layers, 4 heads, batch 32, lr 2e-3, 30 warmup then cosine over 300 steps, wd 0.01, b2 0.99, " +
			"EMA 0.99; evaluated in bits per dimension on 256 test images. Not the paper's U-Net (md4.md §6.2)."},
		{Name: "cifar10-pixels", Config: cifar, Description: "CIFAR-10 32×32×3 (L=3072) with the paper's optimisation (md4.md §6.4): " +
			"batch 256, lr 4e-4, 100 warmup then cosine over 2M steps, wd 0.01, b2 0.99, EMA 0.9999, linear schedule; the network is a " +
			"pixel-token transformer (8 layers, D=512, 8 heads, about as many parameters as the paper's 28M U-Net), not the paper's " +
			"U-Net, and trains without the code's dropout 0.1 (the engine has none yet). GPU-sized."},
	}
}

// lookupPreset returns the preset called name.
func lookupPreset(name string) (Preset, error) {
	var names []string
	for _, p := range presets() {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Preset{}, fmt.Errorf("--preset %q: unknown preset; valid: %s (see 'mdm-gpu presets')", name, strings.Join(names, ", "))
}

// presetVocab is the vocabulary size used to count a preset's parameters.
func presetVocab(c RunConfig) (int, string) {
	switch c.Tokenizer {
	case "text8":
		return 27, "text8 (V=27)"
	case "byte":
		return 256, "byte (V=256)"
	case "gpt2":
		return gpt2Vocab, "GPT-2 BPE (V=50257)"
	case "pixels":
		return data.PixelVocabSize, "pixels (V=256)"
	}
	return 27, "char (V from the corpus; counted with V=27)"
}

// printPresets writes the preset table with parameter counts.
func printPresets(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tPARAMS\tL\tD\tLAYERS\tHEADS\tMLP\tBATCH\tLR\tSTEPS\tEMA\tTOKENIZER")
	for _, p := range presets() {
		c := p.Config
		v, tok := presetVocab(c)
		mc := c.ModelConfig(v)
		if sh, ok := presetImageShape(c); ok {
			mc.PixelH, mc.PixelW, mc.PixelC = sh.H, sh.W, sh.C
			tok = fmt.Sprintf("%s, %s %dx%dx%d", tok, c.Data, sh.H, sh.W, sh.C)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%g\t%d\t%g\t%s\n", p.Name, commas(int64(mc.NumParams())), c.SeqLen, c.Dim, c.Layers,
			c.Heads, mc.MLPHidden, c.Batch, c.LR, c.Steps, c.EMA, tok)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, p := range presets() {
		fmt.Fprintf(w, "%s: %s\n\n", p.Name, p.Description)
	}
	fmt.Fprintln(w, "Any value can be overridden with a flag (e.g. --steps 300) or a TOML file (--config run.toml) whose keys are the flag names.")
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func newPresetsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "presets",
		Short: "List the named training presets with their parameter counts",
		Long: `List the named presets that 'mdm-gpu train --preset NAME' starts from, with their
shapes, optimiser settings and parameter counts (the same as 'mdm-gpu train --preset list').`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printPresets(a.stdout)
			return nil
		},
	}
}
