package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// TestSentinelFailover counts through a redis+sentinel:// URL on a real
// Sentinel set (a primary, a replica, three Sentinels) and kills the
// primary (SIGKILL) under a load of checks on 200 clients that have used
// their whole limit: while the replica is promoted, every check is
// refused or fails (the caller's documented fail mode, counted), never
// allowed; afterwards the limiter answers from the new primary and a
// limit of 5 lets exactly 5 events through.
func TestSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	c, err := redisclient.Open(set.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, ctx := NewRedis(c), context.Background()
	l := Limit{Count: 5, Window: time.Hour}
	const clients = 200
	client := func(i int) string { return fmt.Sprintf("192.0.2.%d/%d", i&255, i>>8) }
	for i := range clients {
		for range 5 {
			if d, err := r.Allow(ctx, "client", client(i), 1, l); err != nil || !d.Allowed {
				t.Fatalf("client %d within its limit: %+v, %v", i, d, err)
			}
		}
	}
	// What the primary counted is on the replica before it dies.
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	if got := set.PrimaryAddr(t); got != set.Primary.Addr {
		t.Fatalf("primary %s, want %s", got, set.Primary.Addr)
	}

	var refused, failed, wrong atomic.Int64
	var firstFail, lastFail atomic.Int64 // unix ns
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
				d, err := r.Allow(ctx, "client", client(n%clients), 1, l)
				switch {
				case err != nil:
					if !errors.Is(err, ErrStore) {
						t.Errorf("an error not wrapping ErrStore: %v", err)
					}
					now := time.Now().UnixNano()
					firstFail.CompareAndSwap(0, now)
					lastFail.Store(now)
					failed.Add(1)
				case d.Allowed:
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
	for {
		if addr := set.PrimaryAddr(t); addr == set.Replica.Addr {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no failover within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	promoted := time.Now()
	// Checks go on until the limiter answers again for a while.
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
		t.Errorf("%d checks allowed a client past its limit across the failover", wrong.Load())
	}
	if failed.Load() == 0 || refused.Load() == 0 {
		t.Errorf("refused %d, failed %d: the load did not span the failover", refused.Load(), failed.Load())
	}
	var outage time.Duration
	if f := firstFail.Load(); f != 0 {
		outage = time.Duration(lastFail.Load() - f)
	}
	t.Logf("primary killed; replica promoted after %s; %d checks refused, %d failed (fell back) over %s",
		promoted.Sub(killed).Round(10*time.Millisecond), refused.Load(), failed.Load(), outage.Round(10*time.Millisecond))

	allowed := 0
	for range 8 {
		d, err := r.Allow(ctx, "client", "198.51.100.1", 1, l)
		if err != nil {
			t.Fatalf("after the failover: %v", err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Errorf("after the failover %d of 8 events allowed, want exactly 5", allowed)
	}
}
