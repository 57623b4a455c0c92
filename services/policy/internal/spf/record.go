package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/mailname"
)

// errSyntax is wrapped by every record and macro syntax error; check_host
// turns it into permerror (RFC 7208 §4.6).
var errSyntax = errors.New("spf syntax error")

func syntaxErr(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errSyntax)
}

type mechKind uint8

const (
	mAll mechKind = iota
	mInclude
	mA
	mMX
	mPTR
	mIP4
	mIP6
	mExists
)

var mechNames = map[string]mechKind{
	"all": mAll, "include": mInclude, "a": mA, "mx": mMX,
	"ptr": mPTR, "ip4": mIP4, "ip6": mIP6, "exists": mExists,
}

// directive is one qualified mechanism (RFC 7208 §4.6.1, §5).
type directive struct {
	text   string // as written, for Response.Mechanism
	qual   Result
	kind   mechKind
	domain []macroToken // target domain-spec; nil: the current domain
	prefix netip.Prefix // ip4, ip6
	cidr4  int          // a, mx
	cidr6  int
}

// record is a parsed SPF record.
type record struct {
	directives []directive
	redirect   []macroToken // nil when absent
	exp        []macroToken // nil when absent
}

// isSPF reports whether a TXT record is an SPF version 1 record: exactly
// "v=spf1" followed by a space or the end (RFC 7208 §4.5). ABNF strings
// are case-insensitive, so "V=SPF1" counts too.
func isSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// parseRecord parses a whole record (RFC 7208 §4.6.1, §12 ABNF). Any
// syntax error anywhere is an error, before anything is evaluated.
func parseRecord(txt string) (*record, error) {
	if !isSPF(txt) {
		return nil, syntaxErr("not an spf1 record")
	}
	rec := &record{}
	var seenRedirect, seenExp bool
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue
		}
		if name, value, ok := splitModifier(term); ok {
			switch strings.ToLower(name) {
			case "redirect":
				if seenRedirect {
					return nil, syntaxErr("more than one redirect modifier")
				}
				seenRedirect = true
				toks, err := parseDomainSpec(value)
				if err != nil {
					return nil, fmt.Errorf("redirect: %w", err)
				}
				rec.redirect = toks
			case "exp":
				if seenExp {
					return nil, syntaxErr("more than one exp modifier")
				}
				seenExp = true
				toks, err := parseDomainSpec(value)
				if err != nil {
					return nil, fmt.Errorf("exp: %w", err)
				}
				rec.exp = toks
			default:
				// Unknown modifiers are ignored, but their values must
				// still be macro-strings (RFC 7208 §6, §12).
				if _, err := parseMacroString(value, macroAny); err != nil {
					return nil, fmt.Errorf("modifier %s: %w", name, err)
				}
			}
			continue
		}
		d, err := parseDirective(term)
		if err != nil {
			return nil, err
		}
		rec.directives = append(rec.directives, d)
	}
	return rec, nil
}

// splitModifier recognises name "=" value, with name = ALPHA *( ALPHA /
// DIGIT / "-" / "_" / "." ).
func splitModifier(term string) (name, value string, ok bool) {
	if term == "" || !isAlpha(term[0]) {
		return "", "", false
	}
	i := 1
	for i < len(term) && (isAlpha(term[i]) || isDigit(term[i]) || term[i] == '-' || term[i] == '_' || term[i] == '.') {
		i++
	}
	if i < len(term) && term[i] == '=' {
		return term[:i], term[i+1:], true
	}
	return "", "", false
}

