package mailname

import "strings"

// DecodeXtext decodes RFC 3461 §4 xtext, as Postfix's xtext_unquote
// does: "+" and two hex digits (either case; the RFC asks for upper
// case) stand for that byte, and every other byte stands for itself and
// must be printable ASCII other than "=". With equals, "=" stands for
// itself too, as Postfix allows in ENVID and ORCPT. ok is false for
// anything else.
func DecodeXtext(s string, equals bool) (dec string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := hexVal(s[i+1])
			lo, ok2 := hexVal(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		case c < '!' || c > '~' || (c == '=' && !equals):
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
