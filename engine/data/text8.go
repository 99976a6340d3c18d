package data

import "strings"

// Text8VocabSize is V for the text8 alphabet: 26 letters and the space.
const Text8VocabSize = 27

// text8Alphabet lists the text8 tokens in id order: a–z → 0–25, space → 26.
const text8Alphabet = "abcdefghijklmnopqrstuvwxyz "

var digitWords = [10]string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}

// Text8 is the text8 character tokenizer (md4.md §6.4): a–z → 0–25, space → 26, V = 27.
//
// Encode first applies NormalizeText8, so raw text is accepted and never fails; on text
// that is already normalised (only a–z and single spaces, as in the text8 file itself)
// normalisation is the identity and Encode is exact: Decode(Encode(s)) == s.
type Text8 struct{}

// NewText8 returns the text8 tokenizer.
func NewText8() Text8 { return Text8{} }

// Name returns "text8".
func (Text8) Name() string { return "text8" }

// VocabSize returns 27.
func (Text8) VocabSize() int { return Text8VocabSize }

// Encode normalises text with NormalizeText8 and maps a–z → 0–25, space → 26. It never
// returns an error.
func (Text8) Encode(text string) ([]int32, error) {
	ids := make([]int32, 0, len(text))
	lastSpace := false
	emitSpace := func() {
		if !lastSpace {
			ids = append(ids, 26)
			lastSpace = true
		}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c >= 'a' && c <= 'z':
			ids = append(ids, int32(c-'a'))
			lastSpace = false
		case c >= 'A' && c <= 'Z':
			ids = append(ids, int32(c-'A'))
			lastSpace = false
		case c >= '0' && c <= '9':
			emitSpace()
			for _, r := range digitWords[c-'0'] {
				ids = append(ids, r-'a')
			}
			lastSpace = false
			emitSpace()
		default:
			emitSpace()
		}
	}
	return ids, nil
}

// Decode maps ids back to letters and spaces. The mask id 27 becomes MaskPlaceholder
// ("_"); any other id outside [0, 27] becomes U+FFFD.
func (Text8) Decode(ids []int32) string {
	var b strings.Builder
	b.Grow(len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < Text8VocabSize:
			b.WriteByte(text8Alphabet[id])
		case id == Text8VocabSize:
			b.WriteString(MaskPlaceholder)
		default:
			b.WriteString(invalidPlaceholder)
		}
	}
	return b.String()
}

// Fingerprint returns the hash of the text8 alphabet.
func (Text8) Fingerprint() string {
	return fingerprint("text8", Text8VocabSize, []byte(text8Alphabet))
}

// NormalizeText8 applies the character rules of Matt Mahoney's wikifil.pl, the script
// that produced text8 from the Wikipedia dump:
//
//   - ASCII upper-case letters become lower-case;
//   - each digit is spelled out as a word surrounded by spaces ("42" → " four two ");
//   - every other character (punctuation, newlines, any non-ASCII character) becomes a
//     space;
//   - runs of spaces collapse to one.
//
// Leading and trailing spaces are kept (collapsed to one), as in text8 itself, which
// begins with a space; so NormalizeText8 is the identity on normalised text. The XML and
// wiki-markup removal steps of wikifil.pl are not applied: input is expected to be
// plain text. Invalid UTF-8 is treated byte-wise like any other non-letter.
func NormalizeText8(s string) string {
	ids, _ := Text8{}.Encode(s)
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = text8Alphabet[id]
	}
	return string(b)
}
