package smtpd

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
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

// TestBDATStreamed: a 5 MiB message in 1 MiB chunks streams to the next
// hop (it has the first chunks before the last is sent), arrives byte
// for byte, and policy is asked DATA once at the first chunk and
// END_OF_DATA after the last.
func TestBDATStreamed(t *testing.T) {
	hop := &hashHop{}
	h := streamHarness(t, hop, nil)
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
	if !waitFor(func() bool { return hop.received() > 4<<20 }) {
		t.Errorf("the next hop has %d bytes of 5 MiB of chunks sent, want 4 MiB or more before the last", hop.received())
	}
	c.do("BDAT 0 LAST", fmt.Sprintf("250 2.0.0 Ok: %d bytes queued as ", len(content)))
	if len(hop.sums) != 1 || hop.sums[0] != sha256.Sum256([]byte(content)) {
		t.Errorf("delivered %d messages; want 1, byte for byte", len(hop.sums))
	}
	if got := h.stages(); got != "CONNECT HELO MAIL RCPT DATA END_OF_DATA" {
		t.Errorf("policy asked about %s", got)
	}
}

// TestBDATCleanup: a chunk over the limit, or a client gone in the
// middle of one, abandons the hand-off and delivers nothing.
func TestBDATCleanup(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\r\n", 20000) // 360,000 bytes
	t.Run("chunk over the limit", func(t *testing.T) {
		hop := &hashHop{}
		h := streamHarness(t, hop, func(l *Listener) { l.MaxMessageSize = 300000 })
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
		if n, abandoned := hop.delivered(); n != 0 || abandoned != 1 {
			t.Errorf("%d delivered, %d abandoned; want 0 and 1", n, abandoned)
		}
	})
	t.Run("EHLO between chunks", func(t *testing.T) {
		// The hand-off streams on its own goroutine while the session
		// takes the next command: EHLO changes what the session knows
		// (go test -race checks that the hand-off reads none of it).
		hop := &hashHop{}
		h := streamHarness(t, hop, nil)
		c := h.dial()
		startTx(c)
		c.send(bdatCmd(big, false))
		expect(c, "250 2.0.0 Ok: 360000 bytes")
		c.do("EHLO other.example.net", "250")
		c.do("NOOP", "250 ")
		if n, abandoned := hop.delivered(); n != 0 || abandoned != 1 {
			t.Errorf("%d delivered, %d abandoned; want 0 and 1", n, abandoned)
		}
	})
	t.Run("client gone mid-chunk", func(t *testing.T) {
		hop := &hashHop{}
		h := streamHarness(t, hop, nil)
		c := h.dial()
		startTx(c)
		c.send(bdatCmd(big, false))
		expect(c, "250 ")
		c.send(fmt.Sprintf("BDAT %d LAST\r\n", len(big)) + big[:100000])
		waitFor(func() bool { return hop.received() > 0 })
		c.conn.Close()
		waitFor(func() bool { return h.logged("disconnect") })
		if n, abandoned := hop.delivered(); n != 0 || abandoned != 1 {
			t.Errorf("%d delivered, %d abandoned; want 0 and 1", n, abandoned)
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
