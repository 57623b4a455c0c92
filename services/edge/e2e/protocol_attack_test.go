package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
)

// rawClient is a raw SMTP connection from a chosen source address to a
// listener of the stack, for dialogues net/smtp will not speak (bytes
// that are not UTF-8, commands sent ahead).
type rawClient struct {
	t *testing.T
	*rawSMTP
}

// rawDial connects without reading the greeting.
func (s *stack) rawClientDial(t *testing.T, from, listener string) *rawClient {
	t.Helper()
	r, err := s.dialListener(from, listener, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })
	return &rawClient{t: t, rawSMTP: r}
}

// rawHello connects, reads the greeting and says EHLO as
// client.example.net, expecting a 250.
func (s *stack) rawHello(t *testing.T, from, listener string) *rawClient {
	t.Helper()
	r := s.rawClientDial(t, from, listener)
	r.reply()
	r.do("EHLO client.example.net", "250")
	return r
}

// reply reads one reply; multi-line replies are joined with "|".
func (r *rawClient) reply() string {
	r.t.Helper()
	lines, err := r.lines()
	if err != nil {
		r.t.Fatalf("reading a reply after %q: %v", lines, err)
	}
	return strings.Join(lines, "|")
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	if err := r.write(s); err != nil {
		r.t.Fatal(err)
	}
}

// do sends one command and checks the start of its reply.
func (r *rawClient) do(cmd, want string) string {
	r.t.Helper()
	r.send(cmd + "\r\n")
	got := r.reply()
	if !strings.HasPrefix(got, want) {
		r.t.Errorf("%q: got %q, want %q", cmd, got, want)
	}
	return got
}

// data sends DATA, expecting 354, then the message (which ends with the
// line "."), and checks the start of the reply to it.
func (r *rawClient) data(message, want string) string {
	r.t.Helper()
	r.do("DATA", "354")
	return r.do(message, want)
}

// pipeliningRefused reads the replies to commands sent ahead, each
// starting as in wants, then expects DATA's 503 for improper pipelining
// (what names the case if it does not come; a 354 gets the message with
// token, so that the caller's delivery check sees it), and says QUIT.
func (r *rawClient) pipeliningRefused(what, token string, wants ...string) {
	r.t.Helper()
	for _, want := range wants {
		if got := r.reply(); !strings.HasPrefix(got, want) {
			r.t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := r.reply(); got != "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining" {
		r.t.Errorf("%s: %q", what, got)
		if strings.HasPrefix(got, "354") {
			r.do("Subject: "+token+"\r\n\r\nbody\r\n.", "")
		}
	}
	r.do("QUIT", "221")
}

// expectDelivered checks that the delivered message got holds each of
// wants.
func expectDelivered(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("the delivered message has no %q:\n%s", want, got)
		}
	}
}

