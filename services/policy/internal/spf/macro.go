package spf

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// macroMode says where a macro-string stands, which decides the letters
// and characters it may hold (RFC 7208 §7.1, §7.3).
type macroMode uint8

const (
	macroDomain macroMode = iota // domain-spec: no c, r, t; no spaces
	macroExp                     // explanation-string: every letter, spaces
	macroAny                     // unknown-modifier value: every letter, never expanded
)

// macroToken is a run of literal text or one macro-expand.
type macroToken struct {
	lit     string // literal text, when letter == 0
	expand  bool   // a macro-expand (also %%, %_ and %-, which set lit)
	letter  byte   // lower-case macro-letter, or 0
	escape  bool   // upper-case letter: URL-escape the value
	digits  int    // keep this many right-hand parts; 0: all
	reverse bool
	delims  string // "" means "."
}

// maxMacroDigits caps the DIGIT transformer: more parts than a domain
// name can have make no difference.
const maxMacroDigits = 128

// parseMacroString parses a macro-string (or, in macroExp mode, an
// explanation-string) into tokens.
func parseMacroString(s string, mode macroMode) ([]macroToken, error) {
	var toks []macroToken
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, macroToken{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			if (c < 0x21 || c > 0x7e) && !(c == ' ' && mode == macroExp) {
				return nil, syntaxErr("character %q not allowed in a macro-string", c)
			}
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, syntaxErr("%% at the end of %q", s)
		}
		switch s[i+1] {
		case '%', '_', '-':
			flush()
			toks = append(toks, macroToken{expand: true, lit: map[byte]string{'%': "%", '_': " ", '-': "%20"}[s[i+1]]})
			i += 2
			continue
		case '{':
		default:
			return nil, syntaxErr("bad macro %q", s[i:min(i+2, len(s))])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, syntaxErr("unterminated macro in %q", s)
		}
		t, err := parseMacroExpand(s[i+2:i+end], mode)
		if err != nil {
			return nil, err
		}
		flush()
		toks = append(toks, t)
		i += end + 1
	}
	flush()
	return toks, nil
}

// parseMacroExpand parses the inside of %{...}: macro-letter transformers
// *delimiter.
func parseMacroExpand(s string, mode macroMode) (macroToken, error) {
	t := macroToken{expand: true}
	if s == "" {
		return t, syntaxErr("empty macro")
	}
	c := s[0]
	lc := c | 0x20
	switch lc {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if mode == macroDomain {
			return t, syntaxErr("macro %%{%c} is allowed only in explanations", c)
		}
	default:
		return t, syntaxErr("unknown macro letter %q", c)
	}
	t.letter, t.escape = lc, c >= 'A' && c <= 'Z'
	i := 1
	if i < len(s) && isDigit(s[i]) {
		n := 0
		for i < len(s) && isDigit(s[i]) {
			n = min(n*10+int(s[i]-'0'), maxMacroDigits)
			i++
		}
		if n == 0 {
			return t, syntaxErr("macro %%{%s}: zero parts", s)
		}
		t.digits = n
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		t.reverse = true
		i++
	}
	for j := i; j < len(s); j++ {
		if strings.IndexByte(".-+,/_=", s[j]) < 0 {
			return t, syntaxErr("macro %%{%s}: bad delimiter %q", s, s[j])
		}
	}
	t.delims = s[i:]
	return t, nil
}

// macroEnv holds the values of the macro letters (RFC 7208 §7.3).
type macroEnv struct {
	sender, local, senderDomain string
	domain                      string // <domain>, changes through include and redirect
	ip                          netip.Addr
	helo, receiver              string
	now                         time.Time
	// ptr returns the validated domain name of ip, for %{p}; nil gives
	// "unknown".
	ptr func() string
}

func (e *macroEnv) value(letter byte) string {
	switch letter {
	case 's':
		return e.sender
	case 'l':
		return e.local
	case 'o':
		return e.senderDomain
	case 'd':
		return e.domain
	case 'i':
		return dotted(e.ip)
	case 'p':
		if e.ptr == nil {
			return "unknown"
		}
		return e.ptr()
	case 'v':
		if e.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return e.helo
	case 'c':
		return e.ip.String()
	case 'r':
		if e.receiver == "" {
			return "unknown"
		}
		return e.receiver
	case 't':
		return strconv.FormatInt(e.now.Unix(), 10)
	}
	return ""
}

// dotted writes an IPv4 address as usual and an IPv6 one as its 32
// nibbles separated by dots (RFC 7208 §7.3, the i macro).
func dotted(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	if a.Is4() {
		return a.String()
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 63)
	for _, x := range a.As16() {
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, hex[x>>4], '.', hex[x&0xf])
	}
	return string(b)
}

// expand expands parsed tokens (RFC 7208 §7.3, §7.4).
func expand(toks []macroToken, e *macroEnv) string {
	var b strings.Builder
	for _, t := range toks {
		if t.letter == 0 {
			b.WriteString(t.lit)
			continue
		}
		v := transform(e.value(t.letter), t)
		if t.escape {
			v = urlEscape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// transform splits a value on the delimiters, optionally reverses the
// parts, keeps the right-most digits of them and joins them with dots.
func transform(v string, t macroToken) string {
	delims := t.delims
	if delims == "" {
		delims = "."
	}
	var parts []string
	start := 0
	for i := 0; i < len(v); i++ {
		if strings.IndexByte(delims, v[i]) >= 0 {
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	parts = append(parts, v[start:])
	if t.reverse {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if t.digits > 0 && t.digits < len(parts) {
		parts = parts[len(parts)-t.digits:]
	}
	return strings.Join(parts, ".")
}

// urlEscape escapes every octet outside RFC 3986's unreserved set, as an
// upper-case macro letter asks (RFC 7208 §7.3).
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// expandDomain expands a domain-spec and shortens a result longer than
// 253 octets by dropping labels from the left (RFC 7208 §4.8, §7.3).
func expandDomain(toks []macroToken, e *macroEnv) string {
	d := strings.TrimSuffix(expand(toks, e), ".")
	for len(d) > 253 {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return d
}
