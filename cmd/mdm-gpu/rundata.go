package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

// The data of a training run comes in three kinds:
//
//   - text: a corpus file read into memory and tokenised (text8, char, byte or GPT-2 BPE);
//     training windows at any offset of the first 1−held-out of the tokens, evaluation on
//     non-overlapping windows of the rest (the behaviour before prepared corpora existed);
//   - shards: a corpus prepared by 'mdm-gpu prepare' (GPT-2 token shards, a manifest);
//     the shards are memory-mapped, training draws aligned L-token blocks of the packed
//     document stream (or windows at any offset, --pack any-offset), evaluation uses the
//     validation split's blocks, and nothing but the selected evaluation blocks is read
//     into memory;
//   - images: MNIST, Fashion-MNIST or CIFAR-10 (or an IDX / CIFAR-10 file) as pixel
//     tokens, one image per sequence, evaluated in bits per dimension.
const (
	kindText   = "text"
	kindShards = "shards"
	kindImages = "images"
)

// rowSource serves the rows of a step's global batch, placed as in the whole batch
// whatever the split over devices (data.Windows, data.PackedWindows).
type rowSource interface {
	TrainRows(dst []int32, first, n int, seed, step uint64) error
}

// dataInfo is the data protocol of a run, stored in the checkpoint as mdm.run.data
// (pitfalls B09: tokenizer hash, packing, EOS policy and block size are recorded, and a
// resume or an evaluation with other values is refused).
type dataInfo struct {
	Kind                 string     `json:"kind"`
	Source               string     `json:"source"`
	Tokenizer            string     `json:"tokenizer"`
	TokenizerFingerprint string     `json:"tokenizer_fingerprint"`
	EOS                  int32      `json:"eos"` // −1: none
	EOSPolicy            string     `json:"eos_policy"`
	Pack                 string     `json:"pack"`
	BlockSize            int        `json:"block_size"`
	HeldOut              float64    `json:"held_out,omitempty"`
	Manifest             string     `json:"manifest,omitempty"`
	ManifestName         string     `json:"manifest_name,omitempty"`
	SplitRule            string     `json:"split_rule,omitempty"`
	TrainDocuments       int64      `json:"train_documents,omitempty"`
	ValDocuments         int64      `json:"val_documents,omitempty"`
	Image                *imageInfo `json:"image,omitempty"`
	Eval                 string     `json:"eval"`
}

// runData is the opened training and evaluation data of a run.
type runData struct {
	Kind     string
	Tok      data.Tokenizer
	TokJSON  string
	Corpus   corpusMeta
	Info     dataInfo
	Entropy  float64
	Shape    *imgShape // image runs
	Rows     rowSource
	EvalSeqs []int32
	EvalN    int
	EvalDesc string
	Unit     string // "bits/token" or "bits/dim"
	logLines func(log zerolog.Logger)
	closers  []func() error
}

func (d *runData) Close() {
	for _, c := range d.closers {
		c()
	}
	d.closers = nil
}

// dataKind returns the kind of a run's --data.
func dataKind(c *RunConfig) string {
	switch corpusFormat(c.Data, c.DataFormat) {
	case "shards":
		return kindShards
	case "images", "idx", "cifar10":
		return kindImages
	}
	return kindText
}

// openRunData opens the data of cfg for training. For prepared corpora and images it may
// set cfg.Tokenizer and cfg.SeqLen from the data when the user did not set them (and
// refuses values set explicitly that contradict the data).
func openRunData(cfg *RunConfig, src configSource) (*runData, error) {
	switch dataKind(cfg) {
	case kindShards:
		return openShardData(cfg, src)
	case kindImages:
		return openImageData(cfg, src)
	}
	return openTextData(cfg)
}

