// Package address gives the meaning of an envelope address as the edge
// passes it to policy: the mailbox between "<" and ">" of MAIL FROM or RCPT
// TO, with the source route normally already stripped and a quoted local
// part kept as the client wrote it. It splits the address into the local
// part (unquoted: Postfix's internal form) and the domain (normalised as
// Postfix's trivial-rewrite does), and it reports sender-specified routing,
// the disguises of the classic open-relay tricks.
//
// The input comes from an untrusted SMTP client through the edge; nothing
// in it is trusted, and every input, however malformed, gives a result or
// an error, never a panic.
package address

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// ErrSyntax is wrapped by the errors of Parse.
var ErrSyntax = errors.New("bad address syntax")

// Address is a parsed envelope address.
type Address struct {
	// Raw is the address as given (after any source route was stripped).
	Raw string
	// Local is the local part in internal form: quotes removed and
	// backslash escapes resolved, so `"a@b"@c` has the local part `a@b`.
	Local string
	// Domain is the normalised domain (see NormalizeDomain), or "" when
	// the address has none.
	Domain string
	// HasDomain reports whether the address has an "@domain" part with a
	// non-empty domain.
	HasDomain bool
	// Literal reports whether the domain is an address literal such as
	// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 section 4.1.3).
	Literal bool
	// SourceRoute reports whether a source route ("@a,@b:") preceded the
	// mailbox; it is ignored as RFC 5321 section 3.6.1 says, but recorded.
	SourceRoute bool
}

// Routed reports sender-specified routing: the local part, once unquoted,
// still holds "@", "%" or "!", so that some relay on the way could read it
// as user@domain (RFC 1123 section 5.2.16 "%-hack", UUCP bang paths,
// RFC 5321 section 3.6.1 and Appendix C). Postfix refuses to relay such
// addresses for strangers even when the outer domain is local
// (allow_untrusted_routing = no), see SMTPD_ACCESS_README and postconf(5)
// allow_untrusted_routing.
func (a Address) Routed() bool {
	return strings.ContainsAny(a.Local, "@%!")
}

// IsNull reports whether a is the null reverse-path "<>".
func (a Address) IsNull() bool { return a.Raw == "" }

// Parse splits an envelope address. The domain is everything after the
// last "@" that is outside a quoted string, a backslash escape and an
// address literal; the local part is everything before it. A leading
// source route ("@host1,@host2:") is stripped. An address without "@"
// (e.g. "postmaster", "example.com!user", "user%example.com") has no domain.
//
// Errors (unbalanced quote or bracket, trailing backslash) wrap ErrSyntax;
// the Address returned with an error still has Raw set, so a caller that
// must fail closed can still name it in a reply.
func Parse(s string) (Address, error) {
	a := Address{Raw: s}
	if strings.HasPrefix(s, "@") {
		// RFC 5321 section 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">".
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return a, fmt.Errorf("%w: source route without ':' in %q", ErrSyntax, s)
		}
		s = s[i+1:]
		a.Raw, a.SourceRoute = s, true
	}
	at, err := splitAt(s)
	if err != nil {
		return a, err
	}
	local, domain := s, ""
	if at >= 0 {
		local, domain = s[:at], s[at+1:]
	}
	a.Local, err = unquote(local)
	if err != nil {
		return a, err
	}
	if domain != "" {
		a.Domain = NormalizeDomain(domain)
		a.HasDomain = a.Domain != ""
		a.Literal = strings.HasPrefix(a.Domain, "[") && strings.HasSuffix(a.Domain, "]")
	}
	return a, nil
}

// splitAt returns the index of the last "@" outside quoted strings,
// backslash escapes and address literals, or -1.
func splitAt(s string) (int, error) {
	at := -1
	inQuote, depth := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) {
				return -1, fmt.Errorf("%w: trailing backslash in %q", ErrSyntax, s)
			}
			i++
		case c == '"' && depth == 0:
			inQuote = !inQuote
		case inQuote:
		case c == '[':
			depth++
		case c == ']':
			if depth == 0 {
				return -1, fmt.Errorf("%w: unbalanced ']' in %q", ErrSyntax, s)
			}
			depth--
		case c == '@' && depth == 0:
			at = i
		}
	}
	if inQuote {
		return -1, fmt.Errorf("%w: unbalanced '\"' in %q", ErrSyntax, s)
	}
	if depth != 0 {
		return -1, fmt.Errorf("%w: unbalanced '[' in %q", ErrSyntax, s)
	}
	return at, nil
}

// unquote removes double quotes and resolves backslash escapes, giving
// the internal form of a local part (RFC 5321 section 4.1.2 quoted-string
// and quoted-pairSMTP). A local part may mix quoted and unquoted pieces,
// as Postfix's tokenizer allows.
func unquote(s string) (string, error) {
	if !strings.ContainsAny(s, `"\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
		case '\\':
			if i+1 == len(s) {
				return "", fmt.Errorf("%w: trailing backslash in %q", ErrSyntax, s)
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// NormalizeDomain returns the form of a domain that is compared: lower
// case, and one trailing dot removed ("example.org." is "example.org",
// but "example.org.." keeps its dots and so matches nothing), as
// trivial-rewrite and smtpd_check.c's dup_if_truncate do. A UTF-8
// (SMTPUTF8, RFC 6531) domain is converted to its A-label form, so that
// "пример.испытание" and "xn--e1afmkfd.xn--80akhbyknj4f" are the same
// domain (Postfix compares them as written; docs/postfix-differences.md
// D16). One that has no A-label form is only lower-cased, and matches
// only itself.
func NormalizeDomain(d string) string {
	if n := len(d); n > 1 && d[n-1] == '.' && d[n-2] != '.' {
		d = d[:n-1]
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c >= 0x80 {
			if !strings.HasPrefix(d, "[") {
				if a, err := idnaProfile.ToASCII(d); err == nil {
					return strings.ToLower(a)
				}
			}
			return strings.ToLower(d)
		} else if c >= 'A' && c <= 'Z' {
			return NormalizeDomain(strings.ToLower(d))
		}
	}
	return d
}

// UnicodeDomain is the UTF-8 form of a normalised domain with A-labels
// ("xn--..."), for looking up tables written with UTF-8 keys; any other
// domain is returned as it is.
func UnicodeDomain(d string) string {
	if !strings.Contains(d, "xn--") {
		return d
	}
	u, err := idnaProfile.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// idnaProfile converts between the UTF-8 and A-label forms of a domain
// as ICU's UTS #46 does for Postfix's midna_domain_to_ascii: mapped,
// validated, non-transitional (IDNA2008).
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false))
