package resolver_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// newResolver asks s, with clk as its clock; mod changes the Config.
func newResolver(t testing.TB, s *stub, clk *clock, mod func(*resolver.Config)) *resolver.Resolver {
	t.Helper()
	cfg := resolver.Config{Servers: []string{s.Addr}, Timeout: time.Second, Attempts: 2}
	if clk != nil {
		cfg.Now = clk.Now
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := resolver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookup(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, func(c *resolver.Config) { c.Timeout = 100 * time.Millisecond })
	tests := []struct {
		name    string
		qtype   uint16
		records []string
		final   string
		rcode   int
		err     error
	}{
		{name: "a.example.test", qtype: dns.TypeA, records: []string{"192.0.2.1", "192.0.2.2"}},
		{name: "A.EXAMPLE.test.", qtype: dns.TypeAAAA, records: []string{"2001:db8::1"}},
		{name: "example.test", qtype: dns.TypeMX, records: []string{"10 mx1.example.test.", "20 mx2.example.test."}},
		{name: "txt.example.test", qtype: dns.TypeTXT, records: []string{"v=spf1 ip4:192.0.2.0/24 -all", `say "hi" \ ` + "\xff"}},
		{name: "1.2.0.192.in-addr.arpa", qtype: dns.TypePTR, records: []string{"a.example.test."}},
		{name: "alias2.example.test", qtype: dns.TypeA, records: []string{"192.0.2.1", "192.0.2.2"}, final: "a.example.test."},
		{name: "alias.example.test", qtype: dns.TypeCNAME, records: []string{"a.example.test."}},
		{name: "dangling.example.test", qtype: dns.TypeA, final: "nowhere.example.test.", rcode: dns.RcodeNameError, err: resolver.ErrNotFound},
		{name: "nx.example.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, err: resolver.ErrNotFound},
		{name: "a.example.test", qtype: dns.TypeMX, err: resolver.ErrNoData},
		{name: "alias.example.test", qtype: dns.TypeMX, final: "a.example.test.", err: resolver.ErrNoData},
		{name: "servfail.example.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure, err: resolver.ErrTemporary},
		{name: "timeout.example.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure, err: resolver.ErrTemporary},
		{name: "loop1.example.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure, err: resolver.ErrTemporary},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			a, err := r.Lookup(context.Background(), tc.name, tc.qtype)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if a == nil {
				t.Fatal("nil Answer")
			}
			if diff := cmp.Diff(tc.records, a.Records); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if a.RCode != tc.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[a.RCode], dns.RcodeToString[tc.rcode])
			}
			want := tc.final
			if want == "" {
				want = a.Name
			}
			if a.Final != want {
				t.Errorf("final = %q, want %q", a.Final, want)
			}
			if a.Source != resolver.FromDNS {
				t.Errorf("source = %v, want dns", a.Source)
			}
			// A temporary failure is never also "not found".
			if errors.Is(err, resolver.ErrTemporary) && (errors.Is(err, resolver.ErrNotFound) || errors.Is(err, resolver.ErrNoData)) {
				t.Errorf("err %v is temporary and permanent", err)
			}
		})
	}
	if got := s.Count("timeout.example.test.", dns.TypeA); got != 2 {
		t.Errorf("timeout.example.test asked %d times, want 2 (Attempts)", got)
	}
}

func TestConvenience(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, nil)
	ctx := context.Background()

	a, err := r.LookupA(ctx, "alias.example.test.")
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}, a, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); err != nil || diff != "" {
		t.Errorf("LookupA: %v (-want +got):\n%s", err, diff)
	}
	aaaa, err := r.LookupAAAA(ctx, "a.example.test")
	if err != nil || len(aaaa) != 1 || aaaa[0] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("LookupAAAA = %v, %v", aaaa, err)
	}
	mx, err := r.LookupMX(ctx, "example.test")
	if diff := cmp.Diff([]resolver.MX{{Pref: 10, Host: "mx1.example.test."}, {Pref: 20, Host: "mx2.example.test."}}, mx); err != nil || diff != "" {
		t.Errorf("LookupMX: %v (-want +got):\n%s", err, diff)
	}
	txt, err := r.LookupTXT(ctx, "txt.example.test")
	if err != nil || len(txt) != 2 || txt[0] != "v=spf1 ip4:192.0.2.0/24 -all" {
		t.Errorf("LookupTXT = %q, %v", txt, err)
	}
	for _, ip := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"} {
		ptr, err := r.LookupPTR(ctx, netip.MustParseAddr(ip))
		if err != nil || len(ptr) != 1 || ptr[0] != "a.example.test." {
			t.Errorf("LookupPTR(%s) = %q, %v", ip, ptr, err)
		}
	}
	if _, err := r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.99")); !errors.Is(err, resolver.ErrNotFound) {
		t.Errorf("LookupPTR of an address without PTR: %v, want ErrNotFound", err)
	}
	if _, err := r.LookupA(ctx, "servfail.example.test"); !errors.Is(err, resolver.ErrTemporary) {
		t.Errorf("LookupA(servfail) = %v, want ErrTemporary", err)
	}
	if _, err := r.LookupMX(ctx, "a.example.test"); !errors.Is(err, resolver.ErrNoData) {
		t.Errorf("LookupMX(a) = %v, want ErrNoData", err)
	}
	if _, err := r.LookupPTR(ctx, netip.Addr{}); !errors.Is(err, resolver.ErrInvalidName) {
		t.Errorf("LookupPTR(invalid) = %v, want ErrInvalidName", err)
	}
}

