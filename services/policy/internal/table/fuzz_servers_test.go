package table

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// FuzzNetstring reads arbitrary bytes as a socketmap reply: no panic, a
// reply never longer than the limit, and what is written reads back.
func FuzzNetstring(f *testing.F) {
	f.Add([]byte("6:OK bar,"), "key")
	f.Add([]byte("9:NOTFOUND ,"), "")
	f.Add([]byte("999999999999:x,"), "5:hello,")
	f.Add([]byte("3:abc"), "\x00")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		got, err := readNetstring(bytes.NewReader(data), 100)
		if err == nil && len(got) > 100 {
			t.Fatalf("read %d bytes, limit 100", len(got))
		}
		enc := strconv.Itoa(len(s)) + ":" + s + ","
		back, err := readNetstring(bytes.NewReader([]byte(enc)), len(s))
		if err != nil || string(back) != s {
			t.Fatalf("%q read back as %q, %v", enc, back, err)
		}
	})
}

// FuzzTCPReply parses arbitrary reply lines and checks that the %XX
// quoting of keys round-trips and leaves no space, '%' or control byte
// unquoted.
func FuzzTCPReply(f *testing.F) {
	f.Add("200 OK%20fine", "lisa@example.com")
	f.Add("500 not%20found", "a b%c\n")
	f.Add("400 %zz", "\xff\x00")
	f.Add("2000", "")
	f.Fuzz(func(t *testing.T, line, key string) {
		if v, ok, err := parseTCPReply(line); ok && (err != nil || len(v) > len(line)) {
			t.Fatalf("parseTCPReply(%q) = %q, %v, %v", line, v, ok, err)
		}
		q := hexQuote(key)
		if strings.ContainsAny(q, " \t\r\n\x00") {
			t.Fatalf("hexQuote(%q) = %q: unquoted white space or NUL", key, q)
		}
		back, ok := hexUnquote(q)
		if !ok || back != key {
			t.Fatalf("hexQuote(%q) = %q reads back as %q, %v", key, q, back, ok)
		}
		_, _ = readBoundedLine(bufio.NewReader(strings.NewReader(line+"\n")), 16)
	})
}
