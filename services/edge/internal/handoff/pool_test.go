package handoff

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// countingListener counts the connections a next hop accepted and can
// drop them all, as a next hop that closes idle connections or dies.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// drop closes every connection accepted so far, first saying farewell
// if farewell is not empty (a 421 of a server closing idle connections).
func (l *countingListener) drop(farewell string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if farewell != "" {
			_, _ = io.WriteString(c, farewell)
		}
		_ = c.Close()
	}
}

// startCountingHop is startHop on a listener that counts connections;
// stop closes the listener and every connection (the next hop died).
func startCountingHop(t *testing.T, addr string) (h *nextHop, ln *countingListener, stop func()) {
	t.Helper()
	h = &nextHop{refuseRcpt: map[string]*smtp.SMTPError{}, lmtpFail: map[string]*smtp.SMTPError{}}
	srv := smtp.NewServer(h)
	srv.Domain = "next.example"
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: l}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = srv.Close()
			<-done
			ln.drop("")
		})
	}
	t.Cleanup(stop)
	return h, ln, stop
}

// send runs one whole transaction and returns the reply the client
// would get for it: "250" or the refusal.
func send(t *testing.T, target Target, rcpt string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := target.Begin(ctx, Envelope{Sender: "a@example.net"})
	if err != nil {
		return reply.FromHandoff(err).Text()
	}
	defer tx.Abort()
	if err := tx.Rcpt(ctx, rcpt, RecipientDSN{}); err != nil {
		return reply.FromHandoff(err).Text()
	}
	if err := tx.Data(ctx, strings.NewReader(msg)); err != nil {
		return reply.FromHandoff(err).Text()
	}
	return "250"
}

func pooled(t *testing.T, addr string) *Relay {
	t.Helper()
	target, err := Parse("smtp://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second, IdleConnections: 2, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r := target.(*Relay)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestRelayPoolReuses: messages one after the other, aborted ones
// among them, go over one connection, and each is delivered once.
func TestRelayPoolReuses(t *testing.T) {
	h, ln, _ := startCountingHop(t, "127.0.0.1:0")
	r := pooled(t, ln.Addr().String())
	h.refuseRcpt["nobody@example.org"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	ctx := context.Background()
	for i := range 10 {
		if got := send(t, r, "john@example.org"); got != "250" {
			t.Fatalf("message %d: %s", i, got)
		}
		// A transaction aborted before DATA (RSET at the next hop) and
		// one refused at RCPT leave the connection usable.
		tx, err := r.Begin(ctx, Envelope{Sender: "b@example.net"})
		if err != nil {
			t.Fatal(err)
		}
		tx.Abort()
		if got := send(t, r, "nobody@example.org"); got != "550 5.1.1 User unknown" {
			t.Errorf("refused recipient: %q", got)
		}
	}
	if n := len(h.got()); n != 10 {
		t.Errorf("%d messages delivered, want 10", n)
	}
	if n := ln.accepted(); n != 1 {
		t.Errorf("the next hop saw %d connections for 30 transactions, want 1", n)
	}
}

// TestRelayPoolConcurrent: concurrent transactions use a connection
// each, and at most IdleConnections are kept afterwards.
func TestRelayPoolConcurrent(t *testing.T) {
	h, ln, _ := startCountingHop(t, "127.0.0.1:0")
	r := pooled(t, ln.Addr().String())
	const workers, each = 4, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if got := send(t, r, "john@example.org"); got != "250" {
					t.Errorf("concurrent message: %s", got)
				}
			}
		})
	}
	wg.Wait()
	if n := len(h.got()); n != workers*each {
		t.Errorf("%d messages delivered, want %d", n, workers*each)
	}
	if n := ln.accepted(); n >= workers*each {
		t.Errorf("%d connections for %d messages: none reused", n, workers*each)
	}
	r.pool.mu.Lock()
	kept := len(r.pool.idle)
	r.pool.mu.Unlock()
	if kept > 2 {
		t.Errorf("%d connections kept, want at most IdleConnections = 2", kept)
	}
}

