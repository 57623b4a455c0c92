package resolver_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/redistest"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// BenchmarkHitLocal: answered from the in-process cache.
func BenchmarkHitLocal(b *testing.B) {
	s := startStub(b)
	r := newResolver(b, s, nil, nil)
	ctx := context.Background()
	if _, err := r.Lookup(ctx, "a.example.test", dns.TypeA); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if a, err := r.Lookup(ctx, "a.example.test", dns.TypeA); err != nil || a.Source != resolver.FromCache {
			b.Fatalf("%v from %v", err, a.Source)
		}
	}
}

// BenchmarkHitRedis: answered from a real redis-server (an in-process
// cache of one entry and two names alternating: every lookup misses it).
func BenchmarkHitRedis(b *testing.B) {
	s := startStub(b)
	rs := redistest.Start(b)
	r := newResolver(b, s, nil, func(c *resolver.Config) { c.Redis, c.CacheSize = redisClient(b, rs.Addr), 1 })
	ctx := context.Background()
	names := []string{"a.example.test", "alias.example.test"}
	for _, n := range names {
		if _, err := r.Lookup(ctx, n, dns.TypeA); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if a, err := r.Lookup(ctx, names[i%2], dns.TypeA); err != nil || a.Source != resolver.FromRedis {
			b.Fatalf("%v from %v", err, a.Source)
		}
		i++
	}
}

// BenchmarkMiss: asked from the in-process server over UDP on loopback.
func BenchmarkMiss(b *testing.B) {
	s := startStub(b)
	r := newResolver(b, s, nil, nil)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if a, err := r.Lookup(ctx, strconv.Itoa(i)+".bench.test", dns.TypeA); err != nil || a.Source != resolver.FromDNS {
			b.Fatalf("%v from %v", err, a.Source)
		}
	}
}
