package spf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/dnstest"
)

// testDNS is an authoritative DNS server on 127.0.0.1 serving a zone
// written in zone-file syntax, so the tests go through the DNS wire.
type testDNS struct {
	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool     // names answered with SERVFAIL
	drop     map[string]bool     // names never answered
	queries  atomic.Int64
	addr     string
}

// startDNS starts a server for zone; it stops when the test ends.
func startDNS(tb testing.TB, zone string) *testDNS {
	tb.Helper()
	s := &testDNS{rrs: map[string][]dns.RR{}, servfail: map[string]bool{}, drop: map[string]bool{}}
	zp := dns.NewZoneParser(strings.NewReader("$TTL 600\n"+zone), ".", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
	}
	if err := zp.Err(); err != nil {
		tb.Fatalf("zone: %v", err)
	}
	s.addr = dnstest.ServeUDP(tb, s)
	return s
}

// failName makes queries for name answer SERVFAIL.
func (s *testDNS) failName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[dns.Fqdn(strings.ToLower(name))] = true
}

// dropName makes queries for name go unanswered.
func (s *testDNS) dropName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[dns.Fqdn(strings.ToLower(name))] = true
}

func (s *testDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.drop[name]:
		return
	case s.servfail[name]:
		m.Rcode = dns.RcodeServerFailure
	default:
		exists := false
		for owner := range s.rrs {
			if owner == name || strings.HasSuffix(owner, "."+name) {
				exists = true // empty non-terminals exist too
				break
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range s.rrs[name] {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
	}
	_ = w.WriteMsg(m)
}

// resolver returns a Resolver that asks this server.
func (s *testDNS) resolver() *wireResolver {
	return &wireResolver{addr: s.addr, client: &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 4096}}
}

// wireResolver is the test adapter: Resolver over a miekg/dns client.
type wireResolver struct {
	addr   string
	client *dns.Client
}

func (r *wireResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	in, _, err := r.client.ExchangeContext(ctx, m, r.addr)
	if err != nil {
		return nil, fmt.Errorf("query %s %s: %w", name, dns.TypeToString[qtype], err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	default:
		return nil, fmt.Errorf("query %s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
	}
	var out []dns.RR
	for _, rr := range in.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %s: %w", name, dns.TypeToString[qtype], ErrNoData)
	}
	return out, nil
}

func (r *wireResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, err
}

func (r *wireResolver) lookupAddr(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	rrs, err := r.query(ctx, name, qtype)
	var out []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			if qtype == dns.TypeA {
				a = a.Unmap()
			}
			out = append(out, a)
		}
	}
	return out, err
}

func (r *wireResolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return r.lookupAddr(ctx, name, dns.TypeA)
}

func (r *wireResolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return r.lookupAddr(ctx, name, dns.TypeAAAA)
}

func (r *wireResolver) LookupMX(ctx context.Context, name string) ([]MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	var out []MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, MX{Pref: mx.Preference, Host: mx.Mx})
	}
	return out, err
}

func (r *wireResolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return nil, err
	}
	rrs, err := r.query(ctx, rev, dns.TypePTR)
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, err
}

// cachingResolver remembers every answer of the resolver it wraps, as the
// real pkg/resolver's cache would; used by the benchmark.
type cachingResolver struct {
	next Resolver
	mu   sync.Mutex
	m    map[string]cached
}

type cached struct {
	v   any
	err error
}

func newCachingResolver(next Resolver) *cachingResolver {
	return &cachingResolver{next: next, m: map[string]cached{}}
}

func remember[T any](c *cachingResolver, key string, f func() (T, error)) (T, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		v, _ := e.v.(T)
		return v, e.err
	}
	v, err := f()
	c.mu.Lock()
	c.m[key] = cached{v, err}
	c.mu.Unlock()
	return v, err
}

func (c *cachingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return remember(c, "TXT "+name, func() ([]string, error) { return c.next.LookupTXT(ctx, name) })
}

func (c *cachingResolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return remember(c, "A "+name, func() ([]netip.Addr, error) { return c.next.LookupA(ctx, name) })
}

func (c *cachingResolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return remember(c, "AAAA "+name, func() ([]netip.Addr, error) { return c.next.LookupAAAA(ctx, name) })
}

func (c *cachingResolver) LookupMX(ctx context.Context, name string) ([]MX, error) {
	return remember(c, "MX "+name, func() ([]MX, error) { return c.next.LookupMX(ctx, name) })
}

func (c *cachingResolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	return remember(c, "PTR "+addr.String(), func() ([]string, error) { return c.next.LookupPTR(ctx, addr) })
}
