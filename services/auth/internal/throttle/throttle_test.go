package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

var params = Params{
	Window:        10 * time.Minute,
	MaxPerClient:  3,
	MaxPerNetwork: 5,
	MaxPerUser:    4,
	Lockout:       15 * time.Minute,
	Delay:         time.Second,
	MaxDelay:      8 * time.Second,
	KnownSource:   30 * 24 * time.Hour,
}

func TestKeysFor(t *testing.T) {
	for _, tc := range []struct {
		client, user        string
		wantClient, wantNet string
		wantUser            string
	}{
		{"192.0.2.7", "john@example.org", "192.0.2.7", "192.0.2.0/24", "john@example.org"},
		{"192.0.2.7:4711", " John@Example.ORG\t", "192.0.2.7", "192.0.2.0/24", "john@example.org"},
		{"::ffff:192.0.2.7", "", "192.0.2.7", "192.0.2.0/24", ""},
		{"2001:db8:1:2:3:4:5:6", "u", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "u"},
		{"[2001:db8::1]:25", "u", "2001:db8::1", "2001:db8::/64", "u"},
		{"fe80::1%eth0", "u", "fe80::1", "fe80::/64", "u"},
		{"unknown", "u", "", "", "u"},
		{"", "", "", "", ""},
	} {
		k := KeysFor(tc.client, tc.user)
		var c, n string
		if k.client.IsValid() {
			c, n = k.client.String(), k.network.String()
		}
		if c != tc.wantClient || n != tc.wantNet || k.User() != tc.wantUser {
			t.Errorf("KeysFor(%q, %q) = %q %q %q, want %q %q %q", tc.client, tc.user, c, n, k.User(), tc.wantClient, tc.wantNet, tc.wantUser)
		}
	}
}

func TestDelay(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		n    int64
		want time.Duration
	}{
		{params, 0, 0},
		{params, 1, 0},
		{params, 2, time.Second},
		{params, 3, 2 * time.Second},
		{params, 4, 4 * time.Second},
		{params, 5, 8 * time.Second},
		{params, 50, 8 * time.Second},
		{Params{Delay: 0, MaxDelay: time.Second}, 5, 0},
		{Params{Delay: 3 * time.Second, MaxDelay: time.Second}, 5, 3 * time.Second},
		{Params{Delay: time.Second, MaxDelay: 5 * time.Second}, 9, 5 * time.Second},
	} {
		if got := tc.p.delay(tc.n); got != tc.want {
			t.Errorf("delay(%d) with %v/%v = %v, want %v", tc.n, tc.p.Delay, tc.p.MaxDelay, got, tc.want)
		}
	}
}

// clock is a controllable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newMemory(p Params) (*Memory, *clock) {
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	m := NewMemory(p)
	m.Now = c.Now
	return m, c
}

// maxima is params with other maximum failures per client, network and
// user.
func maxima(client, network, user int64) Params {
	p := params
	p.MaxPerClient, p.MaxPerNetwork, p.MaxPerUser = client, network, user
	return p
}

