// Package mailname holds Postfix's rules for names and text in mail: which
// host names and address literals are valid (valid_hostname,
// valid_mailhost_literal and the address checks behind them), and how
// text from a client is made safe to log or to pass on (printable,
// neutering), and how xtext (RFC 3461) is decoded. The edge and policy
// both judge names this way; this is the one copy of each rule.
//
// It trusts nothing: every function takes any string, including invalid
// UTF-8, and only reads it.
package mailname

import "strings"

// maxHostname is VALID_HOSTNAME_LEN and maxLabel VALID_LABEL_LEN
// (util/valid_hostname.h).
const (
	maxHostname = 255
	maxLabel    = 63
)

// ValidHostname is Postfix's valid_hostname (util/valid_hostname.c): at
// most 255 bytes, labels of 1 to 63 letters, digits, '_' and '-' that
// neither start nor end with '-', no empty label (so no leading or
// trailing dot), and not all-numeric (that would be an address).
func ValidHostname(name string) bool {
	if name == "" || len(name) > maxHostname {
		return false
	}
	label, numeric := 0, true
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= '0' && c <= '9':
			label++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			label++
			numeric = false
		case c == '-':
			label++
			numeric = false
			if label == 1 || i+1 == len(name) || name[i+1] == '.' {
				return false
			}
		case c == '.':
			if label == 0 || i+1 == len(name) {
				return false
			}
			label = 0
			continue
		default:
			return false
		}
		if label > maxLabel {
			return false
		}
	}
	return !numeric
}

// ValidUTF8Hostname accepts the names of ValidHostname and, for SMTPUTF8
// domains, the same shapes with non-ASCII characters in their labels
// (each character counted as one letter).
func ValidUTF8Hostname(name string) bool {
	if isASCII(name) {
		return ValidHostname(name)
	}
	return ValidHostname(strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return 'x'
		}
		return r
	}, name))
}

// ValidMailhostLiteral is Postfix's valid_mailhost_literal
// (global/valid_mailhost_addr.c): "[" an IPv4 address "]", or "[IPv6:"
// (any case) an IPv6 address "]", shorter than INET6_ADDRSTRLEN inside.
func ValidMailhostLiteral(lit string) bool {
	inner, ok := strings.CutPrefix(lit, "[")
	if !ok {
		return false
	}
	end := strings.IndexByte(inner, ']')
	if end < 0 || end != len(inner)-1 || end >= 46 {
		return false
	}
	return ValidMailhostAddr(inner[:end])
}

// ValidMailhostAddr is Postfix's valid_mailhost_addr: the inside of an
// address literal, "192.0.2.1" or "IPv6:2001:db8::1" ("IPv6:" in any
// case).
func ValidMailhostAddr(addr string) bool {
	if len(addr) >= 5 && strings.EqualFold(addr[:5], "IPv6:") {
		return ValidIPv6(addr[5:])
	}
	return ValidIPv4(addr)
}

// TruncateDot removes one trailing dot from a name, not two: "a.example."
// becomes "a.example", "a.example.." stays (Postfix's dup_if_truncate(),
// and trivial-rewrite's "strip trailing dot at end of domain, but not
// dot-dot").
func TruncateDot(s string) string {
	if n := len(s); n > 1 && s[n-1] == '.' && s[n-2] != '.' {
		return s[:n-1]
	}
	return s
}

// ValidHostAddr is Postfix's valid_hostaddr: an IPv6 address when it
// holds a colon, else an IPv4 address, without brackets or "IPv6:".
func ValidHostAddr(addr string) bool {
	if strings.Contains(addr, ":") {
		return ValidIPv6(addr)
	}
	return ValidIPv4(addr)
}

// ValidIPv4 is Postfix's valid_ipv4_hostaddr: four decimal octets of at
// most 255 (leading zeros allowed), and a first octet of 0 only in
// 0.0.0.0.
func ValidIPv4(a string) bool {
	octets, val, in := 0, 0, false
	for i := 0; i < len(a); i++ {
		switch c := a[i]; {
		case c >= '0' && c <= '9':
			if !in {
				in, val = true, 0
				octets++
			}
			val = val*10 + int(c-'0')
			if val > 255 {
				return false
			}
		case c == '.':
			if !in || i+1 == len(a) {
				return false
			}
			if octets == 1 && val == 0 && strings.Trim(a, "0.") != "" {
				return false
			}
			in = false
		default:
			return false
		}
	}
	return octets == 4
}

// ValidIPv6 is Postfix's valid_ipv6_hostaddr: at most eight fields of at
// most four hex digits, one "::" at most, or an IPv4 address in the last
// 32 bits.
func ValidIPv6(a string) bool {
	field, null, length := 0, 0, 0
	for i := 0; ; {
		if i == len(a) {
			// As Postfix: a null last field only as part of "::".
			return field >= 2 && (length != 0 || null == field-1)
		}
		switch c := a[i]; {
		case c == '.':
			if field < 2 || field > 6 {
				return false
			}
			return ValidIPv4(a[i-length:])
		case c == ':':
			if field == 0 && length == 0 && i+1 < len(a) && isAlnum(a[i+1]) {
				return false // a null first field not part of "::"
			}
			field++
			if field > 7 {
				return false
			}
			i++
			length = 0
			if i < len(a) && a[i] == ':' {
				if null > 0 {
					return false
				}
				null = field
			}
		default:
			length = 0
			for i < len(a) && isHex(a[i]) {
				i++
				length++
			}
			if length == 0 || length > 4 {
				return false
			}
		}
	}
}

// AllDigits is Postfix's alldig: s is not empty and only ASCII digits.
func AllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Printable is Postfix's printable(s, repl): each control character
// (below 0x20, and DEL) becomes repl. As any strings.Map, a byte that is
// not UTF-8 becomes U+FFFD.
func Printable(s string, repl rune) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return repl
		}
		return r
	}, s)
}

// neuterChars are the characters that could break a Received header or a
// log line, Postfix's NEUTER_CHARACTERS as the XCLIENT code uses them.
const neuterChars = " <>()\\\";@"

// Neuter replaces each of neuterChars with '?'.
func Neuter(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(neuterChars, r) {
			return '?'
		}
		return r
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
