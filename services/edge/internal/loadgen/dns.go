package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// DNSBL is a DNS server for a blocklist zone, standing in for the
// recursive resolver smtpgate-policy asks (smtpgate_dns_servers) in
// scenario c: the listed addresses get 127.0.0.2 and a TXT reason, every
// other name NXDOMAIN, with a TTL long enough for the answers to stay in
// policy's cache during a run.
type DNSBL struct {
	zone    string
	listed  map[string]bool
	ttl     uint32
	queries atomic.Int64
}

// NewDNSBL serves zone (e.g. "bl.bench.invalid") with listed on it.
func NewDNSBL(zone string, listed []netip.Addr, ttl uint32) *DNSBL {
	z := &DNSBL{zone: dns.Fqdn(strings.ToLower(zone)), listed: map[string]bool{}, ttl: ttl}
	for _, a := range listed {
		z.listed[reverse(a)+"."+z.zone] = true
	}
	return z
}

// reverse is a's octets backwards, as a DNSBL query names it.
func reverse(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
}

// Queries is how many queries the server answered.
func (z *DNSBL) Queries() int64 { return z.queries.Load() }

// ServeDNS answers one query.
func (z *DNSBL) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: z.ttl}
	switch {
	case !z.listed[name]:
		m.Rcode = dns.RcodeNameError
		// The zone's SOA lets resolvers cache the NXDOMAIN (RFC 2308).
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: z.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.ttl},
			Ns: "ns." + z.zone, Mbox: "hostmaster." + z.zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: z.ttl}}
	case q.Qtype == dns.TypeA:
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 2)}}
	case q.Qtype == dns.TypeTXT:
		hdr.Rrtype = dns.TypeTXT
		m.Answer = []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{"listed by smtpgate-bench"}}}
	}
	_ = w.WriteMsg(m)
}

// Serve answers on pc (UDP) until ctx ends.
func (z *DNSBL) Serve(ctx context.Context, pc net.PacketConn) error {
	srv := &dns.Server{PacketConn: pc, Handler: z}
	stop := context.AfterFunc(ctx, func() { _ = srv.Shutdown() })
	defer stop()
	err := srv.ActivateAndServe()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("dns on %s: %w", pc.LocalAddr(), err)
	}
	return nil
}
