package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"

	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
)

// RunConfig is every setting of a training run that a user can choose. A run's
// configuration is built in three layers (later layers win):
//
//  1. a named preset (--preset, default "tiny"; see presets.go),
//  2. an optional TOML file (--config run.toml) whose keys are the flag names below,
//  3. the flags given explicitly on the command line.
//
// The `toml` tag of each field is both its TOML key and its flag name; `help` is the flag's
// help text; `resume:"free"` marks the fields that may change when a run is resumed (they do
// not affect the training trajectory). The whole struct is logged at the start of training
// and stored as JSON in the checkpoint metadata.
type RunConfig struct {
	Preset string `toml:"preset" json:"preset" help:"named preset the other values start from (see 'mdm-gpu presets'; 'list' prints them)" resume:"free"`

	// Data.
	Data           string  `toml:"data" json:"data" help:"training data: a text file (.txt), JSON Lines (.jsonl, see --jsonl-field), the Brown npm tarball (.tgz), a prepared corpus (NAME.manifest.json from 'mdm-gpu prepare'), an image dataset (mnist, fashion-mnist, cifar10; see --data-dir) or an image file (IDX, CIFAR-10 .bin)" resume:"free"`
	DataDir        string  `toml:"data-dir" json:"data_dir" help:"directory of the image dataset named by --data (default $MDM_DATA_DIR/NAME or ~/.cache/mdm-gpu/datasets/NAME, where 'mdm-gpu data fetch NAME' puts it)" resume:"free"`
	EvalData       string  `toml:"eval-data" json:"eval_data" help:"image runs: the test file (IDX or CIFAR-10 .bin) to evaluate on; default: the dataset's test split, or the last --held-out fraction of an image file" resume:"free"`
	DataFormat     string  `toml:"data-format" json:"data_format" help:"format of --data: auto (by name and extension), text, jsonl, brown, shards (a prepared corpus's manifest), idx, cifar10"`
	JSONLField     string  `toml:"jsonl-field" json:"jsonl_field" help:"string field of each JSON Lines object to train on"`
	Tokenizer      string  `toml:"tokenizer" json:"tokenizer" help:"text8 (a-z and space, V=27), char (characters of the corpus), byte (V=256), gpt2 (GPT-2 BPE, V=50257; a prepared corpus's tokenizer is used by default), pixels (images, V=256, mask 256; automatic for image data)"`
	HeldOut        float64 `toml:"held-out" json:"held_out" help:"fraction of the corpus (its end) held out for evaluation, in (0, 1); prepared corpora have their own split"`
	Pack           string  `toml:"pack" json:"pack" help:"prepared corpora: blocks (aligned L-token blocks of the packed document stream, MD4's OWT setup) or any-offset (windows at any offset)"`
	ImageCrop      string  `toml:"image-crop" json:"image_crop" help:"images: centre crop to HxW pixels (e.g. 20x20) before --image-downscale; empty = whole images"`
	ImageDownscale int     `toml:"image-downscale" json:"image_downscale" help:"images: average-pool K×K pixel blocks (K must divide the height and width; 1 = full resolution)"`

	// Model (md4.md §6.1).
	SeqLen    int  `toml:"seq-len" json:"seq_len" help:"context length L (tokens per training window)"`
	Dim       int  `toml:"dim" json:"dim" help:"model width D"`
	Layers    int  `toml:"layers" json:"layers" help:"number of transformer blocks"`
	Heads     int  `toml:"heads" json:"heads" help:"attention heads (D/heads must be even)"`
	MLPHidden int  `toml:"mlp-hidden" json:"mlp_hidden" help:"gated-MLP hidden width; 0 = MD4's 32·ceil(floor(8D/3)/32)"`
	EmbedDim  int  `toml:"embed-dim" json:"embed_dim" help:"token-embedding width E; 0 = D, E≠D embeds into E and projects to D (text8's outside embedding)"`
	TimeCond  bool `toml:"time-cond" json:"time_cond" help:"condition the network on t with adaLN-Zero (MD4 default); false = RMSNorm blocks without t"`
	CondDim   int  `toml:"cond-dim" json:"cond_dim" help:"width Dc of the time conditioning"`

	// Diffusion (md4.md §1.2, §2.3).
	Schedule    string  `toml:"schedule" json:"schedule" help:"masking schedule: linear (MD4), cosine, poly<k> (e.g. poly2), geometric"`
	ScheduleEps float64 `toml:"schedule-eps" json:"schedule_eps" help:"endpoint shift ε of the md4 code: α ∈ [ε, 1−ε]"`
	Antithetic  bool    `toml:"antithetic" json:"antithetic" help:"stratified (antithetic) times t_b = (u + b/B) mod 1 across the batch"`
	GenMD4      bool    `toml:"genmd4" json:"genmd4" help:"train GenMD4 (md4.md §4): a learned schedule power per token (schedule.w_raw), two masks per sequence and the RLOO gradient; --schedule is not used"`

	// Optimisation (md4.md §6.3).
	Steps         int     `toml:"steps" json:"steps" help:"total training steps (the cosine schedule ends here)"`
	Batch         int     `toml:"batch" json:"batch" help:"sequences per training step"`
	MicroBatch    int     `toml:"micro-batch" json:"micro_batch" help:"sequences per forward/backward pass (must divide --batch); 0 = --batch"`
	LR            float64 `toml:"lr" json:"lr" help:"peak learning rate (AdamW)"`
	LRSchedule    string  `toml:"lr-schedule" json:"lr_schedule" help:"after warmup: cosine (decays to 0 at --steps) or constant"`
	Warmup        int     `toml:"warmup" json:"warmup" help:"linear warmup steps"`
	WeightDecay   float64 `toml:"weight-decay" json:"weight_decay" help:"decoupled AdamW weight decay (all parameters)"`
	Beta1         float64 `toml:"beta1" json:"beta1" help:"AdamW β1"`
	Beta2         float64 `toml:"beta2" json:"beta2" help:"AdamW β2"`
	AdamEps       float64 `toml:"adam-eps" json:"adam_eps" help:"AdamW ε"`
	EMA           float64 `toml:"ema" json:"ema" help:"EMA decay of the weights used for eval and sampling; 0 disables EMA"`
	ClipNorm      float64 `toml:"clip-norm" json:"clip_norm" help:"global gradient-norm clip; 0 disables (MD4 default)"`
	SkipNonFinite bool    `toml:"skip-nonfinite" json:"skip_nonfinite" help:"skip (and count) updates whose loss or gradient is not finite instead of stopping"`
	Seed          uint64  `toml:"seed" json:"seed" help:"seed of the initialisation, training windows, times and masks"`

	// Evaluation during training.
	EvalEvery   int    `toml:"eval-every" json:"eval_every" help:"evaluate the held-out bound every N steps (and always at step 0 and at the end); 0 = only at step 0 and the end" resume:"free"`
	EvalWindows int    `toml:"eval-windows" json:"eval_windows" help:"evaluate at most N held-out windows (evenly spaced); 0 = all" resume:"free"`
	EvalBatch   int    `toml:"eval-batch" json:"eval_batch" help:"sequences per evaluation pass" resume:"free"`
	EvalSamples int    `toml:"eval-samples" json:"eval_samples" help:"time/mask samples K per held-out sequence" resume:"free"`
	EvalSeed    uint64 `toml:"eval-seed" json:"eval_seed" help:"seed of the evaluation's times and masks (fixed: every eval of a run uses the same draws)" resume:"free"`

	// Output and execution.
	Out       string `toml:"out" json:"out" help:"run directory: checkpoint.safetensors and loss.png go here" resume:"free"`
	CkptEvery int    `toml:"ckpt-every" json:"ckpt_every" help:"save a checkpoint every N steps (and always at the end); 0 = only at the end" resume:"free"`
	LogEvery  int    `toml:"log-every" json:"log_every" help:"log a training line every N steps" resume:"free"`
	Device    string `toml:"device" json:"device" help:"backend: auto (a GPU if present, else the CPU), cpu, sim (the CUDA kernels on the CPU simulator), cuda, cuda:N" resume:"free"`
	Precision string `toml:"precision" json:"precision" help:"auto (bf16 mixed precision on cuda, f32 elsewhere), f32, or bf16 (bf16 activations, fp32 master weights; GPU-side backends only)" resume:"free"`
	Threads   int    `toml:"threads" json:"threads" help:"CPU worker goroutines; 0 = all cores (results do not depend on it)" resume:"free"`

	// Data parallelism and telemetry (multi-device.go).
	Devices     string `toml:"devices" json:"devices" help:"data-parallel devices of --device's kind: a count N (the first N devices) or indices 0,1,3 / 0-3 / all; empty = one device. In a multi-process launch (RANK/WORLD_SIZE or Slurm) each process drives one device: LOCAL_RANK, or the index given here" resume:"free"`
	Accum       int    `toml:"accum" json:"accum" help:"gradient-accumulation micro-batches per device and step; --batch is the global batch and must divide by (devices × accum)" resume:"free"`
	MetricsAddr string `toml:"metrics-addr" json:"metrics_addr" help:"serve Prometheus metrics at http://ADDR/metrics (e.g. :9090): training progress and, on GPUs, NVML telemetry; empty = off" resume:"free"`
}

