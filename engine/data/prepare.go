package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// ManifestFormat identifies the shard layout in a Manifest.
const ManifestFormat = "mdm-gpu token shards v1 (llm.c .bin: 256 x int32 header, magic 20240520, version 1, uint16 tokens)"

// EOSAfterEveryDocument is the EOS policy of Prepare: the EOS id follows every document,
// the last one included (OpenWebText as MD4 prepares it, md4.md §6.4).
const EOSAfterEveryDocument = "eos-after-every-document"

// SplitRule documents how Prepare assigns documents to the validation split.
const SplitRule = "document d (0-based over all inputs in order, empty documents included) is held out iff u(seed, d) < held_out, " +
	"u = (splitmix64(seed XOR 0x6d646d2d73706c74 + (d+1)*0x9e3779b97f4a7c15) >> 11) * 2^-53"

// Manifest describes a prepared corpus: the tokenizer, the split and the shards of each
// split in stream order. Prepare writes it as JSON next to the shards
// (<name>.manifest.json); ReadManifest reads it back.
type Manifest struct {
	Format               string      `json:"format"`
	Name                 string      `json:"name"`
	Tokenizer            string      `json:"tokenizer"`
	TokenizerFingerprint string      `json:"tokenizer_fingerprint"`
	VocabSize            int         `json:"vocab_size"`
	EOS                  int32       `json:"eos"` // −1: no EOS appended
	EOSPolicy            string      `json:"eos_policy"`
	HeldOut              float64     `json:"held_out"`
	SplitSeed            uint64      `json:"split_seed"`
	SplitRule            string      `json:"split_rule"`
	ShardTokens          int         `json:"shard_tokens"`
	Inputs               []InputInfo `json:"inputs"`
	Documents            int64       `json:"documents"`
	EmptyDocuments       int64       `json:"empty_documents"`
	Train                SplitInfo   `json:"train"`
	Val                  SplitInfo   `json:"val"`

	dir  string // directory of the manifest file (set by ReadManifest and Prepare)
	path string
}

// InputInfo records one input of Prepare.
type InputInfo struct {
	Path      string    `json:"path"`
	Format    DocFormat `json:"format"`
	Field     string    `json:"field,omitempty"`
	Bytes     int64     `json:"bytes"`
	Documents int64     `json:"documents"`
}

// SplitInfo is one split of a prepared corpus.
type SplitInfo struct {
	Documents int64       `json:"documents"` // non-empty documents in the split
	Tokens    int64       `json:"tokens"`    // tokens, EOS included
	Shards    []ShardInfo `json:"shards"`
}

// Split names accepted by Manifest.Split and OpenSplit.
const (
	SplitTrain = "train"
	SplitVal   = "val"
)

// Path returns the manifest file's path.
func (m *Manifest) Path() string { return m.path }

// Split returns the named split ("train" or "val").
func (m *Manifest) Split(name string) (*SplitInfo, error) {
	switch name {
	case SplitTrain:
		return &m.Train, nil
	case SplitVal:
		return &m.Val, nil
	}
	return nil, fmt.Errorf("prepared corpus %s: unknown split %q (want %q or %q)", m.path, name, SplitTrain, SplitVal)
}

// ShardPaths returns the full paths of the split's shards in stream order.
func (m *Manifest) ShardPaths(split string) ([]string, error) {
	s, err := m.Split(split)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(s.Shards))
	for i, sh := range s.Shards {
		out[i] = filepath.Join(m.dir, sh.File)
	}
	return out, nil
}

// ErrTokenizerMismatch is the sentinel for data prepared with another tokenizer than the
// one a run or checkpoint uses.
var ErrTokenizerMismatch = errors.New("tokenizer mismatch")

