package policy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/telemetry"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// countingUsers is an AuthService over gRPC whose users can be added and
// removed, that counts its LookupUser calls and can be made to fail.
type countingUsers struct {
	authv1.UnimplementedAuthServiceServer
	calls atomic.Int64
	fail  atomic.Bool
	mu    sync.Mutex
	names map[string]bool
}

func (u *countingUsers) LookupUser(_ context.Context, req *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	u.calls.Add(1)
	if u.fail.Load() {
		return nil, status.Error(codes.Internal, "user database failed")
	}
	name := strings.ToLower(req.GetUsername())
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names[name] {
		return &authv1.LookupUserResponse{Exists: true, Username: name}, nil
	}
	return &authv1.LookupUserResponse{}, nil
}

func (u *countingUsers) set(name string, exists bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.names[name] = exists
}

// fakeClock is a clock moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// userCacheServer starts an auth service with john@example.org and a
// policy server with local_recipient_maps = auth:users and
// smtpgate_auth_users_cache_time = cacheTime on clock (nil: time.Now).
func userCacheServer(t testing.TB, cacheTime string, clock *fakeClock, reg *prometheus.Registry) (*Server, *countingUsers) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	users := &countingUsers{names: map[string]bool{"john@example.org": true}}
	g := grpc.NewServer()
	authv1.RegisterAuthServiceServer(g, users)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+`
smtpgate_auth_service = `+lis.Addr().String()+`
smtpgate_auth_timeout = 2s
smtpgate_auth_users_cache_time = `+cacheTime+`
local_recipient_maps = auth:users
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir())}
	if clock != nil {
		cfg.Now = clock.Now
	}
	if reg != nil {
		cfg.Metrics = reg
	}
	srv := newServer(t, cfg)
	return srv, users
}

const unknownUser = "<nobody@example.org>: Recipient address rejected: User unknown in local recipient table"

// rcptVerdict asks srv about a stranger's RCPT TO rcpt.
func rcptVerdict(t *testing.T, srv *Server, rcpt string) (*policyv1.Verdict, error) {
	t.Helper()
	resp, err := srv.handler.Check(context.Background(), rcptRequest("", "203.0.113.5", rcpt))
	return resp.GetVerdict(), err
}

// TestAuthUsersCacheHit: with smtpgate_auth_users_cache_time = 10s an
// existing user is asked about once, accepted from memory until the 10 s
// are over (even after being deleted), and asked about again after.
func TestAuthUsersCacheHit(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)}
	reg := telemetry.NewRegistry("policy")
	srv, users := userCacheServer(t, "10s", clock, reg)

	for i := range 5 {
		v, err := rcptVerdict(t, srv, "john@example.org")
		if err != nil || v.GetAction() != policyv1.Action_ACTION_PERMIT {
			t.Fatalf("check %d of john: %v %v", i, v, err)
		}
		clock.advance(time.Second)
	}
	if n := users.calls.Load(); n != 1 {
		t.Errorf("5 checks of john within 10 s: %d LookupUser calls, want 1", n)
	}

	// Deleted: still accepted until 10 s after the first answer...
	users.set("john@example.org", false)
	clock.advance(4 * time.Second) // 9 s after the answer
	if v, err := rcptVerdict(t, srv, "john@example.org"); err != nil || v.GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Errorf("deleted john, 9 s after the answer: %v %v, want still permitted from the cache", v, err)
	}
	if n := users.calls.Load(); n != 1 {
		t.Errorf("LookupUser calls: %d, want still 1", n)
	}
	// ...and refused once the answer expired.
	clock.advance(time.Second) // 10 s
	v, err := rcptVerdict(t, srv, "john@example.org")
	if err != nil || v.GetCode() != 550 {
		t.Errorf("deleted john, 10 s after the answer: %v %v, want 550", v, err)
	}
	if n := users.calls.Load(); n != 2 {
		t.Errorf("LookupUser calls after expiry: %d, want 2", n)
	}

	body := scrape(t, reg)
	for _, want := range []string{
		`smtpgate_policy_auth_user_lookups_total{result="hit"} 5`,
		`smtpgate_policy_auth_user_lookups_total{result="miss"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics:\n%s", want, grepSmtpgate(body))
		}
	}
}

