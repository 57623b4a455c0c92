package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
)

// Config says whom to ask and how long to keep answers. Zero values work:
// servers from /etc/resolv.conf, an in-process cache only.
type Config struct {
	// Servers are the recursive servers, "host:port" with an IP address
	// as host (":53" may be left out). Empty: the nameserver lines of
	// ResolvConf.
	Servers []string
	// ResolvConf is read when Servers is empty (default /etc/resolv.conf);
	// its "options timeout:N attempts:N" apply unless Timeout and Attempts
	// are set.
	ResolvConf string
	// Timeout bounds one query to one server (default 2s).
	Timeout time.Duration
	// Attempts is the number of rounds over the servers (default 2). Each
	// query goes over UDP first, again over TCP when the reply is
	// truncated (TC bit).
	Attempts int

	// Redis, when set, is the cache shared with other replicas.
	Redis redis.UniversalClient
	// RedisTimeout bounds every Redis call (default 75ms).
	RedisTimeout time.Duration
	// RedisRetry is how long Redis is left alone after it failed (default
	// 1s); lookups go to DNS directly meanwhile.
	RedisRetry time.Duration

	// MinTTL and MaxTTL clamp how long positive answers are kept
	// (defaults 0 and 1h).
	MinTTL, MaxTTL time.Duration
	// NegativeMaxTTL caps how long NXDOMAIN and NODATA are kept (default
	// 1h); they are kept for the SOA minimum otherwise (RFC 2308 §5).
	NegativeMaxTTL time.Duration
	// ErrorTTL is how long a temporary failure is kept (default 5s).
	ErrorTTL time.Duration
	// CacheSize bounds the in-process cache (default 10000 entries).
	CacheSize int

	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultTimeout        = 2 * time.Second
	DefaultAttempts       = 2
	DefaultRedisTimeout   = 75 * time.Millisecond
	DefaultRedisRetry     = time.Second
	DefaultMaxTTL         = time.Hour
	DefaultNegativeMaxTTL = time.Hour
	DefaultErrorTTL       = 5 * time.Second
	DefaultCacheSize      = 10000

	// noSOATTL is how long a negative answer without a SOA record is kept
	// (RFC 2308 §5 would not keep it; a few minutes spare the servers
	// when a client repeats itself).
	noSOATTL = 5 * time.Minute
	// maxCNAMEs bounds the CNAME chain followed in one answer.
	maxCNAMEs = 8
	// ednsSize is the UDP payload size advertised (DNS flag day 2020).
	ednsSize = 1232
	// RedisKeyPrefix starts every Redis key the package writes.
	RedisKeyPrefix = "smtpgate:dns:"
	// redisLogInterval spaces the warnings about Redis.
	redisLogInterval = time.Minute
)

// Resolver looks names up through the configured servers and caches.
// It is safe for concurrent use.
type Resolver struct {
	servers    []string
	timeout    time.Duration
	attempts   int
	minTTL     time.Duration
	maxTTL     time.Duration
	negMaxTTL  time.Duration
	errorTTL   time.Duration
	redis      redis.UniversalClient
	redisTO    time.Duration
	redisRetry time.Duration
	log        *slog.Logger
	now        func() time.Time

	udp, tcp *dns.Client
	local    *lru

	mu    sync.Mutex
	calls map[key]*call

	health redisHealth
	stats  counters
}

// call is one lookup in flight, shared by every caller asking the same.
type call struct {
	done chan struct{}
	e    *entry
	src  Source
}

// New checks cfg, fills in its defaults and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	r, err := NewUnbound(cfg)
	if err != nil {
		return nil, err
	}
	r.logSettings()
	return r, nil
}

