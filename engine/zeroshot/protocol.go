// Package zeroshot prepares held-out corpora for zero-shot evaluation of a GPT-2-BPE
// MD4 model (md4.md §7 Tab. 1: LAMBADA, WikiText-2, PTB, WikiText-103, LM1B) and records
// the exact protocol, which the paper leaves open (md4.md "Open questions" 1).
//
// The default protocol is SEDD's (MD4 §7.1 says it follows SEDD; MDLM's released code
// does the same with wrap=True): read the test file one document per Hugging Face
// example (see the readers), apply the dataset's detokenizer, GPT-2-encode each document
// and append EOS (50256) after it, concatenate everything, and cut the stream into
// non-overlapping blocks of 1024 tokens, dropping the tail that does not fill a block
// (ModePack). Every position of every block is scored, EOS included; the perplexity
// bound is exp(total NELBO / scored tokens) (pitfalls B10), its standard error comes
// from the per-block estimates.
//
// The alternative, ModePad, puts each document in its own block(s): a document longer
// than the block is cut into consecutive blocks, the last one padded. Pad positions are
// never masked, never scored and hidden from attention by the per-block sequence
// lengths (EvalData.Lens, the engine's seqLens key-padding mask; pitfalls B07).
//
// What the data side cannot decide is recorded too: the number K of (time, mask) samples
// per block, continuous-time or T-step discrete bound, antithetic times and the seed.
package zeroshot

import (
	"fmt"
	"math"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
)

// Mode is how documents are laid out in blocks.
type Mode string

// Modes.
const (
	// ModePack concatenates the documents (each followed by EOS) and cuts the stream
	// into full blocks, dropping the remainder (SEDD's group_texts; MDLM wrap=True).
	ModePack Mode = "pack"
	// ModePad gives every document its own block(s), padded to the block size; pads are
	// excluded from attention, masking and the metric.
	ModePad Mode = "pad"
)

// Bound says which NELBO is estimated.
type Bound string

// Bounds.
const (
	// BoundContinuous is the continuous-time ELBO (md4.md §2.2; MD4 Tab. 1).
	BoundContinuous Bound = "continuous"
	// BoundDiscrete is the T-step discrete-time ELBO (md4.md §2.1; MD4 Tab. 7).
	BoundDiscrete Bound = "discrete"
)

// EOSAfterEveryDocument is the EOS policy: EOS follows every document, the last
// included, and there is no BOS.
const EOSAfterEveryDocument = "eos-after-every-document, no bos"

// Protocol is the complete description of a zero-shot evaluation: the settings chosen
// before Build (Dataset … Seed) and the counts Build fills in (Documents … PadTokens).
// It is printed with every result (String) and stored as JSON next to it.
type Protocol struct {
	Dataset              string `json:"dataset"`
	Split                string `json:"split"`
	File                 string `json:"file"`
	Detokenizer          string `json:"detokenizer"`
	Tokenizer            string `json:"tokenizer"`
	TokenizerFingerprint string `json:"tokenizer_fingerprint"`
	// EOS is appended after every document (GPT-2: 50256).
	EOS       int32  `json:"eos"`
	EOSPolicy string `json:"eos_policy"`
	// BlockSize is L, the model's sequence length (1024 for OWT models).
	BlockSize int  `json:"block_size"`
	Mode      Mode `json:"mode"`
	// PadID fills pad positions in ModePad (any valid id: pads are never attended,
	// masked or scored); default EOS.
	PadID int32 `json:"pad_id"`
	// Samples is K, the (time, mask) samples averaged per block.
	Samples int   `json:"time_samples"`
	Bound   Bound `json:"bound"`
	// DiscreteT is T for BoundDiscrete (e.g. 1000), 0 for the continuous bound.
	DiscreteT  int    `json:"discrete_steps"`
	Antithetic bool   `json:"antithetic_times"`
	Seed       uint64 `json:"seed"`

	// Filled in by Build.
	Documents     int   `json:"documents"`      // documents read (empty ones included)
	Tokens        int64 `json:"tokens"`         // tokens of all documents, EOS included
	Blocks        int   `json:"blocks"`         // evaluation blocks of BlockSize
	ScoredTokens  int64 `json:"scored_tokens"`  // the per-token normaliser
	DroppedTokens int64 `json:"dropped_tokens"` // ModePack: the tail not filling a block
	PadTokens     int64 `json:"pad_tokens"`     // ModePad: pad positions (not scored)
}