// openTextData is the in-memory text corpus (unchanged behaviour).
func openTextData(cfg *RunConfig) (*runData, error) {
	corp, err := loadCorpus(cfg)
	if err != nil {
		return nil, err
	}
	L := cfg.SeqLen
	trainWin, err := data.NewWindows(corp.Train, L)
	if err != nil {
		return nil, fmt.Errorf("the training part of %s (first %g of %d tokens) has %d tokens, fewer than one window of --seq-len %d; use a longer corpus, a smaller --held-out or a shorter --seq-len",
			cfg.Data, 1-cfg.HeldOut, len(corp.IDs), len(corp.Train), L)
	}
	heldWin, err := data.NewWindows(corp.Held, L)
	if err != nil {
		return nil, fmt.Errorf("the held-out part of %s (last %g of %d tokens) has %d tokens, fewer than one window of --seq-len %d; use a larger --held-out, a longer corpus or a shorter --seq-len",
			cfg.Data, cfg.HeldOut, len(corp.IDs), len(corp.Held), L)
	}
	es := heldWin.EvalWindows()
	seqs, nSel := selectWindows(es, cfg.EvalWindows)
	d := &runData{Kind: kindText, Tok: corp.Tok, TokJSON: corp.TokenizerJSON, Entropy: corp.TrainEntropy, Rows: trainWin,
		EvalSeqs: seqs, EvalN: nSel, Unit: "bits/token"}
	d.EvalDesc = fmt.Sprintf("%d of %d held-out windows × L=%d = %d tokens, %d time sample(s) each; %d held-out tokens in windows not selected (--eval-windows), %d dropped after the last full window",
		nSel, len(es.Windows), L, nSel*L, cfg.EvalSamples, es.Covered-nSel*L, es.Dropped)
	d.Corpus = corpusMeta{Path: corp.Path, Format: corpusFormat(cfg.Data, cfg.DataFormat), Fingerprint: corp.Fingerprint,
		Chars: corp.Chars, Tokens: len(corp.IDs), TrainTokens: len(corp.Train), HeldOutTokens: len(corp.Held), UnigramEntropy: jfloat(corp.TrainEntropy)}
	policy := "none: the corpus is one token stream"
	if d.Corpus.Format == "jsonl" {
		policy = "none: JSON Lines documents joined by a blank line"
	}
	d.Info = dataInfo{Kind: kindText, Source: corp.Path, Tokenizer: corp.Tok.Name(), TokenizerFingerprint: corp.Tok.Fingerprint(), EOS: -1,
		EOSPolicy: policy, Pack: "any-offset windows (training), non-overlapping windows (evaluation)", BlockSize: L, HeldOut: cfg.HeldOut,
		Eval: fmt.Sprintf("held-out part (last %g of the tokens)", cfg.HeldOut)}
	d.logLines = func(log zerolog.Logger) {
		log.Info().Str("data", corp.Path).Str("tokenizer", corp.Tok.Name()).Int("vocab", corp.Tok.VocabSize()).Int("chars", corp.Chars).
			Int("tokens", len(corp.IDs)).Int("train_tokens", len(corp.Train)).Int("held_out_tokens", len(corp.Held)).
			Float64("train_unigram_entropy_bits", round4(corp.TrainEntropy)).Str("fingerprint", corp.Fingerprint).Msg("corpus")
		log.Info().Int("train_windows", trainWin.NumOffsets()).Int("eval_windows", nSel).Int("eval_windows_available", len(es.Windows)).
			Int("eval_tokens", nSel*L).Int("held_out_dropped", es.Dropped).Int("held_out_unselected", es.Covered-nSel*L).Msg("windows")
	}
	return d, nil
}

