package smtpd

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseBDAT(t *testing.T) {
	for _, tc := range []struct {
		arg      string
		n        int64
		last, ok bool
	}{
		{"5", 5, false, true}, {"0 LAST", 0, true, true}, {"12 last", 12, true, true},
		{"", 0, false, false}, {"-1", 0, false, false}, {"+1", 0, false, false}, {"5 NOTLAST", 0, false, false},
		{"5 LAST x", 0, false, false}, {"99999999999999999999", 0, false, false}, {"0x10", 0, false, false},
	} {
		n, last, ok := parseBDAT(tc.arg)
		if n != tc.n || last != tc.last || ok != tc.ok {
			t.Errorf("parseBDAT(%q) = %d, %v, %v; want %d, %v, %v", tc.arg, n, last, ok, tc.n, tc.last, tc.ok)
		}
	}
}

func TestCRLFLines(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		want   string
		bare   byte
	}{
		{[]string{"a\r\nb\r\n"}, "a\r\nb\r\n", 0},
		{[]string{"a\r", "\nb"}, "a\r\nb\r\n", 0},
		{[]string{"a\n.\nMAIL"}, "a\r\n.\r\nMAIL\r\n", '\n'},
		{[]string{"a\r.\r", "\r\n"}, "a\r\n.\r\n\r\n", '\r'},
		{[]string{"x\r"}, "x\r\n", '\r'},
		{[]string{"a\r\nb\rc\nd"}, "a\r\nb\r\nc\r\nd\r\n", '\r'},
		{[]string{""}, "", 0},
	} {
		var b bytes.Buffer
		c := &crlfLines{w: &b, limit: 1 << 20}
		for _, ch := range tc.chunks {
			_, _ = c.Write([]byte(ch))
		}
		_ = c.Close()
		if b.String() != tc.want || c.bare != tc.bare || c.n != int64(b.Len()) {
			t.Errorf("%q: got %q bare=%q n=%d, want %q bare=%q", tc.chunks, b.String(), c.bare, c.n, tc.want, tc.bare)
		}
	}
}

// bdatCmd is one BDAT command with its chunk.
func bdatCmd(chunk string, last bool) string {
	s := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		s += " LAST"
	}
	return s + "\r\n" + chunk
}

// TestBDATSpooled: a 5 MiB message in 1 MiB chunks is spooled, arrives
// byte for byte, policy is asked DATA once at the first chunk and
// END_OF_DATA after the last, and the spool is empty after.
func TestBDATSpooled(t *testing.T) {
	hop := &hashHop{}
	h, dir := spoolHarness(t, hop, nil)
	content, _ := bigMessage(5 << 20)
	c := h.dial()
	startTx(c)
	for i := 0; i < len(content); i += 1 << 20 {
		end := min(i+1<<20, len(content))
		c.send(bdatCmd(content[i:end], false))
		if got, want := c.reply(), fmt.Sprintf("250 2.0.0 Ok: %d bytes", end-i); got != want {
			t.Fatalf("chunk at %d: %q, want %q", i, got, want)
		}
	}
	c.do("BDAT 0 LAST", fmt.Sprintf("250 2.0.0 Ok: %d bytes queued as ", len(content)))
	if len(hop.sums) != 1 || hop.sums[0] != sha256.Sum256([]byte(content)) || !hop.spooled[0] {
		t.Errorf("delivered %d messages, spooled %v; want 1, byte for byte, spooled", len(hop.sums), hop.spooled)
	}
	if n := spoolFiles(dir); n != 0 {
		t.Errorf("spool directory holds %d files", n)
	}
	if got := h.stages(); got != "CONNECT HELO MAIL RCPT DATA END_OF_DATA" {
		t.Errorf("policy asked about %s", got)
	}
}

// TestBDATCleanup: a chunk over the limit, or a client gone in the
// middle of one, leaves no spool file and delivers nothing.
func TestBDATCleanup(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\r\n", 20000) // 360,000 bytes
	t.Run("chunk over the limit", func(t *testing.T) {
		hop := &hashHop{}
		h, dir := spoolHarness(t, hop, func(l *Listener) { l.MaxMessageSize = 300000 })
		c := h.dial()
		startTx(c)
		c.send(bdatCmd(big[:200000], false))
		expect(c, "250 2.0.0 Ok: 200000 bytes")
		c.send(bdatCmd(big[:200000], false) + bdatCmd("x\r\n", true))
		expect(c, "250 2.0.0 Ok: 200000 bytes")
		if got := c.reply(); !strings.HasPrefix(got, "552 5.3.4") {
			t.Errorf("last chunk past the limit: %q", got)
		}
		c.send(bdatCmd(big, true))
		expect(c, "503 5.5.1 Error: need RCPT command")
		c.do("NOOP", "250 ")
		if spoolFiles(dir) != 0 || len(hop.sums) != 0 {
			t.Errorf("spool holds %d files, %d delivered", spoolFiles(dir), len(hop.sums))
		}
	})
	t.Run("client gone mid-chunk", func(t *testing.T) {
		hop := &hashHop{}
		h, dir := spoolHarness(t, hop, nil)
		c := h.dial()
		startTx(c)
		c.send(bdatCmd(big, false))
		expect(c, "250 ")
		c.send(fmt.Sprintf("BDAT %d LAST\r\n", len(big)) + big[:100000])
		for deadline := time.Now().Add(2 * time.Second); spoolFiles(dir) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		c.conn.Close()
		for deadline := time.Now().Add(5 * time.Second); !h.logged("disconnect") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if spoolFiles(dir) != 0 || len(hop.sums) != 0 {
			t.Errorf("spool holds %d files, %d delivered", spoolFiles(dir), len(hop.sums))
		}
	})
}

// TestBDATSmuggling: end-of-data look-alikes inside a chunk stay inside
// the one message, as lines the next hop cannot take for an end.
func TestBDATSmuggling(t *testing.T) {
	h := newHarness(t, permit, nil)
	c := h.dial()
	startTx(c)
	c.send(bdatCmd("Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.net>\r\n.\r\nsecond\r.\r\n", true))
	expect(c, "250 2.0.0 Ok: ")
	msgs := h.sink.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, line := range strings.Split(strings.TrimSuffix(msgs[0], "\r\n"), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("content line %q holds a bare CR or LF", line)
		}
	}
	if !strings.HasSuffix(msgs[0], "first\r\n.\r\nMAIL FROM:<evil@example.net>\r\n.\r\nsecond\r\n.\r\n") {
		t.Errorf("message %q", msgs[0])
	}
}

// expect reads one reply and checks that it starts with want.
func expect(c *client, want string) {
	c.t.Helper()
	if got := c.reply(); !strings.HasPrefix(got, want) {
		c.t.Errorf("got %q, want %q", got, want)
	}
}