// DefaultProtocol returns SEDD's protocol for dataset (a Spec name) with tokenizer tok:
// the spec's detokenizer, EOS after every document, packed into blocks of blockSize,
// continuous-time bound, K samples, antithetic times. tok must have an EOS id (it must
// implement EOS() int32, as *data.GPT2 does).
func DefaultProtocol(dataset, split string, tok data.Tokenizer, blockSize, samples int, seed uint64) (Protocol, error) {
	spec, err := Lookup(dataset)
	if err != nil {
		return Protocol{}, err
	}
	e, ok := tok.(interface{ EOS() int32 })
	if !ok {
		return Protocol{}, fmt.Errorf("zeroshot: the %s tokenizer has no EOS token; zero-shot evaluation appends EOS after every document (use gpt2)", tok.Name())
	}
	return Protocol{Dataset: spec.Name, Split: split, Detokenizer: spec.Detok.Name, Tokenizer: tok.Name(),
		TokenizerFingerprint: tok.Fingerprint(), EOS: e.EOS(), EOSPolicy: EOSAfterEveryDocument, BlockSize: blockSize,
		Mode: ModePack, PadID: e.EOS(), Samples: samples, Bound: BoundContinuous, Antithetic: true, Seed: seed}, nil
}

// Validate checks the settings against a vocabulary of V tokens.
func (p *Protocol) Validate(V int) error {
	switch {
	case p.BlockSize < 1:
		return fmt.Errorf("zeroshot protocol: block size %d must be positive", p.BlockSize)
	case p.Mode != ModePack && p.Mode != ModePad:
		return fmt.Errorf("zeroshot protocol: mode %q is not %q or %q", p.Mode, ModePack, ModePad)
	case p.EOS < 0 || int(p.EOS) >= V:
		return fmt.Errorf("zeroshot protocol: EOS id %d is not in [0, %d)", p.EOS, V)
	case p.Mode == ModePad && (p.PadID < 0 || int(p.PadID) >= V):
		return fmt.Errorf("zeroshot protocol: pad id %d is not in [0, %d)", p.PadID, V)
	case p.Samples < 1:
		return fmt.Errorf("zeroshot protocol: %d time samples per block; want at least 1", p.Samples)
	case p.Bound == BoundContinuous && p.DiscreteT != 0:
		return fmt.Errorf("zeroshot protocol: continuous bound with discrete_steps %d; set 0, or bound %q", p.DiscreteT, BoundDiscrete)
	case p.Bound == BoundDiscrete && p.DiscreteT < 1:
		return fmt.Errorf("zeroshot protocol: discrete bound needs discrete_steps T ≥ 1, got %d", p.DiscreteT)
	case p.Bound != BoundContinuous && p.Bound != BoundDiscrete:
		return fmt.Errorf("zeroshot protocol: bound %q is not %q or %q", p.Bound, BoundContinuous, BoundDiscrete)
	}
	return nil
}

// CheckModel refuses a model whose sequence length, vocabulary or tokenizer differ from
// the protocol's (pitfalls B09), naming both values.
func (p *Protocol) CheckModel(seqLen, vocab int, tokenizerFingerprint string) error {
	if seqLen != p.BlockSize {
		return fmt.Errorf("zeroshot: the model's sequence length %d differs from the protocol's block size %d; evaluate with --block-size %d", seqLen, p.BlockSize, seqLen)
	}
	if tokenizerFingerprint != p.TokenizerFingerprint {
		return fmt.Errorf("zeroshot: %w: the checkpoint's tokenizer (%s) is not the evaluation data's %s (%s)", data.ErrTokenizerMismatch, tokenizerFingerprint, p.Tokenizer, p.TokenizerFingerprint)
	}
	if int(p.EOS) >= vocab {
		return fmt.Errorf("zeroshot: EOS id %d is outside the model's vocabulary of %d", p.EOS, vocab)
	}
	return nil
}