func TestInvalidNamesAreNotAsked(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, nil)
	long63 := "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc"
	for _, name := range []string{
		"", ".", "..", "a..example.test", ".a.example.test", "a.example.test..",
		"a b.example.test", "a\\.b.example.test", "a\x00.example.test", "é.example.test",
		long63 + "d.example.test",
		long63 + "." + long63 + "." + long63 + "." + long63 + ".test",
	} {
		a, err := r.Lookup(context.Background(), name, dns.TypeA)
		if !errors.Is(err, resolver.ErrInvalidName) || a != nil {
			t.Errorf("Lookup(%q) = %v, %v; want ErrInvalidName", name, a, err)
		}
		if errors.Is(err, resolver.ErrTemporary) {
			t.Errorf("Lookup(%q): invalid name reported as temporary: %v", name, err)
		}
	}
	if n := s.Total(); n != 0 {
		t.Errorf("server got %d queries, want 0", n)
	}
	if st := r.Stats(); st.Invalid != 12 {
		t.Errorf("Stats.Invalid = %d, want 12", st.Invalid)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, nil)
	txt, err := r.LookupTXT(context.Background(), "big.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(txt) != 40 || len(txt[39]) != 203 {
		t.Errorf("got %d records, want 40 of 203 bytes", len(txt))
	}
	if udp, tcp := s.Count("big.example.test.", dns.TypeTXT)-s.TCPCount("big.example.test.", dns.TypeTXT), s.TCPCount("big.example.test.", dns.TypeTXT); udp != 1 || tcp != 1 {
		t.Errorf("queries over UDP %d, TCP %d; want 1 and 1", udp, tcp)
	}
	if st := r.Stats(); st.TCPRetries != 1 || st.Queries != 2 {
		t.Errorf("Stats: TCPRetries %d Queries %d, want 1 and 2", st.TCPRetries, st.Queries)
	}
}

func TestPositiveCache(t *testing.T) {
	s := startStub(t)
	clk := newClock()
	r := newResolver(t, s, clk, nil)
	ctx := context.Background()
	lookup := func(name string) *resolver.Answer {
		t.Helper()
		a, err := r.Lookup(ctx, name, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	if a := lookup("a.example.test"); a.Source != resolver.FromDNS || a.TTL != 300*time.Second {
		t.Errorf("first lookup: source %v TTL %v, want dns 5m0s", a.Source, a.TTL)
	}
	clk.Advance(100 * time.Second)
	a := lookup("A.Example.Test.") // same key: case and trailing dot
	if a.Source != resolver.FromCache || a.TTL != 200*time.Second {
		t.Errorf("second lookup: source %v TTL %v, want cache 3m20s", a.Source, a.TTL)
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2"}, a.Records); diff != "" {
		t.Errorf("cached records (-want +got):\n%s", diff)
	}
	a.Records[0] = "changed by the caller"
	if got := lookup("a.example.test").Records[0]; got != "192.0.2.1" {
		t.Errorf("a caller changed the cache: %q", got)
	}
	if n := s.Count("a.example.test.", dns.TypeA); n != 1 {
		t.Errorf("asked %d times, want 1", n)
	}
	clk.Advance(200 * time.Second) // TTL over
	if a := lookup("a.example.test"); a.Source != resolver.FromDNS {
		t.Errorf("after the TTL: source %v, want dns", a.Source)
	}
	if n := s.Count("a.example.test.", dns.TypeA); n != 2 {
		t.Errorf("asked %d times after the TTL, want 2", n)
	}
	// The CNAME chain's smallest TTL (alias2: 30s) bounds the answer's.
	if a := lookup("alias2.example.test"); a.TTL != 30*time.Second {
		t.Errorf("alias2 TTL %v, want 30s", a.TTL)
	}
	if st := r.Stats(); st.Hits != 2 || st.Misses != 3 {
		t.Errorf("Stats: %+v, want 2 hits 3 misses", st)
	}
}

func TestTTLClamp(t *testing.T) {
	s := startStub(t)
	clk := newClock()
	r := newResolver(t, s, clk, func(c *resolver.Config) { c.MinTTL, c.MaxTTL = 10*time.Second, 60*time.Second })
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"short.example.test", 10 * time.Second}, {"a.example.test", 60 * time.Second}} {
		a, err := r.Lookup(ctx, tc.name, dns.TypeA)
		if err != nil || a.TTL != tc.ttl {
			t.Errorf("%s: TTL %v, %v; want %v", tc.name, a.TTL, err, tc.ttl)
		}
	}
	clk.Advance(9 * time.Second)
	if a, _ := r.Lookup(ctx, "short.example.test", dns.TypeA); a.Source != resolver.FromCache {
		t.Errorf("short (TTL 1s, MinTTL 10s) after 9s: source %v, want cache", a.Source)
	}
	clk.Advance(52 * time.Second)
	if a, _ := r.Lookup(ctx, "a.example.test", dns.TypeA); a.Source != resolver.FromDNS {
		t.Errorf("a (TTL 300s, MaxTTL 60s) after 61s: source %v, want dns", a.Source)
	}
}

