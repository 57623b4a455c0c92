package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// count is how many times s stands in what l holds.
func count(l *logtest.Buffer, s string) int { return strings.Count(l.String(), s) }

// flaky is a shared Store that fails while down.
type flaky struct {
	mu     sync.Mutex
	down   bool
	calls  int
	locked bool
}

var errDown = errors.New("connection refused")

func (f *flaky) call() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return errDown
	}
	return nil
}

func (f *flaky) Reserve(_ context.Context, k Keys, known bool) (Reservation, Decision, error) {
	if err := f.call(); err != nil {
		return Reservation{}, Decision{}, err
	}
	if f.locked {
		return Reservation{}, Decision{Locked: true, Kind: "client", Key: "shared"}, nil
	}
	return Reservation{Keys: k, Known: known}, Decision{}, nil
}

func (f *flaky) Fail(context.Context, Reservation) (Decision, error) {
	return Decision{}, f.call()
}

func (f *flaky) Succeed(context.Context, Reservation) error { return f.call() }

func (f *flaky) Release(context.Context, Reservation) error { return f.call() }

func (f *flaky) set(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *flaky) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func newLimiter(shared Store) (*Limiter, *clock, *logtest.Buffer) {
	m, c := newMemory(params)
	logs := &logtest.Buffer{}
	return NewLimiter(shared, m, slog.New(slog.NewTextHandler(logs, nil))), c, logs
}

// lfail runs one failing attempt through l.
func lfail(l *Limiter, ctx context.Context, k Keys) (Decision, error) {
	h, d, err := l.Reserve(ctx, k)
	if err != nil || d.Locked {
		return d, err
	}
	return h.Fail(ctx), nil
}

// lcheck reports whether l admits k, and gives the place back.
func lcheck(l *Limiter, ctx context.Context, k Keys) (Decision, error) {
	h, d, err := l.Reserve(ctx, k)
	if h != nil {
		h.Release(ctx)
	}
	return d, err
}

func TestLimiterFallsBack(t *testing.T) {
	f := &flaky{down: true}
	l, c, logs := newLimiter(f)
	ctx := context.Background()
	k := KeysFor("192.0.2.1", "frank")
	for i := range 2 {
		if d, err := lfail(l, ctx, k); err != nil || d.Locked {
			t.Fatalf("failure %d: %+v, %v", i+1, d, err)
		}
	}
	d, err := lfail(l, ctx, k)
	if err != nil || !d.Tripped || d.Kind != "client" {
		t.Fatalf("third failure with redis down: %+v, %v, want the in-process lockout", d, err)
	}
	if d, err := lcheck(l, ctx, k); err != nil || !d.Locked {
		t.Errorf("Check with redis down: %+v, %v, want locked", d, err)
	}
	if n := f.Calls(); n != 1 {
		t.Errorf("redis asked %d times within the backoff, want once", n)
	}
	if n := count(logs, "redis failed"); n != 1 {
		t.Errorf("degradation logged %d times, want once:\n%s", n, logs)
	}
	if n := count(logs, "authentication lockout"); n != 1 {
		t.Errorf("lockout logged %d times, want once:\n%s", n, logs)
	}

	// A lockout known in process is answered without asking redis; a
	// stranger's check asks it again once the backoff is over.
	stranger := KeysFor("198.51.100.1", "judy")
	c.advance(l.Backoff)
	lcheck(l, ctx, stranger)
	if n := f.Calls(); n != 2 {
		t.Errorf("redis asked %d times after the backoff, want 2", n)
	}
	if n := count(logs, "redis failed"); n != 1 {
		t.Errorf("degradation logged %d times within WarnEvery, want once", n)
	}
	c.advance(l.WarnEvery)
	lcheck(l, ctx, stranger)
	if n := count(logs, "redis failed"); n != 2 {
		t.Errorf("degradation logged %d times after WarnEvery, want twice", n)
	}

	f.set(false)
	c.advance(l.Backoff)
	if d, err := lcheck(l, ctx, KeysFor("192.0.2.200", "grace")); err != nil || d.Locked {
		t.Errorf("Check of a stranger with redis back: %+v, %v", d, err)
	}
	if n := count(logs, "redis answers again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs)
	}
	// The in-process lockout still holds while redis knows nothing of it.
	if d, _ := lcheck(l, ctx, k); !d.Locked {
		t.Errorf("in-process lockout forgotten when redis came back: %+v", d)
	}
	f.locked = true
	if d, _ := lcheck(l, ctx, KeysFor("192.0.2.200", "grace")); !d.Locked || d.Key != "shared" {
		t.Errorf("a lockout known only to redis: %+v, want it to hold", d)
	}
}

func TestLimiterCancelled(t *testing.T) {
	f := &flaky{}
	l, _, logs := newLimiter(&cancelled{f})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lcheck(l, ctx, KeysFor("192.0.2.1", "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Check with a cancelled context: %v, want context.Canceled", err)
	}
	if count(logs, "redis failed") != 0 {
		t.Errorf("a cancelled caller is blamed on redis:\n%s", logs)
	}
}

// cancelled answers with the context's error, as go-redis does.
type cancelled struct{ *flaky }

