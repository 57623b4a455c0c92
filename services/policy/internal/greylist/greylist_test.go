package greylist

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// postgrey's behaviour with a controllable clock, for both stores (the
// Redis one against a real redis-server).
func TestGreylist(t *testing.T) {
	p := Params{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour, AutoAllowlist: 2}
	srv := redistest.Start(t)
	c, err := redisclient.Open(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, s := range map[string]Store{"memory": NewMemory(p, 1000), "redis": NewRedis(c, p)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			t0 := time.Unix(1_800_000_000, 0)
			check := func(client, from, to string, at time.Duration) Result {
				t.Helper()
				r, err := s.Check(ctx, client, from, to, t0.Add(at))
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			if r := check("192.0.2.0/24", "a@x.example", "john@example.org", 0); r.Pass || r.Wait != 5*time.Minute {
				t.Fatalf("first attempt: %+v", r)
			}
			if r := check("192.0.2.0/24", "a@x.example", "john@example.org", time.Minute); r.Pass || r.Wait != 4*time.Minute {
				t.Fatalf("retry too early: %+v", r)
			}
			if r := check("192.0.2.0/24", "a@x.example", "john@example.org", 6*time.Minute); !r.Pass {
				t.Fatalf("retry after the delay: %+v", r)
			}
			if r := check("192.0.2.0/24", "a@x.example", "john@example.org", 30*24*time.Hour); !r.Pass {
				t.Fatalf("a known triplet a month later: %+v", r)
			}
			// Retry too late: greylisted again.
			if r := check("198.51.100.0/24", "b@y.example", "john@example.org", 0); r.Pass {
				t.Fatal("new triplet passed")
			}
			if r := check("198.51.100.0/24", "b@y.example", "john@example.org", 49*time.Hour); r.Pass {
				t.Fatal("a retry after the retry window passed")
			}
			// A second passed triplet allowlists the first client network.
			check("192.0.2.0/24", "c@x.example", "lisa@example.org", 0)
			check("192.0.2.0/24", "c@x.example", "lisa@example.org", 6*time.Minute)
			if r := check("192.0.2.0/24", "new@x.example", "mary@example.org", 7*time.Minute); !r.Pass || !r.Allowlisted {
				t.Fatalf("client network after two passes: %+v", r)
			}
		})
	}
	srv.Stop()
	if _, err := NewRedis(c, p).Check(context.Background(), "a", "b", "c", time.Now()); !errors.Is(err, ErrStore) {
		t.Errorf("Redis down: %v, want ErrStore", err)
	}
}