// openShardData opens a prepared corpus (memory-mapped shards).
func openShardData(cfg *RunConfig, src configSource) (*runData, error) {
	abs, _ := filepath.Abs(cfg.Data)
	m, err := data.ReadManifest(abs)
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", cfg.Data, err)
	}
	if cfg.Tokenizer != m.Tokenizer {
		if src.explicit("tokenizer") {
			return nil, fmt.Errorf("--tokenizer %s: %w: the prepared corpus %s was tokenised with %s (V=%d); drop --tokenizer (the corpus's tokenizer is used) or prepare the corpus with %s",
				cfg.Tokenizer, data.ErrTokenizerMismatch, abs, m.Tokenizer, m.VocabSize, cfg.Tokenizer)
		}
		cfg.Tokenizer = m.Tokenizer
	}
	tok, err := newTokenizer(m.Tokenizer, "")
	if err != nil {
		return nil, fmt.Errorf("prepared corpus %s: %w", abs, err)
	}
	d := &runData{Kind: kindShards, Tok: tok, Unit: "bits/token"}
	if d.TokJSON, err = tokenizerJSON(tok); err != nil {
		return nil, err
	}
	trainS, _, err := data.OpenSplit(abs, data.SplitTrain, tok)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, trainS.Close)
	if len(m.Val.Shards) == 0 {
		d.Close()
		return nil, fmt.Errorf("prepared corpus %s has no validation split (prepared with --held-out %g); prepare it with --held-out > 0 (e.g. 0.02) so that training can be evaluated", abs, m.HeldOut)
	}
	valS, _, err := data.OpenSplit(abs, data.SplitVal, tok)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.closers = append(d.closers, valS.Close)
	L := cfg.SeqLen
	mode := data.PackBlocks
	if cfg.Pack == "any-offset" {
		mode = data.PackAnyOffset
	}
	pw, err := data.NewPackedWindows(trainS, L, mode)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("the train split of %s has %d tokens, fewer than one block of --seq-len %d; prepare more text or use a shorter --seq-len", abs, trainS.Len(), L)
	}
	vw, err := data.NewPackedWindows(valS, L, data.PackBlocks)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("the validation split of %s has %d tokens, fewer than one block of --seq-len %d; prepare with a larger --held-out, more text, or use a shorter --seq-len", abs, valS.Len(), L)
	}
	d.Rows = pw
	seqs, nSel, err := selectBlocks(vw, cfg.EvalWindows)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.EvalSeqs, d.EvalN = seqs, nSel
	nb := vw.NumBlocks()
	d.EvalDesc = fmt.Sprintf("%d of %d validation blocks × L=%d = %d tokens (the val split of %s: %d documents, EOS after every document), %d time sample(s) each; %d validation tokens in blocks not selected (--eval-windows), %d dropped after the last full block",
		nSel, nb, L, nSel*L, filepath.Base(abs), m.Val.Documents, cfg.EvalSamples, nb*int64(L)-int64(nSel*L), vw.EvalDropped())
	d.Entropy = streamEntropy(trainS, 1<<22)
	fp := manifestFingerprint(m)
	d.Corpus = corpusMeta{Path: abs, Format: "shards", Fingerprint: fp, Tokens: int(m.Train.Tokens + m.Val.Tokens),
		TrainTokens: int(m.Train.Tokens), HeldOutTokens: int(m.Val.Tokens), UnigramEntropy: jfloat(d.Entropy)}
	d.Info = dataInfo{Kind: kindShards, Source: abs, Tokenizer: m.Tokenizer, TokenizerFingerprint: m.TokenizerFingerprint, EOS: m.EOS,
		EOSPolicy: m.EOSPolicy, Pack: mode.String(), BlockSize: L, HeldOut: m.HeldOut, Manifest: abs, ManifestName: m.Name,
		SplitRule: m.SplitRule, TrainDocuments: m.Train.Documents, ValDocuments: m.Val.Documents,
		Eval: "validation split, aligned non-overlapping blocks"}
	d.logLines = func(log zerolog.Logger) {
		log.Info().Str("manifest", abs).Str("tokenizer", m.Tokenizer).Int("vocab", m.VocabSize).Int32("eos", m.EOS).Str("eos_policy", m.EOSPolicy).
			Int64("train_documents", m.Train.Documents).Int64("train_tokens", m.Train.Tokens).Int("train_shards", len(m.Train.Shards)).
			Int64("val_documents", m.Val.Documents).Int64("val_tokens", m.Val.Tokens).Float64("held_out", m.HeldOut).
			Float64("train_unigram_entropy_bits", round4(d.Entropy)).Str("fingerprint", fp).Msg("prepared corpus (memory-mapped)")
		log.Info().Str("pack", mode.String()).Int("L", L).Int64("train_blocks", pw.NumBlocks()).Int64("train_dropped", pw.EvalDropped()).
			Int("eval_blocks", nSel).Int64("eval_blocks_available", nb).Int("eval_tokens", nSel*L).Int64("val_dropped", vw.EvalDropped()).Msg("blocks")
	}
	return d, nil
}

// selectBlocks reads at most max (0 = all) evenly spaced evaluation blocks of w.
func selectBlocks(w *data.PackedWindows, max int) ([]int32, int, error) {
	n := w.NumBlocks()
	k := n
	if max > 0 && int64(max) < n {
		k = int64(max)
	}
	if k > math.MaxInt32/int64(w.Len()) {
		return nil, 0, fmt.Errorf("evaluating all %d validation blocks of L=%d needs %d tokens in memory; limit them with --eval-windows", n, w.Len(), n*int64(w.Len()))
	}
	L := w.Len()
	out := make([]int32, int(k)*L)
	for i := range k {
		if err := w.EvalBlocks(out[int(i)*L:int(i+1)*L], i*n/k, 1); err != nil {
			return nil, 0, err
		}
	}
	return out, int(k), nil
}

