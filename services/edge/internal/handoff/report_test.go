package handoff

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestReport: a relay names itself as Postfix's relay= does and keeps
// the next hop's own replies to the content, SMTP's one and LMTP's per
// recipient, for the mail log's delivery lines.
func TestReport(t *testing.T) {
	ctx := context.Background()
	for _, lmtp := range []bool{false, true} {
		_, addr := startHop(t, lmtp)
		scheme, agent := "smtp", "smtp"
		if lmtp {
			scheme, agent = "lmtp", "lmtp"
		}
		target, err := Parse(scheme+"://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		tx := beginToJohn(ctx, t, target)
		if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		rep := tx.(Reporter).Report()
		_, port, _ := net.SplitHostPort(addr)
		if rep.Agent != agent || rep.Relay != "127.0.0.1[127.0.0.1]:"+port {
			t.Errorf("%s: agent %q relay %q", scheme, rep.Agent, rep.Relay)
		}
		got := rep.Reply
		if lmtp {
			got = rep.Replies["john@example.org"]
		}
		if !strings.HasPrefix(got, "250 ") || len(got) < 6 {
			t.Errorf("%s: the next hop's reply %q (all: %+v)", scheme, got, rep)
		}
	}
	for spec, want := range map[string]string{
		"lmtp+unix:///run/dovecot/lmtp": "mail.example.org[/run/dovecot/lmtp]",
		"smtp://[::1]:25":               "::1[::1]:25",
		"smtp://mx.example.net:25":      "mx.example.net[mx.example.net]:25",
	} {
		target, err := Parse(spec, nil, Options{Hostname: "mail.example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if got := target.(*Relay).Report().Relay; got != want {
			t.Errorf("%s: relay=%s, want %s", spec, got, want)
		}
	}
	m := &Maildir{Dir: t.TempDir()}
	tx, _ := m.Begin(ctx, Envelope{Sender: "a@example.net"})
	_ = tx.Rcpt(ctx, "john@example.org", RecipientDSN{})
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if rep := tx.(Reporter).Report(); rep.Agent != "virtual" || rep.Relay != "virtual" || rep.Reply != "delivered to maildir" {
		t.Errorf("maildir: %+v", rep)
	}
}
