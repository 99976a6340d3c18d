package data

import (
	"errors"
	"fmt"
	"sort"
)

// TokenStream is the concatenation of one or more memory-mapped shards, in order, as a
// single read-only token sequence of Len() tokens: a prepared split (OpenSplit). Reading
// copies only the requested tokens, so a corpus of any size costs address space, not
// RAM. It is safe for concurrent reads; Close unmaps every shard.
type TokenStream struct {
	shards []*Shard
	starts []int64 // starts[i] = stream offset of shards[i][0]; len = len(shards)+1
	vocab  int
}

// OpenTokenStream maps the shards at paths, in order, and checks every id it copies
// against vocab (the tokenizer's V; ≤ 65536). On error the shards opened so far are
// closed.
func OpenTokenStream(vocab int, paths ...string) (*TokenStream, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("token stream: no shards")
	}
	if vocab < 1 || vocab > 1<<16 {
		return nil, fmt.Errorf("token stream: vocabulary size %d is not in [1, 65536]", vocab)
	}
	s := &TokenStream{starts: []int64{0}, vocab: vocab}
	for _, p := range paths {
		sh, err := OpenShard(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.shards = append(s.shards, sh)
		s.starts = append(s.starts, s.starts[len(s.starts)-1]+int64(sh.Len()))
	}
	return s, nil
}

// OpenSplit opens a split ("train" or "val") of a prepared corpus: it reads the
// manifest, refuses a tokenizer other than the one the corpus was prepared with
// (ErrTokenizerMismatch; pass nil to skip the check), maps the shards and checks that
// each holds the number of tokens the manifest lists.
func OpenSplit(manifestPath, split string, tok Tokenizer) (*TokenStream, *Manifest, error) {
	m, err := ReadManifest(manifestPath)
	if err != nil {
		return nil, nil, err
	}
	if tok != nil {
		if err := m.CheckTokenizer(tok); err != nil {
			return nil, nil, err
		}
	}
	paths, err := m.ShardPaths(split)
	if err != nil {
		return nil, nil, err
	}
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("prepared corpus %s: the %s split is empty (prepared with held-out fraction %v)", manifestPath, split, m.HeldOut)
	}
	s, err := OpenTokenStream(m.VocabSize, paths...)
	if err != nil {
		return nil, nil, err
	}
	info, _ := m.Split(split)
	for i, sh := range s.shards {
		if n := int64(sh.Len()); n != info.Shards[i].Tokens {
			s.Close()
			return nil, nil, fmt.Errorf("token shard %s: %w: %d tokens but the manifest %s lists %d (re-run prepare)", sh.Path(), ErrBadShard, n, manifestPath, info.Shards[i].Tokens)
		}
	}
	return s, m, nil
}

// Len returns the number of tokens in the stream.
func (s *TokenStream) Len() int64 { return s.starts[len(s.starts)-1] }

// VocabSize returns the V ids are checked against.
func (s *TokenStream) VocabSize() int { return s.vocab }

// Read copies tokens [off, off+len(dst)) into dst, across shard boundaries. It fails if
// the range is outside the stream or a token is not below VocabSize (naming the shard
// file and the position).
func (s *TokenStream) Read(dst []int32, off int64) error {
	n := int64(len(dst))
	if off < 0 || off+n > s.Len() {
		return fmt.Errorf("token stream: range [%d, %d) is outside the %d tokens", off, off+n, s.Len())
	}
	i := sort.Search(len(s.shards), func(i int) bool { return s.starts[i+1] > off })
	for k := 0; k < len(dst); i++ {
		sh := s.shards[i]
		lo := off + int64(k) - s.starts[i]
		src := sh.tokens[lo:min(int64(len(sh.tokens)), lo+int64(len(dst)-k))]
		for j, v := range src {
			if int(v) >= s.vocab {
				return fmt.Errorf("token shard %s: token %d at position %d is not below the vocabulary size %d (shard from another tokenizer?)", sh.Path(), v, lo+int64(j), s.vocab)
			}
			dst[k+j] = int32(v)
		}
		k += len(src)
	}
	return nil
}

// Close unmaps every shard.
func (s *TokenStream) Close() error {
	var errs []error
	for _, sh := range s.shards {
		errs = append(errs, sh.Close())
	}
	s.shards = nil
	return errors.Join(errs...)
}

// PackMode is how PackedWindows draws training sequences from the stream.
type PackMode int

const (
	// PackBlocks draws aligned blocks [k·L, (k+1)·L): the stream cut into L-token
	// chunks, as MD4 packs OpenWebText (md4.md §6.4). The ⌊N/L⌋ blocks are drawn
	// uniformly with replacement; the last N mod L tokens are never used.
	PackBlocks PackMode = iota
	// PackAnyOffset draws windows at any offset 0 … N−L, like Windows (text8).
	PackAnyOffset
)

// String returns "blocks" or "any-offset".
func (p PackMode) String() string {
	if p == PackAnyOffset {
		return "any-offset"
	}
	return "blocks"
}

// TokenSource is a read-only token sequence PackedWindows can sample: a TokenStream of
// mapped shards, a SliceSource in memory, or an ImageSet (pixels as tokens).
type TokenSource interface {
	// Len returns the number of tokens.
	Len() int64
	// Read copies tokens [off, off+len(dst)) into dst.
	Read(dst []int32, off int64) error
}