func TestNegativeCache(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qtype  uint16
		err    error
		capTTL time.Duration // NegativeMaxTTL
		ttl    time.Duration // want
	}{
		{"nx.example.test", dns.TypeA, resolver.ErrNotFound, 0, 60 * time.Second}, // SOA minimum 60 < TTL 300
		{"a.example.test", dns.TypeMX, resolver.ErrNoData, 0, 60 * time.Second},
		{"nx.example.test", dns.TypeA, resolver.ErrNotFound, 10 * time.Second, 10 * time.Second},
		{"alias2.example.test", dns.TypeMX, resolver.ErrNoData, 0, 30 * time.Second}, // CNAME TTL 30 < 60
	} {
		t.Run(tc.name+"/"+tc.ttl.String(), func(t *testing.T) {
			s := startStub(t)
			clk := newClock()
			r := newResolver(t, s, clk, func(c *resolver.Config) { c.NegativeMaxTTL = tc.capTTL })
			ctx := context.Background()
			a, err := r.Lookup(ctx, tc.name, tc.qtype)
			if !errors.Is(err, tc.err) || a.TTL != tc.ttl {
				t.Fatalf("first: %v TTL %v, want %v TTL %v", err, a.TTL, tc.err, tc.ttl)
			}
			clk.Advance(tc.ttl - time.Second)
			a, err = r.Lookup(ctx, tc.name, tc.qtype)
			if !errors.Is(err, tc.err) || a.Source != resolver.FromCache || a.TTL != time.Second {
				t.Errorf("within the TTL: %v from %v TTL %v, want %v from cache TTL 1s", err, a.Source, a.TTL, tc.err)
			}
			if n := s.Total(); n != 1 {
				t.Errorf("%d queries within the TTL, want 1", n)
			}
			clk.Advance(time.Second)
			if a, err = r.Lookup(ctx, tc.name, tc.qtype); !errors.Is(err, tc.err) || a.Source != resolver.FromDNS {
				t.Errorf("after the TTL: %v from %v, want %v from dns", err, a.Source, tc.err)
			}
		})
	}
}

func TestErrorCache(t *testing.T) {
	for _, name := range []string{"servfail.example.test.", "timeout.example.test."} {
		t.Run(name, func(t *testing.T) {
			s := startStub(t)
			clk := newClock()
			r := newResolver(t, s, clk, func(c *resolver.Config) {
				c.Timeout, c.Attempts, c.ErrorTTL = 50*time.Millisecond, 1, 5*time.Second
			})
			ctx := context.Background()
			if _, err := r.Lookup(ctx, name, dns.TypeA); !errors.Is(err, resolver.ErrTemporary) {
				t.Fatalf("first: %v, want ErrTemporary", err)
			}
			clk.Advance(4 * time.Second)
			a, err := r.Lookup(ctx, name, dns.TypeA)
			if !errors.Is(err, resolver.ErrTemporary) || a.Source != resolver.FromCache {
				t.Errorf("within ErrorTTL: %v from %v, want ErrTemporary from cache", err, a.Source)
			}
			if n := s.Count(name, dns.TypeA); n != 1 {
				t.Errorf("asked %d times within ErrorTTL, want 1", n)
			}
			clk.Advance(time.Second)
			a, err = r.Lookup(ctx, name, dns.TypeA)
			if !errors.Is(err, resolver.ErrTemporary) || a.Source != resolver.FromDNS {
				t.Errorf("after ErrorTTL: %v from %v, want ErrTemporary from dns", err, a.Source)
			}
			if n := s.Count(name, dns.TypeA); n != 2 {
				t.Errorf("asked %d times after ErrorTTL, want 2", n)
			}
			if st := r.Stats(); st.Errors != 2 {
				t.Errorf("Stats.Errors = %d, want 2", st.Errors)
			}
		})
	}
}