// TestProtocolAttacks plays issue 16's protocol attacks against the real
// stack on deploy/local, from a stranger's address: each got the wrong
// answer before (a 451 that makes senders retry forever, a 250 Postfix
// would not give, a trailing dot passed on, early talkers let through).
func TestProtocolAttacks(t *testing.T) {
	s := startStack(t, "")

	t.Run("bytes that are not UTF-8 get Postfix's 500, not 451, and no error is logged", func(t *testing.T) {
		r := s.rawClientDial(t, Stranger, "mx")
		r.reply()
		for range 3 {
			r.do("EHLO \xff\xfe.example.net", "500 5.5.2 Error: bad UTF-8 syntax")
		}
		r.do("EHLO client.example.net", "250")
		r.do("MAIL FROM:<j\xf6hn@example.net>", "500 5.5.2 Error: bad UTF-8 syntax")
		r.do("MAIL FROM:<someone@example.net>", "250 2.1.0")
		for range 3 {
			r.do("RCPT TO:<j\xf6hn@example.org>", "500 5.5.2 Error: bad UTF-8 syntax")
		}
		r.do("RCPT TO:<john@example.org>", "250 2.1.5")
		r.do("QUIT", "221")
		if log := s.log("edge"); strings.Contains(log, "level=ERROR") {
			t.Errorf("the edge logged errors:\n%s", log)
		}
	})

	t.Run("SMTPUTF8 is offered, and a UTF-8 address needs it", func(t *testing.T) {
		c, err := s.dial(Stranger, "mx", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			t.Error("the MX listener does not advertise SMTPUTF8")
		}
		c.Close()

		token := newToken("smtputf8")
		r := s.rawHello(t, Stranger, "mx")
		r.do("MAIL FROM:<jöhn@example.net>", "553 5.6.7 Must declare SMTPUTF8 to send unicode address")
		r.do("MAIL FROM:<someone@пример.испытание>", "501 5.1.7 Bad sender address syntax")
		r.do("MAIL FROM:<jöhn@пример.испытание> SMTPUTF8", "250 2.1.0")
		r.do("RCPT TO:<john@example.org>", "250 2.1.5")
		r.data("From: Jöhn <jöhn@пример.испытание>\r\nTo: <john@example.org>\r\nSubject: "+token+"\r\n\r\nПривет\r\n.", "250 2.0.0")
		r.do("QUIT", "221")
		expectDelivered(t, s.maildirFile(token), "Return-Path: <jöhn@пример.испытание>", "From: Jöhn <jöhn@пример.испытание>", "Привет")
	})

	t.Run("a bad address literal is refused as Postfix refuses it", func(t *testing.T) {
		r := s.rawHello(t, Stranger, "mx")
		r.do("MAIL FROM:<a@[300.1.1.1]>", "501 5.1.7 Bad sender address syntax")
		r.do("MAIL FROM:<a@192.0.2.1>", "501 5.1.7 Bad sender address syntax")
		r.do("MAIL FROM:<a@[192.0.2.1]>", "250 2.1.0")
		r.do("RCPT TO:<john@[IPv6:2001:db8:::1]>", "501 5.1.3 Bad recipient address syntax")
		r.do("QUIT", "221")
	})

	t.Run("the trailing dot is removed before the next hop", func(t *testing.T) {
		token := newToken("trailingdot")
		r := s.rawHello(t, Stranger, "mx")
		r.do("MAIL FROM:<someone@example.net.>", "250 2.1.0")
		r.do("RCPT TO:<john@example.org.>", "250 2.1.5")
		r.data("Subject: "+token+"\r\n\r\nbody\r\n.", "250 2.0.0")
		r.do("QUIT", "221")
		expectDelivered(t, s.maildirFile(token), "Return-Path: <someone@example.net>\n", "X-Original-To: <john@example.org>\n", "for <john@example.org>;")
	})

	t.Run("a client that talks before the greeting is refused at DATA", func(t *testing.T) {
		token := newToken("pregreet")
		r := s.rawClientDial(t, Stranger, "mx")
		// Everything at once, before the 220.
		r.send("EHLO client.example.net\r\nMAIL FROM:<someone@example.net>\r\nRCPT TO:<john@example.org>\r\nDATA\r\n")
		r.pipeliningRefused("DATA from a client that talked first", token, "220 ", "250", "250 2.1.0", "250 2.1.5")
		if n := s.maildirTokens()[token]; n != 0 {
			t.Errorf("the early talker's message was delivered (%d copies)", n)
		}
	})

	t.Run("commands sent ahead without PIPELINING are refused at DATA", func(t *testing.T) {
		token := newToken("helopipelining")
		r := s.rawClientDial(t, Stranger, "mx")
		r.reply()
		r.do("HELO client.example.net", "250")
		r.send("MAIL FROM:<someone@example.net>\r\nRCPT TO:<john@example.org>\r\nDATA\r\n")
		r.pipeliningRefused("DATA sent ahead after HELO", token, "250 2.1.0", "250 2.1.5")
		if n := s.maildirTokens()[token]; n != 0 {
			t.Errorf("the message sent ahead was delivered (%d copies)", n)
		}
		// The same transaction in lock-step is delivered.
		token = newToken("lockstep")
		r = s.rawClientDial(t, Stranger, "mx")
		r.reply()
		r.do("HELO client.example.net", "250")
		r.do("MAIL FROM:<someone@example.net>", "250")
		r.do("RCPT TO:<john@example.org>", "250")
		r.data("Subject: "+token+"\r\n\r\nbody\r\n.", "250 2.0.0")
		r.do("QUIT", "221")
		if n := s.maildirTokens()[token]; n != 1 {
			t.Errorf("the lock-step message was delivered %d times, want once", n)
		}
	})
}