// String is a one-paragraph account of the protocol and the data, for the output of
// 'eval --zero-shot'.
func (p *Protocol) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s): %d documents, detokenizer %s, %s tokenizer, EOS %d after every document (no BOS) → %d tokens; ",
		p.Dataset, p.Split, p.File, p.Documents, p.Detokenizer, p.Tokenizer, p.EOS, p.Tokens)
	if p.Mode == ModePack {
		fmt.Fprintf(&b, "packed into %d blocks of %d (%d tail tokens dropped), %d tokens scored (EOS included); ", p.Blocks, p.BlockSize, p.DroppedTokens, p.ScoredTokens)
	} else {
		fmt.Fprintf(&b, "padded: %d blocks of %d, one document per block (longer ones split), %d tokens scored, %d pad positions never attended, masked or scored; ",
			p.Blocks, p.BlockSize, p.ScoredTokens, p.PadTokens)
	}
	bound := "continuous-time bound"
	if p.Bound == BoundDiscrete {
		bound = fmt.Sprintf("discrete-time bound, T = %d", p.DiscreteT)
	}
	anti := "i.i.d."
	if p.Antithetic {
		anti = "antithetic"
	}
	fmt.Fprintf(&b, "%s, K = %d (time, mask) samples per block, %s times, seed %d", bound, p.Samples, anti, p.Seed)
	return b.String()
}

// EvalData is a dataset laid out for evaluation.
type EvalData struct {
	Protocol Protocol
	// Tokens holds the blocks, row-major [Blocks, BlockSize].
	Tokens []int32
	// Lens is nil in ModePack (every position is real). In ModePad, Lens[k] ∈ [1, L] is
	// the number of real tokens at the start of block k: pass it as the model's seqLens
	// and as the block's token count in the metric.
	Lens []int32
}

// Block returns block k (a sub-slice of Tokens).
func (e *EvalData) Block(k int) []int32 {
	L := e.Protocol.BlockSize
	return e.Tokens[k*L : (k+1)*L : (k+1)*L]
}

// Build detokenises and encodes docs and lays them out as p says, filling in p's counts.
// tok must match p.Tokenizer. In ModePack a corpus that cannot fill one block is refused
// with a *data.TooShortError naming both lengths (pitfalls B09), before any model
// compute.
func Build(docs []string, detok Detokenizer, tok data.Tokenizer, p Protocol) (*EvalData, error) {
	if tok.Name() != p.Tokenizer || tok.Fingerprint() != p.TokenizerFingerprint {
		return nil, fmt.Errorf("zeroshot: %w: protocol says %s (%s), got %s (%s)", data.ErrTokenizerMismatch, p.Tokenizer, p.TokenizerFingerprint, tok.Name(), tok.Fingerprint())
	}
	if err := p.Validate(tok.VocabSize()); err != nil {
		return nil, err
	}
	if detok.Name != p.Detokenizer {
		return nil, fmt.Errorf("zeroshot: detokenizer %q does not match the protocol's %q", detok.Name, p.Detokenizer)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("zeroshot: %s %s: %w", p.Dataset, p.Split, ErrNoDocuments)
	}
	L := p.BlockSize
	p.Documents = len(docs)
	p.Tokens, p.Blocks, p.ScoredTokens, p.DroppedTokens, p.PadTokens = 0, 0, 0, 0, 0
	e := &EvalData{}
	var stream []int32
	for i, d := range docs {
		ids, err := tok.Encode(detok.Apply(d))
		if err != nil {
			return nil, fmt.Errorf("zeroshot: %s document %d: %w", p.Dataset, i+1, err)
		}
		ids = append(ids, p.EOS)
		p.Tokens += int64(len(ids))
		if p.Mode == ModePack {
			stream = append(stream, ids...)
			continue
		}
		for len(ids) > 0 {
			n := min(len(ids), L)
			e.Tokens = append(e.Tokens, ids[:n]...)
			for range L - n {
				e.Tokens = append(e.Tokens, p.PadID)
			}
			e.Lens = append(e.Lens, int32(n))
			p.ScoredTokens += int64(n)
			p.PadTokens += int64(L - n)
			ids = ids[n:]
		}
	}
	if p.Mode == ModePack {
		nb := len(stream) / L
		if nb == 0 {
			return nil, fmt.Errorf("zeroshot: %s %s: %w", p.Dataset, p.Split, &data.TooShortError{N: len(stream), L: L})
		}
		e.Tokens = stream[: nb*L : nb*L]
		p.ScoredTokens = int64(nb * L)
		p.DroppedTokens = int64(len(stream) - nb*L)
	}
	p.Blocks = len(e.Tokens) / L
	e.Protocol = p
	return e, nil
}

