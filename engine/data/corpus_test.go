package data

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadText(t *testing.T) {
	cases := []struct {
		name, content, want string
		wantErr             []string
		empty               bool
	}{
		{name: "plain", content: "hello\nworld\n", want: "hello\nworld\n"},
		{name: "bom", content: "\uFEFFcafé\n", want: "café\n"},
		{name: "invalid", content: "ab\ncd\xffe", wantErr: []string{"invalid UTF-8 byte 0xff", "byte offset 5", "line 2", "iconv"}},
		{name: "empty", content: "", empty: true},
		{name: "bom-only", content: "\uFEFF", empty: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, c.name+".txt", c.content)
			got, err := ReadText(p)
			switch {
			case c.empty:
				if !errors.Is(err, ErrEmptyCorpus) || !strings.Contains(err.Error(), p) {
					t.Fatalf("error = %v, want ErrEmptyCorpus naming %s", err, p)
				}
			case c.wantErr != nil:
				if err == nil {
					t.Fatalf("ReadText succeeded, want error")
				}
				for _, s := range append(c.wantErr, p) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			default:
				if err != nil || got != c.want {
					t.Fatalf("ReadText = %q, %v; want %q", got, err, c.want)
				}
			}
		})
	}
	if _, err := ReadText(filepath.Join(t.TempDir(), "missing.txt")); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing file: error = %v, want one naming the file", err)
	}
}

func TestReadJSONL(t *testing.T) {
	long := strings.Repeat("x", 200_000) // longer than bufio.Scanner's default 64 KiB line limit
	cases := []struct {
		name, content string
		opts          []JSONLOption
		want          string
		wantErr       []string
		empty         bool
	}{
		{name: "default-sep", content: `{"text":"a","id":1}` + "\n" + `{"id":2,"text":"b\nc"}` + "\n", want: "a\n\nb\nc"},
		{name: "custom-sep", content: `{"text":"a"}` + "\n" + `{"text":"b"}`, opts: []JSONLOption{WithSeparator("<|eos|>")}, want: "a<|eos|>b"},
		{name: "blank-lines", content: "\n" + `{"text":"a"}` + "\n  \n" + `{"text":"b"}` + "\n\n", opts: []JSONLOption{WithSeparator("|")}, want: "a|b"},
		{name: "unicode", content: `{"text":"caf\u00e9 — “ok”"}` + "\n", want: "café — “ok”"},
		{name: "long-line", content: `{"text":"` + long + `"}` + "\n", want: long},
		{name: "bad-json", content: `{"text":"a"}` + "\n" + `{"text":"b"}` + "\n" + `{"text": nope}` + "\n", wantErr: []string{"line 3", "not a JSON object"}},
		{name: "not-object", content: `["a"]` + "\n", wantErr: []string{"line 1", "not a JSON object"}},
		{name: "missing-field", content: `{"body":"a","id":3}` + "\n", wantErr: []string{"line 1", `no field "text"`, `"body"`, `"id"`}},
		{name: "non-string", content: `{"text":"a"}` + "\n" + `{"text":42}` + "\n", wantErr: []string{"line 2", `field "text" is not a string`, "42"}},
		{name: "invalid-utf8", content: `{"text":"a` + "\xff" + `"}` + "\n", wantErr: []string{"line 1", "invalid UTF-8 byte 0xff"}},
		{name: "empty-file", content: "", empty: true},
		{name: "empty-docs", content: `{"text":""}` + "\n" + `{"text":""}` + "\n", empty: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, c.name+".jsonl", c.content)
			got, err := ReadJSONL(p, "text", c.opts...)
			switch {
			case c.empty:
				if !errors.Is(err, ErrEmptyCorpus) || !strings.Contains(err.Error(), p) {
					t.Fatalf("error = %v, want ErrEmptyCorpus naming %s", err, p)
				}
			case c.wantErr != nil:
				if err == nil {
					t.Fatalf("ReadJSONL succeeded, want error")
				}
				for _, s := range append(c.wantErr, p) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Fatalf("ReadJSONL = %q, want %q", truncate(got, 60), truncate(c.want, 60))
				}
			}
		})
	}
}

func TestReadJSONLRealCorpora(t *testing.T) {
	cases := []struct {
		rel   string
		docs  int
		first string
	}{
		{"prose/sotu.jsonl", 233, ""},
		{"prose/brown.jsonl", 500, "The Fulton County Grand Jury said Friday"},
	}
	for _, c := range cases {
		p := sharedData(t, c.rel)
		docs, err := ReadJSONLDocs(p, "text")
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != c.docs {
			t.Errorf("%s: %d documents, want %d", c.rel, len(docs), c.docs)
		}
		if !strings.HasPrefix(docs[0], c.first) {
			t.Errorf("%s: first document starts %q, want %q", c.rel, truncate(docs[0], 40), c.first)
		}
		joined, err := ReadJSONL(p, "text")
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(docs, "\n\n"); joined != want {
			t.Errorf("%s: ReadJSONL is not the documents joined by the default separator", c.rel)
		}
	}
}
