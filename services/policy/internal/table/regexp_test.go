package table

import (
	"strings"
	"testing"
)

func TestRegexp(t *testing.T) {
	tb := mustOpenText(t, "regexp", `# header-style rules
/^localhost$/                 REJECT localhost
/^(.*)\.example\.com$/        OK $1 via ${1} and $(1), $$5
/^user\+([a-z]+)@(x)?(.*)$/   FILTER $1:$2:$3
/^CaseSensitive$/i            sensitive
%^hash%                       hash
/slash\/inside/               slashed
!/^[[:alnum:].-]+$/           REJECT bad characters
/^x(a|ab)/                    longest:$1
/^multi/                      first
/^multiline$/                 never reached
/^cont/                       REJECT continued
  on two lines
`)
	if !tb.Pattern() {
		t.Error("Pattern() = false")
	}
	checkLookups(t, tb, []lookupCase{
		hit("localhost", "REJECT localhost"),
		hit("LocalHost", "REJECT localhost"),
		hit("mail.example.com", "OK mail via mail and mail, $5"),
		hit("MAIL.Example.COM", "OK MAIL via MAIL and MAIL, $5"),
		hit("user+box@example.org", "FILTER box::example.org"),
		hit("user+box@xample.org", "FILTER box:x:ample.org"),
		hit("CaseSensitive", "sensitive"),
		miss("casesensitive"),
		hit("hash", "hash"),
		hit("a-slash/inside", "slashed"),
		hit("bad key!", "REJECT bad characters"),
		hit("xab", "longest:ab"),
		hit("multiline", "first"),
		hit("cont", "REJECT continued on two lines"),
		miss("plain.example.org"),
	})
	checkEntries(t, tb, []Entry{
		{Pos: "2", Key: "/^localhost$/", Value: "REJECT localhost"},
		{Pos: "3", Key: `/^(.*)\.example\.com$/`, Value: "OK $1 via ${1} and $(1), $$5"},
		{Pos: "4", Key: `/^user\+([a-z]+)@(x)?(.*)$/`, Value: "FILTER $1:$2:$3"},
		{Pos: "5", Key: "/^CaseSensitive$/i", Value: "sensitive"},
		{Pos: "6", Key: "%^hash%", Value: "hash"},
		{Pos: "7", Key: `/slash\/inside/`, Value: "slashed"},
		{Pos: "8", Key: "!/^[[:alnum:].-]+$/", Value: "REJECT bad characters"},
		{Pos: "9", Key: "/^x(a|ab)/", Value: "longest:$1"},
		{Pos: "10", Key: "/^multi/", Value: "first"},
		{Pos: "11", Key: "/^multiline$/", Value: "never reached"},
		{Pos: "12", Key: "/^cont/", Value: "REJECT continued on two lines"},
	})
}

func TestRegexpIf(t *testing.T) {
	tb := mustOpenText(t, "regexp", `
if /@example\.com$/
if !/^postmaster@/
/^abuse@/       DUNNO abuse
/./             REJECT example.com users only via postmaster
endif
/^postmaster@/  OK postmaster
endif
If /^x/
/y$/            x-y
EndIf
/^x/!/z$/       x-not-z
/./             fallback
`)
	checkLookups(t, tb, []lookupCase{
		hit("abuse@example.com", "DUNNO abuse"),
		hit("joe@example.com", "REJECT example.com users only via postmaster"),
		hit("postmaster@example.com", "OK postmaster"),
		hit("joe@example.org", "fallback"),
		hit("xy", "x-y"),
		hit("xa", "x-not-z"),
		hit("xz", "fallback"),
		miss(""),
	})
}

