package zeroshot

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Readers return the documents of an evaluation file exactly as the Hugging Face
// dataset scripts that SEDD and MDLM load present them (one document per example), so
// that document boundaries, and therefore EOS placement, match their protocol.

// ErrNoDocuments is returned (wrapped, with the file name) when an evaluation file holds
// no document.
var ErrNoDocuments = errors.New("no documents")

// readLines returns the lines of path, each with its "\n" (the last one may lack it), and
// checks UTF-8, naming the line of the first bad byte.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("zeroshot: %w", err)
	}
	return splitLines(path, b)
}

func splitLines(path string, b []byte) ([]string, error) {
	s := strings.TrimPrefix(string(b), "\uFEFF")
	if !utf8.ValidString(s) {
		for i, line := range strings.SplitAfter(s, "\n") {
			if !utf8.ValidString(line) {
				return nil, fmt.Errorf("zeroshot: %s line %d: invalid UTF-8; the evaluation files are UTF-8", path, i+1)
			}
		}
	}
	if s == "" {
		return nil, fmt.Errorf("zeroshot: %s: %w (empty file)", path, ErrNoDocuments)
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines, nil
}

// ReadPTB reads a Penn Treebank file in Mikolov's format (ptb.{train,valid,test}.txt:
// one sentence per line, " word word … \n") and returns one document per line,
// stripped of surrounding whitespace (Python str.strip), as the Hugging Face
// ptb_text_only script yields its "sentence" field. It refuses a file that does not
// look like Mikolov's PTB (a line with an upper-case letter other than the number
// placeholder N), naming the line, because any other PTB variant needs other
// preprocessing.
func ReadPTB(path string) ([]string, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	docs := make([]string, len(lines))
	for i, l := range lines {
		if j := strings.IndexFunc(l, func(r rune) bool { return r >= 'A' && r <= 'Z' && r != 'N' }); j >= 0 {
			return nil, fmt.Errorf("zeroshot: %s line %d: character %q at column %d: not Mikolov's PTB (lower case, most numbers as N); use ptb.test.txt from 'mdm-gpu data fetch ptb'", path, i+1, l[j], j+1)
		}
		docs[i] = pyStrip(l)
	}
	return docs, nil
}

// ReadWikiTextRaw reads a raw WikiText file (wikitext-{2,103}-raw: wiki.{train,valid,
// test}.raw) and returns one document per line, as the Hugging Face wikitext script
// does: a non-blank line is kept verbatim with its "\n" (" = Heading = \n" or a
// paragraph), a blank line becomes "". SEDD and MDLM then append EOS to every one of
// these, the empty ones included. It refuses the tokenised variant (wiki.*.tokens, whose
// rare words are <unk>), naming the line.
func ReadWikiTextRaw(path string) ([]string, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	docs := make([]string, len(lines))
	for i, l := range lines {
		if strings.Contains(l, "<unk>") {
			return nil, fmt.Errorf("zeroshot: %s line %d has <unk>: this is the tokenised WikiText (wiki.*.tokens); use the raw files (wikitext-*-raw/wiki.test.raw)", path, i+1)
		}
		if pyStrip(l) != "" {
			docs[i] = l
		}
	}
	return docs, nil
}

// LambadaTestMember is the LAMBADA test file inside the Zenodo archive
// (lambada-dataset.tar.gz, from 'mdm-gpu data fetch lambada').
const LambadaTestMember = "lambada_test_plain_text.txt"

// ReadLambada reads LAMBADA passages, one document per passage:
//
//   - .jsonl: OpenAI's detokenised test set (gpt-2/data/lambada_test.jsonl, 5,153
//     passages, field "text"), the file SEDD and MDLM evaluate on;
//   - .tar.gz / .tgz: the Zenodo archive, from which the member
//     lambada_test_plain_text.txt is read (same 5,153 passages, but tokenised and
//     lower-cased, so numbers are not comparable with the OpenAI file);
//   - anything else: a plain text file with one passage per line (the Zenodo
//     lambada_*_plain_text.txt files), lines without their "\n".
func ReadLambada(path string) ([]string, error) {
	p := strings.ToLower(path)
	switch {
	case strings.HasSuffix(p, ".jsonl"):
		lines, err := readLines(path)
		if err != nil {
			return nil, err
		}
		var docs []string
		for i, l := range lines {
			if strings.TrimSpace(l) == "" {
				continue
			}
			var obj struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal([]byte(l), &obj); err != nil {
				return nil, fmt.Errorf("zeroshot: %s line %d: not a JSON object: %w", path, i+1, err)
			}
			if obj.Text == nil {
				return nil, fmt.Errorf("zeroshot: %s line %d: no string field \"text\"", path, i+1)
			}
			docs = append(docs, *obj.Text)
		}
		if len(docs) == 0 {
			return nil, fmt.Errorf("zeroshot: %s: %w", path, ErrNoDocuments)
		}
		return docs, nil
	case strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz"):
		b, err := readTarMember(path, LambadaTestMember)
		if err != nil {
			return nil, err
		}
		lines, err := splitLines(path+":"+LambadaTestMember, b)
		if err != nil {
			return nil, err
		}
		return trimNewlines(lines), nil
	}
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	return trimNewlines(lines), nil
}

// ReadLM1B reads a One Billion Word benchmark file (one sentence per line, e.g.
// news.en.heldout-00000-of-00050, the test split of TFDS/Hugging Face lm1b) and returns
// one document per line without its "\n".
func ReadLM1B(path string) ([]string, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	return trimNewlines(lines), nil
}

func trimNewlines(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
	}
	return out
}

