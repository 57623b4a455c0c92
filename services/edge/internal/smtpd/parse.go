package smtpd

import (
	"errors"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/mailname"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
)

// splitCommand splits a command line into its verb (upper-cased) and
// argument (RFC 5321 §4.1.1: verbs are case-insensitive).
func splitCommand(line string) (verb, arg string) {
	line = strings.TrimLeft(line, " ")
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), strings.TrimSpace(arg)
}

// cutKeyword removes a "FROM:" or "TO:" keyword, case-insensitively, with
// Postfix's tolerance of spaces before and after the colon.
func cutKeyword(arg, kw string) (string, bool) {
	if len(arg) < len(kw) || !strings.EqualFold(arg[:len(kw)], kw) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(kw):], " ")
	if !strings.HasPrefix(rest, ":") {
		return "", false
	}
	return strings.TrimLeft(rest[1:], " "), true
}

var errPath = errors.New("bad address syntax")

// parsePath reads the reverse-path or forward-path at the start of s
// (RFC 5321 §4.1.2) and returns the mailbox without angle brackets and
// without a source route ("@a,@b:" is ignored, §3.6.1 and Appendix C),
// and the rest of s (the ESMTP parameters). Angle brackets may be missing,
// as Postfix tolerates; a quoted local part is kept as written.
func parsePath(s string) (addr, rest string, err error) {
	var inner string
	if strings.HasPrefix(s, "<") {
		end := closingBracket(s)
		if end < 0 {
			return "", "", errPath
		}
		inner, rest = s[1:end], strings.TrimLeft(s[end+1:], " ")
		if rest != "" && s[end+1] != ' ' {
			return "", "", errPath
		}
	} else {
		inner, rest, _ = strings.Cut(s, " ")
		rest = strings.TrimLeft(rest, " ")
		if strings.ContainsAny(inner, "<>") {
			return "", "", errPath
		}
	}
	if inner == "" {
		return "", rest, nil
	}
	// A source route: "@host,@host:mailbox".
	if strings.HasPrefix(inner, "@") {
		i := strings.IndexByte(inner, ':')
		if i < 0 {
			return "", "", errPath
		}
		for _, hop := range strings.Split(inner[:i], ",") {
			if len(hop) < 2 || hop[0] != '@' || !validDomain(hop[1:]) {
				return "", "", errPath
			}
		}
		inner = inner[i+1:]
	}
	if !validMailbox(inner) {
		return "", "", errPath
	}
	return inner, rest, nil
}

// closingBracket finds the '>' that ends a path starting at s[0] == '<',
// skipping quoted strings.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		}
	}
	return -1
}

// scanMailbox walks a mailbox's quoted strings (a backslash inside one
// escapes the next byte) and returns the index of the last '@' outside
// them, which starts the domain, or -1; clean is false when the quotes
// do not balance or a control character stands outside an escape.
func scanMailbox(m string) (at int, clean bool) {
	quoted, ctl := false, false
	at = -1
	for i := 0; i < len(m); i++ {
		switch c := m[i]; {
		case c < 0x20 || c == 0x7f:
			ctl = true
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '@' && !quoted:
			at = i
		}
	}
	return at, !ctl && !quoted
}

