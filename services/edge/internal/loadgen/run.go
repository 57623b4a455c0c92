package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Run drives cfg.Connections sessions until the duration has passed or the
// message budget is spent, then returns what the measurement window saw.
// A message counts when it started (MAIL FROM) after the warm-up; the
// window ends at the deadline, or when the last message finished.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Helo == "" {
		cfg.Helo = "bench.smtpgate.invalid"
	}
	start := time.Now()
	r := &runner{cfg: cfg, warmEnd: start.Add(cfg.Warmup)}
	if cfg.Resume {
		r.caches = make([]tls.ClientSessionCache, cfg.Connections)
		for i := range r.caches {
			r.caches[i] = tls.NewLRUClientSessionCache(1)
		}
	}
	if cfg.Duration > 0 {
		r.deadline = start.Add(cfg.Duration)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, r.deadline)
		defer cancel()
	}
	tallies := make([]*tally, cfg.Connections)
	var wg sync.WaitGroup
	for i := range cfg.Connections {
		tallies[i] = &tally{}
		wg.Go(func() { r.worker(ctx, i, tallies[i]) })
	}
	wg.Wait()
	end := time.Now()
	if !r.deadline.IsZero() && end.After(r.deadline) {
		end = r.deadline
	}
	return merge(cfg.Addr, cfg.Connections, end.Sub(r.warmEnd), tallies), nil
}

type runner struct {
	cfg      Config
	caches   []tls.ClientSessionCache // per worker, with Config.Resume
	warmEnd  time.Time
	deadline time.Time    // zero: no duration
	claimed  atomic.Int64 // messages started, against cfg.Messages
}

// claim reserves the next message; false when the run is over.
func (r *runner) claim(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	return r.cfg.Messages <= 0 || r.claimed.Add(1) <= r.cfg.Messages
}

// over tells whether the run has ended (a dial may fail on the deadline
// before the context is cancelled).
func (r *runner) over(ctx context.Context) bool {
	return ctx.Err() != nil || (!r.deadline.IsZero() && !time.Now().Before(r.deadline))
}

// counted tells whether something that started at t is measured.
func (r *runner) counted(t time.Time) bool { return !t.Before(r.warmEnd) }

