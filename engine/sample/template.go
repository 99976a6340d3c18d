package sample

import (
	"fmt"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

// Templates: the initial state of one sequence of L positions, with a real token where the
// text is fixed (conditioning) and the mask id V where a token is to be generated. Both
// samplers only ever sample masked positions, so fixed tokens never change (Sample checks
// it), and the network sees them at every step, so the generated text is conditioned on them.

// PrefixSuffixTemplate returns a template with prefix's tokens at the start, suffix's tokens
// at the end and masks in between (prefix conditioning with suffix == "", suffix
// conditioning with prefix == ""). Errors name the bad character (tokenizer errors, e.g. a
// character outside a char vocabulary) or say how much too long the template is.
func PrefixSuffixTemplate(tok data.Tokenizer, prefix, suffix string, L int) ([]int32, error) {
	pre, err := encodePart(tok, "prefix", prefix)
	if err != nil {
		return nil, err
	}
	suf, err := encodePart(tok, "suffix", suffix)
	if err != nil {
		return nil, err
	}
	if n := len(pre) + len(suf); n > L {
		return nil, fmt.Errorf("sample: the template has %d tokens (prefix %d + suffix %d), more than the model's context L = %d; shorten it", n, len(pre), len(suf), L)
	}
	out := maskRow(tok.VocabSize(), L)
	copy(out, pre)
	copy(out[L-len(suf):], suf)
	return out, nil
}

// InfillTemplate returns a template from pattern, in which every occurrence of hole marks
// one position to generate and the text between holes is fixed; positions after the
// pattern, up to L, are generated too. hole must not be a token of the vocabulary's text
// (for a char vocabulary, a character it does not contain: "_" for text8, "□" otherwise).
func InfillTemplate(tok data.Tokenizer, pattern, hole string, L int) ([]int32, error) {
	if hole == "" {
		return nil, fmt.Errorf("sample: the infill hole marker is empty")
	}
	out := maskRow(tok.VocabSize(), L)
	pos := 0
	parts := strings.Split(pattern, hole)
	for i, part := range parts {
		ids, err := encodePart(tok, "template", part)
		if err != nil {
			return nil, err
		}
		if pos+len(ids) > L {
			return nil, fmt.Errorf("sample: the template is longer than the model's context L = %d (it reaches position %d at part %d of %d); shorten it", L, pos+len(ids), i+1, len(parts))
		}
		copy(out[pos:], ids)
		pos += len(ids)
		if i < len(parts)-1 { // a hole: one generated position
			if pos+1 > L {
				return nil, fmt.Errorf("sample: the template is longer than the model's context L = %d (hole %d falls at position %d); shorten it", L, i+1, pos)
			}
			pos++
		}
	}
	return out, nil
}

// Repeat returns n copies of a one-sequence template, the init of a batch of n sequences.
func Repeat(template []int32, n int) []int32 {
	out := make([]int32, 0, n*len(template))
	for i := 0; i < n; i++ {
		out = append(out, template...)
	}
	return out
}

func maskRow(V, L int) []int32 {
	out := make([]int32, L)
	for i := range out {
		out[i] = int32(V)
	}
	return out
}

func encodePart(tok data.Tokenizer, what, text string) ([]int32, error) {
	if text == "" {
		return nil, nil
	}
	ids, err := tok.Encode(text)
	if err != nil {
		return nil, fmt.Errorf("sample: %s %q cannot be encoded with the %s tokenizer: %w", what, text, tok.Name(), err)
	}
	return ids, nil
}