// CheckTokenizer refuses a tokenizer whose name, vocabulary size or fingerprint differs
// from the one the corpus was prepared with, naming both (pitfalls B09).
func (m *Manifest) CheckTokenizer(tok Tokenizer) error {
	if tok.Name() != m.Tokenizer || tok.VocabSize() != m.VocabSize || tok.Fingerprint() != m.TokenizerFingerprint {
		return fmt.Errorf("%w: %s was prepared with tokenizer %s (V=%d, %s) but the run uses %s (V=%d, %s); re-run prepare with the run's tokenizer or use a matching checkpoint",
			ErrTokenizerMismatch, m.path, m.Tokenizer, m.VocabSize, m.TokenizerFingerprint, tok.Name(), tok.VocabSize(), tok.Fingerprint())
	}
	return nil
}

// ReadManifest reads a manifest written by Prepare and checks it is complete: the
// format string, a tokenizer, and shard lists whose token counts add up to each split's
// total.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prepared corpus: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("prepared corpus %s: not a manifest: %w", path, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("prepared corpus %s: format %q, want %q", path, m.Format, ManifestFormat)
	}
	if m.Tokenizer == "" || m.VocabSize <= 0 || m.VocabSize > 1<<16 {
		return nil, fmt.Errorf("prepared corpus %s: tokenizer %q with V=%d is not valid for uint16 shards", path, m.Tokenizer, m.VocabSize)
	}
	for _, s := range []struct {
		name string
		info SplitInfo
	}{{SplitTrain, m.Train}, {SplitVal, m.Val}} {
		var sum int64
		for _, sh := range s.info.Shards {
			if sh.File == "" || filepath.Base(sh.File) != sh.File {
				return nil, fmt.Errorf("prepared corpus %s: %s shard file %q must be a plain file name", path, s.name, sh.File)
			}
			sum += sh.Tokens
		}
		if sum != s.info.Tokens {
			return nil, fmt.Errorf("prepared corpus %s: %s shards hold %d tokens but the split says %d", path, s.name, sum, s.info.Tokens)
		}
	}
	m.path = path
	m.dir = filepath.Dir(path)
	return &m, nil
}

// PrepareOptions configures Prepare.
type PrepareOptions struct {
	// Inputs are read in order; documents are numbered across them.
	Inputs []DocSource
	// OutDir receives the shards and the manifest (created if missing).
	OutDir string
	// Name prefixes every file: <Name>_train_000000.bin, <Name>_val_000000.bin,
	// <Name>.manifest.json. Default "corpus".
	Name string
	// Tokenizer encodes each document; its ids must fit in uint16 (V ≤ 65536).
	Tokenizer Tokenizer
	// EOS is appended after every document; −1 appends nothing. Use GPT2EOS for GPT-2.
	EOS int32
	// HeldOut is the fraction of documents in the validation split, in [0, 1); MD4's
	// OpenWebText holds out 2%. 0 writes no validation split.
	HeldOut float64
	// SplitSeed selects which documents are held out (see SplitRule).
	SplitSeed uint64
	// ShardTokens is the number of tokens per shard; default 100,000,000 (200 MB, as
	// llm.c's FineWeb shards).
	ShardTokens int
	// Workers is the number of tokenising goroutines; default GOMAXPROCS.
	Workers int
	// Overwrite allows replacing an existing manifest of the same name.
	Overwrite bool
	// Progress, if set, is called from Prepare's goroutine at most every 200 ms and once
	// at the end.
	Progress func(PrepareProgress)
}

// PrepareProgress is what Prepare reports while it runs.
type PrepareProgress struct {
	Input, Inputs          int   // current input (0-based) and the number of inputs
	BytesDone, BytesTotal  int64 // input bytes consumed and the total size of all inputs
	Documents              int64 // documents written so far (both splits)
	TrainTokens, ValTokens int64
	Done                   bool
}

