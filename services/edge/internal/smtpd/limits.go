package smtpd

import (
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// ConnLimits counts live connections for the whole edge process, as
// Postfix's anvil(8) does for its smtpd processes: per listener and client
// address (smtpd_client_connection_count_limit), connections per client
// and time unit (smtpd_client_connection_rate_limit, anvil_rate_time_unit),
// and, which Postfix leaves to master.cf's process limit, all connections
// together (smtpgate_max_connections).
//
// The counts are this process's only: several edges behind one address
// each allow the limits (sharing them, e.g. through Redis, is not done).
// The zero value has no total cap and is ready to use.
type ConnLimits struct {
	// Max is smtpgate_max_connections; 0: no cap.
	Max int
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
// towards the total.
func (c *ConnLimits) admit(l *Listener, addr string, exempt bool) (r reply.Reply, ok bool, release func()) {
	if c == nil {
		return reply.Reply{}, true, func() {}
	}
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
		return reply.ServerBusy, false, release
	case cc == nil:
	case l.ConnectionCountLimit > 0 && cc.conns > l.ConnectionCountLimit:
		return reply.TooManyConnections(l.Hostname, addr), false, release
	case l.ConnectionRateLimit > 0 && cc.rate > l.ConnectionRateLimit:
		return reply.TooManyConnections(l.Hostname, addr), false, release
	}
	return reply.Reply{}, true, release
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
