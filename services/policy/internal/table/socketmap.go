package table

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of Postfix's socketmap client (dict_sockmap.c): a longer key is
// not found without asking; a longer reply fails the lookup.
const (
	socketmapMaxQuery = 10000
	socketmapMaxReply = 100000
)

// openSocketmap opens "socketmap:inet:host:port:name" or
// "socketmap:unix:/path:name" (Postfix 2.10 and later; the protocol is
// Sendmail's: https://www.postfix.org/socketmap_table.5.html). Nothing
// connects until the first lookup.
func openSocketmap(spec, name string, opts Options) (Table, error) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 || name[i+1:] == "" {
		return nil, fmt.Errorf("table %q: socketmap needs server:mapname (socketmap:inet:host:port:name or socketmap:unix:/path:name)", spec)
	}
	ep, err := parseEndpoint(name[:i])
	if err != nil {
		return nil, fmt.Errorf("table %q: %w", spec, err)
	}
	if ep.network == "unix" && opts.Dir != "" && !strings.HasPrefix(ep.address, "/") {
		ep.address = opts.Dir + "/" + ep.address
	}
	mapName := name[i+1:]
	t := &serverTable{spec: spec, pool: newServerPool(ep, opts.poolSize(), opts.Now), opts: opts}
	t.ask = func(c *serverConn, key string) (string, bool, error) {
		return askSocketmap(c, c.r, mapName, key)
	}
	return t, nil
}

// askSocketmap sends "name key" as a netstring and reads the answer: "OK
// value" is found, "NOTFOUND" is not, "TEMP", "TIMEOUT", "PERM" (and
// anything else) fail the lookup. A key longer than socketmapMaxQuery,
// or with a NUL, is not found without asking, as in Postfix (which
// cannot even hold a NUL).
func askSocketmap(w io.Writer, r io.ByteReader, mapName, key string) (string, bool, error) {
	if len(key) > socketmapMaxQuery || strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	q := mapName + " " + key
	if _, err := io.WriteString(w, strconv.Itoa(len(q))+":"+q+","); err != nil {
		return "", false, fmt.Errorf("send: %w", err)
	}
	reply, err := readNetstring(r, socketmapMaxReply)
	if err != nil {
		return "", false, fmt.Errorf("read reply: %w", err)
	}
	status, payload, _ := strings.Cut(string(reply), " ")
	switch status {
	case "OK":
		return payload, true, nil
	case "NOTFOUND":
		return "", false, nil
	case "TEMP", "TIMEOUT", "PERM":
		return "", false, &serverError{msg: "socketmap server " + strings.ToLower(status) + " error: " + printableText(payload)}
	}
	return "", false, &serverError{msg: "socketmap server unknown error: " + printableText(string(reply)), drop: true}
}

// errNetstring is a reply that is not a netstring.
var errNetstring = errors.New("malformed netstring")

// readNetstring reads one netstring ("5:hello,") of at most max bytes.
func readNetstring(r io.ByteReader, max int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' || digits == 9 {
			return nil, fmt.Errorf("%w: bad length", errNetstring)
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if digits == 0 {
		return nil, fmt.Errorf("%w: no length", errNetstring)
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errNetstring, n, max)
	}
	buf := make([]byte, n)
	for i := range buf {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		buf[i] = c
	}
	if c, err := r.ReadByte(); err != nil || c != ',' {
		return nil, fmt.Errorf("%w: no ',' after %d bytes", errNetstring, n)
	}
	return buf, nil
}

// printableText is at most 200 bytes of s with unprintable bytes as '?',
// for logs (Postfix's printable()).
func printableText(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return string(bytes.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, []byte(s)))
}
