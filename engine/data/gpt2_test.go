package data

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// refBPE is an independent GPT-2 byte-level BPE written for these tests from the
// published algorithm (Radford et al. 2019, encoder.json + vocab.bpe): GPT-2's
// pre-tokenisation regex applied by hand, bytes mapped to the printable byte alphabet,
// then the classic merge loop (merge the lowest-ranked adjacent pair, all of its
// occurrences left to right, until no pair has a rank). It shares no code with the
// library: merges are ranked by pair (vocab.bpe), not by merged-token rank as tiktoken
// does, so agreement checks the two formulations against each other.
type refBPE struct {
	encoder map[string]int32   // byte-alphabet token string → id (gpt2-vocab.json)
	ranks   map[[2]string]int  // merge pair → rank (gpt2-merges.txt line order)
	byteEnc [256]string        // byte → its byte-alphabet character
	cache   map[string][]int32 // pre-token → ids
	decoder map[int32]string   // id → raw bytes
	merges  [][2]string        // in rank order
}

// gpt2ByteAlphabet returns GPT-2's reversible byte → printable-character map: the
// printable Latin-1 bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, and the
// remaining 68 bytes, in increasing order, map to U+0100, U+0101, ….
func gpt2ByteAlphabet() [256]rune {
	var m [256]rune
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	next := rune(256)
	for b := range 256 {
		if printable(b) {
			m[b] = rune(b)
		} else {
			m[b] = next
			next++
		}
	}
	return m
}

func loadRefBPE(t *testing.T) *refBPE {
	t.Helper()
	vocabPath := sharedData(t, "tokenizer/gpt2-vocab.json")
	mergesPath := sharedData(t, "tokenizer/gpt2-merges.txt")
	raw, err := os.ReadFile(vocabPath)
	if err != nil {
		t.Fatal(err)
	}
	r := &refBPE{encoder: map[string]int32{}, ranks: map[[2]string]int{}, cache: map[string][]int32{}, decoder: map[int32]string{}}
	if err := json.Unmarshal(raw, &r.encoder); err != nil {
		t.Fatalf("%s: %v", vocabPath, err)
	}
	alpha := gpt2ByteAlphabet()
	byteDec := map[rune]byte{}
	for b, c := range alpha {
		r.byteEnc[b] = string(c)
		byteDec[c] = byte(b)
	}
	for s, id := range r.encoder {
		if s == GPT2EOSText {
			r.decoder[id] = s
			continue
		}
		var b []byte
		for _, c := range s {
			x, ok := byteDec[c]
			if !ok {
				t.Fatalf("%s: token %q (id %d) has character %q outside the byte alphabet", vocabPath, s, id, c)
			}
			b = append(b, x)
		}
		r.decoder[id] = string(b)
	}
	f, err := os.Open(mergesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			if !strings.HasPrefix(sc.Text(), "#version") {
				t.Fatalf("%s line 1 = %q, want the #version header", mergesPath, sc.Text())
			}
			continue
		}
		a, b, ok := strings.Cut(sc.Text(), " ")
		if !ok || a == "" || b == "" {
			t.Fatalf("%s line %d = %q, want two symbols separated by a space", mergesPath, line, sc.Text())
		}
		r.ranks[[2]string{a, b}] = len(r.merges)
		r.merges = append(r.merges, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return r
}

// pretokenize splits text as GPT-2's regex
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does, alternative by alternative in order, without a regex engine.
func pretokenize(text string) []string {
	rs := []rune(text)
	n := len(rs)
	isL := func(i int) bool { return i < n && unicode.IsLetter(rs[i]) }
	isN := func(i int) bool { return i < n && unicode.IsNumber(rs[i]) }
	isS := func(i int) bool { return i < n && unicode.IsSpace(rs[i]) }
	isO := func(i int) bool {
		return i < n && !unicode.IsSpace(rs[i]) && !unicode.IsLetter(rs[i]) && !unicode.IsNumber(rs[i])
	}
	run := func(i int, f func(int) bool) int { // end of the maximal run of f starting at i
		for f(i) {
			i++
		}
		return i
	}
	var out []string
	for i := 0; i < n; {
		end := -1
		if rs[i] == '\'' {
			for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
				if strings.HasPrefix(string(rs[i+1:min(n, i+3)]), c) {
					end = i + 1 + len(c)
					break
				}
			}
		}
		if end < 0 {
			j := i
			if rs[i] == ' ' {
				j = i + 1
			}
			switch {
			case isL(j):
				end = run(j, isL)
			case isN(j):
				end = run(j, isN)
			case isO(j):
				end = run(j, isO)
			}
		}
		if end < 0 { // whitespace: \s+(?!\S), else \s+
			e := run(i, isS)
			switch {
			case e == n:
				end = e
			case e-1 > i:
				end = e - 1 // leave the last space to prefix the next word
			default:
				end = e
			}
		}
		out = append(out, string(rs[i:end]))
		i = end
	}
	return out
}