// configField describes one field of RunConfig.
type configField struct {
	Name  string // flag name and TOML key
	Help  string
	Index int  // struct field index
	Free  bool // may change on resume
}

// configFields lists RunConfig's fields in declaration order.
func configFields() []configField {
	t := reflect.TypeFor[RunConfig]()
	var out []configField
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, configField{Name: f.Tag.Get("toml"), Help: f.Tag.Get("help"), Index: i, Free: f.Tag.Get("resume") == "free"})
	}
	return out
}

// addConfigFlags registers one flag per RunConfig field on fs, bound to dst, with dst's
// current values as defaults (the caller fills dst with the default preset first).
func addConfigFlags(fs *pflag.FlagSet, dst *RunConfig) {
	v := reflect.ValueOf(dst).Elem()
	for _, f := range configFields() {
		switch p := v.Field(f.Index).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, f.Name, *p, f.Help)
		case *int:
			fs.IntVar(p, f.Name, *p, f.Help)
		case *uint64:
			fs.Uint64Var(p, f.Name, *p, f.Help)
		case *float64:
			fs.Float64Var(p, f.Name, *p, f.Help)
		case *bool:
			fs.BoolVar(p, f.Name, *p, f.Help)
		default:
			panic(fmt.Sprintf("config field %s has unsupported type %T", f.Name, p))
		}
	}
}