func TestRegexpFlags(t *testing.T) {
	tb := mustOpenText(t, "regexp", `
/^a.b$/          dot-matches-newline
/^line$/m        multi-line
/^\(c\)\{2\}+$/x bre
/^d+$/ix         bre-plus-literal-case-sensitive
/^E\(f\|g\)$/xi  bre-alternation
/^h{,2}$/        interval-without-min
/^[\.]$/         bracket-backslash
/^[]x]$/         bracket-bracket
/^\w+\d$/        go-escapes
`)
	checkLookups(t, tb, []lookupCase{
		hit("a\nb", "dot-matches-newline"),
		hit("first\nline\nlast", "multi-line"),
		hit("cc+", "bre"),
		miss("ccc"),
		hit("d+", "bre-plus-literal-case-sensitive"),
		miss("dd"),
		miss("D+"),
		hit("Eg", "bre-alternation"),
		miss("eg"),
		hit("", "interval-without-min"),
		hit("hh", "interval-without-min"),
		hit(`\`, "bracket-backslash"),
		hit(`.`, "bracket-backslash"),
		hit(`]`, "bracket-bracket"),
		hit(`x`, "bracket-bracket"),
		hit("abc1", "go-escapes"),
	})
}

func TestRegexpErrors(t *testing.T) {
	checkErrors(t, "regexp", []errCase{
		{"no closing delimiter", "/a/ ok\n/abc REJECT\n", `regexp:regexp.txt:2: no closing regexp delimiter '/'`},
		{"unknown flag", "/a/q x\n", `regexp:regexp.txt:1: unknown regexp option 'q': regexp: tables know i, m and x`},
		{"pcre flag", "/a/s x\n", `regexp:regexp.txt:1: unknown regexp option 's': regexp: tables know i, m and x`},
		{"bad regexp", "/a(/ x\n", "regexp:regexp.txt:1: error parsing regexp: missing closing ): `(?is)a(`: smtpgate uses Go's RE2 engine (https://github.com/google/re2/wiki/Syntax)"},
		{"backreference", `/(a)\1/ x` + "\n", `regexp:regexp.txt:1: backreference \1 is not supported: smtpgate uses Go's RE2 engine (https://github.com/google/re2/wiki/Syntax)`},
		{"word start", `/\<a/ x` + "\n", `regexp:regexp.txt:1: word boundary \< is not supported: use \b (smtpgate uses Go's RE2 engine, https://github.com/google/re2/wiki/Syntax)`},
		{"collating", "/[[.ch.]]/ x\n", `regexp:regexp.txt:1: [.ch.] in a bracket expression is not supported`},
		{"unterminated bracket", "/[a/ x\n", `regexp:regexp.txt:1: unterminated bracket expression: missing ']'`},
		{"out of range", "/(a)/ $2\n", `regexp:regexp.txt:1: out of range replacement index "2": the pattern has 1 group(s)`},
		{"zero", "/(a)/ $0\n", `regexp:regexp.txt:1: bad replacement syntax: out-of-range replacement index "0"`},
		{"non-numeric", "/(a)/ $1a\n", `regexp:regexp.txt:1: bad replacement syntax: non-numeric replacement index "1a"`},
		{"lone dollar", "/(a)/ cost $ 5\n", `regexp:regexp.txt:1: bad replacement syntax: empty macro name: a lone $ is written $$`},
		{"truncated", "/(a)/ ${1\n", `regexp:regexp.txt:1: bad replacement syntax: truncated macro reference "${1"`},
		{"negated with $n", "!/(a)/ $1\n", `regexp:regexp.txt:1: $number found in negative match replacement text`},
		{"letter delimiter", "if a/x/\nendif\n", `regexp:regexp.txt:1: bad regexp delimiter 'a': use a punctuation character such as '/'`},
		{"no regexp", "!\n", `regexp:regexp.txt:1: no regexp`},
		{"unrecognized", "/a/ x\nfoo bar\n", `regexp:regexp.txt:2: unrecognized request: expected /pattern/ result, if /pattern/ or endif`},
		{"missing endif", "/a/ x\nif /b/\n/c/ d\n", `regexp:regexp.txt:2: if has no matching endif`},
		{"extra endif", "endif\n", `regexp:regexp.txt:1: endif without matching if`},
		{"endif garbage", "if /a/\nendif x\n", `regexp:regexp.txt:2: extra text after "endif": "x"`},
		{"indented rule after if", "if /a/\n  /b/ c\nendif\n", `regexp:regexp.txt:1: extra text after "if" pattern: "/b/ c" (do not indent the rules between if and endif: a line that starts with whitespace continues the line before)`},
	})
}

func TestRegexpEmptyResultWarns(t *testing.T) {
	s := &source{typ: "regexp", file: "f", data: []byte("/^a$/\n")}
	m, err := parseRegexp(s)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.lookup("a"); !ok || v != "" {
		t.Errorf("lookup = %q, %v; want \"\", true", v, ok)
	}
	if len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "regexp:f:1: no replacement text: using empty string") {
		t.Errorf("warnings = %q", s.warnings)
	}
}

func TestRegexpManyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 100,001 regexps")
	}
	var b strings.Builder
	for i := range 100_001 {
		b.WriteString("/^k" + itoa(i) + "$/ v" + itoa(i) + "\n")
	}
	tb := mustOpenText(t, "regexp", b.String())
	checkLookups(t, tb, []lookupCase{hit("k100000", "v100000"), hit("K7", "v7"), miss("k100001")})
}
