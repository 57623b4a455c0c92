// Package handofftest serves a real go-smtp next hop (SMTP or LMTP) on
// loopback for the edge's tests: it records the MAIL and RCPT options it
// was given and the messages it took (their content too, when asked),
// counts the connections it accepted, and can die. Like go-smtp's server
// by default, it refuses lines over 2000 bytes.
//
// Test support only: it listens on loopback and takes whatever it is sent.
package handofftest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Hop is a running next hop.
type Hop struct {
	ln   net.Listener
	srv  *smtp.Server
	done chan struct{}

	mu       sync.Mutex
	conns    []net.Conn
	mail     []smtp.MailOptions
	rcpts    map[string]smtp.RcptOptions
	messages int
	keep     bool
	contents []string
}

// Start serves a next hop on addr ("127.0.0.1:0" for any free port) until
// the test ends; dsn makes it offer DSN.
func Start(tb testing.TB, addr string, dsn bool) *Hop {
	tb.Helper()
	return StartWith(tb, addr, Options{DSN: dsn})
}

// Options are what a next hop offers, and whether it keeps what it takes.
type Options struct {
	DSN, SMTPUTF8 bool
	// LMTP makes it an LMTP server.
	LMTP bool
	// Keep keeps the content of every message taken (Contents).
	Keep bool
}

// StartWith is Start with the extensions of opts offered.
func StartWith(tb testing.TB, addr string, opts Options) *Hop {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	h := &Hop{ln: ln, rcpts: map[string]smtp.RcptOptions{}, done: make(chan struct{}), keep: opts.Keep}
	h.srv = smtp.NewServer(h)
	h.srv.Domain = "next.example"
	h.srv.LMTP = opts.LMTP
	h.srv.EnableDSN = opts.DSN
	h.srv.EnableSMTPUTF8 = opts.SMTPUTF8
	go func() { defer close(h.done); _ = h.srv.Serve(listener{h}) }()
	tb.Cleanup(h.Die)
	return h
}

// Addr is the address the next hop listens on.
func (h *Hop) Addr() string { return h.ln.Addr().String() }

// Die stops the next hop: no new connection, and the open ones closed.
func (h *Hop) Die() {
	_ = h.srv.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
}

// Conns is the number of connections accepted so far.
func (h *Hop) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Messages is the number of messages taken so far.
func (h *Hop) Messages() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.messages
}

// Contents are the contents of the messages taken so far, in order, as
// the hop received them (CRLF line ends, dot-stuffing undone); empty
// unless the hop was started with Options.Keep.
func (h *Hop) Contents() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.contents...)
}

// MailOptions are the options of every MAIL FROM so far, in order.
func (h *Hop) MailOptions() []smtp.MailOptions {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]smtp.MailOptions(nil), h.mail...)
}

// RcptOptions are the options of the last RCPT TO of each recipient.
func (h *Hop) RcptOptions() map[string]smtp.RcptOptions {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]smtp.RcptOptions, len(h.rcpts))
	for k, v := range h.rcpts {
		out[k] = v
	}
	return out
}

// NewSession implements smtp.Backend.
func (h *Hop) NewSession(*smtp.Conn) (smtp.Session, error) { return session{h}, nil }

// listener counts and keeps the connections its Hop accepts.
type listener struct{ h *Hop }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.h.ln.Accept()
	if err == nil {
		l.h.mu.Lock()
		l.h.conns = append(l.h.conns, c)
		l.h.mu.Unlock()
	}
	return c, err
}
func (l listener) Close() error   { return l.h.ln.Close() }
func (l listener) Addr() net.Addr { return l.h.ln.Addr() }

type session struct{ h *Hop }

func (session) Reset()        {}
func (session) Logout() error { return nil }

func (s session) Mail(_ string, o *smtp.MailOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.mail = append(s.h.mail, *o)
	return nil
}

func (s session) Rcpt(to string, o *smtp.RcptOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.rcpts[to] = *o
	return nil
}

func (s session) Data(r io.Reader) error {
	var b strings.Builder
	w := io.Discard
	if s.h.keep {
		w = &b
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.messages++
	if s.h.keep {
		s.h.contents = append(s.h.contents, b.String())
	}
	return nil
}
