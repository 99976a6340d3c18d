package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Char is a character tokenizer whose vocabulary is a sorted list of distinct runes;
// token id i is the i-th rune in code-point order. Build one from a corpus with
// NewCharVocab (tinyshakespeare gives V = 65) or from an explicit list with
// NewCharFromRunes. It serialises to JSON (MarshalJSON/UnmarshalJSON) so that a
// checkpoint can carry it; the JSON form is
//
//	{"type":"char","version":1,"vocab":"\n !$&',-.3:;?ABC…xyz","unknown":"?"}
//
// where vocab is the runes in id order and unknown is present only when set.
//
// Encode of a rune outside the vocabulary returns an *UnknownCharError, unless the
// tokenizer was built WithUnknown(r), in which case such runes encode as r. A Char is
// immutable and safe for concurrent use.
type Char struct {
	runes      []rune
	ascii      [128]int32     // id of each ASCII rune, -1 if absent
	nonASCII   map[rune]int32 // id of each non-ASCII rune
	hasUnknown bool
	unknown    rune
	unknownID  int32
	maskText   string
}

// CharOption configures NewCharVocab and NewCharFromRunes.
type CharOption func(*charOptions)

type charOptions struct {
	hasUnknown bool
	unknown    rune
}

// WithUnknown makes Encode map every rune that is not in the vocabulary to r instead of
// failing. r must itself be in the vocabulary, or construction fails.
func WithUnknown(r rune) CharOption {
	return func(o *charOptions) { o.hasUnknown, o.unknown = true, r }
}

// UnknownCharError reports a rune that is not in a Char vocabulary.
type UnknownCharError struct {
	Char      rune // the offending character
	Offset    int  // byte offset in the encoded text, 0-based
	Line      int  // line number, 1-based
	VocabSize int  // V of the tokenizer
}

// Error names the character (quoted and as a code point), where it is, and what to do.
func (e *UnknownCharError) Error() string {
	return fmt.Sprintf("char tokenizer: character %q (U+%04X) at byte offset %d (line %d) is not in the vocabulary of %d characters; "+
		"rebuild the vocabulary from a corpus that contains it, or build the tokenizer with data.WithUnknown(r) to map unknown characters to r",
		e.Char, e.Char, e.Offset, e.Line, e.VocabSize)
}

// NewCharVocab builds a Char tokenizer whose vocabulary is the sorted distinct runes of
// corpus. It fails on an empty corpus (ErrEmptyCorpus) or invalid UTF-8 (naming the byte
// offset and line).
func NewCharVocab(corpus string, opts ...CharOption) (*Char, error) {
	if corpus == "" {
		return nil, fmt.Errorf("char tokenizer: cannot build a vocabulary: %w", ErrEmptyCorpus)
	}
	if off, ok := firstInvalidUTF8(corpus); !ok {
		return nil, fmt.Errorf("char tokenizer: corpus has invalid UTF-8 byte 0x%02x at byte offset %d (line %d); convert it to UTF-8 first",
			corpus[off], off, lineAt(corpus, off))
	}
	var seenASCII [128]bool
	seen := map[rune]bool{}
	var runes []rune
	for _, r := range corpus {
		if r < 128 {
			if !seenASCII[r] {
				seenASCII[r] = true
				runes = append(runes, r)
			}
			continue
		}
		if !seen[r] {
			seen[r] = true
			runes = append(runes, r)
		}
	}
	return NewCharFromRunes(runes, opts...)
}

// NewCharFromRunes builds a Char tokenizer from an explicit rune list (any order; it is
// sorted). It fails on an empty list, a duplicate rune, or a rune that is not a valid
// Unicode scalar value.
func NewCharFromRunes(runes []rune, opts ...CharOption) (*Char, error) {
	var o charOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(runes) == 0 {
		return nil, errors.New("char tokenizer: empty vocabulary; build it from a non-empty corpus")
	}
	rs := slices.Clone(runes)
	slices.Sort(rs)
	for i, r := range rs {
		if !utf8.ValidRune(r) {
			return nil, fmt.Errorf("char tokenizer: vocabulary entry U+%04X is not a valid Unicode scalar value", r)
		}
		if i > 0 && rs[i-1] == r {
			return nil, fmt.Errorf("char tokenizer: vocabulary lists %q (U+%04X) twice", r, r)
		}
	}
	c := &Char{runes: rs, nonASCII: map[rune]int32{}, maskText: MaskPlaceholder}
	for i := range c.ascii {
		c.ascii[i] = -1
	}
	for i, r := range rs {
		if r < 128 {
			c.ascii[r] = int32(i)
		} else {
			c.nonASCII[r] = int32(i)
		}
		if string(r) == MaskPlaceholder {
			c.maskText = AltMaskPlaceholder
		}
	}
	if o.hasUnknown {
		id, ok := c.id(o.unknown)
		if !ok {
			return nil, fmt.Errorf("char tokenizer: unknown-character replacement %q (U+%04X) is not in the vocabulary of %d characters; choose one that is",
				o.unknown, o.unknown, len(rs))
		}
		c.hasUnknown, c.unknown, c.unknownID = true, o.unknown, id
	}
	return c, nil
}

