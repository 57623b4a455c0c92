package smtpd

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// What the edge refuses before policy sees it: the bytes the policy and
// auth APIs cannot carry (protobuf strings are UTF-8), and the envelope
// addresses Postfix's smtpd refuses as syntax errors after its
// trivial-rewrite resolver looked at them (smtpd.c extract_addr,
// smtpd_check.c smtpd_check_addr, trivial-rewrite/resolve.c).

// badBytes is the reply to a command line that is not valid UTF-8. With
// smtputf8_enable = yes it is Postfix's, for every command; with
// smtputf8_enable = no Postfix would take the bytes (8-bit text was
// always allowed), but policy cannot be asked about them, so the command
// gets the syntax reply Postfix gives it for a bad argument.
func (s *session) badBytes(verb string) reply.Reply {
	if !s.l.DisableSMTPUTF8 {
		return reply.BadUTF8
	}
	switch verb {
	case "HELO", "EHLO":
		return reply.HELOSyntax(verb)
	case "MAIL":
		return reply.BadSender
	case "RCPT":
		return reply.BadRecipient
	}
	return reply.BadSyntax
}

// smtputf8Param reports whether MAIL FROM's parameters hold SMTPUTF8.
// Postfix looks for it before it reads the address, whose allowed syntax
// depends on it; the parameters are read in full after the address.
func smtputf8Param(params string) bool {
	for _, f := range strings.Fields(params) {
		if strings.EqualFold(f, "SMTPUTF8") {
			return true
		}
	}
	return false
}

// envelopeAddress checks a MAIL FROM or RCPT TO mailbox as parsePath
// returned it, as Postfix's smtpd_check_addr does through trivial-rewrite
// (the address as its resolver leaves it must have a valid domain), and
// returns it with one trailing dot of the domain removed (resolve.c:
// "strip trailing dot at end of domain, but not dot-dot or at-dot"), the
// form every decision and the next hop get. The domain must be
//
//   - an address literal Postfix's valid_mailhost_literal accepts
//     ("[192.0.2.1]", "[IPv6:2001:db8::1]"),
//   - or a host name valid_hostname accepts (letters, digits, '-', '_';
//     labels of 1-63 bytes not starting or ending in '-'; at most 255
//     bytes; not all-numeric: "a@192.0.2.1" is refused, as with
//     resolve_numeric_domain = no),
//   - or, in an SMTPUTF8 transaction only, a UTF-8 name whose A-label form
//     (IDNA2008 UTS #46, non-transitional, as Postfix's
//     midna_domain_to_ascii) is such a host name.
//
// An address without a domain passes (policy decides). ok false is the
// 501 syntax reply.
func envelopeAddress(addr string, smtputf8 bool) (string, bool) {
	at, _ := scanMailbox(addr)
	if at < 0 {
		return addr, true
	}
	local, domain := addr[:at], addr[at+1:]
	domain = mailname.TruncateDot(domain)
	switch {
	case strings.HasPrefix(domain, "["):
		if !mailname.ValidMailhostLiteral(domain) {
			return "", false
		}
	case !isASCII(domain):
		if !smtputf8 {
			// smtpd_check_addr: without SMTPUTF8, Postfix < 3.0's
			// trivial-rewrite, which allowed no non-ASCII domain.
			return "", false
		}
		if _, ok := aLabel(domain); !ok {
			return "", false
		}
	case !mailname.ValidHostname(domain):
		return "", false
	}
	return local + "@" + domain, true
}

// idnaProfile converts a UTF-8 domain to its A-label form as ICU's UTS
// #46 does for Postfix's midna_domain_to_ascii: mapped, validated,
// non-transitional; the host name rules are valid_hostname's, applied to
// the result.
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false))

// aLabel is the A-label (ASCII) form of a UTF-8 domain, when it has one
// that valid_hostname accepts.
func aLabel(domain string) (string, bool) {
	a, err := idnaProfile.ToASCII(domain)
	if err != nil || !mailname.ValidHostname(a) {
		return "", false
	}
	return a, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// strictSMTPUTF8 is strict_smtputf8: a non-ASCII address in a
// transaction without SMTPUTF8 is refused (after its syntax and
// parameters were checked, before policy is asked).
func (s *session) strictSMTPUTF8(addr string, smtputf8 bool) (reply.Reply, bool) {
	if s.l.StrictSMTPUTF8 && !smtputf8 && !isASCII(addr) {
		return reply.MustDeclareSMTPUTF8, true
	}
	return reply.Reply{}, false
}

// saslSender is the AUTH= value of MAIL FROM as policy gets it
// (sasl_sender): Postfix keeps it printable ('?' for anything else), and
// the policy API carries only UTF-8.
func saslSender(s string) string {
	if printableUTF8(s) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n <= 1 || r < 0x20 || r == 0x7f {
			r = '?'
		}
		b.WriteRune(r)
		s = s[n:]
	}
	return b.String()
}

func printableUTF8(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// sni is the TLS server name policy gets: as Postfix's SNI callback, a
// name that is not a valid host name is ignored.
func sni(name string) string {
	if !mailname.ValidHostname(name) {
		return ""
	}
	return name
}

// mailParams reads MAIL FROM's parameters; SMTPUTF8 is unknown with
// smtputf8_enable = no ("555 5.5.4 Unsupported option: SMTPUTF8", as
// Postfix).
func (s *session) mailParams(params string) (mailParams, error) {
	p, err := parseMailParams(params)
	if err == nil && p.smtputf8 && s.l.DisableSMTPUTF8 {
		for _, f := range strings.Fields(params) {
			if strings.EqualFold(f, "SMTPUTF8") {
				return p, &paramError{"unsupported", f}
			}
		}
	}
	return p, err
}
