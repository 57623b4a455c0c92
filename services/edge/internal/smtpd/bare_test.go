package smtpd

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

// smuggleSeparators are the end-of-data look-alikes of SMTP smuggling,
// with the bare line end each one is refused for in reject mode.
var smuggleSeparators = []struct{ sep, bare string }{
	{"\n.\n", "LF"}, {"\r\n.\n", "LF"}, {"\n.\r\n", "LF"}, {"\r.\r\n", "CR"},
	{"\r\n.\r", "CR"}, {"\n.\r", "LF"}, {"\r.\r", "CR"}, {"\n..\n", "LF"}, {"\r.\n", "CR"},
}

func escaped(s string) string { return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s) }

// smuggle sends a message whose content holds a second transaction behind
// sep, and a NOOP after the real end of data.
func smuggle(c *client, sep string) {
	c.send("Subject: one\r\n\r\nfirst" + sep + "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\nNOOP\r\n")
}

// TestSmugglingReject: with smtpd_forbid_bare_newline = reject, every
// smuggling variant gets Postfix's 550 after the real end of data, nothing
// reaches the next hop, the next hop's transaction is aborted, nothing of
// the content is taken as a command, and the session goes on.
func TestSmugglingReject(t *testing.T) {
	for _, tc := range smuggleSeparators {
		t.Run(escaped(tc.sep), func(t *testing.T) {
			h := newHarness(t, permit, func(l *Listener) { l.BareNewline = BareNewlineReject })
			c := h.dial()
			startTx(c)
			c.do("DATA", "354 ")
			smuggle(c, tc.sep)
			if got, want := c.reply(), "550 5.5.2 mail.example.org Error: bare <"+tc.bare+"> received"; got != want {
				t.Fatalf("end of data: %q, want %q", got, want)
			}
			// The NOOP after the real end is the next command: the
			// smuggled MAIL, RCPT and DATA were never commands.
			if got := c.reply(); got != "250 2.0.0 Ok" {
				t.Errorf("after the refused message: %q, want the NOOP's 250", got)
			}
			c.do("MAIL FROM:<a@example.net>", "250 2.1.0")
			c.do("QUIT", "221")
			if msgs := h.sink.messages(); len(msgs) != 0 {
				t.Errorf("%d messages reached the next hop, want none: %q", len(msgs), msgs)
			}
			if h.sink.aborted != 1 {
				t.Errorf("next hop transactions aborted: %d, want 1", h.sink.aborted)
			}
		})
	}
}

// TestBareNewlineNo: "no", and a client in
// smtpd_forbid_bare_newline_exclusions whatever the setting, get
// Postfix's old behaviour: "<LF>.<LF>" ends the message, and what follows
// is a command (as Postfix 3.7.11 does for a client in mynetworks).
func TestBareNewlineNo(t *testing.T) {
	excluded, err := listener.ParseNetworks([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tune := range map[string]func(*Listener){
		"no":       func(l *Listener) { l.BareNewline = BareNewlineNo },
		"excluded": func(l *Listener) { l.BareNewline, l.BareNewlineExclusions = BareNewlineReject, excluded },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, permit, tune)
			c := h.dial()
			startTx(c)
			c.do("DATA", "354 ")
			c.send("Subject: one\r\n\r\nfirst\n.\nNOOP\n")
			expect(c, "250 2.0.0 Ok: queued as ")
			expect(c, "250 2.0.0 Ok")
			c.do("QUIT", "221")
			if msgs := h.sink.messages(); len(msgs) != 1 || !strings.HasSuffix(msgs[0], "\r\nSubject: one\r\n\r\nfirst\r\n") {
				t.Errorf("next hop got %q", msgs)
			}
		})
	}
}

// TestBareNewlineCommand: a command line ending in a bare LF is taken as
// one by default, and with reject gets the 550 and the end of the session,
// as Postfix 3.7.11 does.
func TestBareNewlineCommand(t *testing.T) {
	h := newHarness(t, permit, nil)
	c := h.dial()
	c.reply()
	c.send("EHLO client.example.net\n")
	expect(c, "250-mail.example.org")
	c.do("QUIT", "221")

	h = newHarness(t, permit, func(l *Listener) { l.BareNewline = BareNewlineReject })
	c = h.ehlo("250-")
	c.send("MAIL FROM:<a@example.net>\nNOOP\r\n")
	if got, want := c.reply(), "550 5.5.2 mail.example.org Error: bare <LF> received"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("the session went on after the refused command line (%v)", err)
	}
}

// TestBareNewlineRejectCode: smtpd_forbid_bare_newline_reject_code = 521
// ends the session after the refused message.
func TestBareNewlineRejectCode(t *testing.T) {
	h := newHarness(t, permit, func(l *Listener) { l.BareNewline, l.BareNewlineCode = BareNewlineReject, 521 })
	c := h.dial()
	startTx(c)
	c.do("DATA", "354 ")
	smuggle(c, "\n.\n")
	if got, want := c.reply(), "521 5.5.2 mail.example.org Error: bare <LF> received"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("the session went on after 521 (%v)", err)
	}
	if msgs := h.sink.messages(); len(msgs) != 0 {
		t.Errorf("next hop got %q", msgs)
	}
}

// TestBDATBareNewlineReject: a chunk with a bare LF or CR is refused, the
// chunks after it up to the last are discarded, as Postfix 3.7.11 does.
func TestBDATBareNewlineReject(t *testing.T) {
	for chunk, bare := range map[string]string{"ab\ncd": "LF", "ab\rcd": "CR"} {
		h := newHarness(t, permit, func(l *Listener) { l.BareNewline = BareNewlineReject })
		c := h.dial()
		startTx(c)
		c.send(bdatCmd("Subject: x\r\n\r\n", false))
		expect(c, "250 2.0.0 Ok: 14 bytes")
		c.send(bdatCmd(chunk, false))
		expect(c, "550 5.5.2 mail.example.org Error: bare <"+bare+"> received")
		c.send(bdatCmd("xyz", true))
		expect(c, "551 5.0.0 Discarded 3 bytes after earlier error")
		c.do("NOOP", "250 2.0.0 Ok")
		c.do("MAIL FROM:<a@example.net>", "250 2.1.0")
		if msgs := h.sink.messages(); len(msgs) != 0 {
			t.Errorf("%q: next hop got %q", chunk, msgs)
		}
	}
}