// manifestFingerprint identifies a prepared corpus by its tokenizer, EOS and the
// checksums of its shards (cheap: no token is read).
func manifestFingerprint(m *data.Manifest) string {
	h := sha256.New()
	fmt.Fprintf(h, "mdm-gpu shards v1\x00%s\x00%s\x00%d\x00%d\x00", m.Tokenizer, m.TokenizerFingerprint, m.VocabSize, m.EOS)
	for _, s := range []struct {
		name string
		info data.SplitInfo
	}{{"train", m.Train}, {"val", m.Val}} {
		fmt.Fprintf(h, "%s %d %d\x00", s.name, s.info.Documents, s.info.Tokens)
		for _, sh := range s.info.Shards {
			fmt.Fprintf(h, "%d %s\x00", sh.Tokens, sh.TokensSHA256)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// streamEntropy is the unigram entropy (bits) of the first max tokens of a source, read
// in chunks (a corpus of any size costs no memory).
func streamEntropy(s data.TokenSource, max int64) float64 {
	n := min(s.Len(), max)
	counts := map[int32]int64{}
	buf := make([]int32, 1<<16)
	for off := int64(0); off < n; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), n-off)]
		if err := s.Read(b, off); err != nil {
			return math.NaN()
		}
		for _, v := range b {
			counts[v]++
		}
	}
	return entropyOfCounts(counts, n)
}

// entropyOfCounts is the entropy in bits of a histogram, summed in ascending id order
// (as sample.UnigramEntropy does).
func entropyOfCounts(counts map[int32]int64, n int64) float64 {
	if n == 0 {
		return math.NaN()
	}
	ids := make([]int32, 0, len(counts))
	for k := range counts {
		ids = append(ids, k)
	}
	sortInt32(ids)
	var h float64
	for _, k := range ids {
		p := float64(counts[k]) / float64(n)
		h -= p * math.Log2(p)
	}
	return h
}

func sortInt32(v []int32) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}

// evalData is what 'mdm-gpu eval' scores: sequences of the model's L tokens.
type evalData struct {
	Seqs      []int32
	N         int // sequences selected
	Available int // sequences available
	What      string
	Lines     []string // the data paragraph of the output
	Unit      string
	OwnData   bool
}

// shardEvalData selects the evaluation blocks of a prepared corpus's split for eval.
func shardEvalData(rm *runMeta, path, split string, windows int) (*evalData, error) {
	abs, _ := filepath.Abs(path)
	sp := data.SplitVal
	switch split {
	case "held-out":
	case "train":
		sp = data.SplitTrain
	default:
		return nil, usagef("--split %q on a prepared corpus: valid: held-out (the val split), train", split)
	}
	s, m, err := data.OpenSplit(abs, sp, rm.Tok)
	if err != nil {
		if errors.Is(err, data.ErrTokenizerMismatch) {
			return nil, fmt.Errorf("cannot evaluate the checkpoint on %s: %w", path, err)
		}
		return nil, err
	}
	defer s.Close()
	L := rm.Model.SeqLen
	w, err := data.NewPackedWindows(s, L, data.PackBlocks)
	if err != nil {
		return nil, fmt.Errorf("the %s split of %s has %d tokens, fewer than one block of the model's context length L=%d", sp, abs, s.Len(), L)
	}
	seqs, n, err := selectBlocks(w, windows)
	if err != nil {
		return nil, err
	}
	info, _ := m.Split(sp)
	ed := &evalData{Seqs: seqs, N: n, Available: int(w.NumBlocks()), Unit: "bits/token", OwnData: manifestFingerprint(m) == rm.Corpus.Fingerprint,
		What: fmt.Sprintf("the %s split of %s", sp, abs)}
	ed.Lines = append(ed.Lines, fmt.Sprintf("Data: %s%s: %d documents, %d tokens, EOS %d after every document (%s); %d of %d aligned blocks evaluated = %d tokens; %d tokens after the last full block dropped",
		ed.What, ownNote(ed.OwnData), info.Documents, info.Tokens, m.EOS, m.EOSPolicy, n, w.NumBlocks(), n*L, w.EvalDropped()))
	return ed, nil
}

func ownNote(own bool) string {
	if own {
		return " (the run's own corpus)"
	}
	return ""
}
