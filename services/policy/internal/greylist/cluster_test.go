package greylist

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// TestOnCluster greylists on a real 3-master Redis Cluster through a
// redis+cluster:// URL: each decision's script touches a triplet and its
// client's pass counter, which share a slot; a first delivery is deferred,
// a retry after the delay passes, two passes allowlist the client, and
// the keys of 10,000 clients spread over every master.
func TestOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c, err := redisclient.Open(cl.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := Params{Delay: time.Minute, RetryWindow: time.Hour, MaxAge: 24 * time.Hour, AutoAllowlist: 2}
	r, ctx := NewRedis(c, p), context.Background()
	t0 := time.Now()
	const clients = 10000
	client := func(i int) string { return fmt.Sprintf("10.%d.%d", i>>8, i&255) }
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for range 8 {
		wg.Go(func() {
			for i := range work {
				res, err := r.Check(ctx, client(i), "s@example.org", "r@example.net", t0)
				if err != nil || res.Pass || res.Wait != p.Delay {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("client %d: %+v, %v", i, res, err))
					mu.Unlock()
				}
			}
		})
	}
	for i := range clients {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d first deliveries not deferred by the delay, e.g. %s", len(bad), bad[0])
	}
	// As after a failover to a replica or a resharding: the masters have
	// lost the scripts, and EVALSHA's NOSCRIPT falls back to EVAL.
	if err := c.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.ScriptFlush(ctx).Err()
	}); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	for i := range 20 {
		steps := []struct {
			rcpt  string
			at    time.Duration
			want  Result
			about string
		}{
			{"r@example.net", 30 * time.Second, Result{Wait: 30 * time.Second}, "retry too early"},
			{"r@example.net", 2 * time.Minute, Result{Pass: true}, "retry after the delay"},
			{"r2@example.net", 2 * time.Minute, Result{Wait: time.Minute}, "second triplet, first time"},
			{"r2@example.net", 4 * time.Minute, Result{Pass: true}, "second triplet, retried"},
			{"r3@example.net", 5 * time.Minute, Result{Pass: true, Allowlisted: true}, "third triplet of a client with 2 passes"},
		}
		for _, s := range steps {
			res, err := r.Check(ctx, client(i), "s@example.org", s.rcpt, t0.Add(s.at))
			if err != nil || res != s.want {
				t.Fatalf("client %d, %s: %+v, %v; want %+v", i, s.about, res, err, s.want)
			}
		}
	}
	counts, total := cl.KeysPerNode(t, KeyPrefix+"*"), 0
	for i, n := range counts {
		total += n
		if n < clients/5 {
			t.Errorf("master %d holds %d keys, want at least %d (per master: %v)", i, n, clients/5, counts)
		}
	}
	// 10,000 first triplets, and for 20 clients a second triplet and a
	// pass counter.
	if want := clients + 20*2; total != want {
		t.Errorf("%d keys on the masters, want %d", total, want)
	}
	t.Logf("keys of %d clients per master: %v", clients, counts)
}