// configSource records which fields a user set explicitly (TOML file or flags), so that a
// resumed run can refuse changes to fields that would alter the trajectory.
type configSource struct {
	File  string          // TOML file, if any
	Keys  map[string]bool // field names set in the file
	Flags map[string]bool // field names set on the command line
}

func (s configSource) explicit(name string) bool { return s.Keys[name] || s.Flags[name] }

func (s configSource) where(name string) string {
	if s.Flags[name] {
		return "--" + name
	}
	return fmt.Sprintf("%q in %s", name, s.File)
}

// resolveConfig builds the configuration: preset, then the TOML file (if any), then the
// flags of fs that were set explicitly (their values are in flagVals).
func resolveConfig(fs *pflag.FlagSet, flagVals *RunConfig, configFile string) (RunConfig, configSource, error) {
	src := configSource{File: configFile, Keys: map[string]bool{}, Flags: map[string]bool{}}
	var fileBytes []byte
	filePreset := ""
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return RunConfig{}, src, fmt.Errorf("--config: %w", err)
		}
		fileBytes = b
		var keys map[string]any
		if err := toml.Unmarshal(b, &keys); err != nil {
			return RunConfig{}, src, fmt.Errorf("--config %s: %s", configFile, tomlError(err))
		}
		for k := range keys {
			src.Keys[k] = true
		}
		if p, ok := keys["preset"].(string); ok {
			filePreset = p
		}
	}
	fields := configFields()
	for _, f := range fields {
		if fl := fs.Lookup(f.Name); fl != nil && fl.Changed {
			src.Flags[f.Name] = true
		}
	}
	name := "tiny"
	switch {
	case src.Flags["preset"]:
		name = flagVals.Preset
	case filePreset != "":
		name = filePreset
	}
	p, err := lookupPreset(name)
	if err != nil {
		return RunConfig{}, src, err
	}
	cfg := p.Config
	if fileBytes != nil {
		dec := toml.NewDecoder(bytes.NewReader(fileBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return RunConfig{}, src, fmt.Errorf("--config %s: %s", configFile, tomlError(err))
		}
	}
	cfg.Preset = name
	dst, from := reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(flagVals).Elem()
	for _, f := range fields {
		if src.Flags[f.Name] {
			dst.Field(f.Index).Set(from.Field(f.Index))
		}
	}
	return cfg, src, nil
}

