package handoff

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
)

func startDSNHop(t *testing.T, dsn bool) (*handofftest.Hop, Target) {
	t.Helper()
	h := handofftest.Start(t, "127.0.0.1:0", dsn)
	target, err := Parse("smtp://"+h.Addr(), nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return h, target
}

// relayDSN sends one message with DSN parameters on MAIL and on each
// recipient.
func relayDSN(t *testing.T, target Target) {
	t.Helper()
	ctx := context.Background()
	tx, err := target.Begin(ctx, Envelope{Sender: "a@example.net", Return: "HDRS", EnvelopeID: "QQ314159 x=y"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, dsn := range map[string]RecipientDSN{
		"john@example.org":  {Notify: []string{"SUCCESS", "DELAY"}, OriginalType: "rfc822", Original: "John+Doe@example.org"},
		"jane@example.org":  {Notify: []string{"NEVER"}},
		"utf8@example.org":  {OriginalType: "utf-8", Original: `j\x{E9}r\x{F4}me@example.org`},
		"other@example.org": {OriginalType: "x-local", Original: "someone"},
		"plain@example.org": {},
	} {
		if err := tx.Rcpt(ctx, addr, dsn); err != nil {
			t.Fatalf("RCPT %s: %v", addr, err)
		}
	}
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestRelayDSN: a next hop that advertises DSN gets RET, ENVID, NOTIFY
// and ORCPT as the client gave them (ORCPT types go-smtp cannot send are
// dropped); one that does not gets none, and the message still goes.
func TestRelayDSN(t *testing.T) {
	h, target := startDSNHop(t, true)
	relayDSN(t, target)
	if diff := cmp.Diff([]smtp.MailOptions{{Body: smtp.Body8BitMIME, Return: smtp.DSNReturnHeaders, EnvelopeID: "QQ314159 x=y"}}, h.MailOptions()); diff != "" {
		t.Errorf("MAIL options (-want +got):\n%s", diff)
	}
	want := map[string]smtp.RcptOptions{
		"john@example.org":  {Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyDelayed}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "John+Doe@example.org"},
		"jane@example.org":  {Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}},
		"utf8@example.org":  {OriginalRecipientType: smtp.DSNAddressTypeUTF8, OriginalRecipient: "jérôme@example.org"},
		"other@example.org": {},
		"plain@example.org": {},
	}
	if diff := cmp.Diff(want, h.RcptOptions()); diff != "" {
		t.Errorf("RCPT options (-want +got):\n%s", diff)
	}
	if n := h.Messages(); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}

	h, target = startDSNHop(t, false)
	relayDSN(t, target)
	if diff := cmp.Diff([]smtp.MailOptions{{Body: smtp.Body8BitMIME}}, h.MailOptions()); diff != "" {
		t.Errorf("MAIL options to a next hop without DSN (-want +got):\n%s", diff)
	}
	for addr, o := range h.RcptOptions() {
		if diff := cmp.Diff(smtp.RcptOptions{}, o); diff != "" {
			t.Errorf("RCPT %s options to a next hop without DSN (-want +got):\n%s", addr, diff)
		}
	}
	if rcpts, n := len(h.RcptOptions()), h.Messages(); rcpts != 5 || n != 1 {
		t.Errorf("next hop without DSN: %d recipients, %d messages; want 5, 1", rcpts, n)
	}
}

// TestMaildirIgnoresDSN: the Maildir takes recipients with DSN
// parameters and writes the message as it would without them.
func TestMaildirIgnoresDSN(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	tx, err := (&Maildir{Dir: dir, Hostname: "mail.example.org"}).Begin(ctx, Envelope{Sender: "a@example.net", Return: "FULL", EnvelopeID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "john@example.org", RecipientDSN{Notify: []string{"SUCCESS"}, OriginalType: "rfc822", Original: "john@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	_, b := onlyMaildirFile(t, dir)
	if want := "Return-Path: <a@example.net>\nX-Original-To: <john@example.org>\nSubject: test\n\nline\n.dot line\n"; b != want {
		t.Errorf("file = %q, want %q", b, want)
	}
}
