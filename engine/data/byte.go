package data

import "strings"

// ByteVocabSize is V for the byte tokenizer.
const ByteVocabSize = 256

// Byte is the raw-byte tokenizer: each byte of the UTF-8 (or any) encoding is one token,
// V = 256. Encode never fails; Decode of ids from Encode returns the original string.
type Byte struct{}

// NewByte returns the byte tokenizer.
func NewByte() Byte { return Byte{} }

// Name returns "byte".
func (Byte) Name() string { return "byte" }

// VocabSize returns 256.
func (Byte) VocabSize() int { return ByteVocabSize }

// Encode returns one id per byte of text. It never returns an error.
func (Byte) Encode(text string) ([]int32, error) {
	ids := make([]int32, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = int32(text[i])
	}
	return ids, nil
}

// Decode concatenates the bytes. The mask id 256 becomes AltMaskPlaceholder (U+25A1,
// since every byte, "_" included, is a real token); any other id outside [0, 256]
// becomes U+FFFD. The result may be invalid UTF-8 if the ids are.
func (Byte) Decode(ids []int32) string {
	var b strings.Builder
	b.Grow(len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < ByteVocabSize:
			b.WriteByte(byte(id))
		case id == ByteVocabSize:
			b.WriteString(AltMaskPlaceholder)
		default:
			b.WriteString(invalidPlaceholder)
		}
	}
	return b.String()
}

// Fingerprint returns the hash of the byte vocabulary (ids 0..255 = bytes 0x00..0xFF).
func (Byte) Fingerprint() string {
	vocab := make([]byte, ByteVocabSize)
	for i := range vocab {
		vocab[i] = byte(i)
	}
	return fingerprint("byte", ByteVocabSize, vocab)
}