// worker runs sessions one after the other until the run is over.
func (r *runner) worker(ctx context.Context, id int, t *tally) {
	msgNo := 0
	for ctx.Err() == nil {
		// A session claims its first message before it connects, so
		// that a session that fails before it spends the budget too: a
		// message count ends the run even when every connection fails.
		if !r.claim(ctx) {
			return
		}
		ok := r.session(ctx, id, &msgNo, t)
		if !ok {
			// Do not spin on a server that refuses at once.
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// session runs one SMTP session: connect, EHLO, STARTTLS and AUTH as
// configured, up to MessagesPerConn messages (the first already claimed by
// the caller), QUIT. It returns false when the session failed before its
// first message.
func (r *runner) session(ctx context.Context, id int, msgNo *int, t *tally) bool {
	cfg := &r.cfg
	begin := time.Now()
	c, conn, stage, err := r.open(ctx, id)
	if err != nil {
		if r.counted(begin) && !r.over(ctx) {
			t.fail(errKey(stage, err))
		}
		return false
	}
	defer conn.Close()
	// At the end of the run, stop whatever the session is waiting for.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if r.counted(begin) {
		t.sessions++
		if tc, ok := c.TLSConnectionState(); ok && tc.DidResume {
			t.resumed++
		}
	}
	for m := 0; m < cfg.MessagesPerConn; m++ {
		if m > 0 && !r.claim(ctx) {
			break
		}
		n := *msgNo
		*msgNo++
		t0 := time.Now()
		_ = conn.SetDeadline(t0.Add(cfg.Timeout))
		stage, err := r.transaction(c, id, n)
		done := time.Now()
		// Past the deadline the connection is closed under the
		// transaction: nothing that ends then is counted.
		counted := r.counted(t0) && (r.deadline.IsZero() || !done.After(r.deadline))
		if err != nil {
			if counted {
				t.fail(errKey(stage, err))
			}
			var tp *textproto.Error
			if !errors.As(err, &tp) || tp.Code == 421 {
				return true // the connection is gone or going
			}
			_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
			if c.Reset() != nil {
				return true
			}
			continue
		}
		if !counted {
			continue
		}
		t.ok++
		t.msg = append(t.msg, done.Sub(t0))
		if m == 0 && r.counted(begin) {
			t.first = append(t.first, done.Sub(begin))
		}
	}
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	_ = c.Quit()
	return true
}

// open connects and gets the session ready for MAIL FROM. On failure it
// names the stage that failed.
func (r *runner) open(ctx context.Context, id int) (*smtp.Client, net.Conn, string, error) {
	cfg := &r.cfg
	conn, err := Dial(ctx, cfg.Addr, source(cfg.Sources, id), cfg.Timeout)
	if err != nil {
		return nil, nil, "connect", err
	}
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	host, _, _ := net.SplitHostPort(cfg.Addr)
	tlsConf := &tls.Config{InsecureSkipVerify: true, ServerName: host, CurvePreferences: cfg.Groups} //nolint:gosec // a benchmark on loopback
	if r.caches != nil {
		tlsConf.ClientSessionCache = r.caches[id]
	}
	if cfg.ImplicitTLS {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, "TLS", err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, nil, "greeting", err
	}
	fail := func(stage string, err error) (*smtp.Client, net.Conn, string, error) {
		conn.Close()
		return nil, nil, stage, err
	}
	if err := c.Hello(cfg.Helo); err != nil {
		return fail("EHLO", err)
	}
	if cfg.StartTLS {
		if err := c.StartTLS(tlsConf); err != nil {
			return fail("STARTTLS", err)
		}
	}
	if cfg.User != "" {
		if err := c.Auth(plainAuth{cfg.User, cfg.Password}); err != nil {
			return fail("AUTH", err)
		}
	}
	return c, conn, "", nil
}

// transaction sends one message; on failure it names the stage.
func (r *runner) transaction(c *smtp.Client, id, n int) (string, error) {
	cfg := &r.cfg
	from := Expand(cfg.Sender, id, n, 0)
	if err := c.Mail(from); err != nil {
		return "MAIL", err
	}
	var to []string
	var rcptErr error
	for i := range cfg.Recipients {
		a := Expand(cfg.Recipient, id, n, i)
		if err := c.Rcpt(a); err != nil {
			if !isReply(err) {
				return "RCPT", err
			}
			rcptErr = err // one failed recipient fails the message
			continue
		}
		to = append(to, a)
	}
	if rcptErr != nil {
		return "RCPT", rcptErr
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if _, err := w.Write(Message(from, to, cfg.Size)); err != nil {
		return "DATA", err
	}
	if err := w.Close(); err != nil {
		return "DATA", err
	}
	return "", nil
}

// source returns session id's local address, or the zero Addr.
func source(srcs []netip.Addr, id int) netip.Addr {
	if len(srcs) == 0 {
		return netip.Addr{}
	}
	return srcs[id%len(srcs)]
}

// Dial connects to addr from src (when valid) within timeout.
func Dial(ctx context.Context, addr string, src netip.Addr, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", addr)
}

func isReply(err error) bool {
	var tp *textproto.Error
	return errors.As(err, &tp)
}

// errKey names a failure for the error counts: the stage and the reply
// code, or the stage and a kind of network failure.
func errKey(stage string, err error) string {
	var tp *textproto.Error
	var ne net.Error
	var errno syscall.Errno
	switch {
	case errors.As(err, &tp):
		return stage + " " + strconv.Itoa(tp.Code)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return stage + " timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return stage + " disconnected"
	case errors.As(err, &errno):
		return stage + " " + errno.Error()
	}
	return stage + " error"
}

// plainAuth is AUTH PLAIN (RFC 4616) without net/smtp's PlainAuth checks of
// the server name and TLS: the benchmark decides itself when to use it.
type plainAuth struct{ user, password string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.password), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, fmt.Errorf("unexpected server challenge")
	}
	return nil, nil
}
