package table

import (
	"fmt"
	"regexp"
	"strings"
)

// compilePCRE turns a pcre: table pattern into Go syntax and applies the
// flags of pcre_table(5), each of which toggles a default: i
// (case-insensitive, on), m (multi-line), s (dot matches newline), x
// (extended: blanks and #-comments outside classes are dropped), A
// (anchored at the start), E ($ matches only at the very end), U
// (quantifiers lazy unless followed by ?) and X (unknown letter escapes
// are errors, which RE2 always does). Constructs that RE2 lacks are
// refused with an error naming them.
func compilePCRE(pattern, flags string) (string, error) {
	icase, multi, dotall, ext, anchored, dollarEnd, ungreedy := true, false, false, false, false, false, false
	for _, f := range flags {
		switch f {
		case 'i':
			icase = !icase
		case 'm':
			multi = !multi
		case 's':
			dotall = !dotall
		case 'x':
			ext = !ext
		case 'A':
			anchored = !anchored
		case 'E':
			dollarEnd = !dollarEnd
		case 'U':
			ungreedy = !ungreedy
		case 'X':
			// PCRE_EXTRA: RE2 refuses unknown escapes anyway.
		default:
			return "", fmt.Errorf("unknown pcre option %q: pcre: tables know i, m, s, x, A, E, U and X", f)
		}
	}
	// Without m or E, PCRE's $ also matches before a newline that ends
	// the subject; Go's $ (?-m) matches only at the end.
	dollar := "$"
	if !multi && !dollarEnd {
		dollar = `(?:\n?\z)`
	}
	body, err := translatePCRE(pattern, ext, dollar)
	if err != nil {
		return "", err
	}
	var mode string
	for _, m := range []struct {
		on bool
		f  string
	}{{icase, "i"}, {multi, "m"}, {dotall, "s"}, {ungreedy, "U"}} {
		if m.on {
			mode += m.f
		}
	}
	if anchored {
		body = `\A(?:` + body + `)`
	}
	if mode != "" {
		body = "(?" + mode + ")" + body
	}
	return body, nil
}

// unsupported is the error for a PCRE construct that RE2 lacks.
func unsupported(what string) error {
	return fmt.Errorf("%s is not supported: smtpgate uses Go's RE2 engine (%s)", what, re2Syntax)
}

// pcreGroups are the "(?..." and "(*" openings that RE2 lacks, longest
// first where one is a prefix of another.
var pcreGroups = []struct{ open, what string }{
	{"(?<=", "lookbehind (?<="},
	{"(?<!", "negative lookbehind (?<!"},
	{"(?=", "lookahead (?="},
	{"(?!", "negative lookahead (?!"},
	{"(?>", "atomic group (?>"},
	{"(?|", "branch reset group (?|"},
	{"(?(", "conditional group (?("},
	{"(?R", "recursion (?R)"},
	{"(?&", "subroutine call (?&"},
	{"(?P>", "subroutine call (?P>"},
	{"(?P=", "named backreference (?P="},
	{"(?C", "callout (?C"},
	{"(*", "backtracking control verb or option setting (*"},
}

