package data

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeText8(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{" anarchism originated as a term", " anarchism originated as a term"},
		{"Hello, World!", "hello world "},
		{"UPPER lower", "upper lower"},
		{"a1b", "a one b"},
		{"42", " four two "},
		{"1990s", " one nine nine zero s"},
		{"0123456789", " zero one two three four five six seven eight nine "},
		{"tab\tand\nnewline\r\n", "tab and newline "},
		{"  many   spaces  ", " many spaces "},
		{"x.y-z_w", "x y z w"},
		{"Ünïcode café", " n code caf "},
		{"bad\xffutf8", "bad utf eight "},
	}
	for _, c := range cases {
		got := NormalizeText8(c.in)
		if got != c.want {
			t.Errorf("NormalizeText8(%q) = %q, want %q", c.in, got, c.want)
		}
		if again := NormalizeText8(got); again != got {
			t.Errorf("NormalizeText8 not idempotent on %q: got %q", got, again)
		}
	}
}

func TestText8EncodeDecode(t *testing.T) {
	tok := NewText8()
	if tok.Name() != "text8" || tok.VocabSize() != 27 {
		t.Fatalf("Name, VocabSize = %q, %d; want text8, 27", tok.Name(), tok.VocabSize())
	}
	ids, err := tok.Encode("ab z")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{0, 1, 26, 25}; !slices.Equal(ids, want) {
		t.Errorf("Encode(%q) = %v, want %v", "ab z", ids, want)
	}
	// Raw text is normalised first.
	ids, _ = tok.Encode("A, 7!")
	if got, want := tok.Decode(ids), "a seven "; got != want {
		t.Errorf("Decode(Encode(%q)) = %q, want %q", "A, 7!", got, want)
	}
	// Exact on normalised text.
	for _, s := range []string{" the quick brown fox ", "zz", " "} {
		ids, _ := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q, want exact round trip", s, got)
		}
		for _, id := range ids {
			if id < 0 || id >= 27 {
				t.Errorf("Encode(%q) produced id %d outside [0, 27)", s, id)
			}
		}
	}
	if got, want := tok.Decode([]int32{0, 27, 1, -1, 28}), "a_b\uFFFD\uFFFD"; got != want {
		t.Errorf("Decode with mask and invalid ids = %q, want %q", got, want)
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := NewByte()
	if tok.VocabSize() != 256 || tok.Name() != "byte" {
		t.Fatalf("VocabSize, Name = %d, %q; want 256, byte", tok.VocabSize(), tok.Name())
	}
	s := "h\u00e9llo\x00\xff_"
	ids, err := tok.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(s) {
		t.Fatalf("Encode gave %d ids for %d bytes", len(ids), len(s))
	}
	if got := tok.Decode(ids); got != s {
		t.Errorf("Decode(Encode(%q)) = %q", s, got)
	}
	if got, want := tok.Decode([]int32{'a', 256, 'b', 257}), "a\u25A1b\uFFFD"; got != want {
		t.Errorf("Decode with mask = %q, want %q", got, want)
	}
}

func TestCharVocab(t *testing.T) {
	tok, err := NewCharVocab("hello\nworld")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(tok.Runes()), "\ndehlorw"; got != want {
		t.Fatalf("vocabulary = %q, want %q", got, want)
	}
	if tok.VocabSize() != 8 {
		t.Fatalf("VocabSize = %d, want 8", tok.VocabSize())
	}
	ids, err := tok.Encode("hold\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{3, 5, 4, 1, 0}; !slices.Equal(ids, want) {
		t.Errorf("Encode(hold\\n) = %v, want %v", ids, want)
	}
	if got := tok.Decode(append(ids, 8, 9)); got != "hold\n_\uFFFD" {
		t.Errorf("Decode = %q, want %q", got, "hold\n_\uFFFD")
	}
}

