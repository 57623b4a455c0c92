// Package dovecotwire is the line format of Dovecot's authentication
// protocols (auth-client and auth-master/userdb), shared by smtpgate's
// server side (dovecotauth, which Postfix talks to) and its client side
// (dovecotclient, which talks to Dovecot): LF-terminated lines of
// TAB-separated fields, values in Dovecot's \001 escaping, and the
// mechanism flags of MECH lines. See Dovecot's lib/strescape.c
// (str_tabescape) and doc.dovecot.org's "Authentication protocol".
//
// It trusts neither peer (Postfix on the server side, Dovecot on the
// client side) to send well-formed lines: a line is bounded (MaxLine), and
// an escape that does not parse is reported (Unescape's ok) for the
// caller to decide on, never guessed at.
package dovecotwire

import (
	"bufio"
	"errors"
	"strings"

	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

// MaxLine is the longest line accepted, in bytes without the LF
// (Dovecot's limit for auth-client input).
const MaxLine = 16384

// ErrLineTooLong: a line longer than MaxLine.
var ErrLineTooLong = errors.New("line too long")

// ReadLine reads one LF-terminated line of at most MaxLine bytes, without
// its LF (and a CR before it).
func ReadLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > MaxLine+1 {
			return "", ErrLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
	}
}

// Unescape undoes Dovecot's \001 escaping; ok is false for a \001
// followed by anything but 0, 1, t, r or n.
func Unescape(s string) (string, bool) {
	if !strings.ContainsRune(s, '\x01') {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\x01' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// Escape applies Dovecot's \001 escaping, so that s can be one field.
func Escape(s string) string {
	return strings.NewReplacer("\x01", "\x011", "\x00", "\x010", "\t", "\x01t", "\r", "\x01r", "\n", "\x01n").Replace(s)
}

// flagNames are the MECH flags as Dovecot names them, in the order it
// sends them.
var flagNames = []struct {
	f sasl.Flags
	n string
}{{sasl.Anonymous, "anonymous"}, {sasl.Plaintext, "plaintext"}, {sasl.Dictionary, "dictionary"}, {sasl.Active, "active"}, {sasl.ForwardSecrecy, "forward-secrecy"}, {sasl.MutualAuth, "mutual-auth"}}

// FormatFlags renders mechanism flags as the fields after a MECH line's
// name: "" or TAB-led names.
func FormatFlags(f sasl.Flags) string {
	var out []string
	for _, x := range flagNames {
		if f&x.f != 0 {
			out = append(out, x.n)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "\t" + strings.Join(out, "\t")
}

// ParseFlags reads the fields after a MECH line's name; private reports
// Dovecot's "private" flag (a mechanism never offered to clients).
// Unknown names are ignored, as Postfix ignores them.
func ParseFlags(fields []string) (f sasl.Flags, private bool) {
	for _, name := range fields {
		if strings.EqualFold(name, "private") {
			private = true
			continue
		}
		for _, x := range flagNames {
			if strings.EqualFold(name, x.n) {
				f |= x.f
			}
		}
	}
	return f, private
}
