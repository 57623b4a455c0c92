package resolver_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is the stand-in's data: what a recursive server would answer for
// the test names, in zone-file form.
const zone = `
$ORIGIN example.test.
$TTL 300
@        IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@        IN MX 10 mx1.example.test.
@        IN MX 20 MX2.Example.TEST.
a        IN A 192.0.2.1
a        IN A 192.0.2.2
a        IN AAAA 2001:db8::1
short 1  IN A 192.0.2.3
alias    IN CNAME a.example.test.
alias2 30 IN CNAME alias.example.test.
dangling IN CNAME nowhere.example.test.
loop1    IN CNAME loop2.example.test.
loop2    IN CNAME loop1.example.test.
txt      IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
txt      IN TXT "say \"hi\" \\ \255"
slow     IN A 192.0.2.4
1.2.0.192.in-addr.arpa. IN PTR A.Example.Test.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR a.example.test.
`

// stub is an in-process recursive server on 127.0.0.1 (UDP and TCP on one
// port) answering from zone, plus:
//
//   - big.example.test TXT: too large for UDP (TC set over UDP, the
//     records over TCP);
//   - servfail.example.test: SERVFAIL;
//   - timeout.example.test: never answered;
//   - slow.example.test: answered once release is closed;
//   - *.bench.test A: 192.0.2.9, for benchmarks;
//   - other names under example.test: NXDOMAIN with the SOA, and NODATA
//     with the SOA for names without the asked type.
//
// It counts the queries it receives per "name TYPE" and per transport.
type stub struct {
	Addr    string
	release chan struct{}

	mu     sync.Mutex
	counts map[string]int // "name TYPE" (lower case) -> queries, both transports
	tcp    map[string]int // the same, TCP only
	rrs    map[string][]dns.RR
	soa    dns.RR
	big    []dns.RR
}

func startStub(t testing.TB) *stub {
	t.Helper()
	s := &stub{
		release: make(chan struct{}),
		counts:  make(map[string]int),
		tcp:     make(map[string]int),
		rrs:     make(map[string][]dns.RR),
	}
	zp := dns.NewZoneParser(strings.NewReader(zone), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
		if rr.Header().Rrtype == dns.TypeSOA {
			s.soa = rr
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		s.big = append(s.big, &dns.TXT{
			Hdr: dns.RR_Header{Name: "big.example.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 200))},
		})
	}

	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for UDP and TCP: %v", err)
	}
	s.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		s.Release()
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return s
}

// Release lets the answers to slow.example.test go.
func (s *stub) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// Count is the number of queries received for name (lower case, trailing
// dot) and type.
func (s *stub) Count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[name+" "+dns.TypeToString[qtype]]
}

// TCPCount is the number of those received over TCP.
func (s *stub) TCPCount(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcp[name+" "+dns.TypeToString[qtype]]
}

// Total is the number of queries received.
func (s *stub) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *stub) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	s.mu.Lock()
	k := name + " " + dns.TypeToString[q.Qtype]
	s.counts[k]++
	if overTCP {
		s.tcp[k]++
	}
	s.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch {
	case name == "timeout.example.test.":
		return
	case name == "servfail.example.test.":
		m.Rcode = dns.RcodeServerFailure
	case name == "slow.example.test.":
		<-s.release
		m.Answer, _, _ = s.answer(name, q.Qtype)
	case name == "big.example.test.":
		if !overTCP {
			m.Truncated = true
		} else {
			m.Answer = s.big
		}
	case strings.HasSuffix(name, ".bench.test."):
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.IPv4(192, 0, 2, 9),
		}}
	default:
		var final string
		var found bool
		m.Answer, final, found = s.answer(name, q.Qtype)
		if !found {
			if len(s.rrs[final]) == 0 {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = []dns.RR{s.soa}
		}
	}
	_ = w.WriteMsg(m)
}

// answer is what a recursive server gives for name: its records of the
// type, or the CNAME chain from it and the records at its end; final is
// the chain's end, found whether it had records of the type.
func (s *stub) answer(name string, qtype uint16) (rrs []dns.RR, final string, found bool) {
	for hops := 0; hops < 10; hops++ {
		var cname *dns.CNAME
		for _, rr := range s.rrs[name] {
			if rr.Header().Rrtype == qtype {
				rrs = append(rrs, rr)
				found = true
			}
			if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			return rrs, name, found
		}
		rrs = append(rrs, cname)
		name = strings.ToLower(cname.Target)
	}
	return rrs, name, found
}

// clock is a controllable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
