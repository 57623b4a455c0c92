// Package anvil counts SMTP connections per client across every edge
// process that shares one Redis, as Postfix's anvil(8) counts them for
// the smtpd processes of one host: connections open now
// (smtpd_client_connection_count_limit) and connections per time unit
// (smtpd_client_connection_rate_limit per anvil_rate_time_unit), and,
// which Postfix does not have, connections open now from the client's
// network (smtpgate_network_connection_count_limit).
//
// Each decision is one Lua script, so that concurrent connections to
// different edges are counted exactly. An open connection is a lease: a
// member of a sorted set per client (and of one per network) whose score
// is the lease's expiry on
// Redis's clock. The edge holding the connection renews its leases every
// TTL/3 and removes each when the connection closes; the script first
// drops the expired ones, then counts, then adds. So the connections of an
// edge that crashed stop counting one TTL later. The rate is a counter per
// client that expires one time unit after the first connection of the
// unit (anvil's fixed window), also on Redis's clock, so the edges' clocks
// do not matter.
//
// Fail mode: when Redis fails or runs out of time, Admit returns an error
// wrapping ErrUnavailable and the caller decides with its own process's
// counts (which it keeps all along); the limits are never bypassed, and
// no connection is refused because of Redis. The Counter logs the
// degradation (once per WarnEvery), counts it in
// smtpgate_edge_connection_limit_fallbacks_total, and leaves Redis alone
// for Backoff before it asks again.
//
// Client addresses are hashed before they reach Redis. Trusts Redis's
// answers; talks to nothing else.
package anvil

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

// KeyPrefix starts every Redis key the package writes.
const KeyPrefix = "smtpgate:anvil:"

// ErrUnavailable wraps a Redis failure, or a decision taken without Redis
// while it is left alone after one; the caller uses its own counts.
var ErrUnavailable = errors.New("shared connection counts unavailable")

// Limits are one listener's per-client limits; zero turns one off.
type Limits struct {
	// Count is smtpd_client_connection_count_limit.
	Count int
	// Rate is smtpd_client_connection_rate_limit per Unit
	// (anvil_rate_time_unit).
	Rate int
	Unit time.Duration
	// Network is smtpgate_network_connection_count_limit: connections
	// open at once from the client's network (Key.Network).
	Network int
}

// Key names what a connection counts towards: the client (the listener
// and the client address) and its network (the listener and the
// client's /24 or /64); an empty Network is not counted.
type Key struct {
	Client, Network string
}

// Decision is the answer for one connection.
type Decision struct {
	Admitted bool
	// Count is the client's open connections (this one included when
	// admitted); Rate its connections in this time unit, this one
	// included; Network the open connections of its network (this one
	// included when admitted). Each is 0 when its limit is off.
	Count, Rate, Network int64
}

// Defaults of a Counter.
const (
	DefaultTTL       = 30 * time.Second
	DefaultTimeout   = 200 * time.Millisecond
	DefaultBackoff   = 5 * time.Second
	DefaultWarnEvery = time.Minute
)

// DefaultRateUnit is anvil_rate_time_unit's default (60s), the unit of a
// rate limit that names none.
const DefaultRateUnit = time.Minute

// RateUnit is unit, or DefaultRateUnit when unit is not positive.
func RateUnit(unit time.Duration) time.Duration {
	if unit <= 0 {
		return DefaultRateUnit
	}
	return unit
}

// Counter decides connections against Redis. It is safe for concurrent
// use.
type Counter struct {
	// TTL is how long a lease lives without renewal; it is renewed every
	// TTL/3.
	TTL time.Duration
	// Timeout bounds each Redis call.
	Timeout time.Duration
	// Backoff is how long Redis is left alone after it failed.
	Backoff time.Duration
	// WarnEvery is how often an outage is logged.
	WarnEvery time.Duration

	c         redis.Cmdable
	log       *slog.Logger
	fallbacks prometheus.Counter

	mu sync.Mutex
	// leases maps each live lease (member) to its sorted sets.
	leases    map[string][]string
	renewing  bool
	closed    bool
	stop      chan struct{}
	downUntil time.Time
	warned    time.Time
	degraded  bool
}

// New counts in c. log gets the degradation (nil: none); metrics is
// where the fallback counter is registered (nil: unregistered).
func New(c redis.Cmdable, log *slog.Logger, metrics prometheus.Registerer) *Counter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Counter{
		TTL: DefaultTTL, Timeout: DefaultTimeout, Backoff: DefaultBackoff, WarnEvery: DefaultWarnEvery,
		c: c, log: log, leases: map[string][]string{}, stop: make(chan struct{}),
		fallbacks: telemetry.Register(metrics, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpgate_edge_connection_limit_fallbacks_total",
			Help: "Connections whose per-client limits were decided by this edge process's own counts because the Redis of smtpgate_connection_limit_redis failed or was being left alone after a failure.",
		})),
	}
}

// Close stops renewing the leases. It does not remove them: they expire
// within TTL, as those of an edge that crashed.
func (c *Counter) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
}

// keys are the client's sorted set of leases and its rate counter, and
// its network's sorted set of leases; the hash tag (the network's, or
// the client's without one) keeps them in one Redis Cluster slot.
func keys(k Key) (conns, rate, network string) {
	group := k.Network
	if group == "" {
		group = k.Client
	}
	g := sha256.Sum256([]byte(group))
	tag := KeyPrefix + "{" + hex.EncodeToString(g[:16]) + "}:"
	h := sha256.Sum256([]byte(k.Client))
	client := tag + hex.EncodeToString(h[:16]) + ":"
	return client + "conns", client + "rate", tag + "net"
}

