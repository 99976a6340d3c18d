package data

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// DocFormat says how a corpus file is divided into documents for Prepare. Each document
// is tokenised on its own and followed by the EOS id in the token stream, and the
// train/validation split assigns whole documents.
type DocFormat string

// Document formats.
const (
	// DocFile: the whole file is one document (OpenWebText's own layout: one .txt file
	// per web page). A leading UTF-8 byte-order mark is dropped; nothing else changes.
	DocFile DocFormat = "file"
	// DocParagraphs: documents are separated by one or more blank lines (lines that are
	// empty or hold only spaces, tabs or '\r'). A document is its lines exactly as in
	// the file, joined by their own line endings, without the final line ending.
	DocParagraphs DocFormat = "paragraphs"
	// DocLines: every non-blank line is a document, without its line ending.
	DocLines DocFormat = "lines"
	// DocJSONL: JSON Lines, one object per non-blank line; the document is the string
	// value of DocSource.Field (default "text").
	DocJSONL DocFormat = "jsonl"
)

// DocSource is one corpus file and how to divide it into documents.
type DocSource struct {
	Path   string
	Format DocFormat
	// Field is the JSON field holding the text (DocJSONL only; default "text").
	Field string
}

// DetectDocFormat returns DocJSONL for .jsonl and .ndjson files and DocFile otherwise.
func DetectDocFormat(path string) DocFormat {
	p := strings.ToLower(path)
	if strings.HasSuffix(p, ".jsonl") || strings.HasSuffix(p, ".ndjson") {
		return DocJSONL
	}
	return DocFile
}

// EachDocument streams the documents of s in file order, calling fn with each document's
// text and the number of bytes of the file consumed so far (for progress). Only DocFile
// holds a whole file in memory; the other formats read one line at a time. Documents may
// be empty (an empty file, a JSON record with ""); fn decides what to do with them.
// Errors name the file and the 1-based line: invalid UTF-8, bad JSON, a missing or
// non-string field. An error returned by fn stops the iteration and is returned as is.
func EachDocument(s DocSource, fn func(doc string, consumed int64) error) error {
	switch s.Format {
	case DocFile:
		b, err := os.ReadFile(s.Path)
		if err != nil {
			return fmt.Errorf("read corpus: %w", err)
		}
		doc := strings.TrimPrefix(string(b), utf8BOM)
		if off, ok := firstInvalidUTF8(doc); !ok {
			return fmt.Errorf("read corpus %s: invalid UTF-8 byte 0x%02x at byte offset %d (line %d); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
				s.Path, doc[off], off, lineAt(doc, off))
		}
		return fn(doc, int64(len(b)))
	case DocParagraphs, DocLines, DocJSONL:
	default:
		return fmt.Errorf("read corpus %s: unknown document format %q (want file, paragraphs, lines or jsonl)", s.Path, s.Format)
	}
	field := s.Field
	if field == "" {
		field = "text"
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("read corpus: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var para bytes.Buffer // DocParagraphs: the current document
	var consumed int64
	flush := func() error {
		if para.Len() == 0 {
			return nil
		}
		doc := strings.TrimSuffix(strings.TrimSuffix(para.String(), "\n"), "\r")
		para.Reset()
		return fn(doc, consumed)
	}
	for line := 1; ; line++ {
		b, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read corpus %s line %d: %w", s.Path, line, rerr)
		}
		consumed += int64(len(b))
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte(utf8BOM))
		}
		if !utf8.Valid(b) {
			off := 0
			for off < len(b) {
				r, size := utf8.DecodeRune(b[off:])
				if r == utf8.RuneError && size == 1 {
					break
				}
				off += size
			}
			return fmt.Errorf("read corpus %s line %d: invalid UTF-8 byte 0x%02x at byte %d of the line; convert the file to UTF-8", s.Path, line, b[off], off)
		}
		blank := len(bytes.Trim(b, " \t\r\n")) == 0
		switch s.Format {
		case DocJSONL:
			if len(bytes.TrimSpace(b)) > 0 {
				doc, perr := jsonlField(b, field)
				if perr != nil {
					return fmt.Errorf("read corpus %s line %d: %w", s.Path, line, perr)
				}
				if err := fn(doc, consumed); err != nil {
					return err
				}
			}
		case DocLines:
			if !blank {
				doc := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
				if err := fn(doc, consumed); err != nil {
					return err
				}
			}
		case DocParagraphs:
			if blank {
				if err := flush(); err != nil {
					return err
				}
			} else {
				para.Write(b)
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	return flush()
}
