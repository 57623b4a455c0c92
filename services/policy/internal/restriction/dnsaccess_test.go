package restriction

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The checks on DNS data (check_*_{a,mx,ns}_access) as Postfix 3.7's
// check_server_access() makes them, against a real DNS server.
func TestServerAccess(t *testing.T) {
	stub := startDNSStub(t)
	r := testResolver(t, stub)
	// SMTPD_ACCESS_README's bogus_mx table, as people paste it.
	bogus := map[string]string{"bogus_mx": `0.0.0.0/8       REJECT Domain MX in broadcast network
10.0.0.0/8      REJECT Domain MX in RFC 1918 private network
127.0.0.0/8     REJECT Domain MX in loopback network
169.254.0.0/16  REJECT Domain MX in link local network
172.16.0.0/12   REJECT Domain MX in RFC 1918 private network
192.0.2.0/24    REJECT Domain MX in TEST-NET network
192.168.0.0/16  REJECT Domain MX in RFC 1918 private network
224.0.0.0/4     REJECT Domain MX in class D multicast network
240.0.0.0/5     REJECT Domain MX in class E reserved network
248.0.0.0/5     REJECT Domain MX in IANA reserved network
`}
	names := map[string]string{"names": "mx.spamhost.example REJECT spam MX\nbadns.example REJECT bad name server\naonly.example REJECT the A check looks up no name\n192.0.2.1 REJECT bad address\n"}
	ok := map[string]string{"ok": "10.1.2.3 OK\n"}
	const mx = "smtpd_sender_restrictions = check_sender_mx_access cidr:TABLES/bogus_mx"
	for _, tc := range []struct {
		name  string
		files map[string]string
		conf  string
		facts *Facts
		want  Verdict
		warn  string // a warning the verdict must hold
	}{
		{"bogus MX: private network", bogus, mx, facts(sender("x@bogus.example")),
			refused(554, "5.7.1", "<x@bogus.example>: Sender address rejected: Domain MX in RFC 1918 private network", "", ""), ""},
		{"bogus MX: a domain without MX is its own MX", bogus, mx, facts(sender("x@aonly.example")),
			refused(554, "5.7.1", "<x@aonly.example>: Sender address rejected: Domain MX in TEST-NET network", "", ""), ""},
		{"bogus MX: an address literal is its own MX", bogus, mx, facts(sender("x@[10.9.8.7]")),
			refused(554, "5.7.1", "<x@[10.9.8.7]>: Sender address rejected: Domain MX in RFC 1918 private network", "", ""), ""},
		{"bogus MX: a public MX", bogus, mx, facts(sender("x@mx.example")), permitted(), ""},
		{"bogus MX: null MX ends the check", bogus, mx, facts(sender("x@nullmx.example")), permitted(), ""},
		{"bogus MX: the null sender is not checked", bogus, mx, facts(sender("")), permitted(), ""},
		{"bogus MX: SERVFAIL is DUNNO with a warning", bogus, mx, facts(sender("x@servfail.example")), permitted(), "Unable to look up MX host for servfail.example"},
		{"bogus MX: an MX host without address is skipped", bogus, mx, facts(sender("x@noaddr.example")), permitted(), "Unable to look up MX host nothere.example for Sender address x@noaddr.example"},
		{"MX: the servers name before its addresses", names, "smtpd_sender_restrictions = check_sender_mx_access texthash:TABLES/names", facts(sender("x@spammx.example")),
			refused(554, "5.7.1", "<x@spammx.example>: Sender address rejected: spam MX", "", ""), ""},
		{"A: addresses only no name", names, "smtpd_sender_restrictions = check_sender_a_access texthash:TABLES/names", facts(sender("x@aonly.example")),
			refused(554, "5.7.1", "<x@aonly.example>: Sender address rejected: bad address", "", ""), ""},
		{"NS: a name without NS has its parents matched by parent domain", names, "smtpd_sender_restrictions = check_sender_ns_access texthash:TABLES/names", facts(sender("x@sub.nsparent.example")),
			refused(554, "5.7.1", "<x@sub.nsparent.example>: Sender address rejected: bad name server", "", ""), ""},
		{"NS: an address literal has none", names, "smtpd_sender_restrictions = check_sender_ns_access texthash:TABLES/names", facts(sender("x@[192.0.2.1]")), permitted(), ""},
		{"OK is a configuration error", ok, "smtpd_sender_restrictions = check_sender_mx_access texthash:TABLES/ok", facts(sender("x@bogus.example")),
			refused(451, "4.3.5", "Server configuration error", "", ""), "restriction check_sender_mx_access returns OK for x@bogus.example"},
		{"client A: the verified name", bogus, "smtpd_client_restrictions = check_client_a_access cidr:TABLES/bogus_mx", facts(from("203.0.113.5")),
			permitted(), ""},
		{"client MX: unknown client is not checked", bogus, "smtpd_client_restrictions = check_client_mx_access cidr:TABLES/bogus_mx", facts(from("198.51.100.7")), permitted(), ""},
		{"reverse client A", names, "smtpd_client_restrictions = check_reverse_client_hostname_a_access texthash:TABLES/names",
			facts(from("203.0.113.6")), permitted(), ""},
		{"HELO MX", bogus, "smtpd_helo_restrictions = check_helo_mx_access cidr:TABLES/bogus_mx", facts(helo("bogus.example")),
			refused(554, "5.7.1", "<bogus.example>: Helo command rejected: Domain MX in RFC 1918 private network", "", ""), ""},
		{"recipient MX", bogus, "smtpd_relay_restrictions = check_recipient_mx_access cidr:TABLES/bogus_mx, reject_unauth_destination", facts(to("u@bogus.example")),
			refused(554, "5.7.1", "<u@bogus.example>: Recipient address rejected: Domain MX in RFC 1918 private network", "", ""), ""},
		{"client A: verified names address", map[string]string{"c": "203.0.113.5 REJECT listed address\n"}, "smtpd_client_restrictions = check_client_a_access texthash:TABLES/c", facts(),
			refused(554, "5.7.1", "<mail.good.example[203.0.113.5]>: Client host rejected: listed address", "", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileDNS(t, r, tc.files, tc.conf)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := verdictOf(t, e, tc.facts, tc.want)
			warnings := got.Warnings
			got.Warnings = nil
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q lack %q", warnings, tc.warn)
			}
		})
	}
}

