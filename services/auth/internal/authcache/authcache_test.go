package authcache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newCache(t *testing.T, size int, ttl time.Duration) (*Cache, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := New(Options{Size: size, TTL: ttl, Now: clk.now})
	if err != nil || c == nil {
		t.Fatalf("New: %v, %v", c, err)
	}
	return c, clk
}

func TestRemembersOnlyTheSameTuple(t *testing.T) {
	c, _ := newCache(t, 10, time.Minute)
	c.Remember(Password, "john", "v1", []byte("secret"))
	if !c.Known(Password, "john", "v1", []byte("secret")) {
		t.Fatal("a remembered success is not known")
	}
	for _, tc := range []struct{ family, user, version, pw string }{
		{Password, "john", "v1", "Secret"},
		{Password, "john", "v1", "secret "},
		{Password, "john", "v1", ""},
		{Password, "jane", "v1", "secret"},
		{Password, "John", "v1", "secret"},
		{Password, "john", "v2", "secret"}, // the stored hash changed
		{Password, "john", "", "secret"},
		{"other", "john", "v1", "secret"},
		// Length prefixes: moving bytes between fields is another tuple.
		{Password, "johnv", "1", "secret"},
		{Password, "john", "v1s", "ecret"},
	} {
		if c.Known(tc.family, tc.user, tc.version, []byte(tc.pw)) {
			t.Errorf("%+v is known", tc)
		}
	}
}

func TestTTLFromAddingNotExtendedByHits(t *testing.T) {
	c, clk := newCache(t, 10, time.Minute)
	c.Remember(Password, "john", "", []byte("pw"))
	for range 5 {
		clk.t = clk.t.Add(11 * time.Second)
		if !c.Known(Password, "john", "", []byte("pw")) {
			t.Fatalf("gone after %v", clk.t)
		}
	}
	clk.t = clk.t.Add(5 * time.Second) // 60 s after it was added
	if c.Known(Password, "john", "", []byte("pw")) {
		t.Fatal("known a TTL after it was added, although hits came in between")
	}
	if c.Len() != 0 {
		t.Errorf("expired entry kept: %d", c.Len())
	}
}

func TestFailuresAndErrorsNotRemembered(t *testing.T) {
	c, _ := newCache(t, 10, time.Minute)
	calls := 0
	for _, v := range []struct {
		ok  bool
		err error
	}{{false, nil}, {true, errors.New("backend down")}, {false, errors.New("x")}} {
		ok, hit, err := c.Verify(Password, "john", "", []byte("pw"), func() (bool, error) { calls++; return v.ok, v.err })
		if hit || ok != v.ok || !errors.Is(err, v.err) {
			t.Errorf("Verify = %v %v %v for %+v", ok, hit, err, v)
		}
		if c.Known(Password, "john", "", []byte("pw")) {
			t.Errorf("%+v was remembered", v)
		}
	}
	if ok, hit, _ := c.Verify(Password, "john", "", []byte("pw"), func() (bool, error) { calls++; return true, nil }); !ok || hit {
		t.Fatal("a success was not passed through")
	}
	if ok, hit, _ := c.Verify(Password, "john", "", []byte("pw"), func() (bool, error) { calls++; return false, nil }); !ok || !hit {
		t.Fatal("a remembered success was verified again")
	}
	if calls != 4 {
		t.Errorf("verify called %d times, want 4", calls)
	}
}

func TestBoundedLRU(t *testing.T) {
	c, _ := newCache(t, 3, time.Hour)
	for i := range 3 {
		c.Remember(Password, fmt.Sprint(i), "", []byte("pw"))
	}
	c.Known(Password, "0", "", []byte("pw")) // 0 is now the most recent
	c.Remember(Password, "3", "", []byte("pw"))
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	for user, want := range map[string]bool{"0": true, "1": false, "2": true, "3": true} {
		if got := c.Known(Password, user, "", []byte("pw")); got != want {
			t.Errorf("user %s known %v, want %v", user, got, want)
		}
	}
	for i := range 1000 {
		c.Remember(Password, fmt.Sprint(i), "", []byte("pw"))
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d after 1000 adds, want 3", c.Len())
	}
}

func TestOff(t *testing.T) {
	for _, o := range []Options{{Size: 0, TTL: time.Hour}, {Size: 10, TTL: 0}} {
		c, err := New(o)
		if err != nil || c != nil {
			t.Fatalf("New(%+v) = %v, %v; want an off cache", o, c, err)
		}
		c.Remember(Password, "john", "", []byte("pw"))
		calls := 0
		for range 2 {
			if ok, hit, _ := c.Verify(Password, "john", "", []byte("pw"), func() (bool, error) { calls++; return true, nil }); !ok || hit {
				t.Error("an off cache answered")
			}
		}
		if calls != 2 || c.Len() != 0 {
			t.Errorf("off cache: %d calls, %d entries", calls, c.Len())
		}
	}
}

// TestKeyedPerProcess: what is kept is a MAC under a random key, neither
// the password nor a hash anyone could compute without the key, and two
// processes (caches) name the same success differently.
func TestKeyedPerProcess(t *testing.T) {
	a, _ := newCache(t, 10, time.Hour)
	b, _ := newCache(t, 10, time.Hour)
	pw := []byte("a-password-to-find")
	a.Remember(Password, "john", "", pw)
	ma, mb := a.mac(Password, "john", "", pw), b.mac(Password, "john", "", pw)
	if ma == mb {
		t.Fatal("two caches share a key")
	}
	plain := sha256.Sum256(pw)
	for k := range a.entries {
		if k == plain || bytes.Contains(k[:], pw) || k != ma {
			t.Errorf("entry %x is not the keyed MAC", k)
		}
	}
}

// TestMemoryPerEntry: a full cache of 100,000 entries costs at most
// EntryBytes each.
func TestMemoryPerEntry(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, _ := newCache(t, n, time.Hour)
	for i := range n {
		c.Remember(Password, fmt.Sprintf("user%d@example.org", i), "", []byte("pw"))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	t.Logf("%d bytes per entry", per)
	if per > EntryBytes {
		t.Errorf("%d bytes per entry, budget %d", per, EntryBytes)
	}
	runtime.KeepAlive(c)
}

func BenchmarkKnown(b *testing.B) {
	c, err := New(Options{Size: 1000, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	c.Remember(Password, "john@example.org", "{SHA512-CRYPT}$6$x$y", []byte("john-example-password"))
	for b.Loop() {
		if !c.Known(Password, "john@example.org", "{SHA512-CRYPT}$6$x$y", []byte("john-example-password")) {
			b.Fatal("miss")
		}
	}
}

// TestConcurrent: many callers at once (run with -race) never grow the
// cache past its size, and a full cache stays full.
func TestConcurrent(t *testing.T) {
	c, _ := newCache(t, 64, time.Hour)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				user := fmt.Sprintf("u%d-%d", g, i%16)
				c.Remember(Password, user, "", []byte("pw"))
				c.Known(Password, user, "", []byte("pw"))
				if n := c.Len(); n > 64 {
					t.Errorf("Len %d > 64", n)
					return
				}
			}
		})
	}
	wg.Wait()
	if c.Len() != 64 {
		t.Errorf("Len = %d after 8x16 distinct users, want 64", c.Len())
	}
}