// SliceSource is an in-memory TokenSource.
type SliceSource []int32

// Len returns len(s).
func (s SliceSource) Len() int64 { return int64(len(s)) }

// Read copies s[off:off+len(dst)] into dst.
func (s SliceSource) Read(dst []int32, off int64) error {
	if off < 0 || off+int64(len(dst)) > int64(len(s)) {
		return fmt.Errorf("token source: range [%d, %d) is outside the %d tokens", off, off+int64(len(dst)), len(s))
	}
	copy(dst, s[off:])
	return nil
}

// PackedWindows serves length-L training sequences and non-overlapping evaluation
// blocks from a TokenSource, typically a TokenStream of documents packed with EOS, or
// an ImageSet whose blocks of L = H·W·C tokens are its images. Like Windows, the draw for
// row b of step is a pure function of (seed, step, b) (Philox, rng.PurposeData,
// index b), so resuming at any step reproduces an uninterrupted run exactly and rows do
// not depend on how a batch is split over devices.
type PackedWindows struct {
	s    TokenSource
	l    int
	mode PackMode
}

// NewPackedWindows returns the sampler. It fails with a *TooShortError
// (errors.Is(err, ErrTooShort)) when the stream holds fewer than L tokens.
func NewPackedWindows(s TokenSource, L int, mode PackMode) (*PackedWindows, error) {
	if L <= 0 {
		return nil, fmt.Errorf("packed windows: window length %d must be positive", L)
	}
	if mode != PackBlocks && mode != PackAnyOffset {
		return nil, fmt.Errorf("packed windows: unknown mode %d", mode)
	}
	if s.Len() < int64(L) {
		return nil, &TooShortError{N: int(s.Len()), L: L}
	}
	if s.Len()-int64(L)+1 > 1<<53 {
		return nil, fmt.Errorf("packed windows: %d tokens exceed the sampler's 2^53 offsets", s.Len())
	}
	return &PackedWindows{s: s, l: L, mode: mode}, nil
}

// Len returns L.
func (w *PackedWindows) Len() int { return w.l }

// Mode returns the packing mode.
func (w *PackedWindows) Mode() PackMode { return w.mode }

// NumBlocks returns ⌊N/L⌋, the number of aligned blocks (training draws in PackBlocks
// mode and evaluation blocks in both modes).
func (w *PackedWindows) NumBlocks() int64 { return w.s.Len() / int64(w.l) }

// Offset returns the stream offset of training row b of step: L·k with k uniform in
// [0, ⌊N/L⌋) (PackBlocks) or uniform in [0, N−L] (PackAnyOffset), drawn exactly as
// Windows.Offset draws (Lemire multiply-shift with rejection).
func (w *PackedWindows) Offset(seed, step uint64, b int) int64 {
	if w.mode == PackAnyOffset {
		return int64(uniformInt(seed, step, uint64(b), uint64(w.s.Len()-int64(w.l)+1)))
	}
	return int64(w.l) * int64(uniformInt(seed, step, uint64(b), uint64(w.NumBlocks())))
}

// TrainBatch fills dst (length B·L, row-major [B, L]) with the B rows of step.
func (w *PackedWindows) TrainBatch(dst []int32, B int, seed, step uint64) error {
	if B <= 0 {
		return fmt.Errorf("packed windows: batch size %d must be positive", B)
	}
	return w.TrainRows(dst, 0, B, seed, step)
}

// TrainRows fills dst (length n·L) with rows first … first+n−1 of the global batch of
// step, exactly as TrainBatch places them.
func (w *PackedWindows) TrainRows(dst []int32, first, n int, seed, step uint64) error {
	if first < 0 || n <= 0 {
		return fmt.Errorf("packed windows: rows [%d, %d) are not a valid non-empty range", first, first+n)
	}
	if len(dst) != n*w.l {
		return fmt.Errorf("packed windows: destination holds %d tokens, want n·L = %d·%d = %d", len(dst), n, w.l, n*w.l)
	}
	for r := range n {
		if err := w.s.Read(dst[r*w.l:(r+1)*w.l], w.Offset(seed, step, first+r)); err != nil {
			return err
		}
	}
	return nil
}

// EvalBlocks fills dst (length n·L) with the evaluation blocks first … first+n−1: block
// k is the tokens [k·L, (k+1)·L), non-overlapping, NumBlocks() of them; the last
// N mod L tokens (EvalDropped) are not evaluated.
func (w *PackedWindows) EvalBlocks(dst []int32, first, n int64) error {
	if first < 0 || n <= 0 || first+n > w.NumBlocks() {
		return fmt.Errorf("packed windows: evaluation blocks [%d, %d) are outside the %d blocks", first, first+n, w.NumBlocks())
	}
	if int64(len(dst)) != n*int64(w.l) {
		return fmt.Errorf("packed windows: destination holds %d tokens, want n·L = %d·%d", len(dst), n, w.l)
	}
	return w.s.Read(dst, first*int64(w.l))
}

// EvalDropped returns N mod L, the tokens at the end of the stream outside every
// evaluation block.
func (w *PackedWindows) EvalDropped() int64 { return w.s.Len() % int64(w.l) }
