package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// stores returns each implementation, empty, under the same params.
func stores(t *testing.T, p Params) map[string]Store {
	t.Helper()
	m, _ := newMemory(p)
	srv := redistest.Start(t)
	c, err := NewRedisClient(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return map[string]Store{"memory": m, "redis": NewRedis(c, p)}
}

func mustCheck(t *testing.T, s Store, k Keys) Decision {
	t.Helper()
	d, err := s.Check(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustFail(t *testing.T, s Store, k Keys) Decision {
	t.Helper()
	d, err := s.Fail(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStores runs the same story against both implementations.
func TestStores(t *testing.T) {
	for name, s := range stores(t, params) {
		t.Run(name, func(t *testing.T) {
			t.Run("client lockout after growing delays", func(t *testing.T) {
				k := KeysFor("192.0.2.1", "alice@example.org")
				var delays []time.Duration
				for i := range 2 {
					d := mustFail(t, s, KeysFor("192.0.2.1", fmt.Sprintf("user%d@example.org", i)))
					if d.Locked {
						t.Fatalf("failure %d locked: %+v", i+1, d)
					}
					delays = append(delays, d.Delay)
					if d := mustCheck(t, s, k); d.Locked {
						t.Fatalf("locked after %d failures: %+v", i+1, d)
					}
				}
				d := mustFail(t, s, k)
				delays = append(delays, d.Delay)
				if !d.Locked || !d.Tripped || d.Kind != "client" || d.Key != "192.0.2.1" || d.RetryAfter != params.Lockout {
					t.Errorf("third failure: %+v, want the client locked for %v", d, params.Lockout)
				}
				if want := []time.Duration{0, time.Second, 2 * time.Second}; fmt.Sprint(delays) != fmt.Sprint(want) {
					t.Errorf("delays %v, want %v", delays, want)
				}
				for _, user := range []string{"", "bob@example.org", "alice@example.org"} {
					if d := mustCheck(t, s, KeysFor("192.0.2.1", user)); !d.Locked || d.Kind != "client" {
						t.Errorf("Check(client, %q) = %+v, want locked by client", user, d)
					}
				}
				if d := mustCheck(t, s, KeysFor("192.0.2.2", "bob@example.org")); d.Locked {
					t.Errorf("a neighbour is locked: %+v", d)
				}
			})
			t.Run("network lockout", func(t *testing.T) {
				for i := range 4 {
					if d := mustFail(t, s, KeysFor(fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("n%d", i))); d.Locked {
						t.Fatalf("failure %d locked: %+v", i+1, d)
					}
				}
				d := mustFail(t, s, KeysFor("198.51.100.200", "n5"))
				if !d.Tripped || d.Kind != "network" || d.Key != "198.51.100.0/24" {
					t.Errorf("fifth failure in the network: %+v", d)
				}
				if d := mustCheck(t, s, KeysFor("198.51.100.99", "")); !d.Locked || d.Kind != "network" {
					t.Errorf("another address of the network: %+v, want locked", d)
				}
				if d := mustCheck(t, s, KeysFor("198.51.101.1", "")); d.Locked {
					t.Errorf("the next network is locked: %+v", d)
				}
			})
			t.Run("user lockout across networks and spellings", func(t *testing.T) {
				spellings := []string{"carol@example.org", "Carol@Example.org", " CAROL@EXAMPLE.ORG", "carol@example.ORG"}
				for i, u := range spellings {
					d := mustFail(t, s, KeysFor(fmt.Sprintf("203.0.%d.1", i), u))
					if (i == 3) != d.Tripped {
						t.Fatalf("failure %d: %+v", i+1, d)
					}
					if i == 3 && (d.Kind != "user" || d.Key != "carol@example.org") {
						t.Errorf("fourth failure: %+v, want the user locked", d)
					}
				}
				if d := mustCheck(t, s, KeysFor("2001:db8::5", "CAROL@example.org")); !d.Locked || d.Kind != "user" {
					t.Errorf("the user from elsewhere: %+v, want locked", d)
				}
			})
			t.Run("success resets client and user, not network", func(t *testing.T) {
				k := KeysFor("10.1.1.77", "dave@example.org")
				for range 2 {
					mustFail(t, s, k)
				}
				if err := s.Succeed(context.Background(), k); err != nil {
					t.Fatal(err)
				}
				for i := range 2 {
					d := mustFail(t, s, k)
					if want := time.Duration(i) * time.Second; d.Locked || d.Delay != want {
						t.Errorf("failure %d after a success: %+v, want no lock and a delay of %v", i+1, d, want)
					}
				}
				// 2 + 2 failures in 10.1.1.0/24: the fifth locks it.
				if d := mustFail(t, s, KeysFor("10.1.1.78", "")); !d.Tripped || d.Kind != "network" {
					t.Errorf("network after a success: %+v, want it still counted (locked)", d)
				}
			})
			t.Run("no keys", func(t *testing.T) {
				if d := mustFail(t, s, KeysFor("", "")); d.Locked || d.Delay != 0 {
					t.Errorf("Fail without keys: %+v", d)
				}
				if d := mustCheck(t, s, KeysFor("", "")); d.Locked {
					t.Errorf("Check without keys: %+v", d)
				}
			})
		})
	}
}

// TestConcurrentFailures: concurrent failures are each counted once, so a
// limit of 10 trips exactly 10 times in 100 failures.
func TestConcurrentFailures(t *testing.T) {
	p := params
	p.MaxPerClient, p.MaxPerNetwork, p.MaxPerUser = 10, 0, 0
	for name, s := range stores(t, p) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			trips := 0
			for range 100 {
				wg.Go(func() {
					d, err := s.Fail(context.Background(), KeysFor("192.0.2.9", "x"))
					if err != nil {
						t.Error(err)
					}
					if d.Tripped {
						mu.Lock()
						trips++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if trips != 10 {
				t.Errorf("%d lockouts in 100 failures with a limit of 10, want 10", trips)
			}
		})
	}
}

func TestMemoryExpiry(t *testing.T) {
	m, c := newMemory(params)
	k := KeysFor("192.0.2.1", "eve")
	mustFail(t, m, k)
	mustFail(t, m, k)
	c.advance(params.Window)
	if d := mustFail(t, m, k); d.Locked || d.Delay != 0 {
		t.Errorf("failure after the window: %+v, want a fresh count", d)
	}
	mustFail(t, m, k)
	if d := mustFail(t, m, k); !d.Tripped {
		t.Fatalf("third failure in the window: %+v, want a lockout", d)
	}
	c.advance(params.Lockout - time.Second)
	if d := mustCheck(t, m, k); !d.Locked || d.RetryAfter != time.Second {
		t.Errorf("a second before the end: %+v, want locked for 1s more", d)
	}
	c.advance(time.Second)
	if d := mustCheck(t, m, k); d.Locked {
		t.Errorf("after the lockout: %+v", d)
	}
	// The counts' window (10m) ended during the lockout (15m).
	if d := mustFail(t, m, k); d.Locked || d.Delay != 0 {
		t.Errorf("first failure after the lockout: %+v", d)
	}
	c.advance(params.Window)
	m.Check(context.Background(), k)
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
		if d := mustFail(t, m, KeysFor("", fmt.Sprintf("locked%d", i))); !d.Tripped {
			t.Fatalf("user %d not locked: %+v", i, d)
		}
	}
	p.MaxPerUser = 0
	m.params = p
	for i := range 100 {
		mustFail(t, m, KeysFor("", fmt.Sprintf("u%d", i)))
	}
	if n := m.Len(); n > 10 {
		t.Errorf("%d entries, want at most 10", n)
	}
	for i := range 5 {
		if d := mustCheck(t, m, KeysFor("", fmt.Sprintf("locked%d", i))); !d.Locked {
			t.Errorf("lockout %d evicted to make room for counts", i)
		}
	}
}

// TestRedisKeys: the keys expire, and hold no user name.
func TestRedisKeys(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewRedisClient(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewRedis(c, params)
	ctx := context.Background()
	mustFail(t, s, KeysFor("192.0.2.1", "Secret.Name@Example.org"))
	for range 3 {
		mustFail(t, s, KeysFor("192.0.2.3", "other"))
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("nothing stored")
	}
	locks := 0
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
		if strings.Contains(k, ":lock:") {
			limit = params.Lockout
			locks++
		}
		if ttl <= 0 || ttl > limit {
			t.Errorf("key %q expires in %v, want within %v", k, ttl, limit)
		}
	}
	if locks != 1 {
		t.Errorf("%d lock keys, want 1 (the client 192.0.2.3): %v", locks, keys)
	}
}

func TestNewRedisClientHidesPassword(t *testing.T) {
	_, err := NewRedisClient("http://user:hunter2@host/", time.Second)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v, want an error without the password", err)
	}
}
