package table

import (
	"testing"
)

func TestPCRE(t *testing.T) {
	tb := mustOpenText(t, "pcre", `
/^(\d+)\.example$/            digits $1
/^x(a|ab)/                    first-alternative:$1
/^Case$/i                     case-sensitive
/^a.b$/                       dot-no-newline
/^s.s$/s                      dotall
/^line$/m                     multiline
/ ^ e x t \  e n d e d $ # a comment/x   extended
/b+c/A                        anchored
/^lazy(.+)$/U                 ungreedy:$1
/^end$/                       dollar-before-final-newline
/^END$/E                      dollar-end-only
/^(?'name'q)\Q.*+\E$/         quoted
/^h\hv$/                      hspace
/^(?#comment)cmt$/            comment
if !/\.example$/
/^(?<user>[^@]+)@/            user:${1}
endif
`)
	if !tb.Pattern() {
		t.Error("Pattern() = false")
	}
	checkLookups(t, tb, []lookupCase{
		hit("123.example", "digits 123"),
		hit("xab", "first-alternative:a"),
		hit("Case", "case-sensitive"),
		miss("case"),
		miss("a\nb"),
		hit("s\ns", "dotall"),
		hit("one\nline\ntwo", "multiline"),
		hit("ext ended", "extended"),
		hit("bbc", "anchored"),
		miss("abbc"),
		hit("lazyXYZ", "ungreedy:XYZ"),
		hit("end", "dollar-before-final-newline"),
		hit("end\n", "dollar-before-final-newline"),
		hit("END", "dollar-before-final-newline"),
		miss("END\nx"),
		hit("q.*+", "quoted"),
		miss("qq"),
		hit("h\tv", "hspace"),
		hit("cmt", "comment"),
		hit("joe@example.org", "user:joe"),
		miss("joe@x.example"),
	})
	tb = mustOpenText(t, "pcre", "/^END$/iE x\n")
	checkLookups(t, tb, []lookupCase{hit("END", "x"), miss("END\n")})
}

func TestPCRERefusals(t *testing.T) {
	const re2 = ": smtpgate uses Go's RE2 engine (https://github.com/google/re2/wiki/Syntax)"
	checkErrors(t, "pcre", []errCase{
		{"lookahead", "/a/ ok\n\n/foo(?=bar)/ x\n", "pcre:pcre.txt:3: lookahead (?= is not supported" + re2},
		{"negative lookahead", "/foo(?!bar)/ x\n", "pcre:pcre.txt:1: negative lookahead (?! is not supported" + re2},
		{"lookbehind", "/(?<=foo)bar/ x\n", "pcre:pcre.txt:1: lookbehind (?<= is not supported" + re2},
		{"negative lookbehind", "/(?<!foo)bar/ x\n", "pcre:pcre.txt:1: negative lookbehind (?<! is not supported" + re2},
		{"backreference", `/(a)\1/ x` + "\n", `pcre:pcre.txt:1: backreference \1 is not supported` + re2},
		{"named backreference", `/(?<n>a)\k<n>/ x` + "\n", `pcre:pcre.txt:1: named backreference \k is not supported` + re2},
		{"g backreference", `/(a)\g1/ x` + "\n", `pcre:pcre.txt:1: backreference or subroutine call \g is not supported` + re2},
		{"python backreference", `/(?P<n>a)(?P=n)/ x` + "\n", `pcre:pcre.txt:1: named backreference (?P= is not supported` + re2},
		{"atomic", "/(?>a+)b/ x\n", "pcre:pcre.txt:1: atomic group (?> is not supported" + re2},
		{"possessive star", "/a*+b/ x\n", "pcre:pcre.txt:1: possessive quantifier *+ is not supported" + re2},
		{"possessive plus", "/a++b/ x\n", "pcre:pcre.txt:1: possessive quantifier ++ is not supported" + re2},
		{"possessive question", "/a?+b/ x\n", "pcre:pcre.txt:1: possessive quantifier ?+ is not supported" + re2},
		{"possessive interval", "/a{2,3}+b/ x\n", "pcre:pcre.txt:1: possessive quantifier }+ is not supported" + re2},
		{"recursion", "/a(?R)?b/ x\n", "pcre:pcre.txt:1: recursion (?R) is not supported" + re2},
		{"subroutine", "/(a)(?1)/ x\n", "pcre:pcre.txt:1: subroutine call (?1 is not supported" + re2},
		{"relative subroutine", "/(a)(?-1)/ x\n", "pcre:pcre.txt:1: subroutine call (?- is not supported" + re2},
		{"named subroutine", "/(?<n>a)(?&n)/ x\n", "pcre:pcre.txt:1: subroutine call (?& is not supported" + re2},
		{"conditional", "/(a)?(?(1)b|c)/ x\n", "pcre:pcre.txt:1: conditional group (?( is not supported" + re2},
		{"branch reset", "/(?|(a)|(b))/ x\n", "pcre:pcre.txt:1: branch reset group (?| is not supported" + re2},
		{"verb", "/(*UTF8)a/ x\n", "pcre:pcre.txt:1: backtracking control verb or option setting (* is not supported" + re2},
		{"single byte", `/a\Cb/ x` + "\n", `pcre:pcre.txt:1: \C (one code unit) is not supported` + re2},
		{"reset", `/a\Kb/ x` + "\n", `pcre:pcre.txt:1: match start reset \K is not supported` + re2},
		{"class escape", `/[\R]/ x` + "\n", `pcre:pcre.txt:1: \R in a character class is not supported` + re2},
		{"inline x", "/(?x) a/ x\n", "pcre:pcre.txt:1: error parsing regexp: invalid or unsupported Perl syntax: `(?x`" + re2},
		{"unknown escape", `/\q/ x` + "\n", "pcre:pcre.txt:1: error parsing regexp: invalid escape sequence: `\\q`" + re2},
		{"unknown flag", "/a/Z x\n", `pcre:pcre.txt:1: unknown pcre option 'Z': pcre: tables know i, m, s, x, A, E, U and X`},
		{"second pattern", "/a/!/b/ x\n", `pcre:pcre.txt:1: unknown pcre option '!': pcre: tables know i, m, s, x, A, E, U and X`},
		{"negated with $n", "!/(a)/ $1\n", `pcre:pcre.txt:1: $number found in negative match replacement text`},
		{"unterminated class", "/[a/ x\n", `pcre:pcre.txt:1: missing terminating ] for character class`},
		{"unterminated comment", "/(?#a/ x\n", `pcre:pcre.txt:1: missing ) after (?# comment`},
	})
}

func TestPCREAllowed(t *testing.T) {
	// Look-alikes of refused constructs that are fine.
	tb := mustOpenText(t, "pcre", `
/^a+?$/           lazy
/^(?i:b)(?-i)c$/  flags
/^[(?=]+$/        class
/^x\(\?=$/        escaped
/^{x}$/           brace
/^\d{2}\+$/       interval
/^[[:digit:]]z$/  posix-class
`)
	checkLookups(t, tb, []lookupCase{
		hit("aaa", "lazy"),
		hit("Bc", "flags"),
		hit("(?=", "class"),
		hit("=?(", "class"),
		hit("x(?=", "escaped"),
		hit("{x}", "brace"),
		hit("12+", "interval"),
		hit("1z", "posix-class"),
	})
}
