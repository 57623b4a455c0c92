package e2e

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// nextHop is a go-smtp SMTP server that stands in for the edge's next
// hop and records every message it accepts, with the MAIL and RCPT
// options it got.
type nextHop struct {
	addr string
	mu   sync.Mutex
	msgs []hopMessage
}

// hopMessage is one message the next hop accepted.
type hopMessage struct {
	from  string
	mail  smtp.MailOptions
	rcpts map[string]smtp.RcptOptions
	data  string
}

// startNextHop runs a next hop on a free loopback port; dsn makes it
// advertise DSN.
func startNextHop(t *testing.T, dsn bool) *nextHop {
	t.Helper()
	h := &nextHop{}
	srv := smtp.NewServer(h)
	srv.Domain, srv.EnableDSN = "next.example", dsn
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return h
}

// messages returns the messages accepted so far.
func (h *nextHop) messages() []hopMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hopMessage(nil), h.msgs...)
}

// message returns the one message whose content holds token.
func (h *nextHop) message(t *testing.T, token string) hopMessage {
	t.Helper()
	var found []hopMessage
	for _, m := range h.messages() {
		if strings.Contains(m.data, token) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the next hop holds %d messages with %s, want 1", len(found), token)
	}
	return found[0]
}

func (h *nextHop) NewSession(*smtp.Conn) (smtp.Session, error) { return &hopSession{h: h}, nil }

type hopSession struct {
	h   *nextHop
	cur hopMessage
}

func (s *hopSession) Reset()        { s.cur = hopMessage{} }
func (s *hopSession) Logout() error { return nil }

func (s *hopSession) Mail(from string, o *smtp.MailOptions) error {
	s.cur = hopMessage{from: from, rcpts: map[string]smtp.RcptOptions{}}
	if o != nil {
		s.cur.mail = *o
	}
	return nil
}

func (s *hopSession) Rcpt(to string, o *smtp.RcptOptions) error {
	var opts smtp.RcptOptions
	if o != nil {
		opts = *o
	}
	s.cur.rcpts[to] = opts
	return nil
}

func (s *hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.h.mu.Lock()
	s.h.msgs = append(s.h.msgs, s.cur)
	s.h.mu.Unlock()
	return nil
}
