package handoff

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// nextHop is a real SMTP/LMTP server (go-smtp's) that records deliveries.
type nextHop struct {
	mu        sync.Mutex
	delivered []string // "from>to1,to2|content"
	// refuseRcpt and refuseData make it refuse; lmtpFail fails one
	// recipient at LMTP DATA.
	refuseRcpt map[string]*smtp.SMTPError
	refuseData *smtp.SMTPError
	lmtpFail   map[string]*smtp.SMTPError
}

type hopSession struct {
	h     *nextHop
	from  string
	rcpts []string
}

func (h *nextHop) NewSession(*smtp.Conn) (smtp.Session, error) { return &hopSession{h: h}, nil }

func (s *hopSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *hopSession) Logout() error { return nil }
func (s *hopSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *hopSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := s.h.refuseRcpt[to]; e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.h.refuseData != nil {
		return s.h.refuseData
	}
	s.h.mu.Lock()
	s.h.delivered = append(s.h.delivered, s.from+">"+strings.Join(s.rcpts, ",")+"|"+string(b))
	s.h.mu.Unlock()
	return nil
}

func (s *hopSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var ok []string
	for _, rc := range s.rcpts {
		if e := s.h.lmtpFail[rc]; e != nil {
			status.SetStatus(rc, e)
			continue
		}
		ok = append(ok, rc)
		status.SetStatus(rc, nil)
	}
	s.h.mu.Lock()
	s.h.delivered = append(s.h.delivered, s.from+">"+strings.Join(ok, ",")+"|"+string(b))
	s.h.mu.Unlock()
	return nil
}

func (h *nextHop) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.delivered...)
}

func startHop(t *testing.T, lmtp bool) (*nextHop, string) {
	t.Helper()
	h := &nextHop{refuseRcpt: map[string]*smtp.SMTPError{}, lmtpFail: map[string]*smtp.SMTPError{}}
	srv := smtp.NewServer(h)
	srv.LMTP = lmtp
	srv.Domain = "next.example"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return h, ln.Addr().String()
}

const msg = "Subject: test\r\n\r\nline\r\n.dot line\r\n"

