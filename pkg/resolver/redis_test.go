package resolver_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/redistest"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

func redisClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		ContextTimeoutEnabled: true, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// logBuffer collects log lines for assertions.
type logBuffer struct{ logtest.Buffer }

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func TestRedisShared(t *testing.T) {
	s := startStub(t)
	rs := redistest.Start(t)
	clk := newClock()
	logs := new(logBuffer)
	withRedis := func(c *resolver.Config) {
		c.Redis = redisClient(t, rs.Addr)
		c.RedisRetry = time.Second
		// Far above the 75ms default: on a loaded machine a Redis call
		// that took longer fell back to DNS and failed the test. A
		// stopped Redis refuses at once, whatever the timeout.
		c.RedisTimeout = 5 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r1 := newResolver(t, s, clk, withRedis)
	r2 := newResolver(t, s, clk, withRedis)
	ctx := context.Background()

	// The first replica asks DNS and writes Redis; the second reads Redis.
	if a, err := r1.Lookup(ctx, "example.test", dns.TypeMX); err != nil || a.Source != resolver.FromDNS {
		t.Fatalf("r1: %v from %v", err, a.Source)
	}
	clk.Advance(10 * time.Second)
	a, err := r2.Lookup(ctx, "Example.Test", dns.TypeMX)
	if err != nil || a.Source != resolver.FromRedis || a.TTL != 290*time.Second || len(a.Records) != 2 {
		t.Fatalf("r2: %v from %v TTL %v records %q; want redis, 4m50s, 2 records", err, a.Source, a.TTL, a.Records)
	}
	if n := s.Count("example.test.", dns.TypeMX); n != 1 {
		t.Errorf("DNS asked %d times, want 1", n)
	}
	// Negative answers are shared too, temporary failures are not.
	if _, err := r1.Lookup(ctx, "nx.example.test", dns.TypeA); err == nil {
		t.Fatal("nx: no error")
	}
	if a, _ := r2.Lookup(ctx, "nx.example.test", dns.TypeA); a.Source != resolver.FromRedis {
		t.Errorf("nx from r2: source %v, want redis", a.Source)
	}
	r1.Lookup(ctx, "servfail.example.test", dns.TypeA)
	if a, _ := r2.Lookup(ctx, "servfail.example.test", dns.TypeA); a.Source != resolver.FromDNS {
		t.Errorf("servfail from r2: source %v, want dns", a.Source)
	}
	// The key and its expiry, set with PX.
	c := redisClient(t, rs.Addr)
	pttl, err := c.PTTL(ctx, "smtpgate:dns:MX:example.test.").Result()
	if err != nil || pttl <= 0 || pttl > 300*time.Second {
		t.Errorf("PTTL of the MX key = %v, %v", pttl, err)
	}

	// Redis stopped: lookups go to DNS, errors and fallbacks counted, one
	// warning however many failures.
	rs.Stop()
	for _, name := range []string{"a.example.test", "alias2.example.test", "short.example.test", "1.bench.test"} {
		clk.Advance(2 * time.Second) // past RedisRetry: Redis asked again each time
		a, err := r2.Lookup(ctx, name, dns.TypeA)
		if err != nil || a.Source != resolver.FromDNS {
			t.Fatalf("%s with Redis stopped: %v from %v", name, err, a.Source)
		}
	}
	st := r2.Stats()
	if st.RedisErrors < 4 || st.RedisFallbacks < 4 {
		t.Errorf("Stats with Redis stopped: %+v, want at least 4 redis errors and fallbacks", st)
	}
	if n := logs.count("redis cache unavailable"); n != 1 {
		t.Errorf("%d warnings logged, want 1:\n%s", n, logs.String())
	}
	// Within RedisRetry, Redis is left alone: a fallback without an error.
	before := r2.Stats()
	if _, err := r2.Lookup(ctx, "a.example.test", dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	if after := r2.Stats(); after.RedisErrors != before.RedisErrors || after.RedisFallbacks != before.RedisFallbacks+1 {
		t.Errorf("within RedisRetry: errors %d->%d fallbacks %d->%d; want unchanged, +1",
			before.RedisErrors, after.RedisErrors, before.RedisFallbacks, after.RedisFallbacks)
	}

	// Redis back on the same port (empty): used again once RedisRetry has
	// passed.
	redistest.StartOn(t, rs.Port)
	clk.Advance(2 * time.Second)
	if a, err := r1.Lookup(ctx, "1.2.0.192.in-addr.arpa", dns.TypePTR); err != nil || a.Source != resolver.FromDNS {
		t.Fatalf("r1 PTR: %v from %v", err, a.Source)
	}
	if a, err := r2.Lookup(ctx, "1.2.0.192.in-addr.arpa", dns.TypePTR); err != nil || a.Source != resolver.FromRedis {
		t.Errorf("r2 PTR after Redis came back: %v from %v, want redis", err, a.Source)
	}
	if n := logs.count("redis cache available again"); n < 1 {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestRedisSilent: a Redis that accepts connections and never answers
// costs each lookup at most RedisTimeout, even with a client that waits
// seconds on its own.
func TestRedisSilent(t *testing.T) {
	s := startStub(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	slow := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: 10 * time.Second,
		DisableIdentity: true, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer slow.Close()
	r := newResolver(t, s, nil, func(c *resolver.Config) { c.Redis, c.RedisTimeout = slow, 50*time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // far below the client's 10s
	defer cancel()
	a, err := r.Lookup(ctx, "a.example.test", dns.TypeA)
	if err != nil || a.Source != resolver.FromDNS {
		t.Fatalf("with Redis silent: %v", err)
	}
	if st := r.Stats(); st.RedisErrors != 1 || st.RedisFallbacks != 1 {
		t.Errorf("Stats: %+v, want 1 redis error and 1 fallback", st)
	}
}

// TestRedisGarbage: an entry that does not decode is a miss.
func TestRedisGarbage(t *testing.T) {
	s := startStub(t)
	rs := redistest.Start(t)
	c := redisClient(t, rs.Addr)
	ctx := context.Background()
	if err := c.Set(ctx, "smtpgate:dns:A:a.example.test.", "\x01garbage", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, s, nil, func(cfg *resolver.Config) { cfg.Redis = c })
	a, err := r.Lookup(ctx, "a.example.test", dns.TypeA)
	if err != nil || a.Source != resolver.FromDNS || len(a.Records) != 2 {
		t.Fatalf("over a garbage entry: %v from %v", err, a.Source)
	}
	if st := r.Stats(); st.RedisErrors != 1 {
		t.Errorf("Stats.RedisErrors = %d, want 1", st.RedisErrors)
	}
}

// TestCachedAnswersStayInProcess: a DNSBL-style lookup answered from the
// in-process cache (an unlisted client, NXDOMAIN, on every RCPT TO) asks
// neither DNS nor Redis again, and gives the same error as the first
// answer.
func TestCachedAnswersStayInProcess(t *testing.T) {
	s := startStub(t)
	rs := redistest.Start(t)
	clk := newClock()
	r := newResolver(t, s, clk, func(c *resolver.Config) { c.Redis = redisClient(t, rs.Addr) })
	ctx := context.Background()
	_, first := r.LookupA(ctx, "nx.example.test.")
	if !errors.Is(first, resolver.ErrNotFound) {
		t.Fatalf("first lookup: %v, want ErrNotFound", first)
	}
	calls := func() map[string]string {
		info, err := redisClient(t, rs.Addr).Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, line := range strings.Split(info, "\r\n") {
			if name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls="); ok && line != name {
				out[name], _, _ = strings.Cut(rest, ",")
			}
		}
		return out
	}
	before := calls()
	if before["get"] != "1" || before["set"] != "1" {
		t.Fatalf("Redis after the first lookup: %v, want one GET and one SET", before)
	}
	for i := range 50 {
		clk.Advance(time.Second)
		var src resolver.Source
		_, err := r.LookupA(resolver.WithSource(ctx, &src), "NX.example.test")
		if !errors.Is(err, resolver.ErrNotFound) || err.Error() != first.Error() || src != resolver.FromCache {
			t.Fatalf("lookup %d: %v from %v, want %q from cache", i, err, src, first)
		}
	}
	if after := calls(); after["get"] != before["get"] || after["set"] != before["set"] {
		t.Errorf("Redis commands after 50 cached lookups: %v, before: %v", after, before)
	}
	if n := s.Count("nx.example.test.", dns.TypeA); n != 1 {
		t.Errorf("DNS asked %d times, want 1", n)
	}
}

// TestBind: a Resolver built by NewUnbound logs nothing and uses no
// Redis until Bind gives it both; it then logs its settings once and
// reads what another replica wrote.
func TestBind(t *testing.T) {
	s := startStub(t)
	rs := redistest.Start(t)
	clk := newClock()
	early, logs := new(logBuffer), new(logBuffer)
	r1 := newResolver(t, s, clk, func(c *resolver.Config) { c.Redis, c.RedisTimeout = redisClient(t, rs.Addr), 5*time.Second })
	r2, err := resolver.NewUnbound(resolver.Config{Servers: []string{s.Addr}, Timeout: time.Second, Attempts: 2, Now: clk.Now,
		RedisTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(early, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if a, err := r1.Lookup(ctx, "example.test", dns.TypeMX); err != nil || a.Source != resolver.FromDNS {
		t.Fatalf("r1: %v from %v", err, a.Source)
	}
	r2.Bind(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), redisClient(t, rs.Addr))
	if a, err := r2.Lookup(ctx, "example.test", dns.TypeMX); err != nil || a.Source != resolver.FromRedis {
		t.Errorf("r2 after Bind: %v from %v, want redis", err, a.Source)
	}
	if early.String() != "" {
		t.Errorf("NewUnbound logged:\n%s", early.String())
	}
	if n := logs.count("msg=resolver "); n != 1 || logs.count("redis=true") != 1 {
		t.Errorf("Bind logged %d settings lines, want 1 with redis=true:\n%s", n, logs.String())
	}
}
