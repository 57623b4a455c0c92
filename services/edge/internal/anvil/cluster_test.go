package anvil

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// TestOnCluster counts connections of two edges on a real 3-master Redis
// Cluster through a redis+cluster:// URL: each admission's script touches
// the client's leases and rate counter and its network's leases, which
// share a slot; the leases of 10,000 clients spread over every master;
// a count limit of 3 lets exactly 3 connections in, leases renewed (a
// pipeline across slots) keep counting past their TTL, and a released
// one makes room.
func TestOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	twoEdges := func(ttl time.Duration) (edges [2]*Counter) {
		for i := range edges {
			rc, err := redisclient.Open(cl.URL(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rc.Close() })
			edges[i] = New(rc, nil, nil)
			edges[i].TTL, edges[i].Timeout = ttl, 5*time.Second
			t.Cleanup(edges[i].Close)
		}
		return edges
	}
	edges := twoEdges(DefaultTTL)
	ctx := context.Background()
	l := Limits{Count: 3, Rate: 100, Unit: time.Hour, Network: 50}
	const clients = 10000
	key := func(i int) Key {
		return Key{Client: fmt.Sprintf("25|10.%d.%d.%d", i>>10, (i>>2)&255, i&3), Network: fmt.Sprintf("25|10.%d.%d.0/24", i>>10, (i>>2)&255)}
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	var releases []func()
	for w := range 8 {
		wg.Go(func() {
			for i := range work {
				d, release, err := edges[w%2].Admit(ctx, key(i), l)
				mu.Lock()
				releases = append(releases, release)
				if err != nil || !d.Admitted || d.Count != 1 || d.Rate != 1 {
					bad = append(bad, fmt.Sprintf("client %d: %+v, %v", i, d, err))
				}
				mu.Unlock()
			}
		})
	}
	for i := range clients {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d first connections not admitted alone, e.g. %s", len(bad), bad[0])
	}
	counts, total := cl.KeysPerNode(t, KeyPrefix+"*"), 0
	for i, n := range counts {
		total += n
		if n < 3*clients/5 {
			t.Errorf("master %d holds %d keys, want at least %d (per master: %v)", i, n, 3*clients/5, counts)
		}
	}
	// Per client its leases and rate counter; per network (of 4
	// clients) its leases.
	if want := 2*clients + clients/4; total != want {
		t.Errorf("%d keys on the masters, want %d", total, want)
	}
	t.Logf("keys of %d clients per master: %v", clients, counts)
	for _, release := range releases {
		release()
	}

	edges = twoEdges(900 * time.Millisecond)
	for i := range 5 {
		k := key(clients + 4*i)
		var held []func()
		for n := range 5 {
			d, release, err := edges[n%2].Admit(ctx, k, l)
			if err != nil {
				t.Fatalf("client %d, connection %d: %v", i, n+1, err)
			}
			if d.Admitted {
				held = append(held, release)
			}
		}
		if len(held) != 3 {
			t.Fatalf("client %d: %d of 5 connections admitted, want exactly 3", i, len(held))
		}
		if i == 0 {
			time.Sleep(3 * edges[0].TTL) // the leases live on renewed
		}
		if d, _, err := edges[0].Admit(ctx, k, l); err != nil || d.Admitted || d.Count != 3 {
			t.Fatalf("client %d, a 4th connection with 3 held: %+v, %v", i, d, err)
		}
		held[0]()
		d, release, err := edges[1].Admit(ctx, k, l)
		if err != nil || !d.Admitted || d.Count != 3 {
			t.Fatalf("client %d, a connection after a release: %+v, %v", i, d, err)
		}
		release()
		for _, r := range held[1:] {
			r()
		}
	}
}
