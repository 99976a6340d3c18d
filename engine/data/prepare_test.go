package data

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func collectDocs(t *testing.T, s DocSource) []string {
	t.Helper()
	var docs []string
	if err := EachDocument(s, func(d string, _ int64) error { docs = append(docs, d); return nil }); err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestEachDocumentFormats(t *testing.T) {
	text := "\uFEFFfirst para\nline two\n\n\n  \nsecond\r\n\r\nthird\n"
	p := writeFile(t, "c.txt", text)
	cases := []struct {
		f    DocFormat
		want []string
	}{
		{DocFile, []string{"first para\nline two\n\n\n  \nsecond\r\n\r\nthird\n"}},
		{DocParagraphs, []string{"first para\nline two", "second", "third"}},
		{DocLines, []string{"first para", "line two", "second", "third"}},
	}
	for _, c := range cases {
		if got := collectDocs(t, DocSource{Path: p, Format: c.f}); !slices.Equal(got, c.want) {
			t.Errorf("%s: documents %q, want %q", c.f, got, c.want)
		}
	}
	j := writeFile(t, "c.jsonl", "{\"text\":\"a\\nb\",\"id\":1}\n\n{\"text\":\"\"}\n{\"body\":\"x\",\"text\":\"c\"}\n")
	if got, want := collectDocs(t, DocSource{Path: j, Format: DocJSONL}), []string{"a\nb", "", "c"}; !slices.Equal(got, want) {
		t.Errorf("jsonl: documents %q, want %q", got, want)
	}
	err0 := EachDocument(DocSource{Path: j, Format: DocJSONL, Field: "body"}, func(string, int64) error { return nil })
	if err0 == nil || !strings.Contains(err0.Error(), j+" line 1: no field \"body\"") {
		t.Errorf("missing field on line 1: error = %v", err0)
	}
	// Errors name the file and the line.
	bad := writeFile(t, "bad.jsonl", "{\"text\":\"ok\"}\n{\"txt\":\"no\"}\n")
	err := EachDocument(DocSource{Path: bad, Format: DocJSONL}, func(string, int64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), bad+" line 2") || !strings.Contains(err.Error(), `no field "text"`) {
		t.Errorf("missing field error = %v", err)
	}
	inv := writeFile(t, "inv.txt", "ok\nbad \xff\n")
	for _, f := range []DocFormat{DocFile, DocParagraphs} {
		err := EachDocument(DocSource{Path: inv, Format: f}, func(string, int64) error { return nil })
		if err == nil || !strings.Contains(err.Error(), inv) || !strings.Contains(err.Error(), "0xff") {
			t.Errorf("%s: invalid UTF-8 error = %v, want one naming the file and the byte", f, err)
		}
	}
	if err := EachDocument(DocSource{Path: p, Format: "xml"}, nil); err == nil || !strings.Contains(err.Error(), `unknown document format "xml"`) {
		t.Errorf("unknown format error = %v", err)
	}
	if DetectDocFormat("a/B.JSONL") != DocJSONL || DetectDocFormat("x.txt") != DocFile {
		t.Errorf("DetectDocFormat: got %q, %q", DetectDocFormat("a/B.JSONL"), DetectDocFormat("x.txt"))
	}
}

// readSplit returns all tokens of a split.
func readSplit(t *testing.T, m *Manifest, split string, tok Tokenizer) []int32 {
	t.Helper()
	ts, _, err := OpenSplit(m.Path(), split, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	out := make([]int32, ts.Len())
	if err := ts.Read(out, 0); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPrepareSmallCorpus(t *testing.T) {
	g := newGPT2(t)
	dir := t.TempDir()
	var paras []string
	for i := range 300 {
		paras = append(paras, strings.Repeat("Paragraph number "+string(rune('A'+i%26))+" says hello. ", 1+i%5))
	}
	txt := writeFile(t, "p.txt", strings.Join(paras, "\n\n")+"\n")
	jl := writeFile(t, "d.jsonl", "{\"text\":\"json doc one\"}\n{\"text\":\"\"}\n{\"text\":\"json doc “two”\"}\n")
	inputs := []DocSource{{Path: txt, Format: DocParagraphs}, {Path: jl}}
	allDocs := append(slices.Clone(paras), "json doc one", "", "json doc “two”")

	var last PrepareProgress
	m1, err := Prepare(PrepareOptions{Inputs: inputs, OutDir: filepath.Join(dir, "w1"), Name: "toy", Tokenizer: g, EOS: GPT2EOS,
		HeldOut: 0.1, SplitSeed: 3, ShardTokens: 1000, Workers: 1, Progress: func(p PrepareProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.TrainTokens != m1.Train.Tokens || last.BytesTotal == 0 {
		t.Errorf("final progress %+v does not match the manifest", last)
	}
	if m1.Documents != 303 || m1.EmptyDocuments != 1 || m1.Train.Documents+m1.Val.Documents != 302 {
		t.Errorf("documents %d (empty %d, train %d, val %d), want 303 (1 empty, 302 written)", m1.Documents, m1.EmptyDocuments, m1.Train.Documents, m1.Val.Documents)
	}
	// Independent expectation: each non-empty document, in order, encoded and followed by
	// EOS, in the split the rule picks.
	var wantTrain, wantVal []int32
	for d, doc := range allDocs {
		if doc == "" {
			continue
		}
		ids, err := g.AppendDocument(nil, doc)
		if err != nil {
			t.Fatal(err)
		}
		if splitUniform(3, uint64(d)) < 0.1 {
			wantVal = append(wantVal, ids...)
		} else {
			wantTrain = append(wantTrain, ids...)
		}
	}
	gotTrain, gotVal := readSplit(t, m1, SplitTrain, g), readSplit(t, m1, SplitVal, g)
	if !slices.Equal(gotTrain, wantTrain) || !slices.Equal(gotVal, wantVal) {
		t.Fatalf("streams: train %d tokens, val %d; want %d and %d with equal contents", len(gotTrain), len(gotVal), len(wantTrain), len(wantVal))
	}
	if m1.Val.Documents == 0 || len(m1.Train.Shards) < 2 {
		t.Errorf("want a non-empty validation split and several train shards; got %d val docs, %d train shards", m1.Val.Documents, len(m1.Train.Shards))
	}
	// The output does not depend on the number of workers.
	m3, err := Prepare(PrepareOptions{Inputs: inputs, OutDir: filepath.Join(dir, "w3"), Name: "toy", Tokenizer: g, EOS: GPT2EOS,
		HeldOut: 0.1, SplitSeed: 3, ShardTokens: 1000, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m1.Train.Shards, m3.Train.Shards) || !slices.Equal(m1.Val.Shards, m3.Val.Shards) {
		t.Errorf("shards differ between 1 and 3 workers")
	}
	// Reading back with another tokenizer is refused with a clear error.
	_, _, err = OpenSplit(m1.Path(), SplitTrain, NewByte())
	if !errors.Is(err, ErrTokenizerMismatch) || !strings.Contains(err.Error(), "prepared with tokenizer gpt2 (V=50257") || !strings.Contains(err.Error(), "the run uses byte (V=256") {
		t.Errorf("OpenSplit with the byte tokenizer: error = %v, want ErrTokenizerMismatch naming both", err)
	}
	// A second prepare into the same place is refused unless overwriting.
	_, err = Prepare(PrepareOptions{Inputs: inputs, OutDir: filepath.Join(dir, "w1"), Name: "toy", Tokenizer: g, EOS: GPT2EOS})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Prepare over an existing manifest: error = %v", err)
	}
	// A shard that no longer matches the manifest is refused.
	first := filepath.Join(dir, "w1", m1.Train.Shards[0].File)
	if err := WriteShard(first, []int32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenSplit(m1.Path(), SplitTrain, g); !errors.Is(err, ErrBadShard) || !strings.Contains(err.Error(), "3 tokens but the manifest") {
		t.Errorf("OpenSplit with a replaced shard: error = %v", err)
	}
}

func TestPrepareErrors(t *testing.T) {
	g := newGPT2(t)
	dir := t.TempDir()
	one := writeFile(t, "one.txt", "a single document")
	empty := writeFile(t, "empty.txt", "")
	bad := writeFile(t, "bad.jsonl", "{\"text\":\"fine\"}\nnot json\n")
	cases := []struct {
		opts PrepareOptions
		want string
	}{
		{PrepareOptions{Inputs: []DocSource{{Path: one}}, Tokenizer: g, EOS: GPT2EOS, HeldOut: 0.02}, "selected none of the 1 non-empty documents"},
		{PrepareOptions{Inputs: []DocSource{{Path: empty}}, Tokenizer: g, EOS: GPT2EOS}, "corpus is empty"},
		{PrepareOptions{Inputs: []DocSource{{Path: bad}}, Tokenizer: g, EOS: GPT2EOS}, bad + " line 2: not a JSON object"},
		{PrepareOptions{Inputs: []DocSource{{Path: one}}, Tokenizer: g, EOS: 50257}, "EOS id 50257 is not in [0, 50257)"},
		{PrepareOptions{Inputs: []DocSource{{Path: one}}, Tokenizer: g, EOS: GPT2EOS, HeldOut: 1}, "held-out fraction 1 is not in [0, 1)"},
		{PrepareOptions{Inputs: []DocSource{{Path: dir}}, Tokenizer: g, EOS: GPT2EOS}, "is a directory"},
		{PrepareOptions{Inputs: []DocSource{{Path: filepath.Join(dir, "nope.txt")}}, Tokenizer: g, EOS: GPT2EOS}, "nope.txt"},
	}
	for i, c := range cases {
		c.opts.OutDir = filepath.Join(dir, "out", string(rune('a'+i)))
		_, err := Prepare(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: error = %v, want one containing %q", i, err, c.want)
			continue
		}
		// Nothing is left behind on failure.
		if m, _ := filepath.Glob(filepath.Join(c.opts.OutDir, "*")); len(m) != 0 {
			t.Errorf("case %d: files left after a failed prepare: %v", i, m)
		}
	}
}

// TestPrepareProse prepares all of ../shared/data/prose (issue 7 "must show"): 741
// documents (233 sotu addresses, 500 Brown files, 8 books, one document per text file),
// 2% held out. The token counts are checked against the shard headers and the manifest,
// the EOS count against the document count, and the decoded streams against the
// documents themselves.
func TestPrepareProse(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: tokenises 26 MB of prose (about 6 s on 2 cores)")
	}
	g := newGPT2(t)
	root := filepath.Dir(sharedData(t, "prose/sotu.jsonl"))
	inputs := []DocSource{{Path: filepath.Join(root, "sotu.jsonl")}, {Path: filepath.Join(root, "brown.jsonl")},
		{Path: filepath.Join(root, "kjv.txt")}, {Path: filepath.Join(root, "moby-dick.txt")}}
	austen, _ := filepath.Glob(filepath.Join(root, "austen", "*.txt"))
	slices.Sort(austen)
	for _, p := range austen {
		inputs = append(inputs, DocSource{Path: p})
	}
	if len(inputs) != 10 {
		t.Fatalf("%d prose files, want 10", len(inputs))
	}
	m, err := Prepare(PrepareOptions{Inputs: inputs, OutDir: t.TempDir(), Name: "prose", Tokenizer: g, EOS: GPT2EOS,
		HeldOut: 0.02, SplitSeed: 1, ShardTokens: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if m.Documents != 741 || m.EmptyDocuments != 0 {
		t.Errorf("documents = %d (%d empty), want 741 (0 empty)", m.Documents, m.EmptyDocuments)
	}
	train, val := readSplit(t, m, SplitTrain, g), readSplit(t, m, SplitVal, g)
	if int64(len(train)) != m.Train.Tokens || int64(len(val)) != m.Val.Tokens {
		t.Errorf("shards hold %d + %d tokens, manifest says %d + %d", len(train), len(val), m.Train.Tokens, m.Val.Tokens)
	}
	countEOS := func(s []int32) (n int64) {
		for _, v := range s {
			if v == GPT2EOS {
				n++
			}
		}
		return n
	}
	if countEOS(train) != m.Train.Documents || countEOS(val) != m.Val.Documents || train[len(train)-1] != GPT2EOS {
		t.Errorf("EOS tokens: train %d, val %d; want one per document: %d, %d", countEOS(train), countEOS(val), m.Train.Documents, m.Val.Documents)
	}
	// Decoding each stream gives back its documents, in order, each followed by EOS.
	var wantTrain, wantVal strings.Builder
	d := uint64(0)
	for _, in := range inputs {
		in.Format = DetectDocFormat(in.Path)
		if err := EachDocument(in, func(doc string, _ int64) error {
			w := &wantTrain
			if splitUniform(1, d) < 0.02 {
				w = &wantVal
			}
			w.WriteString(doc + GPT2EOSText)
			d++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if g.Decode(train) != wantTrain.String() || g.Decode(val) != wantVal.String() {
		t.Errorf("decoded streams differ from the documents")
	}
	// GPT-2 tokens of the ten files, EOS included (README: "≈5.8 M GPT-2 tokens in all").
	const wantTotal = 5_818_062
	total := m.Train.Tokens + m.Val.Tokens
	t.Logf("prose: %d documents → train %d docs / %d tokens in %d shards, val %d docs / %d tokens", m.Documents,
		m.Train.Documents, m.Train.Tokens, len(m.Train.Shards), m.Val.Documents, m.Val.Tokens)
	if total != wantTotal {
		t.Errorf("total tokens %d, want %d", total, wantTotal)
	}
}