// redisStore returns a Redis store under p on a redis-server of its
// own, and the client it uses.
func redisStore(tb testing.TB, p Params) (*Redis, redis.UniversalClient) {
	tb.Helper()
	srv := redistest.Start(tb)
	c, err := NewRedisClient(srv.URL(), time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return NewRedis(c, p), c
}

// eachStore runs test as a subtest against each implementation, empty,
// under the same params.
func eachStore(t *testing.T, p Params, test func(t *testing.T, s Store)) {
	t.Helper()
	m, _ := newMemory(p)
	r, _ := redisStore(t, p)
	for name, s := range map[string]Store{"memory": m, "redis": r} {
		t.Run(name, func(t *testing.T) { test(t, s) })
	}
}

// reserve reserves a place for k in s (d.Locked: refused); an error
// ends the test.
func reserve(t *testing.T, s Store, k Keys) (Reservation, Decision) {
	t.Helper()
	r, d, err := s.Reserve(context.Background(), k, false)
	if err != nil {
		t.Fatal(err)
	}
	return r, d
}

// try runs one attempt of k against s: refused (the refusal), or
// admitted and then failed (the failure's decision).
func try(t *testing.T, s Store, k Keys) Decision {
	t.Helper()
	r, d := reserve(t, s, k)
	if d.Locked {
		return d
	}
	d, err := s.Fail(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// login runs one successful attempt of k against s; it reports the
// refusal when there is one.
func login(t *testing.T, s Store, k Keys) Decision {
	t.Helper()
	r, d := reserve(t, s, k)
	if d.Locked {
		return d
	}
	if err := s.Succeed(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return Decision{}
}

// admitted reports whether s would admit k now, without counting it.
func admitted(t *testing.T, s Store, k Keys) Decision {
	t.Helper()
	r, d := reserve(t, s, k)
	if !d.Locked {
		if err := s.Release(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestStores runs the same story against both implementations.
func TestStores(t *testing.T) {
	eachStore(t, params, func(t *testing.T, s Store) {
		t.Run("client lockout after growing delays", func(t *testing.T) {
			k := KeysFor("192.0.2.1", "alice@example.org")
			var delays []time.Duration
			for i := range 2 {
				d := try(t, s, KeysFor("192.0.2.1", fmt.Sprintf("user%d@example.org", i)))
				if d.Locked {
					t.Fatalf("failure %d locked: %+v", i+1, d)
				}
				delays = append(delays, d.Delay)
				if d := admitted(t, s, k); d.Locked {
					t.Fatalf("locked after %d failures: %+v", i+1, d)
				}
			}
			d := try(t, s, k)
			delays = append(delays, d.Delay)
			if !d.Locked || !d.Tripped || d.Kind != "client" || d.Key != "192.0.2.1" || d.RetryAfter != params.Lockout {
				t.Errorf("third failure: %+v, want the client locked for %v", d, params.Lockout)
			}
			if want := []time.Duration{0, time.Second, 2 * time.Second}; fmt.Sprint(delays) != fmt.Sprint(want) {
				t.Errorf("delays %v, want %v", delays, want)
			}
			for _, user := range []string{"", "bob@example.org", "alice@example.org"} {
				if d := admitted(t, s, KeysFor("192.0.2.1", user)); !d.Locked || d.Full || d.Kind != "client" {
					t.Errorf("Reserve(client, %q) = %+v, want locked by client", user, d)
				}
			}
			if d := admitted(t, s, KeysFor("192.0.2.2", "bob@example.org")); d.Locked {
				t.Errorf("a neighbour is locked: %+v", d)
			}
		})
		t.Run("network lockout", func(t *testing.T) {
			for i := range 4 {
				if d := try(t, s, KeysFor(fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("n%d", i))); d.Locked {
					t.Fatalf("failure %d locked: %+v", i+1, d)
				}
			}
			d := try(t, s, KeysFor("198.51.100.200", "n5"))
			if !d.Tripped || d.Kind != "network" || d.Key != "198.51.100.0/24" {
				t.Errorf("fifth failure in the network: %+v", d)
			}
			if d := admitted(t, s, KeysFor("198.51.100.99", "")); !d.Locked || d.Kind != "network" {
				t.Errorf("another address of the network: %+v, want locked", d)
			}
			if d := admitted(t, s, KeysFor("198.51.101.1", "")); d.Locked {
				t.Errorf("the next network is locked: %+v", d)
			}
		})
		t.Run("user lockout across networks and spellings", func(t *testing.T) {
			spellings := []string{"carol@example.org", "Carol@Example.org", " CAROL@EXAMPLE.ORG", "carol@example.ORG"}
			for i, u := range spellings {
				d := try(t, s, KeysFor(fmt.Sprintf("203.0.%d.1", i), u))
				if (i == 3) != d.Tripped {
					t.Fatalf("failure %d: %+v", i+1, d)
				}
				if i == 3 && (d.Kind != "user" || d.Key != "carol@example.org") {
					t.Errorf("fourth failure: %+v, want the user locked", d)
				}
			}
			if d := admitted(t, s, KeysFor("2001:db8::5", "CAROL@example.org")); !d.Locked || d.Kind != "user" {
				t.Errorf("the user from elsewhere: %+v, want locked", d)
			}
		})
		t.Run("success resets the client, not the user or network", func(t *testing.T) {
			k := KeysFor("10.1.1.77", "dave@example.org")
			for range 2 {
				try(t, s, k)
			}
			if d := login(t, s, k); d.Locked {
				t.Fatalf("login refused: %+v", d)
			}
			// From another network: the client count of 10.1.1.77 does
			// not apply; dave's count (2) still does.
			if d := try(t, s, KeysFor("10.9.9.9", "dave@example.org")); d.Locked || d.Delay != 2*time.Second {
				t.Errorf("dave's third failure, elsewhere: %+v, want a delay of 2s (his count kept)", d)
			}
			// 10.1.1.77 is a known source of dave: client count only.
			for i := range 2 {
				d := try(t, s, k)
				if want := time.Duration(i) * time.Second; d.Locked || d.Delay != want {
					t.Errorf("failure %d after a success: %+v, want no lock and a delay of %v", i+1, d, want)
				}
			}
			// 2 failures in 10.1.1.0/24 before the success; the two of
			// the known source were not counted there.
			for i := range 2 {
				if d := try(t, s, KeysFor(fmt.Sprintf("10.1.1.%d", 100+i), "")); d.Locked {
					t.Fatalf("network failure %d: %+v", 3+i, d)
				}
			}
			if d := try(t, s, KeysFor("10.1.1.78", "")); !d.Tripped || d.Kind != "network" {
				t.Errorf("fifth network failure: %+v, want the network locked", d)
			}
		})
		t.Run("known source outlives an attack on its user", func(t *testing.T) {
			home, attacker, travel := KeysFor("100.64.0.50", "erin@example.org"), KeysFor("203.0.113.66", "erin@example.org"), KeysFor("198.18.0.9", "erin@example.org")
			if d := login(t, s, home); d.Locked {
				t.Fatalf("first login: %+v", d)
			}
			// The attacker's 3rd failure locks it (client); the 4th user
			// failure needs a second address.
			for range 3 {
				try(t, s, attacker)
			}
			if d := try(t, s, KeysFor("203.0.113.67", "erin@example.org")); !d.Tripped || d.Kind != "user" {
				t.Fatalf("fourth failure for erin: %+v, want the user locked", d)
			}
			if d := admitted(t, s, travel); !d.Locked || d.Kind != "user" {
				t.Errorf("erin from a new address: %+v, want locked (user)", d)
			}
			if d := login(t, s, home); d.Locked {
				t.Errorf("erin from her known source: %+v, want admitted", d)
			}
			// Known sources are per user: someone else there is not.
			if d := admitted(t, s, KeysFor("100.64.0.50", "frank@example.org")); d.Locked {
				t.Errorf("frank from erin's address: %+v", d)
			}
			// Only the known source's own failures lock it.
			for i := range 2 {
				if d := try(t, s, home); d.Locked {
					t.Fatalf("erin's typo %d at home: %+v", i+1, d)
				}
			}
			if d := try(t, s, home); !d.Tripped || d.Kind != "client" {
				t.Errorf("third failure from the known source: %+v, want its client locked", d)
			}
		})
		t.Run("no keys", func(t *testing.T) {
			if d := try(t, s, KeysFor("", "")); d.Locked || d.Delay != 0 {
				t.Errorf("an attempt without keys: %+v", d)
			}
		})
	})
}

// TestConcurrentReservations: 60 attempts at once against a maximum of
// 10 (the client's and the user's): exactly 10 are admitted, and all fail,
// so exactly one lockout starts and every later attempt is refused.
func TestConcurrentReservations(t *testing.T) {
	eachStore(t, maxima(10, 0, 10), func(t *testing.T, s Store) {
		ctx := context.Background()
		k := KeysFor("192.0.2.9", "john@example.org")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var held []Reservation
		refused := 0
		start := make(chan struct{})
		for range 60 {
			wg.Go(func() {
				<-start
				r, d, err := s.Reserve(ctx, k, false)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if d.Locked {
					if !d.Full {
						t.Errorf("refused as locked before any failure: %+v", d)
					}
					refused++
					return
				}
				held = append(held, r)
			})
		}
		close(start)
		wg.Wait()
		if len(held) != 10 || refused != 50 {
			t.Fatalf("%d admitted and %d refused of 60 at once, want 10 and 50", len(held), refused)
		}
		trips := 0
		for _, r := range held {
			wg.Go(func() {
				d, err := s.Fail(ctx, r)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if d.Tripped {
					trips++
				}
			})
		}
		wg.Wait()
		if trips != 1 {
			t.Errorf("%d lockouts started by the 10 failures, want 1", trips)
		}
		if d := admitted(t, s, k); !d.Locked || d.Full {
			t.Errorf("after 10 failures: %+v, want locked", d)
		}
	})
}

// TestReleaseGivesBack: an attempt that ends without a verdict frees its
// place, and successes free theirs.
func TestReleaseGivesBack(t *testing.T) {
	eachStore(t, maxima(2, 0, 0), func(t *testing.T, s Store) {
		ctx := context.Background()
		k := KeysFor("192.0.2.10", "x")
		for range 20 {
			r, d, err := s.Reserve(ctx, k, false)
			if err != nil || d.Locked {
				t.Fatalf("Reserve: %+v, %v", d, err)
			}
			if err := s.Release(ctx, r); err != nil {
				t.Fatal(err)
			}
			if d := login(t, s, k); d.Locked {
				t.Fatalf("login: %+v", d)
			}
		}
		r1, _, _ := s.Reserve(ctx, k, false)
		r2, _, _ := s.Reserve(ctx, k, false)
		if d := admitted(t, s, k); !d.Full {
			t.Errorf("a third attempt while two are in flight: %+v, want full", d)
		}
		s.Release(ctx, r1)
		s.Release(ctx, r2)
		if d := admitted(t, s, k); d.Locked {
			t.Errorf("after both were released: %+v", d)
		}
	})
}

// TestLostReservationExpires: a reservation never given back (its
// replica died) holds its place for MaxHold, each one on its own: later
// attempts of the same key do not keep it alive.
func TestLostReservationExpires(t *testing.T) {
	p := maxima(2, 0, 0)
	p.MaxHold = time.Second
	s, _ := redisStore(t, p)
	ctx := context.Background()
	k := KeysFor("192.0.2.11", "x")
	if _, d, err := s.Reserve(ctx, k, false); err != nil || d.Locked {
		t.Fatalf("Reserve: %+v, %v", d, err) // lost: never ended
	}
	time.Sleep(500 * time.Millisecond)
	// One place left; taken and given back, it refreshes the key.
	if d := admitted(t, s, k); d.Locked {
		t.Fatalf("the second place: %+v", d)
	}
	r, d, err := s.Reserve(ctx, k, false)
	if err != nil || d.Locked {
		t.Fatalf("Reserve: %+v, %v", d, err)
	}
	if d := admitted(t, s, k); !d.Full {
		t.Fatalf("with the lost reservation and one in flight: %+v, want full", d)
	}
	time.Sleep(600 * time.Millisecond) // the lost one is 1.1s old, the other 0.6s
	if d := admitted(t, s, k); d.Locked {
		t.Errorf("after the lost reservation's MaxHold: %+v, want a place free", d)
	}
	if err := s.Release(ctx, r); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryExpiry(t *testing.T) {
	m, c := newMemory(params)
	k := KeysFor("192.0.2.1", "eve")
	try(t, m, k)
	try(t, m, k)
	c.advance(params.Window)
	if d := try(t, m, k); d.Locked || d.Delay != 0 {
		t.Errorf("failure after the window: %+v, want a fresh count", d)
	}
	try(t, m, k)
	if d := try(t, m, k); !d.Tripped {
		t.Fatalf("third failure in the window: %+v, want a lockout", d)
	}
	c.advance(params.Lockout - time.Second)
	if d := admitted(t, m, k); !d.Locked || d.RetryAfter != time.Second {
		t.Errorf("a second before the end: %+v, want locked for 1s more", d)
	}
	c.advance(time.Second)
	if d := admitted(t, m, k); d.Locked {
		t.Errorf("after the lockout: %+v", d)
	}
	// The counts' window (10m) ended during the lockout (15m).
	if d := try(t, m, k); d.Locked || d.Delay != 0 {
		t.Errorf("first failure after the lockout: %+v", d)
	}
	login(t, m, KeysFor("192.0.2.2", "eve"))
	c.advance(params.Window)
	admitted(t, m, k)
	if n := m.Len(); n != 0 {
		t.Errorf("%d entries after everything expired, want 0", n)
	}
}

func TestMemoryBounded(t *testing.T) {
	p := params
	p.MaxPerUser = 1
	m, _ := newMemory(p)
	m.MaxEntries = 10
	for i := range 5 {
		if d := try(t, m, KeysFor("", fmt.Sprintf("locked%d", i))); !d.Tripped {
			t.Fatalf("user %d not locked: %+v", i, d)
		}
	}
	p.MaxPerUser = 0
	m.params = p
	for i := range 100 {
		try(t, m, KeysFor("", fmt.Sprintf("u%d", i)))
	}
	if n := m.Len(); n > 10 {
		t.Errorf("%d entries, want at most 10", n)
	}
	for i := range 5 {
		if d := admitted(t, m, KeysFor("", fmt.Sprintf("locked%d", i))); !d.Locked {
			t.Errorf("lockout %d evicted to make room for counts", i)
		}
	}
}

// TestRedisKeys: the keys expire, and hold no user name.
func TestRedisKeys(t *testing.T) {
	s, c := redisStore(t, params)
	ctx := context.Background()
	try(t, s, KeysFor("192.0.2.1", "Secret.Name@Example.org"))
	login(t, s, KeysFor("192.0.2.2", "Secret.Name@Example.org"))
	for range 3 {
		try(t, s, KeysFor("192.0.2.3", "other"))
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("nothing stored")
	}
	locks, known := 0, 0
	for _, k := range keys {
		if !strings.HasPrefix(k, KeyPrefix) {
			t.Errorf("key %q outside %s", k, KeyPrefix)
		}
		if strings.Contains(strings.ToLower(k), "secret.name") || strings.Contains(k, "other") {
			t.Errorf("key %q holds a user name", k)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		limit := params.Window
		switch {
		case strings.Contains(k, ":lock:"):
			limit = params.Lockout
			locks++
		case strings.Contains(k, ":known:"):
			limit = params.KnownSource
			known++
		case strings.Contains(k, ":inflight:"):
			t.Errorf("key %q: a reservation left in flight", k)
		}
		if ttl <= 0 || ttl > limit {
			t.Errorf("key %q expires in %v, want within %v", k, ttl, limit)
		}
	}
	if locks != 1 || known != 1 {
		t.Errorf("%d lock keys and %d known sources, want 1 (the client 192.0.2.3) and 1: %v", locks, known, keys)
	}
}

func TestNewRedisClientHidesPassword(t *testing.T) {
	_, err := NewRedisClient("http://user:hunter2@host/", time.Second)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v, want an error without the password", err)
	}
}