// NewUnbound is New for a Resolver whose logger and Redis cache are not
// there yet, so that what holds it can be built before the process
// opens its connections; Bind gives it both before its first lookup. It
// logs nothing.
func NewUnbound(cfg Config) (*Resolver, error) {
	r := &Resolver{
		timeout:    cfg.Timeout,
		attempts:   cfg.Attempts,
		minTTL:     cfg.MinTTL,
		maxTTL:     cmp0(cfg.MaxTTL, DefaultMaxTTL),
		negMaxTTL:  cmp0(cfg.NegativeMaxTTL, DefaultNegativeMaxTTL),
		errorTTL:   cmp0(cfg.ErrorTTL, DefaultErrorTTL),
		redis:      cfg.Redis,
		redisTO:    cmp0(cfg.RedisTimeout, DefaultRedisTimeout),
		redisRetry: cmp0(cfg.RedisRetry, DefaultRedisRetry),
		log:        cfg.Logger,
		now:        cfg.Now,
		calls:      make(map[key]*call),
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Timeout", cfg.Timeout}, {"RedisTimeout", cfg.RedisTimeout}, {"RedisRetry", cfg.RedisRetry},
		{"MinTTL", cfg.MinTTL}, {"MaxTTL", cfg.MaxTTL}, {"NegativeMaxTTL", cfg.NegativeMaxTTL}, {"ErrorTTL", cfg.ErrorTTL},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("resolver: %s %v is negative", d.name, d.v)
		}
	}
	if cfg.Attempts < 0 || cfg.CacheSize < 0 {
		return nil, fmt.Errorf("resolver: Attempts %d and CacheSize %d must not be negative", cfg.Attempts, cfg.CacheSize)
	}
	if r.minTTL > r.maxTTL {
		return nil, fmt.Errorf("resolver: MinTTL %v is above MaxTTL %v", r.minTTL, r.maxTTL)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if len(cfg.Servers) > 0 {
		for _, s := range cfg.Servers {
			ap, err := parseServer(s)
			if err != nil {
				return nil, fmt.Errorf("resolver: server %q: %w", s, err)
			}
			r.servers = append(r.servers, ap.String())
		}
	} else {
		path := cfg.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		rc, err := ReadResolvConf(path)
		if err != nil {
			return nil, fmt.Errorf("resolver: %w", err)
		}
		for _, ap := range rc.Servers {
			r.servers = append(r.servers, ap.String())
		}
		if r.timeout == 0 {
			r.timeout = rc.Timeout
		}
		if r.attempts == 0 {
			r.attempts = rc.Attempts
		}
	}
	r.timeout = cmp0(r.timeout, DefaultTimeout)
	if r.attempts == 0 {
		r.attempts = DefaultAttempts
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	r.local = newLRU(size)
	r.udp = &dns.Client{Net: "udp", Timeout: r.timeout}
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	return r, nil
}

// Bind gives a Resolver from NewUnbound its logger (nil: none) and the
// Redis cache shared with other replicas (nil: none), and logs its
// settings as New does. Call it once, before the first lookup; the
// caller keeps closing c.
func (r *Resolver) Bind(log *slog.Logger, c redis.UniversalClient) {
	if log != nil {
		r.log = log
	}
	r.redis = c
	r.logSettings()
}

// logSettings logs, at debug level, what r was built with.
func (r *Resolver) logSettings() {
	r.log.Debug("resolver", "servers", r.servers, "timeout", r.timeout, "attempts", r.attempts,
		"redis", r.redis != nil, "min_ttl", r.minTTL, "max_ttl", r.maxTTL,
		"negative_max_ttl", r.negMaxTTL, "error_ttl", r.errorTTL, "cache_size", r.local.max)
}

func cmp0(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// parseServer reads "ip:port", or an IP address alone for port 53.
func parseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("port 0")
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want ip:port or an IP address")
	}
	return netip.AddrPortFrom(a, 53), nil
}

// Servers returns the servers asked, in order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// Lookup asks for name's records of type qtype (dns.TypeA, dns.TypeMX...);
// name is a domain name with or without the trailing dot.
//
// It returns a non-nil Answer for every valid name, also together with an
// error: ErrNotFound for NXDOMAIN, ErrNoData for a name without records of
// the type, ErrTemporary when no server answered usefully or ctx ended
// first. An invalid name gives ErrInvalidName and a nil Answer. Errors
// wrap these sentinels (use errors.Is).
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	k, e, src, err := r.lookup(ctx, name, qtype)
	if e == nil {
		if k.name == "" {
			return nil, err
		}
		return &Answer{Name: k.name, Type: qtype, RCode: dns.RcodeServerFailure, Final: k.name, Source: FromDNS}, err
	}
	return r.answer(k, e, src)
}

// lookup finds k's entry for Lookup and its typed variants, and tells the
// context's WithSource where it came from. It returns a nil entry with the
// error when the name is invalid (k.name is then empty) or when ctx ended
// before the answer came.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (key, *entry, Source, error) {
	sink, _ := ctx.Value(sourceKey{}).(*Source)
	fqdn, err := Canonical(name)
	if err != nil {
		r.stats.invalid.Add(1)
		return key{}, nil, 0, fmt.Errorf("lookup %s: %w", typeString(qtype), err)
	}
	k := key{name: fqdn, qtype: qtype}
	if d, ok := ctx.Value(deadlineKey{}).(time.Time); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	e, ok := r.local.get(k, r.now())
	src := FromCache
	if ok {
		r.stats.hits.Add(1)
	} else {
		e, src, err = r.do(ctx, k)
		if err != nil {
			src = FromDNS
		}
	}
	if sink != nil {
		*sink = src
	}
	return k, e, src, err
}

