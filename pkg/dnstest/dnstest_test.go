package dnstest_test

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/dnstest"
)

// TestServeUDP: a query to the address ServeUDP returns gets the
// handler's answer.
func TestServeUDP(t *testing.T) {
	addr := dnstest.ServeUDP(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.1")})
		_ = w.WriteMsg(m)
	}))
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q (%v), want one on 127.0.0.1", addr, err)
	}
	c := &dns.Client{Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("example.test.", dns.TypeA)
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("answer %v, want example.test. A 192.0.2.1", r.Answer)
	}
}
