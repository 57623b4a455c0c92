package table

import (
	"errors"
	"fmt"
	"strings"
)

// compilePOSIX turns a regexp: table pattern, a POSIX regular expression
// as Postfix hands it to regcomp(3), into Go syntax, and applies the
// flags of regexp_table(5): i toggles case-insensitive matching (on by
// default), x toggles extended syntax (on by default; off means a POSIX
// basic regular expression), m toggles multi-line mode (off by default:
// "." also matches a newline and ^ and $ match only at the ends).
func compilePOSIX(pattern, flags string) (string, error) {
	icase, extended, multiline := true, true, false
	for _, f := range flags {
		switch f {
		case 'i':
			icase = !icase
		case 'x':
			extended = !extended
		case 'm':
			multiline = !multiline
		default:
			return "", fmt.Errorf("unknown regexp option %q: regexp: tables know i, m and x", f)
		}
	}
	var (
		body string
		err  error
	)
	if extended {
		body, err = translateERE(pattern)
	} else {
		body, err = translateBRE(pattern)
	}
	if err != nil {
		return "", err
	}
	prefix := "(?s)"
	if multiline {
		prefix = "(?m)"
	}
	if icase {
		prefix = strings.Replace(prefix, "(?", "(?i", 1)
	}
	return prefix + body, nil
}

// translateERE rewrites a POSIX extended regular expression in Go
// syntax. Most of it is the same; the differences handled are:
// backslash is an ordinary character inside a bracket expression;
// "{,n}" means "{0,n}"; GNU's \` and \' are \A and \z. Backreferences
// and GNU's \< and \> have no RE2 equivalent and are refused. Other
// backslash escapes are passed to Go, which gives letters its own
// meanings (\d is a digit in Go, a "d" in glibc).
func translateERE(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '\\':
			if i+1 >= len(p) {
				return "", fmt.Errorf("trailing backslash in regexp")
			}
			i++
			if err := posixEscape(&b, p[i]); err != nil {
				return "", err
			}
		case '[':
			n, err := translateBracket(&b, p[i:])
			if err != nil {
				return "", err
			}
			i += n - 1
		case '{':
			if strings.HasPrefix(p[i:], "{,") {
				b.WriteString("{0,")
				i++
			} else {
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// posixEscape translates "\c" outside a bracket expression into b.
func posixEscape(b *strings.Builder, c byte) error {
	switch {
	case c >= '1' && c <= '9':
		return fmt.Errorf("backreference \\%c is not supported: smtpgate uses Go's RE2 engine (%s)", c, re2Syntax)
	case c == '<' || c == '>':
		return fmt.Errorf("word boundary \\%c is not supported: use \\b (smtpgate uses Go's RE2 engine, %s)", c, re2Syntax)
	case c == '`':
		b.WriteString(`\A`)
	case c == '\'':
		b.WriteString(`\z`)
	default:
		b.WriteByte('\\')
		b.WriteByte(c)
	}
	return nil
}

// translateBracket translates the bracket expression at the start of p
// into b and returns how many bytes of p it used.
func translateBracket(b *strings.Builder, p string) (int, error) {
	return translateClass(b, p, posixClassElem, "unterminated bracket expression: missing ']'")
}

// posixClassElem translates the element of a POSIX bracket expression
// at p[i]: a backslash is an ordinary character, and "[:name:]",
// "[.c.]" and "[=c=]" are classes, collating elements and equivalence
// classes.
func posixClassElem(b *strings.Builder, p string, i int) (int, error) {
	c := p[i]
	switch {
	case c == '\\':
		b.WriteString(`\\`)
	case c == '[' && i+1 < len(p) && (p[i+1] == ':' || p[i+1] == '.' || p[i+1] == '='):
		kind := p[i+1]
		end := strings.Index(p[i+2:], string(kind)+"]")
		if end < 0 {
			return 0, fmt.Errorf("unterminated [%c in bracket expression", kind)
		}
		name := p[i+2 : i+2+end]
		switch {
		case kind == ':':
			b.WriteString("[:" + name + ":]")
		case len(name) == 1:
			// A one-character collating element or equivalence
			// class is just that character.
			if isAlnum(name[0]) {
				b.WriteString(name)
			} else {
				b.WriteString(`\` + name)
			}
		default:
			return 0, fmt.Errorf("[%c%s%c] in a bracket expression is not supported", kind, name, kind)
		}
		i += 2 + end + 1
	default:
		b.WriteByte(c)
	}
	return i, nil
}

// translateClass is the frame a POSIX bracket expression and a PCRE
// character class share: "[", an optional "^", a "]" first taken
// literally, then elements up to the closing "]". elem translates the
// element at p[i] into b and returns the index of its last byte.
// translateClass writes the translation into b and returns how many
// bytes of p it used; unterminated is the error when no "]" closes it
// (b then holds a part, for the caller to drop).
func translateClass(b *strings.Builder, p string, elem func(b *strings.Builder, p string, i int) (int, error), unterminated string) (int, error) {
	b.WriteByte('[')
	i := 1
	if i < len(p) && p[i] == '^' {
		b.WriteByte('^')
		i++
	}
	if i < len(p) && p[i] == ']' {
		b.WriteString(`\]`)
		i++
	}
	for ; i < len(p); i++ {
		if p[i] == ']' {
			b.WriteByte(']')
			return i + 1, nil
		}
		var err error
		if i, err = elem(b, p, i); err != nil {
			return 0, err
		}
	}
	return 0, errors.New(unterminated)
}

// translateBRE rewrites a POSIX basic regular expression (a regexp:
// pattern with the x flag) in Go syntax: \( \) \{ \} and GNU's \| \+ \?
// are the operators, while ( ) { } | + ? are ordinary characters; "*"
// is ordinary at the start of an expression, "^" only anchors at the
// start and "$" only at the end.
func translateBRE(p string) (string, error) {
	var b strings.Builder
	atStart := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		start := atStart
		atStart = false
		switch c {
		case '\\':
			if i+1 >= len(p) {
				return "", fmt.Errorf("trailing backslash in regexp")
			}
			i++
			switch e := p[i]; e {
			case '(', '|':
				b.WriteByte(e)
				atStart = true
			case ')', '{', '}', '+', '?':
				b.WriteByte(e)
			default:
				if err := posixEscape(&b, e); err != nil {
					return "", err
				}
			}
		case '[':
			n, err := translateBracket(&b, p[i:])
			if err != nil {
				return "", err
			}
			i += n - 1
		case '*':
			if start {
				b.WriteString(`\*`)
			} else {
				b.WriteByte('*')
			}
		case '^':
			if start {
				b.WriteByte('^')
				atStart = true
			} else {
				b.WriteString(`\^`)
			}
		case '$':
			rest := p[i+1:]
			if rest == "" || strings.HasPrefix(rest, `\)`) || strings.HasPrefix(rest, `\|`) {
				b.WriteByte('$')
			} else {
				b.WriteString(`\$`)
			}
		case '(', ')', '{', '}', '|', '+', '?':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
