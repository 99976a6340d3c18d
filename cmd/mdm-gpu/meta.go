package main

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
)

// version is the mdm-gpu version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Checkpoint metadata keys written by 'mdm-gpu train' (besides the engine's mdm.train.* and
// mdm.ckpt.* keys). All values are strings; the structured ones are JSON.
const (
	metaConfig      = "mdm.run.config"                // RunConfig JSON: every user-settable field
	metaModel       = "mdm.run.model_config"          // model.Config JSON (after defaults)
	metaTokenizer   = "mdm.run.tokenizer"             // tokenizer JSON (char: its vocabulary)
	metaTokFP       = "mdm.run.tokenizer_fingerprint" // data.Tokenizer.Fingerprint
	metaCorpus      = "mdm.run.corpus"                // corpusMeta JSON
	metaCorpusFP    = "mdm.run.corpus_fingerprint"    // sha256 of the corpus token ids
	metaHistory     = "mdm.run.history"               // history JSON
	metaSeed        = "mdm.run.seed"                  // training seed
	metaVersions    = "mdm.run.versions"              // versionInfo JSON
	metaDataEntropy = "mdm.run.data_unigram_entropy"  // unigram entropy of the training tokens, bits
	metaData        = "mdm.run.data"                  // dataInfo JSON: kind, tokenizer hash, EOS policy, packing, block size (pitfalls B09)
)

// jfloat is a float64 that survives JSON when it is NaN or ±Inf (written as a string) and
// round-trips finite values exactly (shortest representation).
type jfloat float64

func (f jfloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

func (f *jfloat) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		*f = jfloat(v)
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	*f = jfloat(v)
	return err
}

// corpusMeta describes the training corpus in the checkpoint.
type corpusMeta struct {
	Path           string `json:"path"`
	Format         string `json:"format"`
	Fingerprint    string `json:"fingerprint"`
	Chars          int    `json:"chars"`
	Tokens         int    `json:"tokens"`
	TrainTokens    int    `json:"train_tokens"`
	HeldOutTokens  int    `json:"held_out_tokens"`
	UnigramEntropy jfloat `json:"train_unigram_entropy_bits"`
}

// trainPoint is one recorded training step.
type trainPoint struct {
	Step     int    `json:"step"` // steps completed after this update (1-based)
	Loss     jfloat `json:"loss_bits"`
	LR       jfloat `json:"lr"`
	GradNorm jfloat `json:"grad_norm"`
	Skipped  bool   `json:"skipped,omitempty"`
}

// evalPoint is one evaluation of the held-out bound.
type evalPoint struct {
	Step        int    `json:"step"`
	Weights     string `json:"weights"` // "ema" or "raw"
	PaperCode   jfloat `json:"paper_code_bits"`
	PaperCodeSE jfloat `json:"paper_code_stderr_bits"`
	Exact       jfloat `json:"exact_bits"`
	ExactSE     jfloat `json:"exact_stderr_bits"`
	Sequences   int64  `json:"sequences"`
	Tokens      int64  `json:"tokens"`
}

func newEvalPoint(step int, weights string, r diffusion.EvalResult) evalPoint {
	return evalPoint{Step: step, Weights: weights, PaperCode: jfloat(r.PaperCode.BitsPerToken), PaperCodeSE: jfloat(r.PaperCode.StdErrBits),
		Exact: jfloat(r.Exact.BitsPerToken), ExactSE: jfloat(r.Exact.StdErrBits), Sequences: r.Sequences, Tokens: r.Tokens}
}

// history is the loss history of a run: training losses every Every steps and every
// evaluation.
type history struct {
	Every int          `json:"train_every"`
	Train []trainPoint `json:"train"`
	Eval  []evalPoint  `json:"eval"`
}

