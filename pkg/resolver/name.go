package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalidName is the permanent error for a name that cannot be looked
// up (too long, an empty or over-long label, a character outside letters,
// digits, hyphen and underscore).
var ErrInvalidName = errors.New("invalid domain name")

// Limits of RFC 1035 §2.3.4 in presentation form: 255 octets on the wire
// are 253 characters without the trailing dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Canonical validates name, a domain name with or without its trailing
// dot, and returns it lower-cased with the trailing dot: the form of cache
// keys and queries. Names come from SMTP clients, so anything but letters,
// digits, '-' and '_' in a label is refused (internationalized names must
// come as A-labels, RFC 5890).
func Canonical(name string) (string, error) {
	s := strings.TrimSuffix(name, ".")
	if s == "" {
		return "", invalid(name, "empty name")
	}
	if len(s) > maxNameLen {
		return "", invalid(name, "longer than 253 octets")
	}
	lower := true
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", invalid(name, "empty label")
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			lower = false
		default:
			return "", invalid(name, fmt.Sprintf("character %q", c))
		}
		label++
		if label > maxLabelLen {
			return "", invalid(name, "label longer than 63 octets")
		}
	}
	if label == 0 {
		return "", invalid(name, "empty label")
	}
	if !lower {
		s = strings.ToLower(s)
	} else if len(s) < len(name) {
		return name, nil // already canonical: no copy
	}
	return s + ".", nil
}

// invalid builds the error for a refused name, quoting at most 64 bytes of
// it (it comes from a client and ends up in logs).
func invalid(name, why string) error {
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return fmt.Errorf("name %q: %s: %w", name, why, ErrInvalidName)
}

// ReverseName returns the name whose PTR records map addr to host names:
// d.c.b.a.in-addr.arpa. for IPv4 (RFC 1035 §3.5), the reversed nibbles
// under ip6.arpa. for IPv6 (RFC 3596 §2.5). An IPv4-mapped IPv6 address is
// treated as the IPv4 address (what a dual-stack listener reports for an
// IPv4 client); a zone is ignored.
func ReverseName(addr netip.Addr) (string, error) {
	if !addr.IsValid() {
		return "", fmt.Errorf("reverse name of an invalid address: %w", ErrInvalidName)
	}
	addr = addr.Unmap()
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		b.Grow(len("255.255.255.255.in-addr.arpa."))
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String(), nil
	}
	const hex = "0123456789abcdef"
	a := addr.As16()
	b.Grow(64 + len("ip6.arpa."))
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String(), nil
}