// translatePCRE rewrites a PCRE pattern in Go syntax.
func translatePCRE(p string, ext bool, dollar string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", fmt.Errorf("trailing backslash in regexp")
			}
			e := p[i+1]
			i++
			switch e {
			case '1', '2', '3', '4', '5', '6', '7', '8', '9':
				return "", unsupported(fmt.Sprintf("backreference \\%c", e))
			case 'g':
				return "", unsupported(`backreference or subroutine call \g`)
			case 'k':
				return "", unsupported(`named backreference \k`)
			case 'K':
				return "", unsupported(`match start reset \K`)
			case 'G':
				return "", unsupported(`\G (end of the previous match)`)
			case 'X':
				return "", unsupported(`\X (extended grapheme cluster)`)
			case 'C':
				return "", unsupported(`\C (one code unit)`)
			case 'Z':
				b.WriteString(`(?:\n?\z)`)
			case 'R':
				b.WriteString(`(?:\r\n|[\n\x0b\f\r\x{85}\x{2028}\x{2029}])`)
			case 'h':
				b.WriteString(`[` + pcreHSpace + `]`)
			case 'H':
				b.WriteString(`[^` + pcreHSpace + `]`)
			case 'v':
				b.WriteString(`[` + pcreVSpace + `]`)
			case 'V':
				b.WriteString(`[^` + pcreVSpace + `]`)
			case 'N':
				b.WriteString(`[^\n]`)
			case 'e':
				b.WriteString(`\x1b`)
			case 'Q':
				text := p[i+1:]
				end := strings.Index(text, `\E`)
				if end < 0 {
					i = len(p)
				} else {
					text = text[:end]
					i += end + 2
				}
				b.WriteString(regexp.QuoteMeta(text))
			case 'E':
				// A \E without \Q is ignored.
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case c == '[':
			n, err := translatePCREClass(&b, p[i:])
			if err != nil {
				return "", err
			}
			i += n - 1
		case c == '(':
			rest := p[i:]
			for _, g := range pcreGroups {
				if strings.HasPrefix(rest, g.open) {
					return "", unsupported(g.what)
				}
			}
			switch {
			case len(rest) > 2 && rest[1] == '?' && (isDigit(rest[2]) || (rest[2] == '+' || rest[2] == '-') && len(rest) > 3 && isDigit(rest[3])):
				return "", unsupported("subroutine call " + rest[:3])
			case strings.HasPrefix(rest, "(?#"):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return "", fmt.Errorf("missing ) after (?# comment")
				}
				i += end
				continue
			case strings.HasPrefix(rest, "(?'"):
				end := strings.IndexByte(rest[3:], '\'')
				if end < 0 {
					return "", fmt.Errorf("missing ' after (?'name")
				}
				b.WriteString("(?P<" + rest[3:3+end] + ">")
				i += 3 + end
				continue
			}
			b.WriteByte('(')
		case c == '*' || c == '+' || c == '?':
			b.WriteByte(c)
			if i+1 < len(p) && p[i+1] == '+' && !(c == '?' && i > 0 && p[i-1] == '(') {
				return "", unsupported("possessive quantifier " + string(c) + "+")
			}
		case c == '{':
			n := quantifierLen(p[i:])
			if n == 0 {
				b.WriteString(`\{`)
				continue
			}
			b.WriteString(p[i : i+n])
			i += n - 1
			if i+1 < len(p) && p[i+1] == '+' {
				return "", unsupported("possessive quantifier }+")
			}
		case c == '$':
			b.WriteString(dollar)
		case ext && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'):
			// Dropped in extended mode.
		case ext && c == '#':
			end := strings.IndexByte(p[i:], '\n')
			if end < 0 {
				i = len(p)
			} else {
				i += end
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

const (
	pcreHSpace = `\t \x{a0}\x{1680}\x{180e}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}`
	pcreVSpace = `\n\x0b\f\r\x{85}\x{2028}\x{2029}`
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// quantifierLen returns the length of a "{n}", "{n,}" or "{n,m}" at the
// start of p, or 0: PCRE takes any other "{" literally.
func quantifierLen(p string) int {
	i := 1
	for i < len(p) && isDigit(p[i]) {
		i++
	}
	if i == 1 {
		return 0
	}
	if i < len(p) && p[i] == ',' {
		i++
		for i < len(p) && isDigit(p[i]) {
			i++
		}
	}
	if i < len(p) && p[i] == '}' {
		return i + 1
	}
	return 0
}

// translatePCREClass translates the character class at the start of p
// into b and returns how many bytes of p it used.
func translatePCREClass(b *strings.Builder, p string) (int, error) {
	return translateClass(b, p, pcreClassElem, "missing terminating ] for character class")
}

// pcreClassElem translates the element of a PCRE character class at
// p[i]: backslash escapes, "[:name:]" classes, and "[" otherwise
// literal.
func pcreClassElem(b *strings.Builder, p string, i int) (int, error) {
	switch c := p[i]; {
	case c == '\\':
		if i+1 >= len(p) {
			return 0, fmt.Errorf("trailing backslash in regexp")
		}
		i++
		switch e := p[i]; e {
		case 'h':
			b.WriteString(pcreHSpace)
		case 'v':
			b.WriteString(pcreVSpace)
		case 'e':
			b.WriteString(`\x1b`)
		case 'H', 'V', 'R', 'X', 'N', 'C', 'Q', 'E', 'g', 'k':
			return 0, unsupported(`\` + string(e) + ` in a character class`)
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	case c == '[' && strings.HasPrefix(p[i:], "[:"):
		end := strings.Index(p[i:], ":]")
		if end < 0 {
			b.WriteString(`\[`)
			break
		}
		b.WriteString(p[i : i+end+2])
		i += end + 1
	case c == '[':
		b.WriteString(`\[`)
	default:
		b.WriteByte(c)
	}
	return i, nil
}
