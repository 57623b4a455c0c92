package smtpd

import (
	"context"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
	"github.com/smtpgate/smtpgate/services/edge/internal/anvil"
)

// Two edges' ConnLimits sharing one Redis: the count limit holds across
// them, on listeners of one port bound to different hosts; exempt
// clients and the total cap stay local; with Redis stopped each edge
// applies the limit to its own connections.
func TestConnLimitsCluster(t *testing.T) {
	srv := redistest.Start(t)
	edges := make([]*ConnLimits, 2)
	for i := range edges {
		rc, err := redisclient.Open(srv.URL(), 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		c := anvil.New(rc, nil, nil)
		c.Backoff = 0
		defer c.Close()
		edges[i] = &ConnLimits{Max: 3, Cluster: c}
	}
	listeners := []*Listener{
		{Name: "192.0.2.10:25", Hostname: "mx.example", ConnectionCountLimit: 2},
		{Name: "192.0.2.11:25", Hostname: "mx.example", ConnectionCountLimit: 2},
	}
	ctx := context.Background()
	admit := func(i int, addr string, exempt bool) (string, bool, func()) {
		a := edges[i].admit(ctx, listeners[i], addr, exempt)
		if a.ok {
			return "ok", a.shared, a.release
		}
		return a.r.Text(), a.shared, a.release
	}
	const tooMany = "421 4.7.0 mx.example Error: too many connections from 192.0.2.1"
	got0, shared, r0 := admit(0, "192.0.2.1", false)
	if got0 != "ok" || !shared {
		t.Fatalf("first: %q shared=%v", got0, shared)
	}
	got1, _, r1 := admit(1, "192.0.2.1", false)
	got2, shared, r2 := admit(1, "192.0.2.1", false)
	if got1 != "ok" || got2 != tooMany || !shared {
		t.Errorf("across edges: %q %q shared=%v, want ok then %q", got1, got2, shared, tooMany)
	}
	r2()
	// Exempt clients are not counted in Redis; the total cap is local.
	_, shared, re := admit(1, "192.0.2.1", true)
	if shared {
		t.Error("an exempt client was counted across edges")
	}
	_, _, rx := admit(1, "192.0.2.99", true)
	if got, _, r := admit(1, "192.0.2.98", false); got != "421 4.3.2 All server ports are busy" {
		t.Errorf("total cap: %q", got)
	} else {
		r()
	}
	re()
	rx()
	r1()
	if got, _, r := admit(1, "192.0.2.1", false); got != "ok" {
		t.Errorf("after one closed: %q", got)
	} else {
		r()
	}

	// Redis down: this process's counts decide (edge 0 holds one
	// connection of the client, the limit is 2).
	srv.Stop()
	got, shared, ra := admit(0, "192.0.2.1", false)
	if got != "ok" || shared {
		t.Errorf("Redis down, second local connection: %q shared=%v, want ok from the local counts", got, shared)
	}
	if got, shared, r := admit(0, "192.0.2.1", false); got != tooMany || shared {
		t.Errorf("Redis down, third local connection: %q shared=%v, want %q", got, shared, tooMany)
	} else {
		r()
	}
	ra()
	r0()
}