// TestNextServer: a server that does not answer, or answers SERVFAIL, is
// passed over for the next one.
func TestNextServer(t *testing.T) {
	s := startStub(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r, err := resolver.New(resolver.Config{Servers: []string{silent.LocalAddr().String(), s.Addr}, Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupA(context.Background(), "a.example.test"); err != nil {
		t.Fatalf("with the first server silent: %v", err)
	}
	if st := r.Stats(); st.Queries != 2 {
		t.Errorf("Stats.Queries = %d, want 2", st.Queries)
	}
}

func TestCoalescing(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, func(c *resolver.Config) { c.Timeout = 30 * time.Second })
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			a, err := r.Lookup(context.Background(), "slow.example.test", dns.TypeA)
			if err == nil && (len(a.Records) != 1 || a.Records[0] != "192.0.2.4") {
				err = errors.New("wrong records")
			}
			errs <- err
		})
	}
	// Everyone waits on the one lookup before the server answers.
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Coalesced < n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d callers joined the lookup in flight", r.Stats().Coalesced)
		}
		time.Sleep(time.Millisecond)
	}
	s.Release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.Count("slow.example.test.", dns.TypeA); got != 1 {
		t.Errorf("server asked %d times, want 1", got)
	}
	if st := r.Stats(); st.Misses != 1 || st.Coalesced != n-1 {
		t.Errorf("Stats: %+v, want 1 miss, %d coalesced", st, n-1)
	}
}

// TestCallerDeadline: a caller whose context ends gets a temporary error
// at once; the lookup goes on for the cache.
func TestCallerDeadline(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, func(c *resolver.Config) { c.Timeout = 30 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := r.LookupA(ctx, "slow.example.test")
	if !errors.Is(err, resolver.ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTemporary and DeadlineExceeded", err)
	}
	s.Release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := r.Lookup(context.Background(), "slow.example.test", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if a.Source == resolver.FromCache {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the abandoned lookup never filled the cache")
		}
	}
	if got := s.Count("slow.example.test.", dns.TypeA); got != 1 {
		t.Errorf("server asked %d times, want 1", got)
	}
}

func TestCacheBounded(t *testing.T) {
	s := startStub(t)
	r := newResolver(t, s, nil, func(c *resolver.Config) { c.CacheSize = 2 })
	ctx := context.Background()
	for _, name := range []string{"a.bench.test", "b.bench.test", "a.bench.test", "c.bench.test", "a.bench.test", "b.bench.test"} {
		if _, err := r.Lookup(ctx, name, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	// a stays (recently used), b was dropped for c.
	for name, want := range map[string]int{"a.bench.test.": 1, "b.bench.test.": 2, "c.bench.test.": 1} {
		if got := s.Count(name, dns.TypeA); got != want {
			t.Errorf("%s asked %d times, want %d", name, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []resolver.Config{
		{Servers: []string{"ns.example.test:53"}},
		{Servers: []string{"192.0.2.1:0"}},
		{Servers: []string{"192.0.2.1"}, MinTTL: time.Hour, MaxTTL: time.Minute},
		{Servers: []string{"192.0.2.1"}, Timeout: -time.Second},
		{Servers: []string{"192.0.2.1"}, CacheSize: -1},
		{ResolvConf: "/nonexistent/resolv.conf"},
	} {
		if _, err := resolver.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	r, err := resolver.New(resolver.Config{Servers: []string{"192.0.2.1", "[2001:db8::1]:5353"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"192.0.2.1:53", "[2001:db8::1]:5353"}, r.Servers()); diff != "" {
		t.Errorf("servers (-want +got):\n%s", diff)
	}
}

func TestWithSource(t *testing.T) {
	r := newResolver(t, startStub(t), nil, nil)
	var src resolver.Source = 99
	ctx := resolver.WithSource(context.Background(), &src)
	if _, err := r.LookupA(ctx, "a.example.test"); err != nil {
		t.Fatal(err)
	}
	if src != resolver.FromDNS {
		t.Errorf("first lookup: %v, want dns", src)
	}
	if _, err := r.LookupA(ctx, "a.example.test"); err != nil || src != resolver.FromCache {
		t.Errorf("second lookup: %v %v, want cache", src, err)
	}
}