// TestSMTPUTF8NextHop runs the real stack with an SMTP next hop (a real
// go-smtp server) that offers SMTPUTF8, and with one that does not: an
// SMTPUTF8 message goes to the first with SMTPUTF8; the second gets an
// SMTPUTF8 message only when nothing in it needs it, and the client hears
// Postfix's 5.6.7 words, before any 250, for a UTF-8 address or header.
// (Before, a next hop without SMTPUTF8 made every SMTPUTF8 message a 451
// to be retried forever.)
func TestSMTPUTF8NextHop(t *testing.T) {
	utf8Message := func(token string) string {
		return "From: Jöhn <jöhn@пример.испытание>\r\nSubject: " + token + "\r\n\r\nПривет\r\n."
	}
	t.Run("offered", func(t *testing.T) {
		hop := handofftest.StartWith(t, "127.0.0.1:0", handofftest.Options{SMTPUTF8: true})
		s := startStack(t, "smtpgate_next_hop = smtp://"+hop.Addr()+"\n")
		r := s.rawHello(t, Stranger, "mx")
		r.do("MAIL FROM:<jöhn@пример.испытание> SMTPUTF8", "250 2.1.0")
		r.do("RCPT TO:<john@example.org>", "250 2.1.5")
		r.data(utf8Message(newToken("utf8hop")), "250 2.0.0")
		r.do("QUIT", "221")
		if mo := hop.MailOptions(); hop.Messages() != 1 || len(mo) != 1 || !mo[0].UTF8 {
			t.Errorf("next hop: %d messages, MAIL options %+v; want one, with SMTPUTF8", hop.Messages(), mo)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		hop := handofftest.StartWith(t, "127.0.0.1:0", handofftest.Options{})
		s := startStack(t, "smtpgate_next_hop = smtp://"+hop.Addr()+"\n")
		r := s.rawHello(t, Stranger, "mx")
		r.do("MAIL FROM:<jöhn@пример.испытание> SMTPUTF8", "250 2.1.0")
		r.do("RCPT TO:<john@example.org>", "553 5.6.7 <jöhn@пример.испытание>: message requires SMTPUTF8, but no server was found that supports SMTPUTF8")
		r.do("RSET", "250")
		r.do("MAIL FROM:<someone@example.net> SMTPUTF8", "250 2.1.0")
		r.do("RCPT TO:<john@example.org>", "250 2.1.5")
		r.data(utf8Message(newToken("utf8header")), "550 5.6.7 message requires SMTPUTF8, but no server was found that supports SMTPUTF8")
		// Nothing in this one needs SMTPUTF8: it goes without it.
		r.do("MAIL FROM:<someone@example.net> SMTPUTF8", "250 2.1.0")
		r.do("RCPT TO:<john@example.org>", "250 2.1.5")
		r.data("Subject: "+newToken("ascii")+"\r\n\r\nhello\r\n.", "250 2.0.0")
		r.do("QUIT", "221")
		if hop.Messages() != 1 {
			t.Errorf("next hop took %d messages, want only the ASCII one", hop.Messages())
		}
		for _, mo := range hop.MailOptions() {
			if mo.UTF8 {
				t.Errorf("SMTPUTF8 sent to a next hop that does not offer it: %+v", mo)
			}
		}
		// Refusals a client causes at will are no alarm.
		if log := s.log("edge"); strings.Contains(log, "level=ERROR") {
			t.Errorf("the edge logged errors:\n%s", log)
		}
	})
}

// TestIDNDestinations: relay_domains written in one form of an
// internationalised domain takes mail addressed in the other (policy
// compares A-labels), on the real stack, and a look-alike is still
// refused to a stranger.
func TestIDNDestinations(t *testing.T) {
	for _, tc := range []struct{ relayDomains, rcpt, mailParam string }{
		{"пример.испытание", "user@xn--e1afmkfd.xn--80akhbyknj4f", ""},
		{"xn--e1afmkfd.xn--80akhbyknj4f", "user@пример.испытание", " SMTPUTF8"},
	} {
		t.Run(tc.relayDomains, func(t *testing.T) {
			s := startStack(t, "relay_domains = "+tc.relayDomains+"\n")
			token := newToken("idn")
			r := s.rawHello(t, Stranger, "mx")
			r.do("MAIL FROM:<someone@example.net>"+tc.mailParam, "250 2.1.0")
			r.do("RCPT TO:<user@xn--e1afmkfd.example>", "554 5.7.1 <user@xn--e1afmkfd.example>: Relay access denied")
			r.do("RCPT TO:<"+tc.rcpt+">", "250 2.1.5")
			r.data("Subject: "+token+"\r\n\r\nbody\r\n.", "250 2.0.0")
			r.do("QUIT", "221")
			if got := s.maildirFile(token); !strings.Contains(got, "X-Original-To: <"+tc.rcpt+">\n") {
				t.Errorf("the delivered message is not for %s:\n%s", tc.rcpt, got)
			}
		})
	}
}