// readTarMember returns the contents of the first member of a gzip'd tar archive whose
// base name is name.
func readTarMember(archive, name string) ([]byte, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("zeroshot: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("zeroshot: %s: not a gzip file: %w", archive, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("zeroshot: %s has no member %s", archive, name)
		}
		if err != nil {
			return nil, fmt.Errorf("zeroshot: %s: %w (truncated archive?)", archive, err)
		}
		if h.Typeflag == tar.TypeReg && path.Base(h.Name) == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("zeroshot: %s member %s: %w", archive, h.Name, err)
			}
			return b, nil
		}
	}
}

// Spec describes a zero-shot dataset: how to read it, which detokenizer to apply and
// where its files are after 'mdm-gpu data fetch'.
type Spec struct {
	// Name is the dataset's name in this package: ptb, wikitext2, wikitext103, lambada,
	// lm1b.
	Name string
	// Fetch is the 'mdm-gpu data fetch' name that downloads it ("" if none).
	Fetch string
	// Detok is applied to every document.
	Detok Detokenizer
	// Read returns the documents of a file.
	Read func(path string) ([]string, error)
	// Files lists, per split ("test", "valid"), candidate file paths relative to the
	// dataset's directory, in order of preference.
	Files map[string][]string
}

// Specs returns the zero-shot datasets of MD4's Tab. 1, in its column order.
func Specs() []Spec {
	return []Spec{
		{Name: "lambada", Fetch: "lambada", Detok: LambadaDetokenizer, Read: ReadLambada, Files: map[string][]string{
			"test":  {"lambada_test.jsonl", "lambada_test_plain_text.txt", "lambada-dataset.tar.gz"},
			"valid": {"lambada_development_plain_text.txt"},
		}},
		{Name: "wikitext2", Fetch: "wikitext-2", Detok: WikiTextDetokenizer, Read: ReadWikiTextRaw, Files: map[string][]string{
			"test":  {"wikitext-2-raw/wiki.test.raw", "wiki.test.raw"},
			"valid": {"wikitext-2-raw/wiki.valid.raw", "wiki.valid.raw"},
		}},
		{Name: "ptb", Fetch: "ptb", Detok: PTBDetokenizer, Read: ReadPTB, Files: map[string][]string{
			"test":  {"ptb.test.txt"},
			"valid": {"ptb.valid.txt"},
		}},
		{Name: "wikitext103", Fetch: "wikitext-103", Detok: WikiTextDetokenizer, Read: ReadWikiTextRaw, Files: map[string][]string{
			"test":  {"wikitext-103-raw/wiki.test.raw", "wiki.test.raw"},
			"valid": {"wikitext-103-raw/wiki.valid.raw", "wiki.valid.raw"},
		}},
		{Name: "lm1b", Detok: LM1BDetokenizer, Read: ReadLM1B, Files: map[string][]string{
			"test": {"news.en.heldout-00000-of-00050",
				"1-billion-word-language-modeling-benchmark-r13output/heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"},
		}},
	}
}

// Lookup returns the spec called name.
func Lookup(name string) (Spec, error) {
	var names []string
	for _, s := range Specs() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Spec{}, fmt.Errorf("zeroshot: unknown dataset %q; known: %s", name, strings.Join(names, ", "))
}

// Resolve returns the dataset's file for split under dir: dir itself if it is a file,
// else the first candidate of Files[split] that exists. The error lists the paths tried
// and how to fetch the data.
func (s Spec) Resolve(dir, split string) (string, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return dir, nil
	}
	cands, ok := s.Files[split]
	if !ok {
		return "", fmt.Errorf("zeroshot: %s has no %q split", s.Name, split)
	}
	var tried []string
	for _, c := range cands {
		p := filepath.Join(dir, c)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	hint := ""
	if s.Fetch != "" {
		hint = fmt.Sprintf("; run 'mdm-gpu data fetch %s' into %s", s.Fetch, dir)
	}
	return "", fmt.Errorf("zeroshot: no %s %s file found (tried %s)%s", s.Name, split, strings.Join(tried, ", "), hint)
}
