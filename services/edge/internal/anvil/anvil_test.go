package anvil

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// edge is one edge process's Counter, with its own Redis client.
func edge(t *testing.T, srv *redistest.Server) *Counter { return edgeB(t, srv) }

func edgeB(t testing.TB, srv *redistest.Server) *Counter {
	t.Helper()
	rc, err := redisclient.Open(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	c := New(rc, nil, nil)
	c.Timeout = time.Second
	t.Cleanup(c.Close)
	return c
}

// poll waits up to 30 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two edges, 60 connections of one client at once, a count limit of 7:
// exactly 7 are admitted; after 3 close, exactly 3 more.
func TestCountExactUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	edges := []*Counter{edge(t, srv), edge(t, srv)}
	l := Limits{Count: 7}
	var mu sync.Mutex
	var releases []func()
	admitAll := func(n int) int {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				d, release, err := edges[i%2].Admit(context.Background(), Key{Client: "smtp|192.0.2.1"}, l)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Admitted {
					admitted.Add(1)
					mu.Lock()
					releases = append(releases, release)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return int(admitted.Load())
	}
	if got := admitAll(60); got != 7 {
		t.Fatalf("%d of 60 admitted, want exactly 7", got)
	}
	for _, r := range releases[:3] {
		r()
		r() // twice is harmless
	}
	releases = releases[3:]
	if got := admitAll(40); got != 3 {
		t.Errorf("after 3 closed: %d of 40 admitted, want exactly 3", got)
	}
	// Another client, or the same client on another listener, is
	// counted apart.
	if d, _, err := edges[0].Admit(context.Background(), Key{Client: "smtp|192.0.2.2"}, l); err != nil || !d.Admitted {
		t.Errorf("another client: %+v %v", d, err)
	}
	if d, _, err := edges[0].Admit(context.Background(), Key{Client: "submission|192.0.2.1"}, l); err != nil || !d.Admitted {
		t.Errorf("another listener: %+v %v", d, err)
	}
}

// smtpgate_network_connection_count_limit across two edges: 40
// connections at once from 20 addresses of one network, a network limit
// of 5 and a per-client limit of 3: exactly 5 are admitted, none of an
// address more than 3; another network is counted apart; releasing one
// lease frees one place, and its network lease is gone from Redis.
func TestNetworkExactUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	edges := []*Counter{edge(t, srv), edge(t, srv)}
	l := Limits{Count: 3, Network: 5}
	key := func(i int) Key {
		return Key{Client: "smtp|192.0.2." + string(rune('a'+i%20)), Network: "smtp|192.0.2.0/24"}
	}
	var mu sync.Mutex
	var releases []func()
	perClient := map[string]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			d, release, err := edges[i%2].Admit(context.Background(), key(i), l)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Admitted {
				mu.Lock()
				releases = append(releases, release)
				perClient[key(i).Client]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(releases) != 5 {
		t.Fatalf("%d of 40 admitted from one network, want exactly 5", len(releases))
	}
	for c, n := range perClient {
		if n > 3 {
			t.Errorf("%s: %d admitted, over its own limit of 3", c, n)
		}
	}
	other := Key{Client: "smtp|198.51.100.1", Network: "smtp|198.51.100.0/24"}
	if d, _, err := edges[1].Admit(context.Background(), other, l); err != nil || !d.Admitted || d.Network != 1 {
		t.Errorf("another network: %+v %v", d, err)
	}
	if d, _, err := edges[0].Admit(context.Background(), key(7), l); err != nil || d.Admitted || d.Network != 5 {
		t.Errorf("the full network: %+v %v, want refused at 5", d, err)
	}
	releases[0]()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	_, _, network := keys(key(0))
	if n, err := rc.ZCard(context.Background(), network).Result(); err != nil || n != 4 {
		t.Errorf("network leases after one release: %d (%v), want 4", n, err)
	}
	if d, _, err := edges[1].Admit(context.Background(), key(19), l); err != nil || !d.Admitted || d.Network != 5 {
		t.Errorf("after a release: %+v %v, want admitted as the 5th", d, err)
	}
}

// An edge that dies holding connections stops counting one lease TTL
// later; a live edge's leases are renewed past their first expiry.
func TestLeasesOfACrashedEdgeExpire(t *testing.T) {
	srv := redistest.Start(t)
	crashing, live, other := edge(t, srv), edge(t, srv), edge(t, srv)
	crashing.TTL, live.TTL = 2*time.Second, 2*time.Second
	l := Limits{Count: 2}
	ctx := context.Background()
	if d, _, err := crashing.Admit(ctx, Key{Client: "k"}, l); err != nil || !d.Admitted {
		t.Fatalf("first: %+v %v", d, err)
	}
	if d, _, err := live.Admit(ctx, Key{Client: "k"}, l); err != nil || !d.Admitted {
		t.Fatalf("second: %+v %v", d, err)
	}
	if d, _, err := other.Admit(ctx, Key{Client: "k"}, l); err != nil || d.Admitted || d.Count != 2 {
		t.Fatalf("third: %+v %v, want refused at 2", d, err)
	}
	// The crash: no release, no more renewal.
	crashing.Close()
	conns, _, _ := keys(Key{Client: "k"})
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	var liveID string
	live.mu.Lock()
	for id := range live.leases {
		liveID = id
	}
	live.mu.Unlock()
	first, err := rc.ZScore(ctx, conns, liveID).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Wait until Redis's clock is past the live lease's first expiry.
	poll(t, "redis time past the first expiry", func() bool {
		now, err := rc.Time(ctx).Result()
		return err == nil && float64(now.UnixMilli()) > first+100
	})
	if n, err := rc.ZCard(ctx, conns).Result(); err != nil || n < 1 {
		t.Fatalf("leases: %d %v", n, err)
	}
	var release func()
	poll(t, "the crashed edge's lease to expire", func() bool {
		d, r, err := other.Admit(ctx, Key{Client: "k"}, l)
		if err != nil {
			t.Fatal(err)
		}
		release = r
		return d.Admitted
	})
	// The live edge's lease was renewed: the limit holds at 2.
	if d, _, err := other.Admit(ctx, Key{Client: "k"}, l); err != nil || d.Admitted || d.Count != 2 {
		t.Errorf("after the crash: %+v %v, want refused at 2 (the live lease renewed, the new one)", d, err)
	}
	if s, err := rc.ZScore(ctx, conns, liveID).Result(); err != nil || s <= first {
		t.Errorf("live lease score %v (first %v): %v, want renewed", s, first, err)
	}
	release()
	if n, err := rc.ZCard(ctx, conns).Result(); err != nil || n != 1 {
		t.Errorf("after release: %d leases (%v), want 1", n, err)
	}
}

// smtpd_client_connection_rate_limit per anvil_rate_time_unit, on
// Redis's clock and across edges: 3 per unit, then refused (refused
// attempts count too) until the unit ends.
func TestRateWindow(t *testing.T) {
	srv := redistest.Start(t)
	a, b := edge(t, srv), edge(t, srv)
	l := Limits{Rate: 3, Unit: 2 * time.Second}
	ctx := context.Background()
	var got []bool
	for i := range 5 {
		d, release, err := []*Counter{a, b}[i%2].Admit(ctx, Key{Client: "k"}, l)
		if err != nil {
			t.Fatal(err)
		}
		release()
		got = append(got, d.Admitted)
		if d.Rate != int64(i+1) {
			t.Errorf("attempt %d: rate %d", i+1, d.Rate)
		}
	}
	if want := []bool{true, true, true, false, false}; !equal(got, want) {
		t.Errorf("admitted %v, want %v", got, want)
	}
	_, rate, _ := keys(Key{Client: "k"})
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	if ttl, err := rc.PTTL(ctx, rate).Result(); err != nil || ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("rate counter TTL %v %v, want at most the unit", ttl, err)
	}
	poll(t, "the next time unit", func() bool {
		d, release, err := b.Admit(ctx, Key{Client: "k"}, l)
		release()
		return err == nil && d.Admitted && d.Rate == 1
	})
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Redis down: Admit says so at once (ErrUnavailable), counts the
// fallback, logs the degradation once per WarnEvery, and leaves Redis
// alone for Backoff; when Redis is back it is used again and that is
// logged.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rc, err := redisclient.Open(srv.URL(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var logs logtest.Buffer
	reg := prometheus.NewRegistry()
	c := New(rc, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	defer c.Close()
	c.Backoff = 0
	ctx := context.Background()
	l := Limits{Count: 1}
	if d, _, err := c.Admit(ctx, Key{Client: "k"}, l); err != nil || !d.Admitted {
		t.Fatalf("up: %+v %v", d, err)
	}
	srv.Stop()
	for range 3 {
		if _, _, err := c.Admit(ctx, Key{Client: "k"}, l); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("down: %v, want ErrUnavailable", err)
		}
	}
	if n := testutil.ToFloat64(c.fallbacks); n != 3 {
		t.Errorf("fallbacks %v, want 3", n)
	}
	if n := strings.Count(logs.String(), "connection limits: redis failed; counting this process's connections only"); n != 1 {
		t.Errorf("degradation logged %d times, want once:\n%s", n, logs.String())
	}
	redistest.StartOn(t, srv.Port)
	if d, _, err := c.Admit(ctx, Key{Client: "k"}, l); err != nil || !d.Admitted {
		t.Errorf("back up: %+v %v", d, err)
	}
	if !strings.Contains(logs.String(), "connection limits: redis answers again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	// With a Backoff, Redis is not asked meanwhile.
	c.Backoff = time.Hour
	c.failed(ctx, errors.New("test"))
	if _, _, err := c.Admit(ctx, Key{Client: "k"}, l); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "left alone") {
		t.Errorf("in backoff: %v", err)
	}
}
