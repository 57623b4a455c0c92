package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smtpgate/smtpgate/pkg/dnstest"
)

// zone is a test DNS server's data: records in zone-file syntax, names
// whose every query fails (SERVFAIL), and a count of the queries asked.
type zone struct {
	mu      sync.Mutex
	rrs     map[string][]dns.RR // "name TYPE" -> records
	names   map[string]bool     // names with some record
	fail    map[string]bool
	queries map[string]int // "name TYPE" -> queries received
}

// startRecords serves records ("name TTL IN TYPE data" lines) on
// 127.0.0.1 over UDP as a stand-in recursive server (see zone.ServeDNS).
func startRecords(t *testing.T, records string, servfail ...string) (addr string, z *zone) {
	t.Helper()
	z = newZone(t, records, servfail...)
	return dnstest.ServeUDP(t, z), z
}

// newZone reads records into a zone; names of servfail, and names with a
// "servfail" label, fail.
func newZone(t *testing.T, records string, servfail ...string) *zone {
	t.Helper()
	z := &zone{rrs: map[string][]dns.RR{}, names: map[string]bool{}, fail: map[string]bool{}, queries: map[string]int{}}
	sc := bufio.NewScanner(strings.NewReader(records))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		h := rr.Header()
		name := strings.ToLower(h.Name)
		z.rrs[name+" "+dns.TypeToString[h.Rrtype]] = append(z.rrs[name+" "+dns.TypeToString[h.Rrtype]], rr)
		z.names[name] = true
	}
	for _, n := range servfail {
		z.fail[strings.ToLower(dns.Fqdn(n))] = true
	}
	return z
}

// ServeDNS answers as a recursive server would from the zone's records:
// SERVFAIL for the failing names, NODATA for a name with records of other
// types, NXDOMAIN for the rest.
func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
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
	key := name + " " + dns.TypeToString[q.Qtype]
	z.mu.Lock()
	z.queries[key]++
	z.mu.Unlock()
	switch {
	case z.fail[name] || strings.Contains("."+name, ".servfail."):
		m.Rcode = dns.RcodeServerFailure
	case len(z.rrs[key]) > 0:
		m.Answer = append(m.Answer, z.rrs[key]...)
	case z.names[name]:
		// NODATA
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// asked is how many queries the zone got for name and type.
func (z *zone) asked(name, qtype string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[strings.ToLower(dns.Fqdn(name))+" "+qtype]
}

// TestPeernameOncePerSession: the client's names are resolved as
// Postfix's smtpd does at connect (PTR, then forward confirmation) by
// the session's first check, and the session uses them from then on:
// the mail log's name[address], the Received header, the names
// check_client_access looks up, and reject_unknown_client_hostname's
// 450 for a temporary failure (unknown_client_reject_code for a forged
// name). A real DNS server answers; a client's PTR is asked once for
// two transactions of one session.
func TestPeernameOncePerSession(t *testing.T) {
	addr, z := startRecords(t, `
70.0.0.127.in-addr.arpa. 300 IN PTR mail.example.net.
mail.example.net. 300 IN A 127.0.0.70
71.0.0.127.in-addr.arpa. 300 IN PTR forged.example.net.
forged.example.net. 300 IN A 192.0.2.1
73.0.0.127.in-addr.arpa. 300 IN PTR blocked.example.net.
blocked.example.net. 300 IN A 127.0.0.73
`, "72.0.0.127.in-addr.arpa")
	dir := t.TempDir()
	access := filepath.Join(dir, "client_access")
	if err := os.WriteFile(access, []byte("blocked.example.net REJECT no mail from this host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "mail.log")
	s := newStack(t, "smtpgate_dns_servers = "+addr+"\nsmtpgate_maillog_file = "+logFile+"\n"+
		"unknown_client_reject_code = 550\n"+
		"smtpd_client_restrictions = check_client_access texthash:"+access+", reject_unknown_client_hostname\n")

	// A verified name: accepted, twice in one session, with the name in
	// the Received header.
	c, err := s.dial("127.0.0.70", "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for i := range 2 {
		m := message{sender: "someone@example.net", rcpts: []string{"john@example.org"}, token: newToken("peer")}
		tx := transact
		if i > 0 {
			tx = mailTx
		}
		if err := tx(c, m); err != nil {
			t.Fatalf("verified client: %v", err)
		}
		tokens = append(tokens, m.token)
	}
	_ = c.Quit()
	if n := z.asked("70.0.0.127.in-addr.arpa", "PTR"); n != 1 {
		t.Errorf("the PTR of 127.0.0.70 was asked %d times for one session, want 1", n)
	}
	for _, tok := range tokens {
		if b := eventuallyFile(t, s, tok); !strings.Contains(b, "Received: from client.example.net (mail.example.net [127.0.0.70])") {
			t.Errorf("Received header without the verified name:\n%s", b)
		}
	}

	for _, tc := range []struct {
		from, want string
	}{
		// PTR name that does not resolve back: unknown, and
		// unknown_client_reject_code.
		{"127.0.0.71", "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.71]"},
		// SERVFAIL on the PTR: a temporary failure, 450 whatever
		// unknown_client_reject_code says.
		{"127.0.0.72", "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.72]"},
		// The verified name is what check_client_access looks up.
		{"127.0.0.73", "554 5.7.1 <blocked.example.net[127.0.0.73]>: Client host rejected: no mail from this host"},
	} {
		err := s.send(message{from: tc.from, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}})
		if got := replyOf(err); got != tc.want {
			t.Errorf("client %s: got %q, want %q", tc.from, got, tc.want)
		}
	}

	s.kill("edge") // the disconnect lines are written
	b, _ := os.ReadFile(logFile)
	log := string(b)
	for _, want := range []string{
		"connect from mail.example.net[127.0.0.70]",
		"disconnect from mail.example.net[127.0.0.70]",
		"warning: hostname forged.example.net does not resolve to address 127.0.0.71",
		"connect from unknown[127.0.0.71]",
		"connect from unknown[127.0.0.72]",
		"NOQUEUE: reject: RCPT from blocked.example.net[127.0.0.73]: 554 5.7.1",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("mail log lacks %q:\n%s", want, log)
		}
	}
}

// eventuallyFile is the Maildir file holding token, waiting for it.
func eventuallyFile(t *testing.T, s *stack, token string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, ok := s.maildirTokens()[token]; ok {
			return s.maildirFile(token)
		}
	}
	t.Fatalf("no Maildir file holds %s", token)
	return ""
}