// do runs the lookup of k once for all callers asking at the same time.
// The lookup itself does not end with ctx (other callers may wait for it):
// it is bounded by the timeouts. A caller whose ctx ends stops waiting.
func (r *Resolver) do(ctx context.Context, k key) (*entry, Source, error) {
	r.mu.Lock()
	c, ok := r.calls[k]
	if ok {
		r.mu.Unlock()
		r.stats.coalesced.Add(1)
	} else {
		// A lookup that ended just now has filled the cache before
		// leaving calls.
		if e, ok := r.local.get(k, r.now()); ok {
			r.mu.Unlock()
			r.stats.hits.Add(1)
			return e, FromCache, nil
		}
		c = &call{done: make(chan struct{})}
		r.calls[k] = c
		r.mu.Unlock()
		go r.run(context.WithoutCancel(ctx), k, c)
	}
	select {
	case <-c.done:
		return c.e, c.src, nil
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("lookup %s %s: %w: %w", k.name, typeString(k.qtype), ErrTemporary, context.Cause(ctx))
	}
}

func (r *Resolver) run(ctx context.Context, k key, c *call) {
	c.e, c.src = r.fetch(ctx, k)
	c.e.err = negativeErr(k, c.e.kind)
	r.local.put(k, c.e)
	r.mu.Lock()
	delete(r.calls, k)
	r.mu.Unlock()
	close(c.done)
}

// fetch reads Redis, then asks DNS and writes the answer to Redis.
func (r *Resolver) fetch(ctx context.Context, k key) (*entry, Source) {
	if r.redis != nil {
		if e, ok := r.redisGet(ctx, k); ok {
			r.stats.redisHits.Add(1)
			return e, FromRedis
		}
	}
	r.stats.misses.Add(1)
	e := r.query(ctx, k)
	if e.kind == temporary {
		r.stats.errors.Add(1)
		r.log.DebugContext(ctx, "dns lookup failed", "name", k.name, "type", typeString(k.qtype), "error", e.cause)
	} else if r.redis != nil {
		r.redisSet(ctx, k, e)
	}
	return e, FromDNS
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// Stats are the Resolver's counters since New.
type Stats struct {
	Hits           uint64 // answered from the in-process cache
	RedisHits      uint64 // answered from Redis
	Misses         uint64 // sent to DNS
	Errors         uint64 // DNS lookups ending in a temporary failure
	Coalesced      uint64 // callers that joined a lookup in flight
	Invalid        uint64 // names refused without a query
	Queries        uint64 // DNS messages sent, TCP retries included
	TCPRetries     uint64 // truncated UDP replies asked again over TCP
	RedisErrors    uint64 // failed Redis calls and undecodable entries
	RedisFallbacks uint64 // lookups that went to DNS because Redis failed or was being left alone
}

type counters struct {
	hits, redisHits, misses, errors, coalesced, invalid atomic.Uint64
	queries, tcpRetries, redisErrors, redisFallbacks    atomic.Uint64
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	c := &r.stats
	return Stats{
		Hits: c.hits.Load(), RedisHits: c.redisHits.Load(), Misses: c.misses.Load(),
		Errors: c.errors.Load(), Coalesced: c.coalesced.Load(), Invalid: c.invalid.Load(),
		Queries: c.queries.Load(), TCPRetries: c.tcpRetries.Load(),
		RedisErrors: c.redisErrors.Load(), RedisFallbacks: c.redisFallbacks.Load(),
	}
}

// sourceKey is the context key of WithSource.
type sourceKey struct{}

// WithSource returns a context whose lookups (also through LookupA,
// LookupMX...) write where their answer came from into src, for traces
// and logs.
func WithSource(ctx context.Context, src *Source) context.Context {
	return context.WithValue(ctx, sourceKey{}, src)
}

// deadlineKey is the context key of WithDeadline.
type deadlineKey struct{}

// WithDeadline returns a context whose lookups end at d at the latest,
// with ErrTemporary, while the context itself (and whatever else uses it)
// runs on: a check gives DNS what is left of its own deadline minus the
// time it needs to answer, so that a dead server is the DNS check's
// temporary failure and not the caller's timeout.
func WithDeadline(ctx context.Context, d time.Time) context.Context {
	return context.WithValue(ctx, deadlineKey{}, d)
}
