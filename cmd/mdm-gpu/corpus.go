package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/sample"
)

// checkTokenizerName accepts the tokenizer names.
func checkTokenizerName(name string) error {
	switch name {
	case "text8", "char", "byte", "gpt2", "pixels":
		return nil
	}
	return fmt.Errorf("--tokenizer %q: unknown tokenizer; valid: text8, char, byte, gpt2, pixels", name)
}

// corpusFormat returns the format of path for --data-format auto.
func corpusFormat(path, format string) string {
	if format != "auto" {
		return format
	}
	p := strings.ToLower(path)
	switch {
	case strings.HasSuffix(p, ".jsonl") || strings.HasSuffix(p, ".ndjson"):
		return "jsonl"
	case strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz"):
		return "brown"
	case strings.HasSuffix(p, ".manifest.json"):
		return "shards"
	case imageDatasetName(path) != "":
		return "images"
	case strings.Contains(filepath.Base(p), "idx3"):
		return "idx"
	case strings.HasSuffix(p, ".bin"):
		return "cifar10"
	}
	return "text"
}

// readCorpus reads the text of a corpus file in the given format.
func readCorpus(path, format, jsonlField string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("--data: no corpus given; pass --data FILE (a .txt, a .jsonl or the Brown .tgz from 'mdm-gpu data fetch brown')")
	}
	if fi, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("--data %s: %w", path, err)
	} else if fi.IsDir() {
		return "", fmt.Errorf("--data %s: is a directory; pass a corpus file", path)
	}
	switch corpusFormat(path, format) {
	case "jsonl":
		return data.ReadJSONL(path, jsonlField)
	case "brown":
		docs, err := data.ReadBrownTarball(path)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for i, d := range docs {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString(d.Text)
		}
		if b.Len() == 0 {
			return "", fmt.Errorf("read corpus %s: %w", path, data.ErrEmptyCorpus)
		}
		return b.String(), nil
	}
	return data.ReadText(path)
}

// newTokenizer builds the named tokenizer (char: from the corpus text).
func newTokenizer(name, corpus string) (data.Tokenizer, error) {
	switch name {
	case "text8":
		return data.NewText8(), nil
	case "byte":
		return data.NewByte(), nil
	case "char":
		return data.NewCharVocab(corpus)
	case "gpt2":
		return data.NewGPT2()
	case "pixels":
		return nil, fmt.Errorf("--tokenizer pixels is for image data (--data mnist, fashion-mnist, cifar10 or an IDX/CIFAR-10 file), not for text")
	}
	return nil, checkTokenizerName(name)
}

// tokenizerJSON serialises a tokenizer for the checkpoint metadata.
func tokenizerJSON(tok data.Tokenizer) (string, error) {
	if c, ok := tok.(*data.Char); ok {
		b, err := c.MarshalJSON()
		return string(b), err
	}
	if p, ok := tok.(data.Pixels); ok {
		b, err := json.Marshal(map[string]any{"type": "pixels", "version": 1, "h": p.H, "w": p.W, "c": p.C})
		return string(b), err
	}
	b, err := json.Marshal(map[string]any{"type": tok.Name(), "version": 1})
	return string(b), err
}

// tokenizerFromJSON restores a tokenizer written by tokenizerJSON.
func tokenizerFromJSON(s string) (data.Tokenizer, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(s), &head); err != nil {
		return nil, fmt.Errorf("tokenizer metadata is not JSON: %w", err)
	}
	switch head.Type {
	case "text8":
		return data.NewText8(), nil
	case "byte":
		return data.NewByte(), nil
	case "gpt2":
		return data.NewGPT2()
	case "pixels":
		var p struct{ H, W, C int }
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, fmt.Errorf("pixel tokenizer metadata: %w", err)
		}
		return data.NewPixels(p.H, p.W, p.C)
	case "char":
		var c data.Char
		if err := c.UnmarshalJSON([]byte(s)); err != nil {
			return nil, err
		}
		return &c, nil
	}
	return nil, fmt.Errorf("tokenizer metadata has unknown type %q", head.Type)
}

// corpusFingerprint hashes the token ids (little-endian int32) of a corpus.
func corpusFingerprint(ids []int32) string {
	h := sha256.New()
	buf := make([]byte, 4*4096)
	for len(ids) > 0 {
		n := min(len(ids), 4096)
		for i, v := range ids[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(v))
		}
		h.Write(buf[:4*n])
		ids = ids[n:]
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// corpus is a tokenised corpus split into a training and a held-out part.
type corpus struct {
	Path          string
	Chars         int // runes of text
	Tok           data.Tokenizer
	IDs           []int32
	Train, Held   []int32
	Fingerprint   string
	TrainEntropy  float64 // unigram entropy of the training part, bits per token
	HeldOutFrac   float64
	TokenizerJSON string
}

// loadCorpus reads, tokenises and splits the corpus of a run configuration.
func loadCorpus(c *RunConfig) (*corpus, error) {
	text, err := readCorpus(c.Data, c.DataFormat, c.JSONLField)
	if err != nil {
		return nil, err
	}
	tok, err := newTokenizer(c.Tokenizer, text)
	if err != nil {
		return nil, err
	}
	ids, err := tok.Encode(text)
	if err != nil {
		return nil, fmt.Errorf("tokenizing %s with the %s tokenizer: %w", c.Data, tok.Name(), err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--data %s: the %s tokenizer turns the corpus into 0 tokens: %w", c.Data, tok.Name(), data.ErrEmptyCorpus)
	}
	train, held, err := data.Split(ids, c.HeldOut)
	if err != nil {
		return nil, fmt.Errorf("--held-out %v on %s (%d tokens): %w", c.HeldOut, c.Data, len(ids), err)
	}
	tj, err := tokenizerJSON(tok)
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(c.Data)
	return &corpus{Path: abs, Chars: len([]rune(text)), Tok: tok, IDs: ids, Train: train, Held: held,
		Fingerprint: corpusFingerprint(ids), TrainEntropy: sample.UnigramEntropy(train), HeldOutFrac: c.HeldOut, TokenizerJSON: tj}, nil
}
