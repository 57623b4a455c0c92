package anvil

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// TestSentinelFailover counts connections of two edges through a
// redis+sentinel:// URL on a real Sentinel set (a primary, a replica,
// three Sentinels) and kills the primary (SIGKILL) while 8 workers try
// to open more connections for 50 clients that hold their limit of 3:
// while the replica is promoted every try is refused or fails
// (ErrUnavailable: the edge then decides with its own counts), never
// admitted by Redis; afterwards, and longer than a lease lives
// unrenewed, the held leases still count (renewed on the new primary): a
// 4th connection is refused and a released one makes room.
func TestSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	var edges [2]*Counter
	var rc redis.UniversalClient
	for i := range edges {
		var err error
		rc, err = redisclient.Open(set.URL(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		edges[i] = New(rc, nil, nil)
		edges[i].TTL, edges[i].Timeout, edges[i].Backoff = 6*time.Second, time.Second, 100*time.Millisecond
		t.Cleanup(edges[i].Close)
	}
	ctx := context.Background()
	l := Limits{Count: 3}
	const clients = 50
	key := func(i int) Key { return Key{Client: fmt.Sprintf("25|192.0.2.%d", i)} }
	held := make([][]func(), clients)
	for i := range clients {
		for n := range 3 {
			d, release, err := edges[n%2].Admit(ctx, key(i), l)
			if err != nil || !d.Admitted {
				t.Fatalf("client %d, connection %d: %+v, %v", i, n+1, d, err)
			}
			held[i] = append(held[i], release)
		}
	}
	if n, err := rc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}

	var refused, failed, wrong atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := w; ; n += 8 {
				select {
				case <-stop:
					return
				default:
				}
				d, release, err := edges[w%2].Admit(ctx, key(n%clients), l)
				release()
				switch {
				case err != nil:
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("an error not wrapping ErrUnavailable: %v", err)
					}
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
				case d.Admitted:
					wrong.Add(1)
				default:
					refused.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	set.Primary.Stop() // SIGKILL
	killed := time.Now()
	deadline := killed.Add(60 * time.Second)
	for set.PrimaryAddr(t) != set.Replica.Addr {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatal("no failover within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	promoted := time.Now()
	for {
		before := failed.Load()
		time.Sleep(time.Second)
		if failed.Load() == before || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	wg.Wait()
	if wrong.Load() != 0 {
		t.Errorf("%d connections admitted past a limit of 3 across the failover", wrong.Load())
	}
	if failed.Load() == 0 || refused.Load() == 0 {
		t.Errorf("refused %d, failed %d: the load did not span the failover", refused.Load(), failed.Load())
	}
	t.Logf("primary killed; replica promoted after %s; %d connections refused, %d decided per edge",
		promoted.Sub(killed).Round(10*time.Millisecond), refused.Load(), failed.Load())
	// Longer than a lease lives unrenewed: the leases held count only if
	// renewed on the new primary.
	time.Sleep(edges[0].TTL + time.Second)

	for i := range clients {
		if d, _, err := edges[i%2].Admit(ctx, key(i), l); err != nil || d.Admitted || d.Count != 3 {
			t.Fatalf("client %d after the failover, a 4th connection: %+v, %v", i, d, err)
		}
		held[i][0]()
		d, release, err := edges[(i+1)%2].Admit(ctx, key(i), l)
		if err != nil || !d.Admitted || d.Count != 3 {
			t.Fatalf("client %d after the failover, a connection after a release: %+v, %v", i, d, err)
		}
		release()
		for _, r := range held[i][1:] {
			r()
		}
	}
}