func (c *Char) id(r rune) (int32, bool) {
	if r >= 0 && r < 128 {
		id := c.ascii[r]
		return id, id >= 0
	}
	id, ok := c.nonASCII[r]
	return id, ok
}

// Name returns "char".
func (c *Char) Name() string { return "char" }

// VocabSize returns the number of distinct runes.
func (c *Char) VocabSize() int { return len(c.runes) }

// Runes returns a copy of the vocabulary in id order.
func (c *Char) Runes() []rune { return slices.Clone(c.runes) }

// Unknown returns the replacement rune for unknown characters, if one was set.
func (c *Char) Unknown() (rune, bool) { return c.unknown, c.hasUnknown }

// Encode maps each rune of text to its id. A rune outside the vocabulary gives an
// *UnknownCharError (or the WithUnknown replacement); invalid UTF-8 is always an error
// naming the byte offset and line.
func (c *Char) Encode(text string) ([]int32, error) {
	ids := make([]int32, 0, len(text))
	for off := 0; off < len(text); {
		b := text[off]
		if b < utf8.RuneSelf {
			id := c.ascii[b]
			if id < 0 {
				if !c.hasUnknown {
					return nil, &UnknownCharError{Char: rune(b), Offset: off, Line: lineAt(text, off), VocabSize: len(c.runes)}
				}
				id = c.unknownID
			}
			ids = append(ids, id)
			off++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[off:])
		if r == utf8.RuneError && size == 1 {
			return nil, fmt.Errorf("char tokenizer: invalid UTF-8 byte 0x%02x at byte offset %d (line %d); convert the text to UTF-8 first",
				b, off, lineAt(text, off))
		}
		id, ok := c.nonASCII[r]
		if !ok {
			if !c.hasUnknown {
				return nil, &UnknownCharError{Char: r, Offset: off, Line: lineAt(text, off), VocabSize: len(c.runes)}
			}
			id = c.unknownID
		}
		ids = append(ids, id)
		off += size
	}
	return ids, nil
}

// Decode maps ids back to runes. The mask id V becomes MaskPlaceholder ("_"), or
// AltMaskPlaceholder (U+25A1) when "_" is in the vocabulary; any other id outside
// [0, V] becomes U+FFFD.
func (c *Char) Decode(ids []int32) string {
	var b strings.Builder
	b.Grow(len(ids))
	v := int32(len(c.runes))
	for _, id := range ids {
		switch {
		case id >= 0 && id < v:
			b.WriteRune(c.runes[id])
		case id == v:
			b.WriteString(c.maskText)
		default:
			b.WriteString(invalidPlaceholder)
		}
	}
	return b.String()
}

// Fingerprint hashes the vocabulary (the runes in id order). The WithUnknown setting is
// not part of it, since it does not change what any id means.
func (c *Char) Fingerprint() string {
	return fingerprint("char", len(c.runes), []byte(string(c.runes)))
}

// charJSON is the serialised form of a Char.
type charJSON struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Vocab   string `json:"vocab"`
	Unknown string `json:"unknown,omitempty"`
}

// MarshalJSON encodes the vocabulary (and the unknown-character replacement, if set).
func (c *Char) MarshalJSON() ([]byte, error) {
	j := charJSON{Type: "char", Version: 1, Vocab: string(c.runes)}
	if c.hasUnknown {
		j.Unknown = string(c.unknown)
	}
	return json.Marshal(j)
}

// UnmarshalJSON restores a Char written by MarshalJSON. It refuses another type or
// version, an empty, unsorted or duplicated vocabulary, and an unknown replacement that
// is not exactly one rune of the vocabulary.
func (c *Char) UnmarshalJSON(b []byte) error {
	var j charJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("char tokenizer: cannot decode JSON: %w", err)
	}
	if j.Type != "char" || j.Version != 1 {
		return fmt.Errorf("char tokenizer: JSON has type %q version %d; this build reads type \"char\" version 1", j.Type, j.Version)
	}
	runes := []rune(j.Vocab)
	for i := 1; i < len(runes); i++ {
		if runes[i-1] >= runes[i] {
			return fmt.Errorf("char tokenizer: JSON vocabulary is not strictly sorted at index %d (%q then %q); the file is corrupt", i, runes[i-1], runes[i])
		}
	}
	var opts []CharOption
	if j.Unknown != "" {
		u := []rune(j.Unknown)
		if len(u) != 1 {
			return fmt.Errorf("char tokenizer: JSON unknown replacement %q must be exactly one character", j.Unknown)
		}
		opts = append(opts, WithUnknown(u[0]))
	}
	nc, err := NewCharFromRunes(runes, opts...)
	if err != nil {
		return err
	}
	*c = *nc
	return nil
}

// firstInvalidUTF8 returns the byte offset of the first invalid UTF-8 sequence in s,
// and ok = true when there is none.
func firstInvalidUTF8(s string) (off int, ok bool) {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i, false
		}
		i += size
	}
	return 0, true
}

// lineAt returns the 1-based line number of byte offset off in s.
func lineAt(s string, off int) int {
	if off > len(s) {
		off = len(s)
	}
	return strings.Count(s[:off], "\n") + 1
}