func (c cancelled) Reserve(ctx context.Context, k Keys, known bool) (Reservation, Decision, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, Decision{}, err
	}
	return c.flaky.Reserve(ctx, k, known)
}

// TestLimiterRedisSilent: a Redis that accepts connections and never
// answers costs one timeout, then the in-process counts answer.
func TestLimiterRedisSilent(t *testing.T) {
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
	logs := &logtest.Buffer{}
	l, err := New(Options{Params: params, RedisURL: "redis://" + ln.Addr().String() + "/0", Timeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	k := KeysFor("192.0.2.1", "heidi")
	for i := range 3 {
		d, err := lfail(l, ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if (i == 2) != d.Tripped {
			t.Fatalf("failure %d: %+v", i+1, d)
		}
	}
	if d, err := lcheck(l, ctx, k); err != nil || !d.Locked {
		t.Errorf("Check: %+v, %v, want locked in process", d, err)
	}
	if !strings.Contains(logs.String(), "redis failed") {
		t.Errorf("degradation not logged:\n%s", logs)
	}
}

// TestLimiterRedisStopped: redis-server dies between failures; the
// failures counted before (kept in process too) and after add up.
func TestLimiterRedisStopped(t *testing.T) {
	srv := redistest.Start(t)
	logs := &logtest.Buffer{}
	l, err := New(Options{Params: params, RedisURL: srv.URL(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	k := KeysFor("192.0.2.1", "ivan")
	for i := range 2 {
		if d, err := lfail(l, ctx, k); err != nil || d.Locked {
			t.Fatalf("failure %d: %+v, %v", i+1, d, err)
		}
	}
	if strings.Contains(logs.String(), "redis failed") {
		t.Fatalf("redis failed while up:\n%s", logs)
	}
	srv.Stop()
	d, err := lfail(l, ctx, k)
	if err != nil || !d.Tripped {
		t.Errorf("third failure after redis stopped: %+v, %v, want the in-process lockout", d, err)
	}
	if d, err := lcheck(l, ctx, k); err != nil || !d.Locked {
		t.Errorf("Check after redis stopped: %+v, %v, want locked", d, err)
	}
	if !strings.Contains(logs.String(), "redis failed") {
		t.Errorf("degradation not logged:\n%s", logs)
	}
}

func BenchmarkReserveFail(b *testing.B) {
	ctx := context.Background()
	k := KeysFor("192.0.2.1", "bench@example.org")
	store := func(b *testing.B, s Store) {
		for b.Loop() {
			r, _, err := s.Reserve(ctx, k, false)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Fail(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		store(b, NewMemory(params))
	})
	b.Run("redis", func(b *testing.B) {
		s, _ := redisStore(b, params)
		store(b, s)
	})
	b.Run("limiter-redis", func(b *testing.B) {
		srv := redistest.Start(b)
		l, err := New(Options{Params: params, RedisURL: srv.URL()})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		for b.Loop() {
			if _, err := lfail(l, ctx, k); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLimiterKnownAcrossReplicas: a source made known through one replica
// is known to another that shares its Redis, and a source known only in
// process (made known while Redis was down) stays known when Redis is
// back.
func TestLimiterKnownAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	p := maxima(3, 0, 2)
	replica := func() *Limiter {
		l, err := New(Options{Params: p, RedisURL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := replica(), replica()
	ctx := context.Background()
	home := KeysFor("198.51.100.7", "kim@example.org")
	h, d, err := a.Reserve(ctx, home)
	if err != nil || d.Locked {
		t.Fatalf("kim at home through a: %+v, %v", d, err)
	}
	h.Succeed(ctx)
	// Two failures through b from elsewhere lock kim's unknown sources.
	for i := range 2 {
		if d, err := lfail(b, ctx, KeysFor(fmt.Sprintf("203.0.113.%d", i+1), "kim@example.org")); err != nil || d.Locked != (i == 1) {
			t.Fatalf("failure %d through b: %+v, %v", i+1, d, err)
		}
	}
	if d, _ := lcheck(b, ctx, KeysFor("192.0.2.99", "kim@example.org")); !d.Locked || d.Kind != "user" {
		t.Errorf("kim from a new address through b: %+v, want locked (user)", d)
	}
	h, d, err = b.Reserve(ctx, home)
	if err != nil || d.Locked || !h.Known() {
		t.Fatalf("kim at home through b, which never saw her log in: %+v, %v, known %v; want admitted as a known source", d, err, h != nil && h.Known())
	}
	h.Succeed(ctx)

	// A source made known while Redis is down stays known after.
	f := &flaky{down: true}
	l, c, _ := newLimiter(f)
	cafe := KeysFor("192.0.2.50", "lee@example.org")
	h, d, err = l.Reserve(ctx, cafe)
	if err != nil || d.Locked || h.shared != nil {
		t.Fatalf("lee with redis down: %+v, %v", d, err)
	}
	h.Succeed(ctx)
	f.set(false)
	c.advance(l.Backoff)
	h, d, err = l.Reserve(ctx, cafe)
	if err != nil || d.Locked || h.shared == nil || !h.shared.Known || !h.Known() {
		t.Fatalf("lee with redis back: %+v, %v; want the reservation known in redis too", d, err)
	}
	h.Release(ctx)
}