// Load reads the dataset file path with spec's reader and builds it with p (whose File
// is set to path).
func Load(spec Spec, path string, tok data.Tokenizer, p Protocol) (*EvalData, error) {
	docs, err := spec.Read(path)
	if err != nil {
		return nil, err
	}
	p.File = path
	return Build(docs, spec.Detok, tok, p)
}

// Report is one dataset's zero-shot result with its protocol: the perplexity bound
// exp(total NELBO / scored tokens) and its Monte Carlo standard error (delta method:
// SE(ppl) = ppl · SE(nats/token)), for both bounds diffusion.EvalResult carries.
type Report struct {
	Protocol Protocol `json:"protocol"`
	Blocks   int64    `json:"blocks_evaluated"`
	Tokens   int64    `json:"tokens_scored"`
	// Exact is the exact NELBO (prior KL included; md4.md open question 5), PaperCode
	// the bound as MD4's code computes it.
	Exact     BoundReport `json:"exact"`
	PaperCode BoundReport `json:"paper_code"`
}

// BoundReport is one bound in a Report.
type BoundReport struct {
	NatsPerToken     float64 `json:"nats_per_token"`
	BitsPerToken     float64 `json:"bits_per_token"`
	BitsStdErr       float64 `json:"bits_per_token_stderr"`
	Perplexity       float64 `json:"perplexity"`
	PerplexityStdErr float64 `json:"perplexity_stderr"`
}

// NewReport combines a protocol and an evaluation result. It fails if the result did not
// score exactly the protocol's tokens (a padded block counted as L tokens, a dropped
// batch: pitfalls B10).
func NewReport(p Protocol, r diffusion.EvalResult) (Report, error) {
	if r.Tokens != p.ScoredTokens || r.Sequences != int64(p.Blocks) {
		return Report{}, fmt.Errorf("zeroshot: the evaluation scored %d tokens in %d blocks, but the protocol has %d tokens in %d blocks; every block must be evaluated once with its real-token count",
			r.Tokens, r.Sequences, p.ScoredTokens, p.Blocks)
	}
	conv := func(b diffusion.BoundResult) BoundReport {
		return BoundReport{NatsPerToken: b.NatsPerToken, BitsPerToken: b.BitsPerToken, BitsStdErr: b.StdErrBits,
			Perplexity: b.Perplexity, PerplexityStdErr: b.Perplexity * b.StdErrNats}
	}
	return Report{Protocol: p, Blocks: r.Sequences, Tokens: r.Tokens, Exact: conv(r.Exact), PaperCode: conv(r.PaperCode)}, nil
}

// String is the result line, e.g. "ptb test: perplexity ≤ 102.31 ± 0.52 (6.6768 ±
// 0.0073 bits/token, exact bound; MD4-code bound 102.27)".
func (r Report) String() string {
	se := func(x float64) string {
		if math.IsNaN(x) {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%s %s: perplexity ≤ %.2f ± %s (%.4f ± %.4f bits/token, exact bound; MD4-code bound %.2f) over %d tokens in %d blocks",
		r.Protocol.Dataset, r.Protocol.Split, r.Exact.Perplexity, se(r.Exact.PerplexityStdErr), r.Exact.BitsPerToken, r.Exact.BitsStdErr,
		r.PaperCode.Perplexity, r.Tokens, r.Blocks)
}
