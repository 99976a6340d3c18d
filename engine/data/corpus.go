package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrEmptyCorpus is returned (wrapped, with the file name) when a corpus holds no text.
var ErrEmptyCorpus = errors.New("corpus is empty")

// utf8BOM is the UTF-8 byte-order mark, dropped from the start of text files.
const utf8BOM = "\uFEFF"

// ReadText reads a plain UTF-8 text file. A leading byte-order mark is dropped; nothing
// else is changed (newlines are kept as they are). It refuses invalid UTF-8, naming the
// byte offset and line of the first bad byte, and an empty file (ErrEmptyCorpus).
func ReadText(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read corpus: %w", err)
	}
	s := strings.TrimPrefix(string(b), utf8BOM)
	if s == "" {
		return "", fmt.Errorf("read corpus %s: %w (0 bytes of text); point to a non-empty UTF-8 text file", path, ErrEmptyCorpus)
	}
	if off, ok := firstInvalidUTF8(s); !ok {
		return "", fmt.Errorf("read corpus %s: invalid UTF-8 byte 0x%02x at byte offset %d (line %d); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
			path, s[off], off, lineAt(s, off))
	}
	return s, nil
}

// JSONLOption configures ReadJSONL.
type JSONLOption func(*jsonlOptions)

type jsonlOptions struct{ sep string }

// WithSeparator sets the string placed between consecutive documents in ReadJSONL's
// result (default "\n\n"). It is not added before the first or after the last document.
func WithSeparator(sep string) JSONLOption {
	return func(o *jsonlOptions) { o.sep = sep }
}

// ReadJSONL reads a JSON Lines file, one document per line, and returns the string value
// of field from every line, joined by the separator (default "\n\n", see WithSeparator).
// Blank lines are skipped. Errors name the file and the 1-based line: invalid JSON, a
// line that is not an object, a missing field, a field that is not a string, or invalid
// UTF-8. A file with no documents, or whose documents are all empty strings, gives
// ErrEmptyCorpus.
func ReadJSONL(path, field string, opts ...JSONLOption) (string, error) {
	o := jsonlOptions{sep: "\n\n"}
	for _, opt := range opts {
		opt(&o)
	}
	docs, err := ReadJSONLDocs(path, field)
	if err != nil {
		return "", err
	}
	return strings.Join(docs, o.sep), nil
}

// ReadJSONLDocs is ReadJSONL without the joining: it returns the field of each non-blank
// line, in file order, with the same checks and errors.
func ReadJSONLDocs(path, field string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var docs []string
	total := 0
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read corpus %s line %d: %w", path, line, err)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if line == 1 {
				b = bytes.TrimPrefix(b, []byte(utf8BOM))
			}
			doc, perr := jsonlField(b, field)
			if perr != nil {
				return nil, fmt.Errorf("read corpus %s line %d: %w", path, line, perr)
			}
			docs = append(docs, doc)
			total += len(doc)
		}
		if err == io.EOF {
			break
		}
	}
	if total == 0 {
		return nil, fmt.Errorf("read corpus %s: %w (%d documents, no text in field %q); check the file and the field name", path, ErrEmptyCorpus, len(docs), field)
	}
	return docs, nil
}

// jsonlField extracts the string field from one JSON object line.
func jsonlField(line []byte, field string) (string, error) {
	if !utf8.Valid(line) {
		off := 0
		for off < len(line) {
			r, size := utf8.DecodeRune(line[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		return "", fmt.Errorf("invalid UTF-8 byte 0x%02x at byte %d of the line; convert the file to UTF-8", line[off], off)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := obj[field]
	if !ok {
		return "", fmt.Errorf("no field %q (the object has %q)", field, slices.Sorted(maps.Keys(obj)))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("field %q is not a string: %s", field, truncate(string(raw), 40))
	}
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
