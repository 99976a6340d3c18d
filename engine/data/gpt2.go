package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// GPT-2 byte-level BPE constants (md4.md §6.4: OWT runs use V = 50257 and append EOS
// 50256 after every document).
const (
	// GPT2VocabSize is V for GPT-2 BPE: 256 byte tokens, 50,000 merges and <|endoftext|>.
	GPT2VocabSize = 50257
	// GPT2EOS is the id of <|endoftext|>, the end-of-document token.
	GPT2EOS = 50256
	// GPT2EOSText is how Decode renders GPT2EOS.
	GPT2EOSText = "<|endoftext|>"
)

// GPT2 is OpenAI's GPT-2 byte-level BPE tokenizer (the tiktoken "r50k_base"/"gpt2"
// encoding: the same 50,257-entry vocabulary and merge ranks as GPT-2's encoder.json and
// vocab.bpe), V = 50257, built on github.com/tiktoken-go/tokenizer, which embeds the
// ranks in the binary: it needs no file and no network.
//
// Encode pre-tokenises with GPT-2's regular expression
// ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+), maps every
// piece's UTF-8 bytes to byte tokens and merges them in rank order. It never produces the
// EOS id 50256: the literal text "<|endoftext|>" is encoded as ordinary text, and callers
// append GPT2EOS after each document themselves (AppendDocument). For valid UTF-8 input,
// Decode(Encode(s)) == s byte for byte.
//
// A GPT2 is immutable and safe for concurrent use.
type GPT2 struct {
	codec  tokenizer.Codec
	pieces []string // pieces[id] = the bytes of token id, for id < GPT2VocabSize
	fp     string
}

var (
	gpt2Once sync.Once
	gpt2Tok  *GPT2
	gpt2Err  error
)

// NewGPT2 returns the GPT-2 tokenizer. The first call builds the id → bytes table (about
// 0.1 s); later calls return the same shared instance.
func NewGPT2() (*GPT2, error) {
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = buildGPT2() })
	return gpt2Tok, gpt2Err
}

func buildGPT2() (*GPT2, error) {
	c, err := tokenizer.Get(tokenizer.R50kBase)
	if err != nil {
		return nil, fmt.Errorf("gpt2 tokenizer: %w", err)
	}
	g := &GPT2{codec: c, pieces: make([]string, GPT2VocabSize)}
	one := make([]uint, 1)
	for id := range GPT2EOS {
		one[0] = uint(id)
		s, err := c.Decode(one)
		if err != nil || s == "" {
			return nil, fmt.Errorf("gpt2 tokenizer: the embedded r50k_base ranks have no token %d (%v); the tokenizer library is not GPT-2's", id, err)
		}
		g.pieces[id] = s
	}
	g.pieces[GPT2EOS] = GPT2EOSText
	// The fingerprint covers every token's bytes, length-prefixed, in id order.
	var vocab bytes.Buffer
	var n [binary.MaxVarintLen64]byte
	for _, p := range g.pieces {
		vocab.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		vocab.WriteString(p)
	}
	g.fp = fingerprint("gpt2", GPT2VocabSize, vocab.Bytes())
	return g, nil
}

// Name returns "gpt2".
func (*GPT2) Name() string { return "gpt2" }

// VocabSize returns 50257.
func (*GPT2) VocabSize() int { return GPT2VocabSize }

// EOS returns the end-of-document id, 50256.
func (*GPT2) EOS() int32 { return GPT2EOS }

// Fingerprint returns the hash of the vocabulary (every token's bytes in id order).
func (g *GPT2) Fingerprint() string { return g.fp }

// TokenBytes returns the bytes of token id (GPT2EOSText for 50256). It panics if id is
// not in [0, 50257).
func (g *GPT2) TokenBytes(id int32) string { return g.pieces[id] }

// Encode converts UTF-8 text to GPT-2 token ids in [0, 50256) (never EOS). Invalid UTF-8
// is refused with an error naming the byte offset and line of the first bad byte, since
// it could not be decoded back byte-exactly.
func (g *GPT2) Encode(text string) ([]int32, error) {
	return g.AppendEncode(nil, text)
}

// AppendEncode appends the ids of text to dst and returns the extended slice (as
// Encode; on error dst is returned unchanged with the error).
func (g *GPT2) AppendEncode(dst []int32, text string) ([]int32, error) {
	if text == "" {
		return dst, nil
	}
	if off, ok := firstInvalidUTF8(text); !ok {
		return dst, fmt.Errorf("gpt2 tokenizer: invalid UTF-8 byte 0x%02x at byte offset %d (line %d); convert the text to UTF-8 first",
			text[off], off, lineAt(text, off))
	}
	ids, _, err := g.codec.Encode(text)
	if err != nil {
		return dst, fmt.Errorf("gpt2 tokenizer: %w", err)
	}
	for _, id := range ids {
		if id >= GPT2EOS {
			return dst, fmt.Errorf("gpt2 tokenizer: the library produced id %d, outside [0, %d)", id, GPT2EOS)
		}
		dst = append(dst, int32(id))
	}
	return dst, nil
}

// AppendDocument appends the ids of one document followed by GPT2EOS: the OpenWebText
// convention (md4.md §6.4) used by Prepare and by the zero-shot protocol.
func (g *GPT2) AppendDocument(dst []int32, text string) ([]int32, error) {
	dst, err := g.AppendEncode(dst, text)
	if err != nil {
		return dst, err
	}
	return append(dst, GPT2EOS), nil
}

// Decode concatenates the tokens' bytes. GPT2EOS becomes "<|endoftext|>", the mask id
// 50257 becomes AltMaskPlaceholder (U+25A1: every byte sequence is encodable, so no text
// placeholder is unambiguous), and any other id outside [0, 50257] becomes U+FFFD. The
// result may be invalid UTF-8 when the ids split a multi-byte character (e.g. a sample
// that ends mid-character).
func (g *GPT2) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		switch {
		case id >= 0 && id < GPT2VocabSize:
			b.WriteString(g.pieces[id])
		case id == GPT2VocabSize:
			b.WriteString(AltMaskPlaceholder)
		default:
			b.WriteString(invalidPlaceholder)
		}
	}
	return b.String()
}
