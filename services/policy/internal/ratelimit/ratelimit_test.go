package ratelimit

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
	"github.com/smtpgate/smtpgate/pkg/redistest"
)

func TestMemory(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMemory(100, func() time.Time { return now })
	l := Limit{Count: 3, Window: time.Minute}
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if d, _ := m.Allow(ctx, "msgs", "192.0.2.1", 1, l); !d.Allowed || d.Used != int64(i) {
			t.Fatalf("event %d: %+v", i, d)
		}
	}
	if d, _ := m.Allow(ctx, "msgs", "192.0.2.1", 1, l); d.Allowed {
		t.Fatalf("fourth event allowed: %+v", d)
	}
	if d, _ := m.Allow(ctx, "msgs", "192.0.2.2", 1, l); !d.Allowed {
		t.Fatal("another key refused")
	}
	if d, _ := m.Allow(ctx, "bytes", "192.0.2.1", 5, Limit{Count: 10, Window: time.Minute}); !d.Allowed || d.Used != 5 {
		t.Fatalf("a cost of 5 in 10: %+v", d)
	}
	if d, _ := m.Allow(ctx, "bytes", "192.0.2.1", 6, Limit{Count: 10, Window: time.Minute}); d.Allowed {
		t.Fatalf("a cost of 6 more in 10: %+v", d)
	}
	// GCRA: one unit comes back every 20 s, not the whole budget at a
	// window's edge.
	now = now.Add(20 * time.Second)
	if d, _ := m.Allow(ctx, "msgs", "192.0.2.1", 1, l); !d.Allowed {
		t.Fatalf("after a third of the window: %+v", d)
	}
	if d, _ := m.Allow(ctx, "msgs", "192.0.2.1", 1, l); d.Allowed {
		t.Fatalf("a second event after a third of the window: %+v", d)
	}
	now = now.Add(time.Hour)
	for i := range 3 {
		if d, _ := m.Allow(ctx, "msgs", "192.0.2.1", 1, l); !d.Allowed {
			t.Fatalf("after an idle hour, event %d: %+v", i, d)
		}
	}
}

// Two counters (two policy replicas) on one real redis-server, 50
// concurrent events each against a limit of 17: exactly 17 pass.
func TestRedisExactAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	var counters []Counter
	for range 2 {
		c, err := redisclient.Open(srv.URL(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		counters = append(counters, NewRedis(c))
	}
	l := Limit{Count: 17, Window: time.Minute}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			d, err := counters[i%2].Allow(context.Background(), "msgs", "john@example.org", 1, l)
			if err != nil {
				t.Error(err)
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 17 {
		t.Errorf("%d events allowed, want exactly 17", n)
	}
	// Redis gone: allowed (fail open) with ErrStore.
	srv.Stop()
	d, err := counters[0].Allow(context.Background(), "msgs", "john@example.org", 1, l)
	if !errors.Is(err, ErrStore) || !d.Allowed {
		t.Errorf("Redis down: %+v, %v", d, err)
	}
}

// TestRedisOneCommandPerDecision: each decision is one EVALSHA (one round
// trip): no EVAL with the script's text and no SCRIPT EXISTS or LOAD,
// except once after Redis lost its scripts (SCRIPT FLUSH, a restart).
func TestRedisOneCommandPerDecision(t *testing.T) {
	srv := redistest.Start(t)
	c, err := redisclient.Open(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	r := NewRedis(c)
	l := Limit{Count: 1000, Window: time.Hour}
	calls := func() map[string]int {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, line := range strings.Split(info, "\r\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
			if ok && name != line {
				n, _, _ := strings.Cut(rest, ",")
				out[name], _ = strconv.Atoi(n)
			}
		}
		return out
	}
	decide := func(n int) {
		for i := range n {
			if d, err := r.Allow(ctx, "msgs", "192.0.2.1", 1, l); err != nil || !d.Allowed {
				t.Fatalf("decision %d: %+v, %v", i, d, err)
			}
		}
	}
	diff := func(before, after map[string]int) map[string]int {
		out := map[string]int{}
		for _, k := range []string{"evalsha", "eval", "script|exists", "script|load"} {
			if d := after[k] - before[k]; d != 0 {
				out[k] = d
			}
		}
		return out
	}
	decide(1) // loads the script
	before := calls()
	decide(20)
	if got, want := diff(before, calls()), map[string]int{"evalsha": 20}; !maps.Equal(got, want) {
		t.Errorf("commands for 20 decisions: %v, want %v", got, want)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before = calls()
	decide(20)
	// The first EVALSHA fails with NOSCRIPT and is followed by an EVAL;
	// the next 19 are EVALSHA again.
	if got, want := diff(before, calls()), map[string]int{"evalsha": 20, "eval": 1}; !maps.Equal(got, want) {
		t.Errorf("commands for 20 decisions after SCRIPT FLUSH: %v, want %v", got, want)
	}
}

func BenchmarkAllow(b *testing.B) {
	ctx := context.Background()
	l := Limit{Count: 1 << 40, Window: time.Hour}
	b.Run("memory", func(b *testing.B) {
		m := NewMemory(1000, nil)
		for b.Loop() {
			_, _ = m.Allow(ctx, "msgs", "192.0.2.1", 1, l)
		}
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		c, err := redisclient.Open(srv.URL(), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		r := NewRedis(c)
		for b.Loop() {
			if _, err := r.Allow(ctx, "msgs", "192.0.2.1", 1, l); err != nil {
				b.Fatal(err)
			}
		}
	})
}
