package restriction

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/dnstest"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// testZone is what the stand-in recursive server knows: DNS lists, client
// names for forward-confirmed reverse DNS, mail domains and SPF records.
const testZone = `
$TTL 300
test.                 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
; a DNSBL: 127.0.0.2 (the test entry of every list), 203.0.113.5, and
; 2001:db8::5 by nibbles
2.0.0.127.bl.test.    IN A   127.0.0.2
2.0.0.127.bl.test.    IN TXT "listed: see http://bl.test/127.0.0.2"
5.113.0.203.bl.test.  IN A   127.0.0.4
5.113.0.203.bl.test.  IN TXT "spam source"
5.113.0.203.bl.test.  IN TXT "second reason"
5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test. IN A 127.0.0.2
; a second DNSBL listing 203.0.113.5 (for reject_dnsbl_score)
5.113.0.203.bl2.test. IN A   127.0.0.2
; an RHSBL
bad.example.rhsbl.test.       IN A   127.0.0.2
bad.example.rhsbl.test.       IN TXT "bad domain"
mail.good.example.rhsbl.test. IN A   127.0.0.2
forged.example.rhsbl.test.    IN A   127.0.0.2
; a DNSWL and RHSWL
5.113.0.203.wl.test.          IN A   127.0.10.1
mail.good.example.wl.test.    IN A   127.0.10.1
; client names: .5 verified, .6 forged, .7 without PTR, .8 PTR SERVFAIL,
; .9 forward lookup times out, .10 PTR times out, 2001:db8::5 verified
5.113.0.203.in-addr.arpa.     IN PTR mail.good.example.
mail.good.example.            IN A   203.0.113.5
6.113.0.203.in-addr.arpa.     IN PTR forged.example.
forged.example.               IN A   198.51.100.1
9.113.0.203.in-addr.arpa.     IN PTR host.timeout.example.
5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR v6.good.example.
v6.good.example.              IN AAAA 2001:db8::5
; mail domains
mx.example.                   IN MX  10 mail.mx.example.
aonly.example.                IN A   192.0.2.1
nullmx.example.               IN MX  0 .
; the DNS data of check_*_{a,mx,ns}_access: an MX in private space
; (SMTPD_ACCESS_README's bogus MX), an MX named in a table, a name without
; NS whose parent has them, an MX host without addresses
bogus.example.                IN MX  10 mx.bogus.example.
mx.bogus.example.             IN A   10.1.2.3
spammx.example.               IN MX  10 mx.spamhost.example.
mx.spamhost.example.          IN A   192.0.2.77
sub.nsparent.example.         IN A   192.0.2.8
nsparent.example.             IN NS  ns1.badns.example.
ns1.badns.example.            IN A   192.0.2.53
noaddr.example.               IN MX  10 nothere.example.
; SPF
spfpass.example.              IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
spffail.example.              IN TXT "v=spf1 -all"
spfsoft.example.              IN TXT "v=spf1 ~all"
spfperm.example.              IN TXT "v=spf1 bogus:x -all"
spftemp.example.              IN TXT "v=spf1 include:servfail.example -all"
`

// dnsStub is an in-process recursive server on 127.0.0.1 answering from
// testZone: NXDOMAIN for names it does not know, NODATA for types it
// lacks, SERVFAIL for names with a "servfail" label and 8.113.0.203's
// PTR, and no answer at all for names with a "timeout" label and
// 10.113.0.203's PTR.
type dnsStub struct {
	Addr string
	rrs  map[string][]dns.RR

	mu      sync.Mutex
	queries int
}

func startDNSStub(t testing.TB) *dnsStub {
	t.Helper()
	s := &dnsStub{rrs: map[string][]dns.RR{}}
	zp := dns.NewZoneParser(strings.NewReader(testZone), "test.", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	s.Addr = dnstest.ServeUDP(t, s)
	return s
}

// Queries is the number of queries received.
func (s *dnsStub) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *dnsStub) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	s.mu.Lock()
	s.queries++
	s.mu.Unlock()
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	labels := "." + name
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch {
	case strings.Contains(labels, ".timeout.") || name == "10.113.0.203.in-addr.arpa.":
		return
	case strings.Contains(labels, ".servfail.") || name == "8.113.0.203.in-addr.arpa.":
		m.Rcode = dns.RcodeServerFailure
	default:
		rrs, ok := s.rrs[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	_ = w.WriteMsg(m)
}

// testResolver is a resolver asking the stub, quick to give up.
func testResolver(t testing.TB, stub *dnsStub) *resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{stub.Addr}, Timeout: 150 * time.Millisecond, Attempts: 1, ErrorTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