// TestRelayPoolNextHopClosesIdle: a next hop that closes idle
// connections, with or without a 421 first, costs the client nothing:
// the message goes over a new connection.
func TestRelayPoolNextHopClosesIdle(t *testing.T) {
	for _, farewell := range []string{"", "421 4.4.2 next.example Error: timeout exceeded\r\n"} {
		t.Run(strings.TrimSpace(farewell), func(t *testing.T) {
			h, ln, _ := startCountingHop(t, "127.0.0.1:0")
			r := pooled(t, ln.Addr().String())
			if got := send(t, r, "john@example.org"); got != "250" {
				t.Fatal(got)
			}
			ln.drop(farewell)
			if got := send(t, r, "lisa@example.org"); got != "250" {
				t.Fatalf("after the next hop closed the idle connection: %s", got)
			}
			if got := send(t, r, "john@example.org"); got != "250" {
				t.Fatal(got)
			}
			if got := h.got(); len(got) != 3 || !strings.Contains(got[1], ">lisa@example.org|") {
				t.Errorf("delivered %q", got)
			}
			if n := ln.accepted(); n != 2 {
				t.Errorf("%d connections, want 2 (one closed by the next hop, one new)", n)
			}
		})
	}
}

// TestRelayPoolNextHopDies: the next hop dies between messages. The
// next message gets 451 4.4.x (the client retries), not a 250 for mail
// nobody took; once it is back, mail flows again.
func TestRelayPoolNextHopDies(t *testing.T) {
	_, ln, stop := startCountingHop(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	r := pooled(t, addr)
	if got := send(t, r, "john@example.org"); got != "250" {
		t.Fatal(got)
	}
	stop()
	got := send(t, r, "john@example.org")
	if !strings.HasPrefix(got, "451 4.4.") {
		t.Errorf("next hop down: %q, want 451 4.4.x", got)
	}
	h2, ln2, _ := startCountingHop(t, addr)
	if got := send(t, r, "lisa@example.org"); got != "250" {
		t.Fatalf("next hop back: %s", got)
	}
	if got := h2.got(); len(got) != 1 || !strings.Contains(got[0], ">lisa@example.org|") {
		t.Errorf("the new next hop got %q", got)
	}
	if n := ln2.accepted(); n != 1 {
		t.Errorf("the new next hop saw %d connections, want 1", n)
	}
}

// TestRelayPoolNeverRetriesData: a connection that breaks during DATA
// gives the client a 4xx and is not used again; the message is not
// sent a second time.
func TestRelayPoolNeverRetriesData(t *testing.T) {
	h, ln, _ := startCountingHop(t, "127.0.0.1:0")
	r := pooled(t, ln.Addr().String())
	ctx := context.Background()
	tx := beginToJohn(ctx, t, r)
	// The next hop goes away while the content is on its way.
	body := io.MultiReader(strings.NewReader("Subject: x\r\n\r\n"), readerFunc(func([]byte) (int, error) {
		ln.drop("")
		return 0, io.ErrUnexpectedEOF
	}))
	if err := tx.Data(ctx, body); err == nil || reply.FromHandoff(err).Code < 400 {
		t.Errorf("Data with the next hop gone = %v, want a failure", err)
	}
	if n := len(h.got()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
	r.pool.mu.Lock()
	kept := len(r.pool.idle)
	r.pool.mu.Unlock()
	if kept != 0 {
		t.Errorf("a connection broken in DATA was kept")
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestRelayPoolIdleTimeout: a connection nobody takes within
// IdleTimeout is closed with QUIT.
func TestRelayPoolIdleTimeout(t *testing.T) {
	addr, commands := scriptedHop(t)
	target, err := Parse("smtp://"+addr, nil, Options{Hostname: "mail.example.org", Timeout: 5 * time.Second, IdleConnections: 2, IdleTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := send(t, target, "john@example.org"); got != "250" {
		t.Fatal(got)
	}
	// commands waits until the next hop's side of the connection ends.
	got := strings.Join(commands(), " ")
	if got != "EHLO MAIL RCPT DATA QUIT" {
		t.Errorf("next hop saw %q, want EHLO MAIL RCPT DATA QUIT", got)
	}
}