// Prepare tokenises text corpora into token shards: each document is encoded, followed
// by opts.EOS, and appended to the train or the validation stream (by document, see
// SplitRule); each stream is cut into shards of opts.ShardTokens tokens (format: see
// the ShardMagic constants), and a Manifest is written last. Reading is streaming (one
// document at a time, except DocFile inputs, which are one document each) and
// tokenisation runs on opts.Workers goroutines while documents are written in input
// order, so the output does not depend on the number of workers. On error every file
// written so far is removed.
//
// Empty documents are skipped (no EOS) but keep their index. Prepare fails when no
// document has text, when opts.HeldOut > 0 selects no document (too few documents for
// the fraction), or when every document is held out.
func Prepare(opts PrepareOptions) (*Manifest, error) {
	if opts.Tokenizer == nil {
		return nil, fmt.Errorf("prepare: no tokenizer")
	}
	V := opts.Tokenizer.VocabSize()
	if V > 1<<16 {
		return nil, fmt.Errorf("prepare: the %s tokenizer has V=%d, more than the 65536 ids uint16 shards can hold", opts.Tokenizer.Name(), V)
	}
	if opts.EOS < -1 || int(opts.EOS) >= V {
		return nil, fmt.Errorf("prepare: EOS id %d is not in [0, %d) (or −1 for none)", opts.EOS, V)
	}
	if !(opts.HeldOut >= 0 && opts.HeldOut < 1) {
		return nil, fmt.Errorf("prepare: held-out fraction %v is not in [0, 1)", opts.HeldOut)
	}
	if len(opts.Inputs) == 0 {
		return nil, fmt.Errorf("prepare: no input files")
	}
	if opts.Name == "" {
		opts.Name = "corpus"
	}
	if opts.ShardTokens == 0 {
		opts.ShardTokens = 100_000_000
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	m := &Manifest{Format: ManifestFormat, Name: opts.Name, Tokenizer: opts.Tokenizer.Name(),
		TokenizerFingerprint: opts.Tokenizer.Fingerprint(), VocabSize: V, EOS: opts.EOS, EOSPolicy: EOSAfterEveryDocument,
		HeldOut: opts.HeldOut, SplitSeed: opts.SplitSeed, SplitRule: SplitRule, ShardTokens: opts.ShardTokens}
	if opts.EOS < 0 {
		m.EOSPolicy = "none"
	}
	var total int64
	for _, in := range opts.Inputs {
		fi, err := os.Stat(in.Path)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("prepare: input %s is a directory; list its files", in.Path)
		}
		if in.Format == "" {
			in.Format = DetectDocFormat(in.Path)
		}
		field := in.Field
		if in.Format == DocJSONL && field == "" {
			field = "text"
		}
		m.Inputs = append(m.Inputs, InputInfo{Path: in.Path, Format: in.Format, Field: field, Bytes: fi.Size()})
		total += fi.Size()
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	m.path = filepath.Join(opts.OutDir, opts.Name+".manifest.json")
	m.dir = opts.OutDir
	if _, err := os.Stat(m.path); err == nil && !opts.Overwrite {
		return nil, fmt.Errorf("prepare: %s already exists; remove it or allow overwriting", m.path)
	}
	train, err := NewShardWriter(opts.OutDir, opts.Name+"_train", opts.ShardTokens, V)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	val, _ := NewShardWriter(opts.OutDir, opts.Name+"_val", opts.ShardTokens, V)
	fail := func(err error) (*Manifest, error) {
		train.Abort()
		val.Abort()
		return nil, err
	}

	// Pipeline: the reader hands documents to the workers and queues their result slots
	// in order; this goroutine drains the queue in order and writes.
	type result struct {
		ids []int32
		err error
	}
	type job struct {
		d    int64
		text string
		out  chan result
	}
	jobs := make(chan job, 4*opts.Workers)
	queue := make(chan job, 64*opts.Workers)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ids, err := opts.Tokenizer.Encode(j.text)
				if err == nil && opts.EOS >= 0 && len(ids) > 0 {
					ids = append(ids, opts.EOS)
				}
				j.out <- result{ids, err}
			}
		}()
	}
	var readErr error
	var bytesDone int64 // written by the reader, read for progress (atomic enough via mutex)
	var mu sync.Mutex
	curInput := 0
	go func() {
		defer close(queue)
		defer close(jobs)
		var base int64
		var d int64
		for i, in := range opts.Inputs {
			if in.Format == "" {
				in.Format = DetectDocFormat(in.Path)
			}
			mu.Lock()
			curInput = i
			mu.Unlock()
			err := EachDocument(in, func(doc string, consumed int64) error {
				j := job{d: d, text: doc, out: make(chan result, 1)}
				d++
				mu.Lock()
				bytesDone = base + consumed
				m.Inputs[i].Documents++
				mu.Unlock()
				select {
				case queue <- j:
				case <-stop:
					return errStopped
				}
				select {
				case jobs <- j:
				case <-stop:
					j.out <- result{err: errStopped} // the collector is waiting on this slot
					return errStopped
				}
				return nil
			})
			if err != nil {
				if err != errStopped {
					readErr = err
				}
				return
			}
			base += m.Inputs[i].Bytes
		}
	}()

	last := time.Now()
	report := func(done bool) {
		if opts.Progress == nil {
			return
		}
		mu.Lock()
		p := PrepareProgress{Input: curInput, Inputs: len(opts.Inputs), BytesDone: bytesDone, BytesTotal: total,
			Documents: m.Train.Documents + m.Val.Documents, TrainTokens: train.Tokens(), ValTokens: val.Tokens(), Done: done}
		mu.Unlock()
		opts.Progress(p)
	}
	var werr error
	for j := range queue {
		r := <-j.out
		if werr != nil {
			continue // drain so the reader and workers can finish
		}
		if r.err != nil {
			werr = fmt.Errorf("prepare: document %d: %w", j.d, r.err)
			halt()
			continue
		}
		m.Documents++
		if len(r.ids) == 0 {
			m.EmptyDocuments++
			continue
		}
		w, info := train, &m.Train
		if opts.HeldOut > 0 && splitUniform(opts.SplitSeed, uint64(j.d)) < opts.HeldOut {
			w, info = val, &m.Val
		}
		if err := w.Write(r.ids); err != nil {
			werr = fmt.Errorf("prepare: %w", err)
			halt()
			continue
		}
		info.Documents++
		if time.Since(last) > 200*time.Millisecond {
			report(false)
			last = time.Now()
		}
	}
	wg.Wait()
	if werr != nil {
		return fail(werr)
	}
	if readErr != nil {
		return fail(fmt.Errorf("prepare: %w", readErr))
	}
	if m.Train.Documents+m.Val.Documents == 0 {
		return fail(fmt.Errorf("prepare: %w: %d documents, none with text", ErrEmptyCorpus, m.Documents))
	}
	if opts.HeldOut > 0 && m.Val.Documents == 0 {
		return fail(fmt.Errorf("prepare: held-out fraction %v selected none of the %d non-empty documents; use more documents, a larger fraction, or 0 for no validation split",
			opts.HeldOut, m.Train.Documents))
	}
	if m.Train.Documents == 0 {
		return fail(fmt.Errorf("prepare: all %d documents were held out; use a smaller held-out fraction", m.Val.Documents))
	}
	var err1, err2 error
	m.Train.Shards, err1 = train.Close()
	m.Val.Shards, err2 = val.Close()
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	if m.Val.Shards == nil {
		m.Val.Shards = []ShardInfo{}
	}
	m.Train.Tokens, m.Val.Tokens = train.Tokens(), val.Tokens()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fail(fmt.Errorf("prepare: %w", err))
	}
	if err := os.Rename(tmp, m.path); err != nil {
		os.Remove(tmp)
		return fail(fmt.Errorf("prepare: %w", err))
	}
	report(true)
	return m, nil
}

var errStopped = errors.New("stopped")

// splitUniform is the uniform in [0, 1) that decides whether document d is held out (see
// SplitRule): a SplitMix64 hash of the seed and the index.
func splitUniform(seed, d uint64) float64 {
	z := (seed ^ 0x6d646d2d73706c74) + (d+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) * math.Ldexp(1, -53)
}
