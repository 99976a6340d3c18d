package zeroshot

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// A Detokenizer turns one document of a pre-tokenised evaluation corpus back into
// ordinary text before GPT-2 BPE encoding, so that a model trained on raw web text is
// scored on text that looks like its training data.
//
// The rules are those of the zero-shot evaluations MD4 says it follows (paper §7.1:
// "SEDD's setup"): the detokenisers in data.py of SEDD (louaaron/Score-Entropy-Discrete-
// Diffusion, commit 0605786) and, identical, dataloader.py of MDLM (kuleshov-group/mdlm);
// their WikiText and LAMBADA rules go back to Megatron-LM's tasks/zeroshot_gpt
// detokenizer. They were read to learn the rules and re-implemented here. Rules apply in
// the order listed, each to the whole document; "a → b" is a literal replacement of every
// non-overlapping occurrence, left to right (Python str.replace), and regular
// expressions have Python re semantics (\s: Unicode whitespace as str.isspace).
type Detokenizer struct {
	// Name is "ptb", "wikitext", "lambada", "lm1b" or "none".
	Name string
	// Rules lists the rules in order, for the record.
	Rules []string
	fn    func(string) string
}

// Apply detokenises one document.
func (d Detokenizer) Apply(s string) string { return d.fn(s) }

// pySpace is Python 3's \s for str patterns (str.isspace): ASCII \t\n\v\f\r, space,
// \x1c–\x1f, U+0085, and the Unicode space separators and line/paragraph separators.
const pySpace = `[\t\n\v\f\r \x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]`

// pyWord is Python 3's \w for str patterns: letters, numbers and the underscore.
const pyWord = `[\p{L}\p{N}_]`

// pyIsSpace is Python's str.isspace for one rune.
func pyIsSpace(r rune) bool {
	switch {
	case r >= 0x1c && r <= 0x1f, r == 0x85:
		return true
	}
	return unicode.IsSpace(r)
}

// pyStrip is Python's str.strip() with no argument.
func pyStrip(s string) string { return strings.TrimFunc(s, pyIsSpace) }

type rule struct {
	desc string
	re   *regexp.Regexp // nil: literal replacement old → new
	old  string
	new  string // literal new text, or the regexp template ($1) when re != nil
	lit  bool   // re != nil: new is literal (Python replacement with no group reference)
	reps int    // literal: repeat the replacement this many times (default 1)
}

func lit(old, new string) rule {
	return rule{desc: fmt.Sprintf("%q → %q", old, new), old: old, new: new, reps: 1}
}

func litN(old, new string, n int) rule {
	r := lit(old, new)
	r.reps = n
	r.desc = fmt.Sprintf("%q → %q, applied %d times (overlapping runs)", old, new, n)
	return r
}

// re builds a regexp rule; pyPattern is the rule as written in Python (for the record)
// and goPattern its RE2 translation.
func re(pyPattern, goPattern, template string, literal bool) rule {
	return rule{desc: fmt.Sprintf("re.sub(%s, %q)", pyPattern, template), re: regexp.MustCompile(goPattern), new: template, lit: literal}
}

func (r rule) apply(s string) string {
	if r.re == nil {
		for range r.reps {
			s = strings.ReplaceAll(s, r.old, r.new)
		}
		return s
	}
	if r.lit {
		return r.re.ReplaceAllLiteralString(s, r.new)
	}
	return r.re.ReplaceAllString(s, r.new)
}

func makeDetok(name string, rules []rule, wrap func(string) string) Detokenizer {
	descs := make([]string, len(rules))
	for i, r := range rules {
		descs[i] = r.desc
	}
	return Detokenizer{Name: name, Rules: descs, fn: func(s string) string {
		for _, r := range rules {
			s = r.apply(s)
		}
		if wrap != nil {
			s = wrap(s)
		}
		return s
	}}
}

// PTBDetokenizer undoes Mikolov's PTB preprocessing where it can (SEDD/MDLM
// ptb_detokenizer):
//
//	" 's" → "'s"; "s ' " → "s' "; " n't" → "n't"; " \n " → "\n"; "\/" → "/";
//	" N " → " 1 " (ten times, so runs like " N N N " all change); "$ 1" → "$1";
//	"# 1" → "#1"; "<unk>" → "?".
//
// Lowercasing and the removed punctuation cannot be undone.
var PTBDetokenizer = makeDetok("ptb", []rule{
	lit(" 's", "'s"),
	lit("s ' ", "s' "),
	lit(" n't", "n't"),
	lit(" \n ", "\n"),
	lit(`\/`, "/"),
	litN(" N ", " 1 ", 10),
	lit("$ 1", "$1"),
	lit("# 1", "#1"),
	lit("<unk>", "?"),
}, nil)