func TestCharUnknownError(t *testing.T) {
	tok, err := NewCharVocab("abc\n")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		text         string
		char         rune
		offset, line int
		wantInMsg    []string
	}{
		{"ab\ncé", 'é', 4, 2, []string{`'é'`, "U+00E9", "byte offset 4", "line 2", "data.WithUnknown"}},
		{"x", 'x', 0, 1, []string{`'x'`, "U+0078", "byte offset 0", "line 1"}},
		{"a\n\n\nb\tc", '\t', 5, 4, []string{`'\t'`, "U+0009", "byte offset 5", "line 4"}},
	}
	for _, c := range cases {
		_, err := tok.Encode(c.text)
		var ue *UnknownCharError
		if !errors.As(err, &ue) {
			t.Fatalf("Encode(%q) error = %v, want *UnknownCharError", c.text, err)
		}
		if ue.Char != c.char || ue.Offset != c.offset || ue.Line != c.line || ue.VocabSize != 4 {
			t.Errorf("Encode(%q): got char %q offset %d line %d V %d, want %q %d %d 4", c.text, ue.Char, ue.Offset, ue.Line, ue.VocabSize, c.char, c.offset, c.line)
		}
		for _, s := range c.wantInMsg {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not contain %q", err, s)
			}
		}
	}
	if _, err := tok.Encode("ab\xffc"); err == nil || !strings.Contains(err.Error(), "byte offset 2") {
		t.Errorf("Encode of invalid UTF-8: error = %v, want one naming byte offset 2", err)
	}
}

func TestCharWithUnknown(t *testing.T) {
	tok, err := NewCharVocab("ab?", WithUnknown('?'))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode("aXbé")
	if err != nil {
		t.Fatalf("Encode with unknown replacement: %v", err)
	}
	if got := tok.Decode(ids); got != "a?b?" {
		t.Errorf("Decode(Encode(aXbé)) = %q, want %q", got, "a?b?")
	}
	if _, err := NewCharVocab("ab", WithUnknown('#')); err == nil || !strings.Contains(err.Error(), "U+0023") {
		t.Errorf("WithUnknown('#') outside the vocabulary: error = %v, want one naming U+0023", err)
	}
}

func TestCharConstructionErrors(t *testing.T) {
	if _, err := NewCharVocab(""); !errors.Is(err, ErrEmptyCorpus) {
		t.Errorf("NewCharVocab(\"\") error = %v, want ErrEmptyCorpus", err)
	}
	if _, err := NewCharVocab("ok\n\xfe"); err == nil || !strings.Contains(err.Error(), "byte offset 3 (line 2)") {
		t.Errorf("NewCharVocab(invalid UTF-8) error = %v, want offset 3 line 2", err)
	}
	if _, err := NewCharFromRunes([]rune{'a', 'b', 'a'}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("NewCharFromRunes duplicate: error = %v", err)
	}
	if _, err := NewCharFromRunes([]rune{0xD800}); err == nil {
		t.Errorf("NewCharFromRunes(surrogate) succeeded, want error")
	}
}

func TestCharMaskPlaceholderAvoidsUnderscore(t *testing.T) {
	tok, err := NewCharVocab("a_b")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Decode([]int32{0, 3}), "_\u25A1"; got != want {
		t.Errorf("Decode([_ id, mask]) = %q, want %q", got, want)
	}
}

