package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/dnstest"
)

// startZone serves records (name → A and TXT; several A records separated
// by spaces) on 127.0.0.1 over UDP as a stand-in recursive server; every
// other name is NXDOMAIN.
func startZone(t *testing.T, a, txt map[string]string) string {
	t.Helper()
	return dnstest.ServeUDP(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		ips, okA := a[name]
		reason, okTXT := txt[name]
		switch {
		case q.Qtype == dns.TypeA && okA:
			for _, ip := range strings.Fields(ips) {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
			}
		case q.Qtype == dns.TypeTXT && okTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{reason}})
		case okA || okTXT:
			// NODATA
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	}))
}

// TestDNSBLRefusesAtRCPT: a stranger listed in a DNS blocklist is refused
// at RCPT TO with Postfix's default_rbl_reply, through the three real
// binaries and a real (in-process) DNS server; an unlisted client is not.
func TestDNSBLRefusesAtRCPT(t *testing.T) {
	zone := startZone(t,
		map[string]string{"66.0.0.127.bl.test.": "127.0.0.2"},
		map[string]string{"66.0.0.127.bl.test.": "listed for testing, see http://bl.test/"})
	s := newStack(t, "smtpgate_dns_servers = "+zone+"\nsmtpd_client_restrictions = permit_mynetworks, reject_rbl_client bl.test\n")
	var l ledger
	l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}},
		"554 5.7.1 Service unavailable; Client host [127.0.0.66] blocked using bl.test; listed for testing, see http://bl.test/")
	l.expectAccepted(t, s, message{from: "127.0.0.67", listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}})
	l.checkMaildir(t, s)
}