func parseDirective(term string) (directive, error) {
	d := directive{text: term, qual: Pass, cidr4: 32, cidr6: 128}
	s := term
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		d.qual, s = Fail, s[1:]
	case '~':
		d.qual, s = SoftFail, s[1:]
	case '?':
		d.qual, s = Neutral, s[1:]
	}
	end := strings.IndexAny(s, ":/")
	if end < 0 {
		end = len(s)
	}
	kind, ok := mechNames[strings.ToLower(s[:end])]
	if !ok {
		return d, syntaxErr("unknown mechanism %q", s[:end])
	}
	d.kind = kind
	arg := s[end:]
	switch kind {
	case mAll:
		if arg != "" {
			return d, syntaxErr("%q: all takes no argument", term)
		}
	case mInclude, mExists:
		if !strings.HasPrefix(arg, ":") {
			return d, syntaxErr("%q: domain required", term)
		}
		toks, err := parseDomainSpec(arg[1:])
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
		d.domain = toks
	case mPTR:
		if arg == "" {
			break
		}
		if !strings.HasPrefix(arg, ":") {
			return d, syntaxErr("%q: bad ptr argument", term)
		}
		toks, err := parseDomainSpec(arg[1:])
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
		d.domain = toks
	case mA, mMX:
		rest, c4, c6, err := splitDualCIDR(arg)
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
		d.cidr4, d.cidr6 = c4, c6
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, ":") {
			return d, syntaxErr("%q: bad argument", term)
		}
		toks, err := parseDomainSpec(rest[1:])
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
		d.domain = toks
	case mIP4, mIP6:
		if !strings.HasPrefix(arg, ":") {
			return d, syntaxErr("%q: network required", term)
		}
		p, err := parseNetwork(arg[1:], kind == mIP6)
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
		d.prefix = p
	}
	return d, nil
}

// parseNetwork parses ip4-network [ip4-cidr-length] or the ip6 forms.
func parseNetwork(s string, v6 bool) (netip.Prefix, error) {
	bits := 32
	if v6 {
		bits = 128
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		n, err := parseCIDRLength(s[i+1:], bits)
		if err != nil {
			return netip.Prefix{}, err
		}
		s, bits = s[:i], n
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4() == v6 {
		return netip.Prefix{}, syntaxErr("bad address %q", s)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// splitDualCIDR takes the optional dual-cidr-length (RFC 7208 §5.6) off
// the end of an a or mx argument: "/24", "//64" or "/24//64".
func splitDualCIDR(s string) (rest string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.LastIndex(s, "//"); i >= 0 && mailname.AllDigits(s[i+2:]) {
		if c6, err = parseCIDRLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && mailname.AllDigits(s[i+1:]) {
		if c4, err = parseCIDRLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, c4, c6, nil
}

// parseCIDRLength parses "0" / %x31-39 0*2DIGIT up to max.
func parseCIDRLength(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || !mailname.AllDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, syntaxErr("bad prefix length %q", s)
	}
	n, _ := strconv.Atoi(s)
	if n > max {
		return 0, syntaxErr("prefix length %d exceeds %d", n, max)
	}
	return n, nil
}

// parseDomainSpec parses domain-spec = macro-string domain-end, where
// domain-end = ( "." toplabel [ "." ] ) / macro-expand (RFC 7208 §7.1).
func parseDomainSpec(s string) ([]macroToken, error) {
	toks, err := parseMacroString(s, macroDomain)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, syntaxErr("empty domain")
	}
	last := toks[len(toks)-1]
	if last.expand {
		return toks, nil
	}
	lit := last.lit
	// A trailing dot after a macro ("%{d}.") is tolerated too.
	if lit == "." && len(toks) > 1 && toks[len(toks)-2].expand {
		return toks, nil
	}
	lit = strings.TrimSuffix(lit, ".")
	i := strings.LastIndexByte(lit, '.')
	if i < 0 || !isTopLabel(lit[i+1:]) {
		return nil, syntaxErr("domain %q does not end in a top-level label or a macro", s)
	}
	return toks, nil
}

// isTopLabel: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum
// / "-" ) alphanum ): letters, digits and inner hyphens, not all digits.
func isTopLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	letterOrHyphen := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlpha(c), c == '-':
			letterOrHyphen = true
		case isDigit(c):
		default:
			return false
		}
	}
	return letterOrHyphen
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validDomain checks a domain name about to be queried (RFC 7208 §4.3):
// at most 253 octets, more than one label, no empty label, labels of at
// most 63 octets, a top label that is not all digits (so no IPv4
// address), and nothing outside printable ASCII or in an address literal.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") || strings.ContainsAny(d, "[]") {
		return false
	}
	if mailname.AllDigits(d[strings.LastIndexByte(d, '.')+1:]) {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	for i := 0; i < len(d); i++ {
		if d[i] <= ' ' || d[i] >= 0x7f {
			return false
		}
	}
	return true
}
