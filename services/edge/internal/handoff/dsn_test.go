package handoff

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// dsnHop is a go-smtp next hop that records the MAIL and RCPT options it
// got.
type dsnHop struct {
	mu    sync.Mutex
	mail  []smtp.MailOptions
	rcpts map[string]smtp.RcptOptions
	data  int
}

func (h *dsnHop) NewSession(*smtp.Conn) (smtp.Session, error) { return &dsnSession{h: h}, nil }

type dsnSession struct{ h *dsnHop }

func (s *dsnSession) Reset()        {}
func (s *dsnSession) Logout() error { return nil }
func (s *dsnSession) Mail(_ string, o *smtp.MailOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.mail = append(s.h.mail, *o)
	return nil
}

func (s *dsnSession) Rcpt(to string, o *smtp.RcptOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.rcpts[to] = *o
	return nil
}

func (s *dsnSession) Data(r io.Reader) error {
	_, _ = io.Copy(io.Discard, r)
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.data++
	return nil
}

func startDSNHop(t *testing.T, dsn bool) (*dsnHop, Target) {
	t.Helper()
	h := &dsnHop{rcpts: map[string]smtp.RcptOptions{}}
	srv := smtp.NewServer(h)
	srv.Domain = "next.example"
	srv.EnableDSN = dsn
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	target, err := Parse("smtp://"+ln.Addr().String(), nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
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
	if diff := cmp.Diff([]smtp.MailOptions{{Body: smtp.Body8BitMIME, Return: smtp.DSNReturnHeaders, EnvelopeID: "QQ314159 x=y"}}, h.mail); diff != "" {
		t.Errorf("MAIL options (-want +got):\n%s", diff)
	}
	want := map[string]smtp.RcptOptions{
		"john@example.org":  {Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyDelayed}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "John+Doe@example.org"},
		"jane@example.org":  {Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}},
		"utf8@example.org":  {OriginalRecipientType: smtp.DSNAddressTypeUTF8, OriginalRecipient: "jérôme@example.org"},
		"other@example.org": {},
		"plain@example.org": {},
	}
	if diff := cmp.Diff(want, h.rcpts); diff != "" {
		t.Errorf("RCPT options (-want +got):\n%s", diff)
	}
	if h.data != 1 {
		t.Errorf("%d messages delivered, want 1", h.data)
	}

	h, target = startDSNHop(t, false)
	relayDSN(t, target)
	if diff := cmp.Diff([]smtp.MailOptions{{Body: smtp.Body8BitMIME}}, h.mail); diff != "" {
		t.Errorf("MAIL options to a next hop without DSN (-want +got):\n%s", diff)
	}
	for addr, o := range h.rcpts {
		if diff := cmp.Diff(smtp.RcptOptions{}, o); diff != "" {
			t.Errorf("RCPT %s options to a next hop without DSN (-want +got):\n%s", addr, diff)
		}
	}
	if len(h.rcpts) != 5 || h.data != 1 {
		t.Errorf("next hop without DSN: %d recipients, %d messages; want 5, 1", len(h.rcpts), h.data)
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
	entries, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(entries) != 1 {
		t.Fatalf("new/ holds %d files, want 1", len(entries))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "new", entries[0].Name()))
	if want := "Return-Path: <a@example.net>\nX-Original-To: <john@example.org>\nSubject: test\n\nline\n.dot line\n"; string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
}
