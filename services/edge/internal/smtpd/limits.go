package smtpd

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/anvil"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// ConnLimits counts live connections for the whole edge process, as
// Postfix's anvil(8) does for its smtpd processes: per listener and client
// address (smtpd_client_connection_count_limit), connections per client
// and time unit (smtpd_client_connection_rate_limit, anvil_rate_time_unit),
// and, which Postfix leaves to master.cf's process limit, all connections
// together (smtpgate_max_connections).
//
// With Cluster set (smtpgate_connection_limit_redis), the per-client
// limits are counted across every edge sharing that Redis, keyed by the
// listener's port and the client address; this process's own counts are
// kept all along and decide whenever Redis cannot (internal/anvil), so a
// Redis outage neither lifts the limits nor refuses anyone. The total cap
// is always this process's own.
// The zero value has no total cap and is ready to use.
type ConnLimits struct {
	// Max is smtpgate_max_connections; 0: no cap.
	Max int
	// Cluster shares the per-client counts with other edges; nil: this
	// process's counts only.
	Cluster *anvil.Counter
	// now is time.Now unless a test sets it.
	now func() time.Time

	mu      sync.Mutex
	total   int
	clients map[clientKey]*clientCount
	// sweepAt is the map size at which idle clients are forgotten.
	sweepAt int
}

type clientKey struct{ listener, addr string }

// clientCount is one client's state, as anvil keeps it: live connections,
// and connections since the start of the current time unit.
type clientCount struct {
	conns     int
	rate      int
	rateStart time.Time
}

// admit counts a new connection and says whether it may go on; release
// must be called once whatever the answer (anvil also counts refused
// connections until they close). Clients that are exempt count only
// towards the total. shared tells whether the per-client limits were
// decided across edges (Cluster) rather than by this process's counts.
func (c *ConnLimits) admit(ctx context.Context, l *Listener, addr string, exempt bool) (r reply.Reply, ok, shared bool, release func()) {
	if c == nil {
		return reply.Reply{}, true, false, func() {}
	}
	r, ok, busy, release := c.admitLocal(l, addr, exempt)
	if c.Cluster == nil || exempt || busy || (l.ConnectionCountLimit <= 0 && l.ConnectionRateLimit <= 0) {
		return r, ok, false, release
	}
	d, releaseShared, err := c.Cluster.Admit(ctx, clusterKey(l.Name, addr), anvil.Limits{Count: l.ConnectionCountLimit, Rate: l.ConnectionRateLimit, Unit: l.RateTimeUnit})
	if err != nil {
		// Logged and counted by the Counter: this process's counts
		// decide.
		return r, ok, false, release
	}
	releaseLocal := release
	release = func() { releaseShared(); releaseLocal() }
	if !d.Admitted {
		return reply.TooManyConnections(l.Hostname, addr), false, true, release
	}
	return reply.Reply{}, true, true, release
}

// clusterKey is a client's key across edges: the port of the listener
// (its master.cf name is host:port, and replicas may bind different
// hosts) and the client address.
func clusterKey(listener, addr string) string {
	if _, port, err := net.SplitHostPort(listener); err == nil {
		listener = port
	}
	return listener + "|" + addr
}

// admitLocal is admit with this process's counts; busy: refused by the
// total cap.
func (c *ConnLimits) admitLocal(l *Listener, addr string, exempt bool) (r reply.Reply, ok, busy bool, release func()) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	key := clientKey{l.Name, addr}
	var cc *clientCount
	if !exempt {
		if c.clients == nil {
			c.clients = map[clientKey]*clientCount{}
		}
		if len(c.clients) >= c.sweepAt {
			c.sweep(now())
		}
		cc = c.clients[key]
		if cc == nil {
			cc = &clientCount{}
			c.clients[key] = cc
		}
		cc.conns++
		unit := l.RateTimeUnit
		if unit <= 0 {
			unit = time.Minute
		}
		if t := now(); cc.rateStart.IsZero() || t.Sub(cc.rateStart) >= unit {
			cc.rateStart, cc.rate = t, 0
		}
		cc.rate++
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if cc == nil {
				return
			}
			cc.conns--
			unit := l.RateTimeUnit
			if unit <= 0 {
				unit = time.Minute
			}
			// Forget a client with no connection whose rate window is
			// over, so that the map does not grow without bound.
			if cc.conns == 0 && (l.ConnectionRateLimit <= 0 || now().Sub(cc.rateStart) >= unit) {
				delete(c.clients, key)
			}
		})
	}
	switch {
	case c.Max > 0 && c.total > c.Max:
		return reply.ServerBusy, false, true, release
	case cc == nil:
	case l.ConnectionCountLimit > 0 && cc.conns > l.ConnectionCountLimit:
		return reply.TooManyConnections(l.Hostname, addr), false, false, release
	case l.ConnectionRateLimit > 0 && cc.rate > l.ConnectionRateLimit:
		return reply.TooManyConnections(l.Hostname, addr), false, false, release
	}
	return reply.Reply{}, true, false, release
}

// sweep forgets the clients without connections whose rate window has
// ended (any window: a minute is anvil's default and a safe bound).
func (c *ConnLimits) sweep(now time.Time) {
	for k, cc := range c.clients {
		if cc.conns == 0 && now.Sub(cc.rateStart) >= maxRateUnit {
			delete(c.clients, k)
		}
	}
	c.sweepAt = 2*len(c.clients) + 1024
}

// maxRateUnit bounds how long an idle client's rate is remembered.
const maxRateUnit = time.Hour
