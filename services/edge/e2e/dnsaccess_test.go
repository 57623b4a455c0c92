package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBogusMXRecipe: SMTPD_ACCESS_README's recipe against sender domains
// whose MX points into private or reserved networks
// (check_sender_mx_access cidr:bogus_mx), through the three real binaries
// and a real DNS server: such a sender is refused at MAIL FROM with the
// table's text, a domain with a public MX and the null sender are not.
func TestBogusMXRecipe(t *testing.T) {
	addr, _ := startRecords(t, `
bogus.example. 300 IN MX 10 mx.bogus.example.
mx.bogus.example. 300 IN A 192.168.1.25
good.example. 300 IN MX 10 mx.good.example.
mx.good.example. 300 IN A 198.51.100.25
`)
	dir := t.TempDir()
	table := filepath.Join(dir, "bogus_mx")
	if err := os.WriteFile(table, []byte(`# SMTPD_ACCESS_README
0.0.0.0/8       REJECT Domain MX in broadcast network
10.0.0.0/8      REJECT Domain MX in RFC 1918 private network
127.0.0.0/8     REJECT Domain MX in loopback network
169.254.0.0/16  REJECT Domain MX in link local network
172.16.0.0/12   REJECT Domain MX in RFC 1918 private network
192.168.0.0/16  REJECT Domain MX in RFC 1918 private network
224.0.0.0/4     REJECT Domain MX in class D multicast network
240.0.0.0/5     REJECT Domain MX in class E reserved network
248.0.0.0/5     REJECT Domain MX in IANA reserved network
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, "smtpgate_dns_servers = "+addr+"\nsmtpd_delay_reject = no\n"+
		"smtpd_sender_restrictions = check_sender_mx_access cidr:"+table+"\n")
	var l ledger
	l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "someone@bogus.example", rcpts: []string{"john@example.org"}},
		"554 5.7.1 <someone@bogus.example>: Sender address rejected: Domain MX in RFC 1918 private network")
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "someone@good.example", rcpts: []string{"john@example.org"}})
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "", rcpts: []string{"john@example.org"}})
	l.checkMaildir(t, s)
}