// tomlError renders go-toml errors with the position or the unknown keys and the list of
// valid keys.
func tomlError(err error) string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var keys []string
		for _, e := range strict.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		var valid []string
		for _, f := range configFields() {
			valid = append(valid, f.Name)
		}
		return fmt.Sprintf("unknown key(s) %s; valid keys are the flag names: %s", strings.Join(keys, ", "), strings.Join(valid, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Sprintf("line %d column %d: %v", row, col, de)
	}
	return err.Error()
}

// Validate checks every field, naming the flag, the value and what to do.
func (c *RunConfig) Validate() error {
	bad := func(flag string, val any, what string) error {
		return fmt.Errorf("--%s %v: %s", flag, val, what)
	}
	switch {
	case c.Steps < 1:
		return bad("steps", c.Steps, "must be at least 1")
	case c.Batch < 1:
		return bad("batch", c.Batch, "must be at least 1")
	case c.MicroBatch < 0:
		return bad("micro-batch", c.MicroBatch, "must be ≥ 0 (0 = the whole batch)")
	case c.MicroBatch > 0 && c.Batch%c.MicroBatch != 0:
		return bad("micro-batch", c.MicroBatch, fmt.Sprintf("must divide --batch %d", c.Batch))
	case c.SeqLen < 1:
		return bad("seq-len", c.SeqLen, "must be at least 1")
	case c.Dim < 2:
		return bad("dim", c.Dim, "must be at least 2")
	case c.Layers < 1:
		return bad("layers", c.Layers, "must be at least 1")
	case c.Heads < 1:
		return bad("heads", c.Heads, "must be at least 1")
	case c.Dim%c.Heads != 0 || (c.Dim/c.Heads)%2 != 0:
		return fmt.Errorf("--dim %d / --heads %d must give an even head dimension (RoPE rotates pairs); choose e.g. --heads %d", c.Dim, c.Heads, largestEvenHeadCount(c.Dim, c.Heads))
	case c.MLPHidden < 0:
		return bad("mlp-hidden", c.MLPHidden, "must be ≥ 0 (0 = MD4's default width)")
	case c.EmbedDim < 0:
		return bad("embed-dim", c.EmbedDim, "must be ≥ 0 (0 = --dim)")
	case c.TimeCond && (c.CondDim < 4 || c.CondDim%2 != 0):
		return bad("cond-dim", c.CondDim, "must be even and at least 4 with --time-cond")
	case !(c.HeldOut > 0 && c.HeldOut < 1):
		return bad("held-out", c.HeldOut, "must be a fraction in (0, 1), e.g. 0.1 for the last 10%")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("lr", c.LR, "must be positive and finite")
	case c.Warmup < 0:
		return bad("warmup", c.Warmup, "must be ≥ 0")
	case c.LRSchedule != "cosine" && c.LRSchedule != "constant":
		return bad("lr-schedule", fmt.Sprintf("%q", c.LRSchedule), "is not one of cosine, constant")
	case !(c.WeightDecay >= 0):
		return bad("weight-decay", c.WeightDecay, "must be ≥ 0")
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return bad("beta1", c.Beta1, "must be in [0, 1)")
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return bad("beta2", c.Beta2, "must be in [0, 1)")
	case !(c.AdamEps > 0):
		return bad("adam-eps", c.AdamEps, "must be positive")
	case !(c.EMA >= 0 && c.EMA < 1):
		return bad("ema", c.EMA, "must be in [0, 1) (0 disables EMA)")
	case !(c.ClipNorm >= 0):
		return bad("clip-norm", c.ClipNorm, "must be ≥ 0 (0 disables clipping)")
	case !(c.ScheduleEps > 0 && c.ScheduleEps < 0.5):
		return bad("schedule-eps", c.ScheduleEps, "must be in (0, 0.5); MD4 uses 1e-4")
	case c.EvalEvery < 0:
		return bad("eval-every", c.EvalEvery, "must be ≥ 0 (0 = only at the end)")
	case c.EvalWindows < 0:
		return bad("eval-windows", c.EvalWindows, "must be ≥ 0 (0 = all held-out windows)")
	case c.EvalBatch < 1:
		return bad("eval-batch", c.EvalBatch, "must be at least 1")
	case c.EvalSamples < 1:
		return bad("eval-samples", c.EvalSamples, "must be at least 1")
	case c.CkptEvery < 0:
		return bad("ckpt-every", c.CkptEvery, "must be ≥ 0 (0 = only at the end)")
	case c.LogEvery < 1:
		return bad("log-every", c.LogEvery, "must be at least 1")
	case c.Threads < 0:
		return bad("threads", c.Threads, "must be ≥ 0 (0 = all cores)")
	case c.Out == "":
		return bad("out", `""`, "give a run directory")
	case c.Accum < 0:
		return bad("accum", c.Accum, "must be at least 1 (micro-batches per device and step)")
	case c.ImageDownscale < 0:
		return bad("image-downscale", c.ImageDownscale, "must be at least 1 (1 = full resolution)")
	case c.Pack != "" && c.Pack != "blocks" && c.Pack != "any-offset":
		return bad("pack", fmt.Sprintf("%q", c.Pack), "is not one of blocks, any-offset")
	}
	if _, _, err := parseCrop(c.ImageCrop); err != nil {
		return err
	}
	if err := checkDevicesSyntax(c.Devices); err != nil {
		return err
	}
	if _, err := diffusion.ParseSchedule(c.Schedule, true, c.ScheduleEps); err != nil {
		return fmt.Errorf("--schedule %q: %w", c.Schedule, err)
	}
	if err := checkTokenizerName(c.Tokenizer); err != nil {
		return err
	}
	switch c.DataFormat {
	case "auto", "text", "jsonl", "brown", "shards", "idx", "cifar10":
	default:
		return bad("data-format", fmt.Sprintf("%q", c.DataFormat), "is not one of auto, text, jsonl, brown, shards, idx, cifar10")
	}
	if err := checkDevice(c.Device); err != nil {
		return err
	}
	return checkPrecision(c.Precision, c.Device)
}

