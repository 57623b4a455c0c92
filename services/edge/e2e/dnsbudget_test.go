package e2e

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// deadDNS is a UDP "DNS server" on 127.0.0.1 that reads every query and
// never answers, until the test ends.
func deadDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestDNSBudgetDeadServer: with a DNS server that never answers, a list
// of one, three and six DNS checks is answered with the DNS checks' own
// temporary failure (reject_unknown_sender_domain's 450 4.1.8, Postfix's)
// before the edge's deadline (smtpgate_policy_timeout = 3s here), never
// with the edge's 451 4.3.0: every lookup gets what is left of the
// check's deadline minus a margin. Each needs more than the deadline
// (smtpgate_dns_timeout 2s per try, 2 tries, per lookup). The times are
// logged, not asserted.
func TestDNSBudgetDeadServer(t *testing.T) {
	dead := deadDNS(t)
	dir := t.TempDir()
	classes := filepath.Join(dir, "classes")
	bogus := filepath.Join(dir, "bogus_mx")
	if err := os.WriteFile(classes, []byte("one.example one\nthree.example three\nsix.example six\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bogus, []byte("10.0.0.0/8 REJECT Domain MX in RFC 1918 private network\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, "smtpgate_dns_servers = "+dead+"\nsmtpgate_dns_timeout = 2s\n"+
		"smtpd_restriction_classes = one, three, six\n"+
		"one = reject_unknown_sender_domain\n"+
		"three = reject_unknown_sender_domain, reject_rhsbl_sender rhsbl.test, reject_rbl_client bl.test\n"+
		"six = reject_unknown_sender_domain, reject_rhsbl_sender rhsbl.test, reject_rbl_client bl.test, "+
		"check_sender_mx_access cidr:"+bogus+", check_sender_ns_access cidr:"+bogus+", reject_unknown_helo_hostname\n"+
		"smtpd_sender_restrictions = check_sender_access texthash:"+classes+"\n")
	for _, tc := range []struct {
		checks int
		sender string
	}{
		{1, "someone@one.example"},
		{3, "someone@three.example"},
		{6, "someone@six.example"},
	} {
		start := time.Now()
		c, err := s.dial(Stranger, "mx", false) // the greeting follows the connect check
		if err != nil {
			t.Fatalf("%d DNS checks: connect: %v", tc.checks, err)
		}
		greeted := time.Since(start)
		if err := c.Hello("client.example.net"); err != nil {
			t.Fatalf("%d DNS checks: EHLO: %v", tc.checks, err)
		}
		if err := c.Mail(tc.sender); err != nil {
			t.Fatalf("%d DNS checks: MAIL: %v", tc.checks, err)
		}
		rcpt := time.Now()
		got := replyOf(c.Rcpt("john@example.org"))
		t.Logf("%d DNS checks: %q after %v at RCPT (greeting after %v, the PTR lookup's)", tc.checks, got,
			time.Since(rcpt).Round(time.Millisecond), greeted.Round(time.Millisecond))
		c.Close()
		if want := "450 4.1.8 <" + tc.sender + ">: Sender address rejected: Domain not found"; got != want {
			t.Errorf("%d DNS checks: got %q, want %q", tc.checks, got, want)
		}
	}
}