// bpe returns the ids of one pre-token.
func (r *refBPE) bpe(piece string) []int32 {
	if ids, ok := r.cache[piece]; ok {
		return ids
	}
	var word []string
	for i := 0; i < len(piece); i++ {
		word = append(word, r.byteEnc[piece[i]])
	}
	for len(word) > 1 {
		best, bestRank := [2]string{}, -1
		for i := 0; i+1 < len(word); i++ {
			if rk, ok := r.ranks[[2]string{word[i], word[i+1]}]; ok && (bestRank < 0 || rk < bestRank) {
				best, bestRank = [2]string{word[i], word[i+1]}, rk
			}
		}
		if bestRank < 0 {
			break
		}
		var merged []string
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == best[0] && word[i+1] == best[1] {
				merged = append(merged, best[0]+best[1])
				i += 2
			} else {
				merged = append(merged, word[i])
				i++
			}
		}
		word = merged
	}
	ids := make([]int32, len(word))
	for i, w := range word {
		id, ok := r.encoder[w]
		if !ok {
			panic("reference BPE: symbol " + w + " not in vocab")
		}
		ids[i] = id
	}
	r.cache[piece] = ids
	return ids
}

func (r *refBPE) encode(text string) []int32 {
	var ids []int32
	for _, p := range pretokenize(text) {
		ids = append(ids, r.bpe(p)...)
	}
	return ids
}