func TestCharJSONRoundTrip(t *testing.T) {
	for _, opts := range [][]CharOption{nil, {WithUnknown(' ')}} {
		tok, err := NewCharVocab("To be, or not to be: that is the question.\nÆther ✓", opts...)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		var back Char
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back.Fingerprint() != tok.Fingerprint() || !slices.Equal(back.Runes(), tok.Runes()) {
			t.Errorf("round trip changed the vocabulary: %q -> %q", string(tok.Runes()), string(back.Runes()))
		}
		u1, ok1 := tok.Unknown()
		u2, ok2 := back.Unknown()
		if u1 != u2 || ok1 != ok2 {
			t.Errorf("round trip changed Unknown: (%q,%v) -> (%q,%v)", u1, ok1, u2, ok2)
		}
	}
	bad := []struct{ json, want string }{
		{`{"type":"char","version":1,"vocab":"ba"}`, "not strictly sorted"},
		{`{"type":"char","version":1,"vocab":"aa"}`, "not strictly sorted"},
		{`{"type":"char","version":1,"vocab":""}`, "empty vocabulary"},
		{`{"type":"byte","version":1,"vocab":"ab"}`, `type "byte"`},
		{`{"type":"char","version":2,"vocab":"ab"}`, "version 2"},
		{`{"type":"char","version":1,"vocab":"ab","unknown":"xy"}`, "exactly one character"},
		{`{"type":"char","version":1,"vocab":"ab","unknown":"z"}`, "not in the vocabulary"},
		{`{"type":"char","version":1,"vocab":"ab","extra":1}`, "unknown field"},
	}
	for _, c := range bad {
		var tok Char
		err := json.Unmarshal([]byte(c.json), &tok)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Unmarshal(%s) error = %v, want one containing %q", c.json, err, c.want)
		}
	}
}

func TestFingerprints(t *testing.T) {
	c1, _ := NewCharVocab("abc")
	c2, _ := NewCharVocab("cba")
	c3, _ := NewCharVocab("abd")
	c4, _ := NewCharVocab("abc", WithUnknown('a'))
	if c1.Fingerprint() != c2.Fingerprint() {
		t.Errorf("same vocabulary from different corpora gave different fingerprints")
	}
	if c1.Fingerprint() == c3.Fingerprint() {
		t.Errorf("different vocabularies gave the same fingerprint")
	}
	if c1.Fingerprint() != c4.Fingerprint() {
		t.Errorf("WithUnknown changed the fingerprint")
	}
	all := map[string]string{}
	for _, tok := range []Tokenizer{NewText8(), NewByte(), c1} {
		fp := tok.Fingerprint()
		if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
			t.Errorf("%s fingerprint %q is not sha256:<64 hex>", tok.Name(), fp)
		}
		if other, dup := all[fp]; dup {
			t.Errorf("%s and %s share fingerprint %s", tok.Name(), other, fp)
		}
		all[fp] = tok.Name()
	}
	// Golden values: a change here invalidates every stored checkpoint's tokenizer check.
	golden := map[string]string{
		"text8": "sha256:" + text8Golden,
		"byte":  "sha256:" + byteGolden,
	}
	for _, tok := range []Tokenizer{NewText8(), NewByte()} {
		if got := tok.Fingerprint(); got != golden[tok.Name()] {
			t.Errorf("%s fingerprint = %s, want the stored golden %s", tok.Name(), got, golden[tok.Name()])
		}
	}
}

func TestTinyShakespeareCharVocab(t *testing.T) {
	p := sharedData(t, "char/tinyshakespeare.txt")
	text, err := ReadText(p)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewCharVocab(text)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 65 {
		t.Fatalf("tinyshakespeare V = %d, want 65", tok.VocabSize())
	}
	ids, err := tok.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1115394 {
		t.Errorf("tinyshakespeare has %d tokens, want 1115394 (ASCII: one per byte)", len(ids))
	}
	if tok.Decode(ids) != text {
		t.Errorf("Decode(Encode(tinyshakespeare)) is not the original text")
	}
	if got := tok.Fingerprint(); got != "sha256:"+tinyShakespeareGolden {
		t.Errorf("tinyshakespeare char fingerprint = %s, want golden sha256:%s", got, tinyShakespeareGolden)
	}
}

// Golden fingerprints, computed independently (Python hashlib) from the documented
// canonical form: sha256("mdm-gpu tokenizer v1\x00" + name + "\x00" + V + "\x00" + vocab).
const (
	text8Golden           = "27df4c8c9e972ebd583df909732aed00065a4ad1f8e9316d76828ea7d520bec8"
	byteGolden            = "b08e96e5c5a07c59958ed6aabdc6e60f2b0c4f1609ad4c03d12f7840c131f0d5"
	tinyShakespeareGolden = "545e420498920a8780e571087ffe660c0aaafa2b4a0dad8b62e2dd2c9417a5b7"
)