// TestAuthUsersCacheNegative: "no such user" is never remembered, so a
// user created a moment later is accepted at once.
func TestAuthUsersCacheNegative(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)}
	srv, users := userCacheServer(t, "10s", clock, nil)
	for i := range 3 {
		v, err := rcptVerdict(t, srv, "nobody@example.org")
		if err != nil || v.GetCode() != 550 || v.GetText() != unknownUser {
			t.Fatalf("check %d of nobody: %v %v, want 550 User unknown", i, v, err)
		}
	}
	if n := users.calls.Load(); n != 3 {
		t.Errorf("3 checks of an unknown user: %d LookupUser calls, want 3", n)
	}
	users.set("nobody@example.org", true)
	if v, err := rcptVerdict(t, srv, "nobody@example.org"); err != nil || v.GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Errorf("user just created: %v %v, want permitted at once", v, err)
	}
}

// TestAuthUsersCacheError: a failed LookupUser is never remembered: each
// check fails (the edge answers 451) and asks again, and the first answer
// after the outage counts.
func TestAuthUsersCacheError(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)}
	srv, users := userCacheServer(t, "10s", clock, nil)
	users.fail.Store(true)
	for i := range 3 {
		v, err := rcptVerdict(t, srv, "john@example.org")
		if err == nil {
			t.Fatalf("check %d while auth fails: %v, want an error (fail closed)", i, v)
		}
	}
	if n := users.calls.Load(); n != 3 {
		t.Errorf("3 checks while auth fails: %d LookupUser calls, want 3", n)
	}
	users.fail.Store(false)
	if v, err := rcptVerdict(t, srv, "john@example.org"); err != nil || v.GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Errorf("after the outage: %v %v, want permitted", v, err)
	}
	if n := users.calls.Load(); n != 4 {
		t.Errorf("LookupUser calls after the outage: %d, want 4", n)
	}
}

// TestUserCacheBounded: the cache never holds more than its size, and is
// safe for concurrent use (run with -race).
func TestUserCacheBounded(t *testing.T) {
	c := newUserCache(time.Minute, 100, nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				key := fmt.Sprintf("u%d-%d@example.org", w, i)
				c.put(key, key)
				if name, ok := c.get(key); ok && name != key {
					t.Errorf("get %s: %s", key, name)
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 100 {
		t.Errorf("cache holds %d users, want at most 100", n)
	}
	if newUserCache(0, 100, nil) != nil {
		t.Error("smtpgate_auth_users_cache_time = 0 gives a cache")
	}
}

// BenchmarkCheckAuthUsers is a stranger's RCPT TO to a local user with
// local_recipient_maps = auth:users, smtpgate-auth on loopback gRPC:
// every Check asks LookupUser (cache off) or the answer is remembered.
func BenchmarkCheckAuthUsers(b *testing.B) {
	for _, c := range []struct{ name, cacheTime string }{{"cache-off", "0"}, {"cache-10s", "10s"}} {
		b.Run(c.name, func(b *testing.B) {
			srv, users := userCacheServer(b, c.cacheTime, nil, nil)
			req := rcptRequest("", "203.0.113.5", "john@example.org")
			ctx := context.Background()
			var ds []time.Duration
			for b.Loop() {
				t0 := time.Now()
				resp, err := srv.handler.Check(ctx, req)
				ds = append(ds, time.Since(t0))
				if err != nil || resp.GetVerdict().GetAction() != policyv1.Action_ACTION_PERMIT {
					b.Fatalf("%v %v", resp.GetVerdict(), err)
				}
			}
			reportLatency(b, ds)
			b.ReportMetric(float64(users.calls.Load())/float64(len(ds)), "lookups/op")
		})
	}
}