func newGPT2(t testing.TB) *GPT2 {
	t.Helper()
	g, err := NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGPT2Basics(t *testing.T) {
	g := newGPT2(t)
	if g.Name() != "gpt2" || g.VocabSize() != 50257 || g.EOS() != 50256 {
		t.Fatalf("Name, VocabSize, EOS = %q, %d, %d; want gpt2, 50257, 50256", g.Name(), g.VocabSize(), g.EOS())
	}
	cases := []struct {
		in   string
		want []int32
	}{
		{"Hello world", []int32{15496, 995}},
		{" the", []int32{262}},
		{"", nil},
		{"!", []int32{0}},
	}
	for _, c := range cases {
		got, err := g.Encode(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	// EOS is never produced from text, and is appended by AppendDocument.
	ids, err := g.AppendDocument(nil, "a<|endoftext|>b")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids[:len(ids)-1], GPT2EOS) || ids[len(ids)-1] != GPT2EOS {
		t.Errorf("AppendDocument(%q) = %v: want EOS only at the end", "a<|endoftext|>b", ids)
	}
	if got, want := g.Decode(ids), "a<|endoftext|>b<|endoftext|>"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
	if got, want := g.Decode([]int32{15496, 50257, -1, 50258}), "Hello\u25A1\uFFFD\uFFFD"; got != want {
		t.Errorf("Decode with mask and invalid ids = %q, want %q", got, want)
	}
	_, err = g.Encode("ok\nbad\xffbyte")
	if err == nil || !strings.Contains(err.Error(), "byte offset 6 (line 2)") {
		t.Errorf("Encode(invalid UTF-8) error = %v, want one naming byte offset 6 (line 2)", err)
	}
	g2 := newGPT2(t)
	if g.Fingerprint() != g2.Fingerprint() || !strings.HasPrefix(g.Fingerprint(), "sha256:") {
		t.Errorf("fingerprints %q, %q: want equal sha256 values", g.Fingerprint(), g2.Fingerprint())
	}
	// Golden value: changes only if the embedded vocabulary or the fingerprint format does.
	if want := gpt2FingerprintGolden; g.Fingerprint() != want {
		t.Errorf("Fingerprint() = %s, want %s", g.Fingerprint(), want)
	}
	for _, other := range []Tokenizer{NewByte(), NewText8()} {
		if other.Fingerprint() == g.Fingerprint() {
			t.Errorf("gpt2 fingerprint equals the %s tokenizer's", other.Name())
		}
	}
}

const gpt2FingerprintGolden = "sha256:bae66ee8dbe2e3f232c64be6a42be90e7d7300dbf52ba795c8be9704c70465aa"

// TestGPT2AgreesWithVocabAndMerges checks every one of the 50,257 ids against
// gpt2-vocab.json and every one of the 50,000 merges against gpt2-merges.txt.
func TestGPT2AgreesWithVocabAndMerges(t *testing.T) {
	g := newGPT2(t)
	r := loadRefBPE(t)
	if len(r.encoder) != GPT2VocabSize {
		t.Fatalf("gpt2-vocab.json has %d entries, want %d", len(r.encoder), GPT2VocabSize)
	}
	if len(r.merges) != 50000 {
		t.Fatalf("gpt2-merges.txt has %d merges, want 50000", len(r.merges))
	}
	bad := 0
	for id := int32(0); id < GPT2VocabSize; id++ {
		want, ok := r.decoder[id]
		if !ok {
			t.Fatalf("gpt2-vocab.json has no id %d", id)
		}
		if got := g.TokenBytes(id); got != want {
			bad++
			if bad <= 5 {
				t.Errorf("token %d: library bytes %q, vocab.json bytes %q", id, got, want)
			}
		}
	}
	// GPT-2's merge of rank k creates token 256+k.
	badMerges := 0
	for k, m := range r.merges {
		if id, ok := r.encoder[m[0]+m[1]]; !ok || id != int32(256+k) {
			badMerges++
			if badMerges <= 5 {
				t.Errorf("merge %d %q + %q: vocab id %d (present %v), want %d", k, m[0], m[1], id, ok, 256+k)
			}
		}
	}
	t.Logf("vocab: %d/%d ids agree; merges: %d/%d produce token 256+rank", GPT2VocabSize-bad, GPT2VocabSize, 50000-badMerges, 50000)
}

// compareWithRef encodes text with the library and the reference, checks equal ids and an
// exact round trip, and returns the number of tokens.
func compareWithRef(t *testing.T, g *GPT2, r *refBPE, where, text string) int {
	t.Helper()
	got, err := g.Encode(text)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if want := r.encode(text); !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("%s: library and reference BPE differ at token %d of %d/%d (library %v, reference %v) for %q",
			where, i, len(got), len(want), got[i:min(len(got), i+5)], want[i:min(len(want), i+5)], truncate(text, 80))
	}
	if back := g.Decode(got); back != text {
		t.Errorf("%s: Decode(Encode(s)) != s for %q (got %q)", where, truncate(text, 80), truncate(back, 80))
	}
	return len(got)
}

func TestGPT2ReferenceEdgeCases(t *testing.T) {
	g := newGPT2(t)
	r := loadRefBPE(t)
	for _, s := range []string{
		"Hello world", "  leading spaces", "trailing spaces   ", "a   b\n\n  c  \t\td", "\n\n\n", " ",
		"I'm sure they'll say it's 'quoted' and I'VE DON'T", "x'sy", "'s", "1234567 89 3.14159 1,000,000",
		"café naïve — “curly” ‘quotes’ …", "日本語のテキスト 中文", "emoji 🙂🚀 done", "tabs\tand\r\nCRLF\r\n",
		"<|endoftext|>", "$$$ @@ ### ---", "ℕ½Ⅻ ²³", "\u00a0nbsp\u2003emsp", "\u0002control",
	} {
		compareWithRef(t, g, r, "edge case", s)
	}
}

// TestGPT2PTBRoundTripAndReference encodes every line of the three PTB files with the
// library and the reference BPE: equal ids and an exact round trip on each (issue 7).
func TestGPT2PTBRoundTripAndReference(t *testing.T) {
	g := newGPT2(t)
	r := loadRefBPE(t)
	want := map[string]int{"ptb.train.txt": 42068, "ptb.valid.txt": 3370, "ptb.test.txt": 3761}
	for _, name := range []string{"ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"} {
		raw, err := os.ReadFile(sharedData(t, "eval/ptb/"+name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(raw), "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) != want[name] {
			t.Errorf("%s: %d lines, want %d", name, len(lines), want[name])
		}
		tokens, fails := 0, 0
		for i, line := range lines {
			ids, err := g.Encode(line)
			if err != nil {
				t.Fatalf("%s line %d: %v", name, i+1, err)
			}
			tokens += len(ids)
			if back := g.Decode(ids); back != line {
				fails++
				if fails <= 3 {
					t.Errorf("%s line %d: round trip %q → %q", name, i+1, line, back)
				}
			}
			if ref := r.encode(line); !slices.Equal(ids, ref) {
				fails++
				if fails <= 3 {
					t.Errorf("%s line %d: library %v, reference %v", name, i+1, ids, ref)
				}
			}
		}
		t.Logf("%s: %d lines, %d GPT-2 tokens; %d lines round-trip and agree with the reference BPE", name, len(lines), tokens, len(lines)-fails)
	}
}

// TestGPT2ProseAgreesWithReference compares ids on samples of real prose with curly
// quotes, dashes and a control character (sotu.jsonl, moby-dick.txt).
func TestGPT2ProseAgreesWithReference(t *testing.T) {
	g := newGPT2(t)
	r := loadRefBPE(t)
	docs, err := ReadJSONLDocs(sharedData(t, "prose/sotu.jsonl"), "text")
	if err != nil {
		t.Fatal(err)
	}
	tokens, bytes := 0, 0
	for i := 0; i < len(docs); i += 20 { // 12 addresses, 1790 … 2010s
		tokens += compareWithRef(t, g, r, "sotu.jsonl doc "+docs[i][:min(20, len(docs[i]))], docs[i])
		bytes += len(docs[i])
	}
	// The address holding the stray U+0002.
	for _, d := range docs {
		if strings.ContainsRune(d, 2) {
			tokens += compareWithRef(t, g, r, "sotu.jsonl doc with U+0002", d)
			bytes += len(d)
		}
	}
	moby, err := ReadText(sharedData(t, "prose/moby-dick.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cut := 300_000
	for cut < len(moby) && !utf8.RuneStart(moby[cut]) {
		cut++
	}
	tokens += compareWithRef(t, g, r, "moby-dick.txt first 300 kB", moby[:cut])
	bytes += cut
	t.Logf("prose sample: %d bytes, %d tokens agree with the reference BPE and round-trip", bytes, tokens)
}
