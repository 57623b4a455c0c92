package smtpd

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/anvil"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// ConnLimits counts live connections for the whole edge process, as
// Postfix's anvil(8) does for its smtpd processes: per listener and client
// address (smtpd_client_connection_count_limit), connections per client
// and time unit (smtpd_client_connection_rate_limit, anvil_rate_time_unit),
// and, which Postfix does not have, per listener and client network
// (smtpgate_network_connection_count_limit: the client's /24 or /64) and
// all connections together (smtpgate_max_connections, which Postfix leaves
// to master.cf's process limit), of which each listener's
// smtpgate_connection_reserve is kept for it (SetReserves). The count of
// all connections drives Stress.
//
// With Cluster set (smtpgate_connection_limit_redis), the per-client and
// per-network limits are counted across every edge sharing that Redis,
// keyed by the listener's port and the client address or network; this
// process's own counts are kept all along and decide whenever Redis
// cannot (internal/anvil), so a Redis outage neither lifts the limits nor
// refuses anyone. The total cap and the reserves are always this
// process's own.
// The zero value has no total cap and is ready to use.
type ConnLimits struct {
	// Max is smtpgate_max_connections; 0: no cap.
	Max int
	// Stress is the stress mode, told the count of all connections;
	// nil: never under stress.
	Stress *Stress
	// Cluster shares the per-client counts with other edges; nil: this
	// process's counts only.
	Cluster *anvil.Counter
	// now is time.Now unless a test sets it.
	now func() time.Time

	mu    sync.Mutex
	total int
	// open counts the connections per listener; reserves are the
	// listeners' smtpgate_connection_reserve.
	open     map[string]int
	reserves map[string]int
	clients  map[clientKey]*clientCount
	networks map[clientKey]int
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

// admission is the answer of ConnLimits.admit.
type admission struct {
	ok bool
	// r is the refusal when not ok.
	r reply.Reply
	// shared: the per-client limits were decided across edges (Cluster)
	// rather than by this process's counts.
	shared bool
	// stressed: this connection began the stress.
	stressed bool
	// release must be called once whatever the answer (anvil also counts
	// refused connections until they close).
	release func()
}

// SetReserves sets the listeners' smtpgate_connection_reserve, by
// listener name: of Max, the reserve of a listener that it does not use
// is not given to the others. A reload sets them again.
func (c *ConnLimits) SetReserves(reserves map[string]int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reserves = reserves
}

// stressed reports whether the edge is under stress.
func (c *ConnLimits) stressed() bool { return c != nil && c.Stress.Active() }

// admit counts a new connection and says whether it may go on. Clients
// that are exempt count only towards the total.
func (c *ConnLimits) admit(ctx context.Context, l *Listener, addr string, exempt bool) admission {
	if c == nil {
		return admission{ok: true, release: func() {}}
	}
	a, busy := c.admitLocal(l, addr, exempt)
	network := networkOf(l, addr)
	if c.Cluster == nil || exempt || busy || (l.ConnectionCountLimit <= 0 && l.ConnectionRateLimit <= 0 && (l.NetworkCountLimit <= 0 || network == "")) {
		return a
	}
	key := anvil.Key{Client: clusterKey(l.Name, addr)}
	if network != "" {
		key.Network = clusterKey(l.Name, network)
	}
	d, releaseShared, err := c.Cluster.Admit(ctx, key, anvil.Limits{Count: l.ConnectionCountLimit, Rate: l.ConnectionRateLimit, Unit: l.RateTimeUnit, Network: l.NetworkCountLimit})
	if err != nil {
		// Logged and counted by the Counter: this process's counts
		// decide.
		return a
	}
	releaseLocal := a.release
	a.release = func() { releaseShared(); releaseLocal() }
	a.shared = true
	a.ok = d.Admitted
	a.r = reply.Reply{}
	if !d.Admitted {
		a.r = reply.TooManyConnections(l.Hostname, addr)
	}
	return a
}

// clusterKey is a client's key across edges: the port of the listener
// (its master.cf name is host:port, and replicas may bind different
// hosts) and the client address or network.
func clusterKey(listener, addr string) string {
	if _, port, err := net.SplitHostPort(listener); err == nil {
		listener = port
	}
	return listener + "|" + addr
}

// networkOf is the client's network for
// smtpgate_network_connection_count_limit: the /IPv4Prefix (24) of an
// IPv4 address (an IPv4-mapped IPv6 one too), the /IPv6Prefix (64) of an
// IPv6 one; "" when the limit is off or addr is no IP address.
func networkOf(l *Listener, addr string) string {
	if l.NetworkCountLimit <= 0 {
		return ""
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return ""
	}
	ip = ip.Unmap().WithZone("")
	bits := l.IPv6Prefix
	if bits <= 0 {
		bits = 64
	}
	if ip.Is4() {
		bits = l.IPv4Prefix
		if bits <= 0 {
			bits = 24
		}
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// unusedReserves is what the listeners other than name keep of Max and
// do not use; the caller holds c.mu.
func (c *ConnLimits) unusedReserves(name string) int {
	n := 0
	for l, r := range c.reserves {
		if l != name && r > c.open[l] {
			n += r - c.open[l]
		}
	}
	return n
}

// admitLocal is admit with this process's counts; busy: refused by the
// total cap.
func (c *ConnLimits) admitLocal(l *Listener, addr string, exempt bool) (a admission, busy bool) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	if c.open == nil {
		c.open = map[string]int{}
	}
	c.open[l.Name]++
	key := clientKey{l.Name, addr}
	var cc *clientCount
	var netKey clientKey
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
		unit := anvil.RateUnit(l.RateTimeUnit)
		if t := now(); cc.rateStart.IsZero() || t.Sub(cc.rateStart) >= unit {
			cc.rateStart, cc.rate = t, 0
		}
		cc.rate++
		if n := networkOf(l, addr); n != "" {
			if c.networks == nil {
				c.networks = map[clientKey]int{}
			}
			netKey = clientKey{l.Name, n}
			c.networks[netKey]++
		}
	}
	var once sync.Once
	a.release = func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if c.open[l.Name]--; c.open[l.Name] <= 0 {
				delete(c.open, l.Name)
			}
			c.Stress.update(c.total)
			if netKey.addr != "" {
				if c.networks[netKey]--; c.networks[netKey] <= 0 {
					delete(c.networks, netKey)
				}
			}
			if cc == nil {
				return
			}
			cc.conns--
			unit := anvil.RateUnit(l.RateTimeUnit)
			// Forget a client with no connection whose rate window is
			// over, so that the map does not grow without bound.
			if cc.conns == 0 && (l.ConnectionRateLimit <= 0 || now().Sub(cc.rateStart) >= unit) {
				delete(c.clients, key)
			}
		})
	}
	a.stressed = c.Stress.update(c.total)
	switch {
	case c.Max > 0 && c.total+c.unusedReserves(l.Name) > c.Max:
		a.r = reply.ServerBusy
		return a, true
	case cc == nil:
	case l.ConnectionCountLimit > 0 && cc.conns > l.ConnectionCountLimit,
		l.ConnectionRateLimit > 0 && cc.rate > l.ConnectionRateLimit,
		netKey.addr != "" && c.networks[netKey] > l.NetworkCountLimit:
		a.r = reply.TooManyConnections(l.Hostname, addr)
		return a, false
	}
	a.ok = true
	return a, false
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
