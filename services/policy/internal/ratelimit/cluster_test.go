package ratelimit

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

// TestOnCluster counts on a real 3-master Redis Cluster through a
// redis+cluster:// URL: the keys of 10,000 clients spread over every
// master, and a limit of 5 lets exactly 5 events of a client through,
// also once the masters have lost the script.
func TestOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c, err := redisclient.Open(cl.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, ctx := NewRedis(c), context.Background()
	l := Limit{Count: 5, Window: time.Hour}
	const clients = 10000
	client := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255) }
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for range 8 {
		wg.Go(func() {
			for i := range work {
				d, err := r.Allow(ctx, "client", client(i), 1, l)
				if err != nil || !d.Allowed || d.Used != 1 {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("client %d: %+v, %v", i, d, err))
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
		t.Fatalf("%d first events not allowed, e.g. %s", len(bad), bad[0])
	}
	// As after a failover to a replica or a resharding: the masters have
	// lost the scripts, and EVALSHA's NOSCRIPT falls back to EVAL.
	if err := c.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.ScriptFlush(ctx).Err()
	}); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	for i := range 20 {
		allowed := 1
		for range 7 {
			d, err := r.Allow(ctx, "client", client(i), 1, l)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if d.Allowed {
				allowed++
			}
		}
		if allowed != 5 {
			t.Errorf("client %d: %d of 8 events allowed, want exactly 5", i, allowed)
		}
	}
	counts, total := cl.KeysPerNode(t, KeyPrefix+"*"), 0
	for i, n := range counts {
		total += n
		if n < clients/5 {
			t.Errorf("master %d holds %d of %d clients' keys, want at least %d (per master: %v)", i, n, clients, clients/5, counts)
		}
	}
	if total != clients {
		t.Errorf("%d keys on the masters, want %d", total, clients)
	}
	t.Logf("keys of %d clients per master: %v", clients, counts)
}
