package spf

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkCheckThreeIncludes: a record of three includes, the client
// matching in the last, every answer from a warm cache.
func BenchmarkCheckThreeIncludes(b *testing.B) {
	s := startDNS(b, `example.com. TXT "v=spf1 include:_a.example.com include:_b.example.com include:_c.example.com -all"
_a.example.com. TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:a::/48 -all"
_b.example.com. TXT "v=spf1 a:b-host.example.com mx -all"
_c.example.com. TXT "v=spf1 ip4:203.0.113.0/25 ip4:192.0.2.0/24 ~all"
b-host.example.com. A 198.51.100.200
_b.example.com. MX 10 b-host.example.com.`)
	res := newCachingResolver(s.resolver())
	req := Request{IP: netip.MustParseAddr("192.0.2.77"), Sender: "user@example.com", HELO: "h.example.org", Receiver: "mx.example.net"}
	ctx := context.Background()
	if got := Check(ctx, res, req); got.Result != Pass || got.Mechanism != "include:_c.example.com" {
		b.Fatalf("Check = %+v", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		Check(ctx, res, req)
	}
}