// admitScript: KEYS[1] the client's leases, KEYS[2] its rate counter,
// KEYS[3] its network's leases. ARGV: lease id, count limit, rate limit,
// time unit ms, lease TTL ms, network limit. Returns {admitted, count,
// rate, network count}.
var admitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local climit, rlimit, nlimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local count, rate, ncount = 0, 0, 0
if climit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  count = redis.call('ZCARD', KEYS[1])
end
if rlimit > 0 then
  rate = redis.call('INCR', KEYS[2])
  if redis.call('PTTL', KEYS[2]) < 0 then
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
end
if nlimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  ncount = redis.call('ZCARD', KEYS[3])
end
if (climit > 0 and count >= climit) or (rlimit > 0 and rate > rlimit) or (nlimit > 0 and ncount >= nlimit) then
  return {0, count, rate, ncount}
end
if climit > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  count = count + 1
end
if nlimit > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  ncount = ncount + 1
end
return {1, count, rate, ncount}
`)

// renewScript: KEYS[1] the leases; ARGV: lease TTL ms, lease ids. Only
// leases still there are renewed: one released meanwhile stays gone.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', exp, ARGV[i])
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// Admit counts a connection of key against l and, when admitted, takes
// a lease (in the client's set and its network's) that release gives back
// (release is never nil; calling it more than once is harmless). A
// refused connection holds no lease but counts towards the rate, as in
// anvil. An error wraps ErrUnavailable: the decision is the caller's.
func (c *Counter) Admit(ctx context.Context, key Key, l Limits) (d Decision, release func(), err error) {
	release = func() {}
	if key.Network == "" {
		l.Network = 0
	}
	if l.Count <= 0 && l.Rate <= 0 && l.Network <= 0 {
		return Decision{Admitted: true}, release, nil
	}
	if !c.useRedis() {
		c.fallbacks.Inc()
		return Decision{}, release, fmt.Errorf("%w: redis left alone after a failure", ErrUnavailable)
	}
	unit := RateUnit(l.Unit)
	conns, rate, network := keys(key)
	id := leaseID()
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	res, err := admitScript.Run(rctx, c.c, []string{conns, rate, network}, id, l.Count, l.Rate, unit.Milliseconds(), c.TTL.Milliseconds(), l.Network).Int64Slice()
	if err == nil && len(res) != 4 {
		err = fmt.Errorf("admit script answered %d values", len(res))
	}
	if err != nil {
		c.failed(ctx, err)
		c.fallbacks.Inc()
		return Decision{}, release, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c.answered(ctx)
	d = Decision{Admitted: res[0] == 1, Count: res[1], Rate: res[2], Network: res[3]}
	var sets []string
	if l.Count > 0 {
		sets = append(sets, conns)
	}
	if l.Network > 0 {
		sets = append(sets, network)
	}
	if !d.Admitted || len(sets) == 0 {
		return d, release, nil
	}
	c.hold(id, sets)
	var once sync.Once
	release = func() { once.Do(func() { c.drop(context.WithoutCancel(ctx), id, sets) }) }
	return d, release, nil
}

func leaseID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hold adds a lease to those renewed, and starts renewing if needed.
func (c *Counter) hold(id string, sets []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leases[id] = sets
	if !c.renewing && !c.closed {
		c.renewing = true
		go c.renew()
	}
}

// drop forgets a lease and removes it from Redis; when Redis cannot be
// asked it expires by itself.
func (c *Counter) drop(ctx context.Context, id string, sets []string) {
	c.mu.Lock()
	delete(c.leases, id)
	c.mu.Unlock()
	if !c.useRedis() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	p := c.c.Pipeline()
	for _, set := range sets {
		p.ZRem(rctx, set, id)
	}
	if _, err := p.Exec(rctx); err != nil {
		c.failed(ctx, err)
	}
}

// renew renews the live leases every TTL/3 while there are any.
func (c *Counter) renew() {
	t := time.NewTicker(max(c.TTL/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if len(c.leases) == 0 {
			c.renewing = false
			c.mu.Unlock()
			return
		}
		bySet := map[string][]any{}
		for id, sets := range c.leases {
			for _, set := range sets {
				bySet[set] = append(bySet[set], id)
			}
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
		p := c.c.Pipeline()
		for conns, ids := range bySet {
			// Eval, not Run: a pipeline cannot fall back from EVALSHA.
			renewScript.Eval(ctx, p, []string{conns}, append([]any{c.TTL.Milliseconds()}, ids...)...)
		}
		_, err := p.Exec(ctx)
		cancel()
		if err != nil {
			c.failed(context.Background(), fmt.Errorf("renewing %d leases: %w", len(bySet), err))
		}
	}
}

// useRedis reports whether Redis should be asked now.
func (c *Counter) useRedis() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !time.Now().Before(c.downUntil)
}

// failed notes a Redis failure: Redis is left alone for Backoff, and the
// outage logged once per WarnEvery.
func (c *Counter) failed(ctx context.Context, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.downUntil = now.Add(c.Backoff)
	c.degraded = true
	if c.warned.IsZero() || now.Sub(c.warned) >= c.WarnEvery {
		c.warned = now
		c.log.WarnContext(ctx, "connection limits: redis failed; counting this process's connections only", "err", err, "retry_in", c.Backoff)
	}
}

// answered notes a Redis answer, which ends a degradation.
func (c *Counter) answered(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.degraded {
		c.degraded = false
		c.log.InfoContext(ctx, "connection limits: redis answers again; connections are counted across edges again")
	}
}
