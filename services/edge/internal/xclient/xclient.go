// Package xclient parses Postfix's XCLIENT command, with which an
// authorized client (smtpd_authorized_xclient_hosts) tells the server whom
// it speaks for (Postfix XCLIENT_README; smtpd.c xclient_cmd).
//
// It only parses: whether the client may use XCLIENT, and what the session
// does with the result, is the SMTP engine's business. Values are checked
// as Postfix checks them, and a command is applied whole or not at all.
//
// Trust: the command comes from a client the engine found authorized, and
// its values are believed, as Postfix believes them, once they pass
// Postfix's checks; a value that does not is refused with the attribute's
// name.
package xclient

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/mailname"
)

// The special values of XCLIENT_README.
const (
	// Unavailable: the information does not exist, or its lookup failed
	// for good.
	Unavailable = "[UNAVAILABLE]"
	// TempUnavail: a name lookup failed for now.
	TempUnavail = "[TEMPUNAVAIL]"
)

// Attributes are the names advertised in EHLO, in Postfix 3.7's order.
var Attributes = []string{"NAME", "ADDR", "PROTO", "HELO", "REVERSE_NAME", "PORT", "LOGIN", "DESTADDR", "DESTPORT"}

// Unknown is Postfix's word for a client name or address it does not
// have (CLIENT_NAME_UNKNOWN, CLIENT_ADDR_UNKNOWN).
const Unknown = "unknown"

// maxValue is Postfix's limit on a raw attribute value.
const maxValue = 255

// NameStatus is the outcome of a name lookup as XCLIENT reports it.
type NameStatus int

// The statuses.
const (
	NameOK NameStatus = iota
	NamePermFail
	NameTempFail
)

// Name is a NAME or REVERSE_NAME value.
type Name struct {
	Set bool
	// Value is the host name, or "unknown" when Status is not NameOK.
	Value  string
	Status NameStatus
}

// Value is a string attribute; Set says whether the command had it.
type Value struct {
	Set   bool
	Value string
}

// Command is one parsed XCLIENT command. Attributes the client did not
// send are not Set; a repeated attribute counts as its last value.
type Command struct {
	Name        Name
	ReverseName Name
	// Addr is an IP address without brackets or "IPV6:" prefix, or
	// "unknown" for [UNAVAILABLE].
	Addr Value
	// Port is a decimal port, "0" for [UNAVAILABLE].
	Port Value
	// Proto is "SMTP" or "ESMTP".
	Proto Value
	// HELO is the HELO/EHLO argument, "" for [UNAVAILABLE].
	HELO Value
	// Login is the SASL user name; Set with an empty Value for
	// [UNAVAILABLE] (no login).
	Login    Value
	DestAddr Value
	DestPort Value
}

// ErrorKind says what was wrong with a command; the engine words the
// reply.
type ErrorKind int

// The kinds, each with Postfix's reply.
const (
	// NoAttributes: "501 5.5.4 Syntax: XCLIENT attribute=value...".
	NoAttributes ErrorKind = iota + 1
	// NotAttribute: an element without "=" or with an empty value
	// ("501 5.5.4 Error: attribute=value expected").
	NotAttribute
	// TooLong: a value over 255 bytes ("501 5.5.4 Error: attribute value
	// too long").
	TooLong
	// BadName: an attribute XCLIENT does not have ("501 5.5.4 Bad XCLIENT
	// attribute name: X").
	BadName
	// BadValue: a value that does not fit its attribute ("501 5.5.4 Bad
	// ADDR syntax: x").
	BadValue
)

// Error is a refused command.
type Error struct {
	Kind ErrorKind
	// Attr is the attribute name as sent (BadName) or upper-cased
	// (BadValue); Value the decoded value (BadValue).
	Attr, Value string
}

func (e *Error) Error() string {
	switch e.Kind {
	case NoAttributes:
		return "xclient: no attributes"
	case NotAttribute:
		return "xclient: attribute=value expected"
	case TooLong:
		return "xclient: attribute value too long"
	case BadName:
		return "xclient: bad attribute name " + strconv.Quote(e.Attr)
	}
	return fmt.Sprintf("xclient: bad %s value %q", e.Attr, e.Value)
}