// WikiTextDetokenizer undoes the WikiText tokenisation (SEDD/MDLM wt_detokenizer, from
// Megatron-LM): contractions, the @-@/@,@/@.@ number separators, spacing before
// punctuation, spaces inside brackets and quotes, heading markers "= = =" and spaces
// around line breaks:
//
//	"s '" → "s'"; re.sub(r"/' [0-9]/", "/'[0-9]/") (a literal replacement, in effect a
//	no-op on WikiText, kept for parity); " @-@ " → "-"; " @,@ " → ","; " @.@ " → ".";
//	" : " → ": "; " ; " → "; "; " . " → ". "; " ! " → "! "; " ? " → "? "; " , " → ", ";
//	re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)") and the same for [ ], { }, " " and ' ';
//	"= = = =" → "===="; "= = =" → "==="; "= =" → "=="; " ° " → "°"; " \n" → "\n";
//	"\n " → "\n"; " N " → " 1 "; " 's" → "'s".
var WikiTextDetokenizer = makeDetok("wikitext", []rule{
	lit("s '", "s'"),
	re(`r"/' [0-9]/"`, `/' [0-9]/`, `/'[0-9]/`, true),
	lit(" @-@ ", "-"),
	lit(" @,@ ", ","),
	lit(" @.@ ", "."),
	lit(" : ", ": "),
	lit(" ; ", "; "),
	lit(" . ", ". "),
	lit(" ! ", "! "),
	lit(" ? ", "? "),
	lit(" , ", ", "),
	re(`r"\(\s*([^\)]*?)\s*\)"`, `\(`+pySpace+`*([^)]*?)`+pySpace+`*\)`, "(${1})", false),
	re(`r"\[\s*([^\]]*?)\s*\]"`, `\[`+pySpace+`*([^\]]*?)`+pySpace+`*\]`, "[${1}]", false),
	re(`r"{\s*([^}]*?)\s*}"`, `\{`+pySpace+`*([^}]*?)`+pySpace+`*\}`, "{${1}}", false),
	re(`r"\"\s*([^\"]*?)\s*\""`, `"`+pySpace+`*([^"]*?)`+pySpace+`*"`, `"${1}"`, false),
	re(`r"'\s*([^']*?)\s*'"`, `'`+pySpace+`*([^']*?)`+pySpace+`*'`, "'${1}'", false),
	lit("= = = =", "===="),
	lit("= = =", "==="),
	lit("= =", "=="),
	lit(" \u00b0 ", "\u00b0"),
	lit(" \n", "\n"),
	lit("\n ", "\n"),
	lit(" N ", " 1 "),
	lit(" 's", "'s"),
}, nil)

// LambadaDetokenizer normalises the OpenAI LAMBADA test passages (SEDD/MDLM
// lambada_detokenizer): curly double quotes “ ” become ", then the passage is stripped
// of surrounding whitespace (Python str.strip) and prefixed with "\n".
var LambadaDetokenizer = makeDetok("lambada", []rule{
	lit("\u201c", `"`),
	lit("\u201d", `"`),
}, func(s string) string { return "\n" + pyStrip(s) })

// LM1BDetokenizer undoes the One Billion Word benchmark tokenisation (SEDD/MDLM
// lm1b_detokenizer): URLs, clitics, spacing before . ? ! , : ; and inside quotes and
// brackets, and after $ and £. A "$" in its patterns matches at the end of the text or
// before a final "\n", as in Python.
var LM1BDetokenizer = makeDetok("lm1b", []rule{
	lit("http : / / ", "http://"),
	lit("https : / / ", "https://"),
	re(`r" \'(\w+)"`, ` '(`+pyWord+`+)`, "'${1}", false),
	re(`r" (\w+) \. "`, ` (`+pyWord+`+) \. `, " ${1}. ", false),
	re(`r" (\w+) \.$"`, ` (`+pyWord+`+) \.(\n?)$`, " ${1}.${2}", false),
	lit(" ? ", "? "),
	re(`r" \?$"`, ` \?(\n?)$`, "?${1}", false),
	lit(" ! ", "! "),
	re(`r" \!$"`, ` !(\n?)$`, "!${1}", false),
	lit(" , ", ", "),
	lit(" : ", ": "),
	lit(" ; ", "; "),
	lit(" / ", "/"),
	re(`r'\" ([^\"]+) \"'`, `" ([^"]+) "`, `"${1}"`, false),
	re(`r"\' ([^\']+) \'"`, `' ([^']+) '`, "'${1}'", false),
	re(`r'\( ([^\(\)]+) \)'`, `\( ([^()]+) \)`, "(${1})", false),
	re(`r'\[ ([^\[\]]+) \]'`, `\[ ([^\[\]]+) \]`, "[${1}]", false),
	lit("$ ", "$"),
	lit("£ ", "£"),
}, nil)

// NoDetokenizer leaves documents unchanged.
var NoDetokenizer = makeDetok("none", nil, nil)

// DetokenizerByName returns the named detokenizer: ptb, wikitext, lambada, lm1b or none.
func DetokenizerByName(name string) (Detokenizer, error) {
	for _, d := range []Detokenizer{PTBDetokenizer, WikiTextDetokenizer, LambadaDetokenizer, LM1BDetokenizer, NoDetokenizer} {
		if d.Name == name {
			return d, nil
		}
	}
	return Detokenizer{}, fmt.Errorf("zeroshot: unknown detokenizer %q (want ptb, wikitext, lambada, lm1b or none)", name)
}
