package zeroshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
)

// sharedData locates a file of ../shared/data, skipping the test when it is absent.
func sharedData(t *testing.T, rel string) string { return testutil.SharedData(t, rel) }

func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gpt2(t *testing.T) *data.GPT2 {
	t.Helper()
	g, err := data.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestDetokenizers(t *testing.T) {
	cases := []struct {
		d       Detokenizer
		in, out string
	}{
		{PTBDetokenizer, "no it was n't black monday", "no it wasn't black monday"},
		{PTBDetokenizer, "the company 's N shares rose to $ N a share", "the company's 1 shares rose to $1 a share"},
		{PTBDetokenizer, "a N N N b", "a 1 1 1 b"},
		{PTBDetokenizer, "the boys ' toys and <unk> ltd. \\/ co", "the boys' toys and ? ltd. / co"},
		{PTBDetokenizer, "N shares", "N shares"}, // no space before N at the start
		{PTBDetokenizer, "see # N issue", "see #1 issue"},
		{WikiTextDetokenizer, " = Robert Boulter = \n", " = Robert Boulter =\n"},
		{WikiTextDetokenizer, " = = Career = = \n", " == Career ==\n"},
		{WikiTextDetokenizer, " = = = 2000 – 2005 = = = \n", " === 2000 – 2005 ===\n"},
		{WikiTextDetokenizer, " It cost 1 @,@ 000 @-@ odd pounds ( about 2 @.@ 5 % ) , he said . Then \n",
			" It cost 1,000-odd pounds (about 2.5 %), he said. Then\n"},
		{WikiTextDetokenizer, " the song \" Hello there \" ; it was the players ' choice at 20 ° C \n",
			" the song \"Hello there\"; it was the players' choice at 20°C\n"},
		{WikiTextDetokenizer, " [ 1 ] { a } he 's N \n", " [1] {a} he's N\n"}, // " \n" → "\n" runs before " N "
		{WikiTextDetokenizer, " N years \n", " 1 years\n"},
		{WikiTextDetokenizer, "", ""},
		{LambadaDetokenizer, "  \u201cHi,\u201d she said.\n", "\n\"Hi,\" she said."},
		{LM1BDetokenizer, "I paid $ 5 .", "I paid $5."},
		{LM1BDetokenizer, "He said : go to http : / / x.org , now !", "He said: go to http://x.org, now!"},
		{LM1BDetokenizer, "Is it ( really ) true ?\n", "Is it (really) true?\n"},
		{NoDetokenizer, " a  b ", " a  b "},
	}
	for _, c := range cases {
		if got := c.d.Apply(c.in); got != c.out {
			t.Errorf("%s detokenizer(%q) = %q, want %q", c.d.Name, c.in, got, c.out)
		}
	}
	for _, name := range []string{"ptb", "wikitext", "lambada", "lm1b", "none"} {
		d, err := DetokenizerByName(name)
		if err != nil || d.Name != name {
			t.Errorf("DetokenizerByName(%q) = %q, %v", name, d.Name, err)
		}
	}
	if len(WikiTextDetokenizer.Rules) != 24 || len(PTBDetokenizer.Rules) != 9 {
		t.Errorf("rule counts: wikitext %d, ptb %d; want 24, 9", len(WikiTextDetokenizer.Rules), len(PTBDetokenizer.Rules))
	}
	if _, err := DetokenizerByName("moses"); err == nil {
		t.Errorf("DetokenizerByName(moses) succeeded")
	}
}

// TestPTBProtocol builds the default (SEDD) protocol on the shared PTB files and checks
// the counts against an independent computation.
func TestPTBProtocol(t *testing.T) {
	g := gpt2(t)
	spec, _ := Lookup("ptb")
	dir := filepath.Dir(sharedData(t, "eval/ptb/ptb.test.txt"))
	for _, c := range []struct {
		split      string
		docs       int
		firstDoc   string
		wantTokens int64
	}{
		{"test", 3761, "no it was n't black monday", 91135},
		{"valid", 3370, "consumers may want to move their telephones a little closer to the tv set", 81773},
	} {
		path, err := spec.Resolve(dir, c.split)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := ReadPTB(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != c.docs || docs[0] != c.firstDoc {
			t.Fatalf("%s: %d documents starting %q; want %d starting %q", c.split, len(docs), docs[0], c.docs, c.firstDoc)
		}
		p, err := DefaultProtocol("ptb", c.split, g, 1024, 4, 1)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Load(spec, path, g, p)
		if err != nil {
			t.Fatal(err)
		}
		// Independent count: every detokenised line encoded, plus one EOS each.
		var want int64
		var stream []int32
		for _, d := range docs {
			ids, _ := g.AppendDocument(nil, PTBDetokenizer.Apply(d))
			want += int64(len(ids))
			stream = append(stream, ids...)
		}
		q := e.Protocol
		if want != c.wantTokens {
			t.Errorf("%s: %d tokens after detokenising, encoding and EOS, want %d", c.split, want, c.wantTokens)
		}
		if q.Documents != c.docs || q.Tokens != want || q.Blocks != int(want/1024) || q.DroppedTokens != want%1024 ||
			q.ScoredTokens != int64(q.Blocks)*1024 || e.Lens != nil || len(e.Tokens) != q.Blocks*1024 {
			t.Errorf("%s: protocol counts %+v; want %d documents, %d tokens, %d blocks, %d dropped", c.split, q, c.docs, want, want/1024, want%1024)
		}
		if !slices.Equal(e.Tokens, stream[:len(e.Tokens)]) || !slices.Equal(e.Block(1), stream[1024:2048]) {
			t.Errorf("%s: blocks are not the consecutive 1024-token pieces of the stream", c.split)
		}
		if got, want := g.Decode(e.Block(0)), PTBDetokenizer.Apply(docs[0])+"<|endoftext|>"+PTBDetokenizer.Apply(docs[1]); !strings.HasPrefix(got, want) {
			t.Errorf("%s: block 0 decodes to %q…, want it to start with %q", c.split, got[:80], want)
		}
		t.Logf("%s", q.String())

		// Pad mode: one block per sentence, pads never counted.
		p.Mode = ModePad
		ep, err := Load(spec, path, g, p)
		if err != nil {
			t.Fatal(err)
		}
		qp := ep.Protocol
		if qp.Blocks != c.docs || qp.ScoredTokens != want || qp.PadTokens != int64(c.docs)*1024-want || len(ep.Lens) != c.docs {
			t.Errorf("%s pad: %d blocks, %d scored, %d pads; want %d, %d, %d", c.split, qp.Blocks, qp.ScoredTokens, qp.PadTokens, c.docs, want, int64(c.docs)*1024-want)
		}
		var sum int64
		for k, n := range ep.Lens {
			if n < 1 || n > 1024 {
				t.Fatalf("pad: Lens[%d] = %d outside [1, 1024]", k, n)
			}
			b := ep.Block(k)
			if b[n-1] != data.GPT2EOS || slices.ContainsFunc(b[n:], func(v int32) bool { return v != p.PadID }) {
				t.Fatalf("pad: block %d does not end its document with EOS followed by pads", k)
			}
			sum += int64(n)
		}
		if sum != want {
			t.Errorf("pad: Σ Lens = %d, want %d", sum, want)
		}
	}
}

func TestPadModeSplitsLongDocuments(t *testing.T) {
	g := gpt2(t)
	p, _ := DefaultProtocol("ptb", "test", g, 8, 1, 0)
	p.Mode = ModePad
	long := strings.TrimSpace(strings.Repeat("word ", 19)) // 19 tokens + EOS = 20 = 8 + 8 + 4
	e, err := Build([]string{long, "hi"}, PTBDetokenizer, g, p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{8, 8, 4, 2}; !slices.Equal(e.Lens, want) {
		t.Errorf("Lens = %v, want %v", e.Lens, want)
	}
	if e.Protocol.ScoredTokens != 22 || e.Protocol.PadTokens != 10 || e.Protocol.Blocks != 4 {
		t.Errorf("scored %d, pads %d, blocks %d; want 22, 10, 4", e.Protocol.ScoredTokens, e.Protocol.PadTokens, e.Protocol.Blocks)
	}
}

func TestBuildErrors(t *testing.T) {
	g := gpt2(t)
	p, err := DefaultProtocol("ptb", "test", g, 1024, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// B09: a corpus shorter than one block, refused before any compute.
	_, err = Build([]string{"a short sentence"}, PTBDetokenizer, g, p)
	if !errors.Is(err, data.ErrTooShort) || !strings.Contains(err.Error(), "4 tokens cannot fill one window of 1024") {
		t.Errorf("short corpus: error = %v, want ErrTooShort naming 4 and 1024", err)
	}
	if _, err := Build(nil, PTBDetokenizer, g, p); !errors.Is(err, ErrNoDocuments) {
		t.Errorf("no documents: error = %v", err)
	}
	if _, err := Build([]string{"x"}, WikiTextDetokenizer, g, p); err == nil || !strings.Contains(err.Error(), `"wikitext" does not match the protocol's "ptb"`) {
		t.Errorf("wrong detokenizer: error = %v", err)
	}
	if _, err := Build([]string{"x"}, PTBDetokenizer, data.NewByte(), p); !errors.Is(err, data.ErrTokenizerMismatch) {
		t.Errorf("wrong tokenizer: error = %v", err)
	}
	if _, err := DefaultProtocol("ptb", "test", data.NewByte(), 1024, 1, 0); err == nil || !strings.Contains(err.Error(), "no EOS token") {
		t.Errorf("tokenizer without EOS: error = %v", err)
	}
	bad := []func(*Protocol){
		func(q *Protocol) { q.BlockSize = 0 },
		func(q *Protocol) { q.Mode = "wrap" },
		func(q *Protocol) { q.Samples = 0 },
		func(q *Protocol) { q.Bound = BoundDiscrete },
		func(q *Protocol) { q.DiscreteT = 1000 },
		func(q *Protocol) { q.EOS = 50257 },
		func(q *Protocol) { q.Mode, q.PadID = ModePad, -1 },
	}
	for i, f := range bad {
		q := p
		f(&q)
		if err := q.Validate(data.GPT2VocabSize); err == nil {
			t.Errorf("invalid protocol %d accepted", i)
		}
	}
	q := p
	q.Bound, q.DiscreteT = BoundDiscrete, 1000
	if err := q.Validate(data.GPT2VocabSize); err != nil {
		t.Errorf("discrete T=1000: %v", err)
	}
	if err := p.CheckModel(256, 50257, g.Fingerprint()); err == nil || !strings.Contains(err.Error(), "sequence length 256 differs from the protocol's block size 1024") {
		t.Errorf("CheckModel(L=256) error = %v", err)
	}
	if err := p.CheckModel(1024, 50257, data.NewByte().Fingerprint()); !errors.Is(err, data.ErrTokenizerMismatch) {
		t.Errorf("CheckModel(byte tokenizer) error = %v", err)
	}
	if err := p.CheckModel(1024, 50257, g.Fingerprint()); err != nil {
		t.Errorf("CheckModel(matching) error = %v", err)
	}
}

func TestReaders(t *testing.T) {
	wt := writeFile(t, "wiki.test.raw", []byte(" \n = Title = \n \n First paragraph . \n"))
	docs, err := ReadWikiTextRaw(wt)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", " = Title = \n", "", " First paragraph . \n"}; !slices.Equal(docs, want) {
		t.Errorf("ReadWikiTextRaw = %q, want %q", docs, want)
	}
	tok := writeFile(t, "wiki.test.tokens", []byte(" = Title = \n the <unk> sat \n"))
	if _, err := ReadWikiTextRaw(tok); err == nil || !strings.Contains(err.Error(), "line 2 has <unk>") {
		t.Errorf("tokenised WikiText: error = %v", err)
	}
	jl := writeFile(t, "lambada_test.jsonl", []byte("{\"text\": \"one passage\"}\n\n{\"text\": \"two “quoted”\"}\n"))
	docs, err = ReadLambada(jl)
	if err != nil || !slices.Equal(docs, []string{"one passage", "two “quoted”"}) {
		t.Errorf("ReadLambada(jsonl) = %q, %v", docs, err)
	}
	if _, err := ReadLambada(writeFile(t, "x.jsonl", []byte("{\"txt\": 1}\n"))); err == nil || !strings.Contains(err.Error(), "line 1: no string field") {
		t.Errorf("ReadLambada(no text) error = %v", err)
	}
	// The Zenodo archive: the test member is found inside.
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range []struct{ name, body string }{{"lambada/README", "x"}, {"lambada/lambada_test_plain_text.txt", "first passage\nsecond passage\n"}} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(m.body))
	}
	tw.Close()
	gz.Close()
	arch := writeFile(t, "lambada-dataset.tar.gz", buf.Bytes())
	docs, err = ReadLambada(arch)
	if err != nil || !slices.Equal(docs, []string{"first passage", "second passage"}) {
		t.Errorf("ReadLambada(tar.gz) = %q, %v", docs, err)
	}
	trunc := writeFile(t, "t.tar.gz", buf.Bytes()[:buf.Len()/2])
	if _, err := ReadLambada(trunc); err == nil || !strings.Contains(err.Error(), "t.tar.gz") {
		t.Errorf("truncated archive: error = %v", err)
	}
	if _, err := ReadPTB(writeFile(t, "ptb.txt", []byte(" The Cat sat \n"))); err == nil || !strings.Contains(err.Error(), "line 1: character 'T'") {
		t.Errorf("ReadPTB(upper case) error = %v", err)
	}
	if _, err := ReadPTB(writeFile(t, "empty.txt", nil)); !errors.Is(err, ErrNoDocuments) {
		t.Errorf("ReadPTB(empty) error = %v", err)
	}
	if _, err := ReadPTB(writeFile(t, "bad.txt", []byte(" ok \n bad \xff \n"))); err == nil || !strings.Contains(err.Error(), "line 2: invalid UTF-8") {
		t.Errorf("ReadPTB(invalid UTF-8) error = %v", err)
	}
	docs, err = ReadLM1B(writeFile(t, "news.en.heldout-00000-of-00050", []byte("A sentence .\r\nAnother one .\n")))
	if err != nil || !slices.Equal(docs, []string{"A sentence .", "Another one ."}) {
		t.Errorf("ReadLM1B = %q, %v", docs, err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	spec, err := Lookup("wikitext2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = spec.Resolve(dir, "test")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "wikitext-2-raw/wiki.test.raw")) || !strings.Contains(err.Error(), "mdm-gpu data fetch wikitext-2") {
		t.Errorf("Resolve(missing) error = %v, want the paths tried and the fetch hint", err)
	}
	os.MkdirAll(filepath.Join(dir, "wikitext-2-raw"), 0o755)
	want := filepath.Join(dir, "wikitext-2-raw", "wiki.test.raw")
	os.WriteFile(want, []byte(" x \n"), 0o644)
	if got, err := spec.Resolve(dir, "test"); got != want || err != nil {
		t.Errorf("Resolve = %q, %v; want %q", got, err, want)
	}
	if got, err := spec.Resolve(want, "test"); got != want || err != nil {
		t.Errorf("Resolve(file) = %q, %v; want the file itself", got, err)
	}
	if _, err := Lookup("owt"); err == nil || !strings.Contains(err.Error(), "known: lambada, wikitext2, ptb, wikitext103, lm1b") {
		t.Errorf("Lookup(owt) error = %v", err)
	}
}

func TestReport(t *testing.T) {
	p := Protocol{Dataset: "ptb", Split: "test", Blocks: 2, ScoredTokens: 2048, BlockSize: 1024}
	var acc diffusion.Accumulator
	acc.Add(diffusion.SeqNLL{Tokens: 1024, Diffusion: 1024 * 4.0, DiffusionExact: 1024 * 4.0})
	acc.Add(diffusion.SeqNLL{Tokens: 1024, Diffusion: 1024 * 5.0, DiffusionExact: 1024 * 5.0})
	r, err := NewReport(p, acc.Result())
	if err != nil {
		t.Fatal(err)
	}
	// Mean 4.5 nats/token; per-block rates 4 and 5 → SE = 0.5.
	if math.Abs(r.Exact.Perplexity-math.Exp(4.5)) > 1e-9 || math.Abs(r.Exact.PerplexityStdErr-0.5*math.Exp(4.5)) > 1e-9 {
		t.Errorf("perplexity %v ± %v, want e^4.5 = %v ± %v", r.Exact.Perplexity, r.Exact.PerplexityStdErr, math.Exp(4.5), 0.5*math.Exp(4.5))
	}
	if s := r.String(); !strings.Contains(s, "ptb test: perplexity ≤ 90.02 ± 45.01") {
		t.Errorf("String() = %q", s)
	}
	// A padded block counted as L tokens is refused.
	p.ScoredTokens = 2000
	if _, err := NewReport(p, acc.Result()); err == nil || !strings.Contains(err.Error(), "scored 2048 tokens in 2 blocks, but the protocol has 2000") {
		t.Errorf("NewReport(mismatch) error = %v", err)
	}
}
