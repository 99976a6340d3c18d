package data

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Tokenizer maps text to token ids in [0, VocabSize()) and back.
//
// The MD4 absorbing-state ("mask") token has id VocabSize(): a Tokenizer never produces
// it from Encode, and Decode renders it as a visible placeholder (MaskPlaceholder, or
// AltMaskPlaceholder where "_" is itself a token) so that partially unmasked samples can
// be printed. Ids outside [0, V] decode to U+FFFD.
type Tokenizer interface {
	// Name is a short stable identifier such as "text8", "char" or "byte".
	Name() string
	// VocabSize is V, the number of real tokens. The mask id is V.
	VocabSize() int
	// Encode converts text to ids in [0, V). Errors name the offending character and
	// where it is (see each implementation).
	Encode(text string) ([]int32, error)
	// Decode converts ids back to text; the mask id V becomes a placeholder.
	Decode(ids []int32) string
	// Fingerprint is a stable hash of the vocabulary ("sha256:<64 hex digits>"). Two
	// tokenizers with the same fingerprint map every id to the same token.
	Fingerprint() string
}

// MaskPlaceholder is how Decode renders the mask id V when "_" is not a token of the
// vocabulary (Text8, and Char vocabularies without "_").
const MaskPlaceholder = "_"

// AltMaskPlaceholder is how Decode renders the mask id V when "_" is a token (Byte, and
// Char vocabularies that contain "_"): U+25A1 WHITE SQUARE.
const AltMaskPlaceholder = "\u25A1"

// invalidPlaceholder is how Decode renders an id outside [0, V].
const invalidPlaceholder = "\uFFFD"

// fingerprint hashes a canonical description of a vocabulary: the format tag, the
// tokenizer name, V, and the vocabulary bytes.
func fingerprint(name string, v int, vocab []byte) string {
	h := sha256.New()
	h.Write([]byte("mdm-gpu tokenizer v1\x00" + name + "\x00" + strconv.Itoa(v) + "\x00"))
	h.Write(vocab)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