func TestRelaySMTP(t *testing.T) {
	h, addr := startHop(t, false)
	target, err := Parse("smtp://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h.refuseRcpt["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.org>: Recipient address rejected: User unknown"}

	tx := beginToJohn(ctx, t, target)
	err = tx.Rcpt(ctx, "nobody@example.org", RecipientDSN{})
	if got := reply.FromHandoff(err).Text(); got != "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown" {
		t.Errorf("refused RCPT reply = %q", got)
	}
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if got := h.got(); len(got) != 1 || got[0] != "a@example.net>john@example.org|"+msg {
		t.Errorf("delivered %q", got)
	}

	// Aborted transactions deliver nothing.
	tx, err = target.Begin(ctx, Envelope{Sender: "a@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	_ = tx.Rcpt(ctx, "john@example.org", RecipientDSN{})
	tx.Abort()
	tx.Abort()

	// A refusal at end of data is passed through.
	h.refuseData = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused"}
	tx, _ = target.Begin(ctx, Envelope{Sender: "a@example.net"})
	_ = tx.Rcpt(ctx, "john@example.org", RecipientDSN{})
	if got := reply.FromHandoff(tx.Data(ctx, strings.NewReader(msg))).Text(); got != "554 5.7.1 Message refused" {
		t.Errorf("refused DATA reply = %q", got)
	}
	if n := len(h.got()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

// scriptedHop is a next hop that says yes to everything and records the
// commands it was sent.
func scriptedHop(t *testing.T) (addr string, commands func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		_, _ = io.WriteString(conn, "220 next.example ESMTP\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			verb = strings.ToUpper(verb)
			mu.Lock()
			got = append(got, verb)
			mu.Unlock()
			switch verb {
			case "EHLO":
				_, _ = io.WriteString(conn, "250-next.example\r\n250 PIPELINING\r\n")
			case "QUIT":
				_, _ = io.WriteString(conn, "221 2.0.0 Bye\r\n")
				return
			case "DATA":
				_, _ = io.WriteString(conn, "354 End data with <CR><LF>.<CR><LF>\r\n")
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				_, _ = io.WriteString(conn, "250 2.0.0 Ok: queued\r\n")
			default:
				_, _ = io.WriteString(conn, "250 2.0.0 Ok\r\n")
			}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() []string {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestRelayAbortSendsRSET: a transaction aborted before DATA (the client
// sent RSET, or policy said DISCARD) ends at the next hop with RSET and a
// QUIT, not a dropped connection.
func TestRelayAbortSendsRSET(t *testing.T) {
	addr, commands := scriptedHop(t)
	target, err := Parse("smtp://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := beginToJohn(ctx, t, target)
	tx.Abort()
	tx.Abort()
	got := strings.Join(commands(), " ")
	if !strings.HasPrefix(got, "EHLO MAIL RCPT RSET ") || !strings.HasSuffix(got, " QUIT") || strings.Contains(got, "DATA") {
		t.Errorf("next hop saw %q, want EHLO MAIL RCPT RSET ... QUIT", got)
	}
}

func TestRelayDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	target, _ := Parse("smtp://"+addr, nil, Options{Hostname: "h", Timeout: time.Second})
	_, err := target.Begin(context.Background(), Envelope{})
	r := reply.FromHandoff(err)
	if r.Code != 451 || !strings.HasPrefix(r.Enhanced, "4.4.") {
		t.Errorf("next hop down = %q, want 451 4.4.x", r.Text())
	}
}

func TestRelayLMTP(t *testing.T) {
	h, addr := startHop(t, true)
	target, err := Parse("lmtp://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	send := func(rcpts ...string) error {
		tx, err := target.Begin(ctx, Envelope{Sender: "a@example.net"})
		if err != nil {
			return err
		}
		for _, r := range rcpts {
			if err := tx.Rcpt(ctx, r, RecipientDSN{}); err != nil {
				return err
			}
		}
		return tx.Data(ctx, strings.NewReader(msg))
	}
	if err := send("john@example.org", "jane@example.org"); err != nil {
		t.Fatalf("LMTP delivery: %v", err)
	}
	h.lmtpFail["jane@example.org"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
	err = send("john@example.org", "jane@example.org")
	if got := reply.FromHandoff(err).Text(); !strings.HasPrefix(got, "452 4.2.2 ") || !strings.HasSuffix(got, "Mailbox full") {
		t.Errorf("partial LMTP failure = %q, want the temporary failure passed through", got)
	}
}

// beginToJohn begins a transaction from a@example.net at target with
// john@example.org as its one recipient; either step failing ends the
// test.
func beginToJohn(ctx context.Context, t *testing.T, target Target) Tx {
	t.Helper()
	tx, err := target.Begin(ctx, Envelope{Sender: "a@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt(ctx, "john@example.org", RecipientDSN{}); err != nil {
		t.Fatal(err)
	}
	return tx
}

// onlyMaildirFile returns the name and the content of the one message
// in the Maildir dir's new/; another count ends the test.
func onlyMaildirFile(t *testing.T, dir string) (name, content string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(entries) != 1 {
		t.Fatalf("new/ holds %d files, want 1", len(entries))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "new", entries[0].Name()))
	return entries[0].Name(), string(b)
}

func TestMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	target, err := Parse("maildir:Maildir", func(p string) string { return filepath.Join(filepath.Dir(dir), p) }, Options{Hostname: "mail.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, _ := target.Begin(ctx, Envelope{Sender: "a@example.net"})
	_ = tx.Rcpt(ctx, "john@example.org", RecipientDSN{})
	_ = tx.Rcpt(ctx, "jane@example.org", RecipientDSN{})
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	name, b := onlyMaildirFile(t, dir)
	want := "Return-Path: <a@example.net>\nX-Original-To: <john@example.org>\nX-Original-To: <jane@example.org>\nSubject: test\n\nline\n.dot line\n"
	if b != want {
		t.Errorf("file = %q, want %q", b, want)
	}
	if !strings.Contains(name, ".mail.example.org,S=") {
		t.Errorf("file name %q lacks host and size", name)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty")
	}

	// A Maildir that cannot be written: a temporary failure, nothing in new/.
	bad := &Maildir{Dir: filepath.Join(t.TempDir(), "file"), Hostname: "h"}
	if err := os.WriteFile(bad.Dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tx, _ = bad.Begin(ctx, Envelope{})
	err = tx.Data(ctx, strings.NewReader(msg))
	var nh *reply.NextHopError
	if !errors.As(err, &nh) || nh.Reply.Text() != "451 4.3.0 Error: queue file write error" {
		t.Errorf("unwritable Maildir = %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "maildir:", "smtp://host", "smtp://host:25/x", "ftp://h:1", "lmtp+unix://host/x", "smtp://u@h:25"} {
		if _, err := Parse(bad, func(s string) string { return s }, Options{}); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for spec, want := range map[string]string{"smtp://127.0.0.1:25": "smtp://127.0.0.1:25", "lmtp://[::1]:24": "lmtp://[::1]:24", "lmtp+unix:///run/lmtp": "lmtp+unix:///run/lmtp", "maildir:/var/mail": "maildir:/var/mail"} {
		tg, err := Parse(spec, func(s string) string { return s }, Options{})
		if err != nil || tg.String() != want {
			t.Errorf("Parse(%q) = %v, %v", spec, tg, err)
		}
	}
}
