package smtpd

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
)

// countingHop is a real go-smtp next hop that counts its connections and
// messages, and can die (close its listener and every connection).
type countingHop struct {
	mu       sync.Mutex
	conns    []net.Conn
	messages int
	ln       net.Listener
	srv      *smtp.Server
}

func (h *countingHop) Accept() (net.Conn, error) {
	c, err := h.ln.Accept()
	if err == nil {
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}
	return c, err
}
func (h *countingHop) Close() error   { return h.ln.Close() }
func (h *countingHop) Addr() net.Addr { return h.ln.Addr() }

func (h *countingHop) NewSession(*smtp.Conn) (smtp.Session, error) { return &countingSession{h}, nil }

type countingSession struct{ h *countingHop }

func (*countingSession) Reset()                               {}
func (*countingSession) Logout() error                        { return nil }
func (*countingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*countingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *countingSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.messages++
	s.h.mu.Unlock()
	return nil
}

func (h *countingHop) counts() (conns, messages int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns), h.messages
}

// startCountingHop serves a next hop on addr ("127.0.0.1:0" for any).
func startCountingHop(t *testing.T, addr string) *countingHop {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHop{ln: ln}
	h.srv = smtp.NewServer(h)
	h.srv.Domain = "next.example"
	go func() { _ = h.srv.Serve(h) }()
	t.Cleanup(h.die)
	return h
}

// die stops the next hop: no new connection, and the open ones closed.
func (h *countingHop) die() {
	_ = h.srv.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
}

// TestRelayPoolThroughSessions: clients' messages relayed by the engine
// reuse the next hop's connections; when the next hop dies between
// messages, the next client gets 451 4.4.x (not a 250 for mail nobody
// took) and, once it is back, 250 again.
func TestRelayPoolThroughSessions(t *testing.T) {
	hop := startCountingHop(t, "127.0.0.1:0")
	addr := hop.Addr().String()
	target, err := handoff.Parse("smtp://"+addr, nil, handoff.Options{Hostname: "mail.example.org", Timeout: 5 * time.Second,
		IdleConnections: 4, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = target.(io.Closer).Close() })
	h := newHarness(t, permit, func(l *Listener) { l.NextHop = target })
	send := func(rcptWant, dataWant string) {
		t.Helper()
		c := h.dial()
		c.reply()
		c.do("EHLO client.example.net", "250")
		c.do("MAIL FROM:<a@example.net>", "250")
		if got := c.do("RCPT TO:<john@example.org>", rcptWant); !strings.HasPrefix(got, "250") {
			c.do("QUIT", "221")
			return
		}
		c.do("DATA", "354")
		c.do("Subject: x\r\n\r\nhi\r\n.", dataWant)
		c.do("QUIT", "221")
	}
	for range 5 {
		send("250", "250 2.0.0")
	}
	if conns, msgs := hop.counts(); msgs != 5 || conns != 1 {
		t.Errorf("next hop: %d messages over %d connections, want 5 over 1", msgs, conns)
	}
	hop.die()
	send("451 4.4.", "")
	hop2 := startCountingHop(t, addr)
	send("250", "250 2.0.0")
	send("250", "250 2.0.0")
	if conns, msgs := hop2.counts(); msgs != 2 || conns != 1 {
		t.Errorf("next hop back: %d messages over %d connections, want 2 over 1", msgs, conns)
	}
}