// lossSince returns the sum and count of the recorded training losses of steps in
// (from, to], so that a resumed run's first loss_bits_avg covers the same steps as in an
// uninterrupted run. It returns 0, 0 unless every step is recorded (Every == 1).
func (h history) lossSince(from, to int) (float64, int) {
	if h.Every != 1 {
		return 0, 0
	}
	var sum float64
	n := 0
	for _, p := range h.Train {
		if p.Step > from && p.Step <= to {
			sum += float64(p.Loss)
			n++
		}
	}
	return sum, n
}

// historyEvery thins the recorded training losses of long runs to about 5000 points.
func historyEvery(steps int) int { return max(1, (steps+4999)/5000) }

// versionInfo is stored in checkpoints and printed by 'info'.
type versionInfo struct {
	MDMGPU   string `json:"mdm_gpu"`
	Revision string `json:"revision,omitempty"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Backend  string `json:"backend,omitempty"`
}

func versions(backend string) versionInfo {
	v := versionInfo{MDMGPU: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Backend: backend}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	return v
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// runMeta is what eval and sample read from a training checkpoint's metadata.
type runMeta struct {
	Path        string
	Config      RunConfig
	Model       model.Config
	Tok         data.Tokenizer
	TokFP       string
	Corpus      corpusMeta
	History     history
	Step        int
	DataEntropy float64 // NaN if unknown
	Raw         map[string]string
}

// readRunMeta inspects a checkpoint (header only; the tensors are read and verified when
// the weights are loaded) and decodes the run metadata.
func readRunMeta(path string) (*runMeta, error) {
	info, err := ckpt.Inspect(path)
	if err != nil {
		return nil, err
	}
	return decodeRunMeta(path, info.Metadata)
}

func decodeRunMeta(path string, m map[string]string) (*runMeta, error) {
	rm := &runMeta{Path: path, Raw: m, DataEntropy: math.NaN()}
	need := func(key string) (string, error) {
		v, ok := m[key]
		if !ok {
			return "", fmt.Errorf("checkpoint %s has no %s metadata: it was not written by 'mdm-gpu train' (or its metadata was stripped)", path, key)
		}
		return v, nil
	}
	dec := func(key string, dst any) error {
		s, err := need(key)
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(s), dst); err != nil {
			return fmt.Errorf("checkpoint %s: metadata %s is not valid JSON (%v); the file is corrupt", path, key, err)
		}
		return nil
	}
	if err := dec(metaConfig, &rm.Config); err != nil {
		return nil, err
	}
	if err := dec(metaModel, &rm.Model); err != nil {
		return nil, err
	}
	if err := rm.Model.Validate(); err != nil {
		return nil, fmt.Errorf("checkpoint %s: stored model configuration is invalid: %w", path, err)
	}
	ts, err := need(metaTokenizer)
	if err != nil {
		return nil, err
	}
	if rm.Tok, err = tokenizerFromJSON(ts); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if rm.TokFP, err = need(metaTokFP); err != nil {
		return nil, err
	}
	if got := rm.Tok.Fingerprint(); got != rm.TokFP {
		return nil, fmt.Errorf("checkpoint %s: the stored tokenizer has fingerprint %s but the metadata records %s; the file is corrupt", path, got, rm.TokFP)
	}
	if rm.Tok.VocabSize() != rm.Model.Vocab {
		return nil, fmt.Errorf("checkpoint %s: tokenizer has V=%d but the model has V=%d; the file is corrupt", path, rm.Tok.VocabSize(), rm.Model.Vocab)
	}
	if err := dec(metaCorpus, &rm.Corpus); err != nil {
		return nil, err
	}
	if err := dec(metaHistory, &rm.History); err != nil {
		return nil, err
	}
	if s, ok := m["mdm.train.step"]; ok {
		rm.Step, _ = strconv.Atoi(s)
	}
	if s, ok := m[metaDataEntropy]; ok {
		if v, err := strconv.ParseFloat(s, 64); err == nil {
			rm.DataEntropy = v
		}
	}
	return rm, nil
}