// validMailbox checks "local-part[@domain]" loosely, as Postfix does: no
// control characters, spaces only inside a quoted local part, balanced
// quotes, a domain (when present) of letters, digits, '-', '.' and '_' or an
// address literal. A mailbox without a domain passes (policy decides).
func validMailbox(m string) bool {
	if m == "" || len(m) > 1000 {
		return false
	}
	at, clean := scanMailbox(m)
	if !clean {
		return false
	}
	local := m
	if at >= 0 {
		if !validDomain(m[at+1:]) {
			return false
		}
		local = m[:at]
	}
	if local == "" {
		return false
	}
	// The local part: RFC 5322 specials and spaces only inside quotes
	// (§3.2.3); an unquoted '@' stays (sender-specified routing, which
	// policy refuses to relay).
	quoted := false
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || strings.IndexByte(`<>()[],;:\`, c) >= 0):
			return false
		}
	}
	return true
}

// validDomain accepts a host name (one trailing dot allowed) or an address
// literal "[...]".
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		return strings.HasSuffix(d, "]") && len(d) > 2 && !strings.ContainsAny(d[1:len(d)-1], "[]\\ ")
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 255 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// mailParams are the ESMTP parameters of MAIL FROM this engine knows.
type mailParams struct {
	size     int64
	body8bit bool
	smtputf8 bool
	// auth is the AUTH= value (RFC 4954 §5), decoded from xtext; nil
	// when absent.
	auth *string
	// ret is RET= (RFC 3461 §4.3), "FULL" or "HDRS"; empty when absent.
	ret string
	// envid is ENVID= (RFC 3461 §4.4), decoded from xtext; nil when
	// absent.
	envid *string
}

// rcptParams are the ESMTP parameters of RCPT TO this engine knows: DSN's
// (RFC 3461 §4.1, §4.2).
type rcptParams struct {
	// notify is NOTIFY=: "NEVER", or some of "SUCCESS", "FAILURE" and
	// "DELAY", each once and in that order; nil when absent.
	notify []string
	// orcpt is ORCPT=: set, the address type (as given) and the
	// address decoded from xtext, which may be empty.
	orcpt                bool
	orcptType, orcptAddr string
}

// dsn is what the next hop is given.
func (p rcptParams) dsn() handoff.RecipientDSN {
	d := handoff.RecipientDSN{Notify: p.notify}
	if p.orcpt {
		d.OriginalType, d.Original = p.orcptType, p.orcptAddr
	}
	return d
}

// paramError carries the reply kind for a bad parameter.
type paramError struct {
	kind  string // "unsupported", "size", "ret", "envid", "notify", "orcpt"
	param string
}

func (e *paramError) Error() string { return e.kind + ": " + e.param }

// parseMailParams reads "KEY[=VALUE] ..." (RFC 5321 §4.1.2 Mail-parameters).
func parseMailParams(s string) (mailParams, error) {
	var p mailParams
	for _, f := range strings.Fields(s) {
		k, v, hasV := strings.Cut(f, "=")
		switch strings.ToUpper(k) {
		case "SIZE": // RFC 1870
			n, err := strconv.ParseInt(v, 10, 64)
			if !hasV || err != nil || n < 0 {
				return p, &paramError{"size", f}
			}
			p.size = n
		case "BODY": // RFC 6152
			switch strings.ToUpper(v) {
			case "7BIT":
			case "8BITMIME":
				p.body8bit = true
			default:
				// Postfix: "555 5.5.4 Unsupported option: BODY=9BIT".
				return p, &paramError{"unsupported", f}
			}
		case "SMTPUTF8": // RFC 6531
			if hasV {
				return p, &paramError{"unsupported", f}
			}
			p.smtputf8 = true
		case "AUTH": // RFC 4954 §5
			if !hasV || v == "" {
				return p, &paramError{"unsupported", f}
			}
			dec, ok := decodeXtext(v)
			if !ok {
				return p, &paramError{"unsupported", f}
			}
			dec = saslSender(dec)
			p.auth = &dec
		case "RET": // RFC 3461 §4.3; Postfix: a second one is an error too
			if !hasV {
				return p, &paramError{"unsupported", f}
			}
			v = strings.ToUpper(v)
			if p.ret != "" || (v != "FULL" && v != "HDRS") {
				return p, &paramError{"ret", f}
			}
			p.ret = v
		case "ENVID": // RFC 3461 §4.4
			if !hasV {
				return p, &paramError{"unsupported", f}
			}
			dec, ok := decodeDSNXtext(v)
			if p.envid != nil || !ok || dec == "" {
				return p, &paramError{"envid", f}
			}
			p.envid = &dec
		default:
			return p, &paramError{"unsupported", f}
		}
	}
	return p, nil
}

// dsnNotify are NOTIFY's values other than NEVER, in the order kept.
var dsnNotify = []string{"SUCCESS", "FAILURE", "DELAY"}

// parseRcptParams reads RCPT TO's parameters, with Postfix 3.7.11's
// tolerance (checked against it): a NOTIFY list may name a value twice
// and have empty elements, an ORCPT may have any address type and an
// empty address, and xtext may hold '='.
func parseRcptParams(s string) (rcptParams, error) {
	var p rcptParams
	for _, f := range strings.Fields(s) {
		k, v, hasV := strings.Cut(f, "=")
		if !hasV {
			return p, &paramError{"unsupported", f}
		}
		switch strings.ToUpper(k) {
		case "NOTIFY": // RFC 3461 §4.1
			if p.notify != nil {
				return p, &paramError{"notify", f}
			}
			seen := map[string]bool{}
			for _, w := range strings.Split(strings.ToUpper(v), ",") {
				switch w {
				case "":
				case "NEVER", "SUCCESS", "FAILURE", "DELAY":
					seen[w] = true
				default:
					return p, &paramError{"notify", f}
				}
			}
			switch {
			case len(seen) == 0, seen["NEVER"] && len(seen) > 1:
				return p, &paramError{"notify", f}
			case seen["NEVER"]:
				p.notify = []string{"NEVER"}
			default:
				p.notify = []string{}
				for _, w := range dsnNotify {
					if seen[w] {
						p.notify = append(p.notify, w)
					}
				}
			}
		case "ORCPT": // RFC 3461 §4.2
			typ, addr, ok := strings.Cut(v, ";")
			if p.orcpt || !ok || typ == "" {
				return p, &paramError{"orcpt", f}
			}
			dec, ok := decodeDSNXtext(addr)
			if !ok {
				return p, &paramError{"orcpt", f}
			}
			p.orcpt, p.orcptType, p.orcptAddr = true, typ, dec
		default:
			return p, &paramError{"unsupported", f}
		}
	}
	return p, nil
}

// decodeDSNXtext decodes the xtext of ENVID and ORCPT as Postfix does: '='
// is taken as itself, and the result must be ASCII.
func decodeDSNXtext(s string) (string, bool) {
	dec, ok := mailname.DecodeXtext(s, true)
	if !ok {
		return "", false
	}
	for i := 0; i < len(dec); i++ {
		if dec[i] >= 0x80 {
			return "", false
		}
	}
	return dec, true
}

// decodeXtext decodes RFC 3461 §4 xtext ("+HH" escapes).
func decodeXtext(s string) (string, bool) { return mailname.DecodeXtext(s, false) }
