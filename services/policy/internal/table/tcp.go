package table

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
)

// tcpMaxReply is the longest reply line of Postfix's tcp client
// (DICT_TCP_MAXLEN).
const tcpMaxReply = 4096

// openTCP opens "tcp:host:port" (tcp_table(5)): "get KEY\n" with the key
// %XX-quoted, a reply "200 VALUE", "500 text" (not found) or "400 text"
// (a temporary failure). Nothing connects until the first lookup.
func openTCP(spec, name string, opts Options) (Table, error) {
	if _, _, err := net.SplitHostPort(name); err != nil {
		return nil, fmt.Errorf("table %q: want tcp:host:port: %v", spec, err)
	}
	ep := endpoint{"tcp", name}
	t := &serverTable{spec: spec, pool: newServerPool(ep, opts.poolSize(), opts.Now), opts: opts}
	t.ask = func(c *serverConn, key string) (string, bool, error) {
		return askTCP(c, c.r, key)
	}
	return t, nil
}

// askTCP sends one request and reads its reply.
func askTCP(w io.Writer, r *bufio.Reader, key string) (string, bool, error) {
	if strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	if _, err := io.WriteString(w, "get "+hexQuote(key)+"\n"); err != nil {
		return "", false, fmt.Errorf("send: %w", err)
	}
	line, err := readBoundedLine(r, tcpMaxReply)
	if err != nil {
		return "", false, fmt.Errorf("read reply: %w", err)
	}
	return parseTCPReply(line)
}

// parseTCPReply reads "NNN text": 2xx found (text %XX-decoded), 5xx
// not found, 4xx a temporary failure; anything else is malformed (and
// the connection dropped, as Postfix does).
func parseTCPReply(line string) (string, bool, error) {
	if len(line) < 4 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) || !isSpace(line[3]) {
		return "", false, &serverError{msg: "malformed reply: " + printableText(line), drop: true}
	}
	text, ok := hexUnquote(line[4:])
	if !ok {
		return "", false, &serverError{msg: "malformed reply: " + printableText(line), drop: true}
	}
	switch line[0] {
	case '2':
		return text, true, nil
	case '5':
		return "", false, nil
	case '4':
		return "", false, &serverError{msg: "server error: " + printableText(line), drop: true}
	}
	return "", false, &serverError{msg: "bad status code: " + printableText(line), drop: true}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// readBoundedLine reads a line of at most max bytes before its '\n',
// which is dropped.
func readBoundedLine(r *bufio.Reader, max int) (string, error) {
	var b strings.Builder
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return b.String(), nil
		}
		if b.Len() == max {
			return "", fmt.Errorf("reply longer than %d bytes", max)
		}
		b.WriteByte(c)
	}
}

// hexQuote quotes as Postfix's hex_quote(): '%', white space and bytes
// that are not printable ASCII become %XX.
func hexQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' && c > ' ' && c < 0x7f {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// hexUnquote undoes hexQuote; ok is false for a '%' not followed by two
// hex digits.
func hexUnquote(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			i += 2
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
