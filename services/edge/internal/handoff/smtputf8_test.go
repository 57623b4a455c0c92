package handoff

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

func startUTF8Hop(t *testing.T, offered bool) (*handofftest.Hop, Target) {
	t.Helper()
	h := handofftest.StartWith(t, "127.0.0.1:0", handofftest.Options{SMTPUTF8: offered})
	target, err := Parse("smtp://"+h.Addr(), nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second, IdleConnections: 2})
	if err != nil {
		t.Fatal(err)
	}
	return h, target
}

// relayUTF8 sends one message and returns the first error with the step
// it came at ("begin", "rcpt <addr>", "data").
func relayUTF8(t *testing.T, target Target, env Envelope, rcpts []string, content string) (string, error) {
	t.Helper()
	ctx := context.Background()
	tx, err := target.Begin(ctx, env)
	if err != nil {
		return "begin", err
	}
	defer tx.Abort()
	for _, r := range rcpts {
		if err := tx.Rcpt(ctx, r, RecipientDSN{}); err != nil {
			return "rcpt " + r, err
		}
	}
	if err := tx.Data(ctx, strings.NewReader(content)); err != nil {
		return "data", err
	}
	return "", nil
}

func replyText(err error) string {
	var nh *reply.NextHopError
	if errors.As(err, &nh) {
		return nh.Reply.Text()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

const utf8Header = "Subject: =?utf-8?q?x?= \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\r\nFrom: <j\xc3\xb6hn@example.net>\r\n\r\nbody\r\n"

// TestRelaySMTPUTF8Offered: an SMTPUTF8 message goes to a next hop that
// offers SMTPUTF8 with SMTPUTF8 on its MAIL FROM, UTF-8 addresses and
// header included.
func TestRelaySMTPUTF8Offered(t *testing.T) {
	h, target := startUTF8Hop(t, true)
	step, err := relayUTF8(t, target, Envelope{Sender: "jöhn@example.net", SMTPUTF8: true}, []string{"пользователь@пример.испытание"}, utf8Header)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if mo := h.MailOptions(); len(mo) != 1 || !mo[0].UTF8 {
		t.Errorf("MAIL options %+v, want SMTPUTF8", mo)
	}
	if h.Messages() != 1 {
		t.Errorf("next hop took %d messages, want 1", h.Messages())
	}
}

// TestRelaySMTPUTF8NotOffered: to a next hop without SMTPUTF8, an
// SMTPUTF8 message that needs nothing of it goes without it; one with a
// non-ASCII sender, recipient or header is refused at that step with
// 5.6.7 (Postfix's smtp(8) bounces it), and nothing of it is delivered.
// A message without SMTPUTF8 goes as it came, 8-bit header and all.
func TestRelaySMTPUTF8NotOffered(t *testing.T) {
	h, target := startUTF8Hop(t, false)
	for _, tc := range []struct {
		name      string
		env       Envelope
		rcpts     []string
		content   string
		step, err string
	}{
		{name: "ASCII SMTPUTF8 message", env: Envelope{Sender: "john@example.net", SMTPUTF8: true}, rcpts: []string{"jane@example.org"}, content: msg},
		{name: "UTF-8 sender", env: Envelope{Sender: "jöhn@example.net", SMTPUTF8: true}, rcpts: []string{"jane@example.org"}, content: msg,
			step: "begin", err: "553 5.6.7 <jöhn@example.net>: message requires SMTPUTF8, but no server was found that supports SMTPUTF8"},
		{name: "UTF-8 recipient", env: Envelope{Sender: "john@example.net", SMTPUTF8: true}, rcpts: []string{"jane@example.org", "user@пример.испытание"}, content: msg,
			step: "rcpt user@пример.испытание", err: "553 5.6.7 <user@пример.испытание>: message requires SMTPUTF8, but no server was found that supports SMTPUTF8"},
		{name: "UTF-8 header", env: Envelope{Sender: "john@example.net", SMTPUTF8: true}, rcpts: []string{"jane@example.org"}, content: utf8Header,
			step: "data", err: "550 5.6.7 message requires SMTPUTF8, but no server was found that supports SMTPUTF8"},
		{name: "8-bit header without SMTPUTF8", env: Envelope{Sender: "john@example.net"}, rcpts: []string{"jane@example.org"}, content: utf8Header},
		{name: "UTF-8 body of an SMTPUTF8 message", env: Envelope{Sender: "john@example.net", SMTPUTF8: true, Body8Bit: true}, rcpts: []string{"jane@example.org"},
			content: "Subject: x\r\n\r\nпривет\r\n"},
	} {
		before := h.Messages()
		step, err := relayUTF8(t, target, tc.env, tc.rcpts, tc.content)
		if step != tc.step || replyText(err) != tc.err {
			t.Errorf("%s: refused at %q with %q; want %q with %q", tc.name, step, replyText(err), tc.step, tc.err)
		}
		want := before + 1
		if tc.err != "" {
			want = before
		}
		if got := h.Messages(); got != want {
			t.Errorf("%s: next hop has %d messages, want %d", tc.name, got, want)
		}
	}
	for _, mo := range h.MailOptions() {
		if mo.UTF8 {
			t.Errorf("SMTPUTF8 sent to a next hop that does not offer it: %+v", mo)
		}
	}
}