// Parse parses the arguments of an XCLIENT command (what follows
// "XCLIENT "): space-separated name=value elements, names
// case-insensitive, values xtext (RFC 3461 §4; a value that is not valid
// xtext is taken as it is, as Postfix does for clients older than 2.3).
func Parse(args string) (*Command, error) {
	fields := strings.Fields(args)
	if len(fields) == 0 {
		return nil, &Error{Kind: NoAttributes}
	}
	c := &Command{}
	for _, f := range fields {
		name, raw, ok := strings.Cut(f, "=")
		if !ok || raw == "" {
			return nil, &Error{Kind: NotAttribute}
		}
		if len(raw) > maxValue {
			return nil, &Error{Kind: TooLong}
		}
		v, err := DecodeXtext(raw)
		if err != nil {
			v = raw
		}
		v = mailname.Printable(v, '?')
		if err := c.set(name, v); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Command) set(name, v string) error {
	attr := strings.ToUpper(name)
	bad := func() error { return &Error{Kind: BadValue, Attr: attr, Value: v} }
	switch attr {
	case "NAME", "REVERSE_NAME":
		n := Name{Set: true, Value: v}
		switch v {
		case Unavailable:
			n.Value, n.Status = Unknown, NamePermFail
		case TempUnavail:
			n.Value, n.Status = Unknown, NameTempFail
		default:
			if !mailname.ValidHostname(v) {
				return bad()
			}
		}
		if attr == "NAME" {
			c.Name = n
		} else {
			c.ReverseName = n
		}
	case "ADDR", "DESTADDR":
		a := Unknown
		if v != Unavailable {
			ip, ok := parseAddr(v)
			if !ok {
				return bad()
			}
			a = ip
		}
		if attr == "ADDR" {
			c.Addr = Value{true, a}
		} else {
			c.DestAddr = Value{true, a}
		}
	case "PORT", "DESTPORT":
		p := "0"
		if v != Unavailable {
			if !validPort(v) {
				return bad()
			}
			p = v
		}
		if attr == "PORT" {
			c.Port = Value{true, p}
		} else {
			c.DestPort = Value{true, p}
		}
	case "PROTO":
		p := strings.ToUpper(v)
		if p != "SMTP" && p != "ESMTP" {
			return bad()
		}
		c.Proto = Value{true, p}
	case "HELO":
		h := ""
		if v != Unavailable {
			if len(v) > maxValue {
				return bad()
			}
			h = mailname.Neuter(v)
		}
		c.HELO = Value{true, h}
	case "LOGIN":
		l := ""
		if v != Unavailable {
			l = v
		}
		c.Login = Value{true, l}
	default:
		return &Error{Kind: BadName, Attr: name}
	}
	return nil
}

// parseAddr accepts an IPv4 address or "IPV6:" (any case) and an IPv6
// address, as Postfix's normalize_mailhost_addr; an IPv4-mapped IPv6
// address becomes the IPv4 address.
func parseAddr(v string) (string, bool) {
	if len(v) >= 5 && strings.EqualFold(v[:5], "IPV6:") {
		ip, err := netip.ParseAddr(v[5:])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", false
		}
		return ip.Unmap().String(), true
	}
	ip, err := netip.ParseAddr(v)
	if err != nil || !ip.Is4() {
		return "", false
	}
	return ip.String(), true
}

func validPort(v string) bool {
	if v == "" || len(v) > len("65535") {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// DecodeXtext decodes RFC 3461 §4 xtext (mailname.DecodeXtext): "+"
// followed by two hex digits stands for that byte; other bytes stand for
// themselves and must be printable ASCII other than "+" and "=".
func DecodeXtext(s string) (string, error) {
	dec, ok := mailname.DecodeXtext(s, false)
	if !ok {
		return "", fmt.Errorf("xtext: %q is not xtext", s)
	}
	return dec, nil
}

// EncodeXtext is the inverse of DecodeXtext.
func EncodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