func largestEvenHeadCount(dim, heads int) int {
	for h := min(heads, dim/2); h > 1; h-- {
		if dim%h == 0 && (dim/h)%2 == 0 {
			return h
		}
	}
	return 1
}

// normalize fills the fields that configurations stored by older versions lack (a zero
// value there means the old behaviour).
func (c *RunConfig) normalize() {
	if c.Accum == 0 {
		c.Accum = 1
	}
	if c.ImageDownscale == 0 {
		c.ImageDownscale = 1
	}
	if c.Pack == "" {
		c.Pack = "blocks"
	}
}

// ModelConfig returns the network configuration for a vocabulary of v tokens.
func (c *RunConfig) ModelConfig(v int) model.Config {
	return model.Config{Vocab: v, SeqLen: c.SeqLen, Dim: c.Dim, Layers: c.Layers, Heads: c.Heads,
		MLPHidden: c.MLPHidden, EmbedDim: c.EmbedDim, TimeCond: c.TimeCond, CondDim: c.CondDim, GenMD4: c.GenMD4}.WithDefaults()
}

// JSON returns the configuration as indented JSON.
func (c *RunConfig) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// mergeResume combines the configuration stored in a checkpoint with what the user asked
// for now: fields marked resume:"free" may change; any other field the user set
// explicitly must equal the stored value, else the resume is refused naming the field.
func mergeResume(stored, asked RunConfig, src configSource, path string) (RunConfig, error) {
	out := stored
	sv, av, ov := reflect.ValueOf(stored), reflect.ValueOf(asked), reflect.ValueOf(&out).Elem()
	var diffs []string
	for _, f := range configFields() {
		if !src.explicit(f.Name) {
			continue
		}
		a, s := av.Field(f.Index), sv.Field(f.Index)
		if f.Free {
			ov.Field(f.Index).Set(a)
			continue
		}
		if !reflect.DeepEqual(a.Interface(), s.Interface()) {
			diffs = append(diffs, fmt.Sprintf("%s: the checkpoint was trained with %v, %s asks for %v", f.Name, s.Interface(), src.where(f.Name), a.Interface()))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		// A setting that contradicts the checkpoint is a usage error (exit 2); reading the
		// checkpoint failed earlier, with its own (non-usage) error.
		return out, usagef("cannot resume %s with a different training configuration (it would not continue the same run):\n  %s\nresume without these settings (the checkpoint's values are used), or start a new run with another --out",
			path, strings.Join(diffs, "\n  "))
	}
	return out, nil
}

// diffModelConfig names the first field in which two model configurations differ.
func diffModelConfig(a, b model.Config) string {
	// The compute dtype may change on resume (fp32 master weights are stored either way).
	a.Compute, b.Compute = 0, 0
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	t := av.Type()
	for i := range t.NumField() {
		if !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			return fmt.Sprintf("%s: checkpoint %v, now %v", t.Field(i).Name, av.Field(i).Interface(), bv.Field(i).Interface())
		}
	}
	return ""
}