// TestCheckSPFHELOIdentity: smtpgate_spf_helo_identity = always checks the
// HELO identity (RFC 7208 §2.3) first for every sender, with its own
// Received-SPF field (identity=helo); the default checks it only as the
// null sender's MAIL FROM identity.
func TestCheckSPFHELOIdentity(t *testing.T) {
	r := testResolver(t, startDNSStub(t))
	for _, tc := range []struct {
		name, conf, helo, sender string
		want                     Verdict
		headers                  []string // prefixes, in order
	}{
		{"default: HELO not checked for a sender", "", "spffail.example", "x@spfpass.example", permitted(),
			[]string{"Received-SPF: pass (mail.example.org: domain of x@spfpass.example designates 203.0.113.5 as permitted sender)"}},
		{"always: a failing HELO is refused", "smtpgate_spf_helo_identity = always\n", "spffail.example", "x@spfpass.example",
			refused(550, "5.7.23", "<spffail.example>: Helo command rejected: SPF fail - not authorized", "check_spf", "smtpd_recipient_restrictions"), nil},
		{"always: a passing HELO then the sender", "smtpgate_spf_helo_identity = always\n", "spfpass.example", "x@spffail.example",
			refused(550, "5.7.23", "<x@spffail.example>: Sender address rejected: SPF fail - not authorized", "", ""), nil},
		{"always: both headers", "smtpgate_spf_helo_identity = always\n", "spfpass.example", "x@spfpass.example", permitted(),
			[]string{"Received-SPF: pass (mail.example.org: domain of spfpass.example designates 203.0.113.5 as permitted sender)", "Received-SPF: pass (mail.example.org: domain of x@spfpass.example"}},
		{"always: an address literal HELO is not checked", "smtpgate_spf_helo_identity = always\n", "[203.0.113.5]", "x@spfpass.example", permitted(),
			[]string{"Received-SPF: pass (mail.example.org: domain of x@spfpass.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileDNS(t, r, nil, tc.conf+"myhostname = mail.example.org\nsmtpd_recipient_restrictions = check_spf")
			if err != nil {
				t.Fatal(err)
			}
			got := verdictOf(t, e, facts(helo(tc.helo), sender(tc.sender)), tc.want)
			prepend := got.Prepend
			got.Prepend, got.Warnings = nil, nil
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
			if tc.headers == nil {
				return
			}
			if len(prepend) != len(tc.headers) {
				t.Fatalf("prepend %q, want %d fields", prepend, len(tc.headers))
			}
			for i, h := range tc.headers {
				if !strings.HasPrefix(prepend[i], h) {
					t.Errorf("field %d: %q, want it to start %q", i, prepend[i], h)
				}
			}
			if strings.Contains(tc.conf, "always") && len(prepend) == 2 && !strings.Contains(prepend[0], "identity=helo") {
				t.Errorf("the HELO field does not name its identity: %q", prepend[0])
			}
		})
	}
}
