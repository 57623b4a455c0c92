package table

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// endpoint is a server address in Postfix's forms: "inet:host:port",
// "unix:/path" (and, for tcp:, a bare "host:port").
type endpoint struct {
	network, address string
}

func (e endpoint) String() string {
	if e.network == "unix" {
		return "unix:" + e.address
	}
	return "inet:" + e.address
}

// parseEndpoint reads "inet:host:port" or "unix:/path".
func parseEndpoint(s string) (endpoint, error) {
	switch {
	case strings.HasPrefix(s, "inet:"):
		a := strings.TrimPrefix(s, "inet:")
		if _, _, err := net.SplitHostPort(a); err != nil {
			return endpoint{}, fmt.Errorf("%q: want inet:host:port: %v", s, err)
		}
		return endpoint{"tcp", a}, nil
	case strings.HasPrefix(s, "unix:"):
		a := strings.TrimPrefix(s, "unix:")
		if a == "" {
			return endpoint{}, fmt.Errorf("%q: want unix:/path", s)
		}
		return endpoint{"unix", a}, nil
	}
	return endpoint{}, fmt.Errorf("%q: want inet:host:port or unix:/path", s)
}

// Idle connections are closed after serverMaxIdle, and every connection
// after serverMaxTTL, as Postfix's socketmap client does (max_idle 10s,
// max_ttl 100s).
const (
	serverMaxIdle = 10 * time.Second
	serverMaxTTL  = 100 * time.Second
)

// serverConn is one connection to a table server.
type serverConn struct {
	net.Conn
	r       *bufio.Reader
	born    time.Time
	idledAt time.Time
}

// serverPool holds the connections of one table server: at most size
// are in use at once (a lookup waits for a free one, within its
// deadline), and idle ones are reused.
type serverPool struct {
	ep    endpoint
	slots chan struct{}
	now   func() time.Time

	mu     sync.Mutex // guards idle and closed
	idle   []*serverConn
	closed bool
}

func newServerPool(ep endpoint, size int, now func() time.Time) *serverPool {
	return &serverPool{ep: ep, slots: make(chan struct{}, size), now: now}
}

// get returns a connection, an idle one when there is one (reused
// reports it: a server may have closed it meanwhile), else a new one.
// The caller gives it back with put, or drops it with discard.
func (p *serverPool) get(ctx context.Context) (c *serverConn, reused bool, err error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("waiting for a connection to %s: %w", p.ep, ctx.Err())
	}
	now := p.now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, false, errClosed
	}
	for len(p.idle) > 0 {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idledAt) < serverMaxIdle && now.Sub(c.born) < serverMaxTTL {
			p.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	p.mu.Unlock()
	var d net.Dialer
	conn, err := d.DialContext(ctx, p.ep.network, p.ep.address)
	if err != nil {
		<-p.slots
		return nil, false, fmt.Errorf("connect to %s: %w", p.ep, err)
	}
	return &serverConn{Conn: conn, r: bufio.NewReader(conn), born: now}, false, nil
}

// put gives a healthy connection back.
func (p *serverPool) put(c *serverConn) {
	_ = c.SetDeadline(time.Time{})
	c.idledAt = p.now()
	p.mu.Lock()
	if p.closed {
		c.Close()
	} else {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	<-p.slots
}

// discard closes a connection that failed.
func (p *serverPool) discard(c *serverConn) {
	c.Close()
	<-p.slots
}

// close closes the idle connections; later gets fail.
func (p *serverPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
	return nil
}

// serverTable is what socketmap: and tcp: share: a pattern table (no
// partial keys, as Postfix's DICT_FLAG_PATTERN) on a pool of
// connections, each lookup bounded by Options.QueryTimeout.
type serverTable struct {
	spec string
	pool *serverPool
	opts Options
	// ask sends key on c and reads the answer; a *serverError is an
	// answer that says the lookup failed.
	ask func(c *serverConn, key string) (string, bool, error)
}

// serverError is a server's own answer that the lookup failed (socketmap
// TEMP, TIMEOUT, PERM; tcp 4xx). drop closes the connection all the same
// (Postfix's tcp client does after a 4xx).
type serverError struct {
	msg  string
	drop bool
}

func (e *serverError) Error() string { return e.msg }

// Lookup asks the server. A connection that was idle and turns out
// closed by the server is replaced once, as Postfix retries a broken
// connection once.
func (t *serverTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	for try := 0; ; try++ {
		v, ok, retry, err := t.lookupOnce(ctx, key)
		if err == nil {
			return v, ok, nil
		}
		if retry && try == 0 {
			continue
		}
		t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "err", err)
		return "", false, &lookupError{table: t.spec, err: err}
	}
}

func (t *serverTable) lookupOnce(ctx context.Context, key string) (v string, ok, retry bool, err error) {
	c, reused, err := t.pool.get(ctx)
	if err != nil {
		return "", false, false, err
	}
	if dl, has := ctx.Deadline(); has {
		_ = c.SetDeadline(dl)
	}
	v, ok, err = t.ask(c, key)
	if err != nil {
		if se, answered := err.(*serverError); answered {
			if se.drop {
				t.pool.discard(c)
			} else {
				t.pool.put(c)
			}
			return "", false, false, err
		}
		t.pool.discard(c)
		return "", false, reused && ctx.Err() == nil, err
	}
	t.pool.put(c)
	return v, ok, false, nil
}

func (t *serverTable) Pattern() bool    { return true }
func (t *serverTable) Name() string     { return t.spec }
func (t *serverTable) Entries() []Entry { return nil }

// Probe makes a new connection to the server, for check.
func (t *serverTable) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, t.pool.ep.network, t.pool.ep.address)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", t.pool.ep, err)
	}
	return c.Close()
}

// Close closes the idle connections; later lookups fail.
func (t *serverTable) Close() error { return t.pool.close() }
