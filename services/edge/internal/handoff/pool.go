package handoff

import (
	"sync"
	"time"
)

// defaultIdleTimeout is Options.IdleTimeout's zero value.
const defaultIdleTimeout = 10 * time.Second

// pool keeps a Relay's connections between messages: at most
// Options.IdleConnections, each for at most Options.IdleTimeout, newest
// first (the newest is the least likely to have been closed by the next
// hop). A kept connection is between transactions: its last one ended
// with the next hop's reply to the content, or with RSET.
type pool struct {
	mu     sync.Mutex
	idle   []*kept // oldest first
	closed bool
}

type kept struct {
	c     *hopConn
	timer *time.Timer
}

// get takes the newest kept connection, or returns nil.
func (p *pool) get() *hopConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	k := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	k.timer.Stop()
	return k.c
}

// put keeps c for a later message, or closes it with QUIT when the pool
// is full, off or closed.
func (p *pool) put(c *hopConn, opts Options) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= opts.IdleConnections {
		p.mu.Unlock()
		quit(c)
		return
	}
	timeout := opts.IdleTimeout
	if timeout <= 0 {
		timeout = defaultIdleTimeout
	}
	k := &kept{c: c}
	k.timer = time.AfterFunc(timeout, func() { p.expire(k) })
	p.idle = append(p.idle, k)
	p.mu.Unlock()
}

// expire closes k if it is still kept.
func (p *pool) expire(k *kept) {
	p.mu.Lock()
	found := false
	for i, e := range p.idle {
		if e == k {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		quit(k.c)
	}
}

// closeAll closes every kept connection; the pool stays usable.
func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, k := range idle {
		k.timer.Stop()
		_ = k.c.Close() // most likely dead: no QUIT
	}
}

// close closes every kept connection with QUIT and keeps none from now on.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, k := range idle {
		k.timer.Stop()
		quit(k.c)
	}
}

// quit ends a connection politely, or at least closes it.
func quit(c *hopConn) {
	if c.Quit() != nil {
		_ = c.Close()
	}
}
