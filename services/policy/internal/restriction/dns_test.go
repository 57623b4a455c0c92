package restriction

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/resolver"
)

// compileDNS compiles base+extra with the resolver r, after writing the
// table files ("TABLES/" is their directory).
func compileDNS(t *testing.T, r *resolver.Resolver, files map[string]string, extra string) (*Engine, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return CompileWith(config(t, strings.ReplaceAll(extra, "TABLES/", dir+"/")), Options{DNS: r})
}

func deferred(code int, dsn, text string) Verdict {
	return Verdict{Action: ActionDefer, Reply: Reply{code, dsn, text}, Restriction: "defer_if_permit"}
}

func TestDNSRestrictions(t *testing.T) {
	stub := startDNSStub(t)
	r := testResolver(t, stub)
	const blReason = "listed: see http://bl.test/127.0.0.2"
	for _, tc := range []struct {
		name  string
		files map[string]string
		conf  string
		facts *Facts
		want  Verdict
	}{
		// reject_rbl_client
		{"rbl: test entry", nil, "smtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("127.0.0.2")), refused(554, "5.7.1", "Service unavailable; Client host [127.0.0.2] blocked using bl.test; "+blReason, "reject_rbl_client bl.test", "smtpd_client_restrictions")},
		{"rbl: TXT records joined", nil, "smtpd_client_restrictions = reject_rbl_client bl.test",
			facts(), refused(554, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using bl.test; spam source / second reason", "", "")},
		{"rbl: IPv6 by nibbles, no TXT", nil, "smtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("2001:db8::5")), refused(554, "5.7.1", "Service unavailable; Client host [2001:db8::5] blocked using bl.test", "", "")},
		{"rbl: not listed", nil, "smtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("198.51.100.7")), permitted()},
		{"rbl: filter that the answer does not match", nil, "smtpd_client_restrictions = reject_rbl_client bl.test=127.0.0.2",
			facts(), permitted()},
		{"rbl: filter range", nil, "smtpd_client_restrictions = reject_rbl_client bl.test=127.0.0.[2..4]",
			facts(), refused(554, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using bl.test; spam source / second reason", "reject_rbl_client bl.test=127.0.0.[2..4]", "smtpd_client_restrictions")},
		{"rbl: filter list", nil, "smtpd_client_restrictions = reject_rbl_client bl.test=127.0.[0;1].[1;3;9]",
			facts(), permitted()},
		{"rbl: a list that fails is the benefit of the doubt", nil, "smtpd_client_restrictions = reject_rbl_client servfail.test, reject_rbl_client timeout.test",
			facts(), permitted()},
		{"rbl: maps_rbl_reject_code and soft_bounce", nil, "maps_rbl_reject_code = 550\nsoft_bounce = yes\nsmtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("127.0.0.2")), refused(450, "4.7.1", "Service unavailable; Client host [127.0.0.2] blocked using bl.test; "+blReason, "", "")},
		{"rbl: rbl_reply_maps template", map[string]string{"replies": "bl.test 421 4.7.0 Go away, $client_address is listed at $rbl_domain${rbl_reason?: $rbl_reason}\n"}, "rbl_reply_maps = texthash:TABLES/replies\nsmtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("127.0.0.2")), Verdict{Action: ActionDefer, Reply: Reply{421, "4.7.0", "Go away, 127.0.0.2 is listed at bl.test: " + blReason}, Disconnect: true}},
		{"rbl: a bad template falls back to default_rbl_reply", map[string]string{"replies": "bl.test $no_such_thing\n"}, "rbl_reply_maps = texthash:TABLES/replies\nsmtpd_client_restrictions = reject_rbl_client bl.test",
			facts(from("127.0.0.2")), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "Service unavailable; Client host [127.0.0.2] blocked using bl.test; " + blReason}, Warnings: []string{"rbl_reply_maps: bad rbl reply template for domain bl.test: $no_such_thing"}}},
		// the RHSBL restrictions
		{"rhsbl sender", nil, "smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.test",
			facts(sender("x@bad.example")), refused(554, "5.7.1", "Service unavailable; Sender address [x@bad.example] blocked using rhsbl.test; bad domain", "reject_rhsbl_sender rhsbl.test", "smtpd_sender_restrictions")},
		{"rhsbl sender: null sender and literal are not looked up", nil, "smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.test",
			facts(sender("")), permitted()},
		{"rhsbl helo", nil, "smtpd_helo_restrictions = reject_rhsbl_helo rhsbl.test",
			facts(helo("bad.example")), refused(554, "5.7.1", "Service unavailable; Helo command [bad.example] blocked using rhsbl.test; bad domain", "", "")},
		{"rhsbl helo: numerical last label skipped", nil, "smtpd_helo_restrictions = reject_rhsbl_helo rhsbl.test",
			facts(helo("192.0.2.1")), permitted()},
		{"rhsbl recipient", nil, "smtpd_relay_restrictions = reject_rhsbl_recipient rhsbl.test, reject_unauth_destination",
			facts(to("john@bad.example")), refused(554, "5.7.1", "Service unavailable; Recipient address [john@bad.example] blocked using rhsbl.test; bad domain", "", "")},
		{"rhsbl client: the verified name", nil, "smtpd_client_restrictions = reject_rhsbl_client rhsbl.test",
			facts(), refused(554, "5.7.1", "Service unavailable; Client host [mail.good.example] blocked using rhsbl.test", "", "")},
		{"rhsbl client: a forged name is not the client's", nil, "smtpd_client_restrictions = reject_rhsbl_client rhsbl.test",
			facts(from("203.0.113.6")), permitted()},
		{"rhsbl reverse client: the PTR name, verified or not", nil, "smtpd_client_restrictions = reject_rhsbl_reverse_client rhsbl.test",
			facts(from("203.0.113.6")), refused(554, "5.7.1", "Service unavailable; Unverified Client host [forged.example] blocked using rhsbl.test", "", "")},
		// allow lists
		{"dnswl permits the client list", nil, "smtpd_client_restrictions = permit_dnswl_client wl.test, reject_rbl_client bl.test",
			facts(), permitted()},
		{"dnswl does not let a stranger relay", nil, "smtpd_relay_restrictions = permit_dnswl_client wl.test, reject_unauth_destination",
			facts(to("x@elsewhere.example")), relayDenied("x@elsewhere.example")},
		{"dnswl failing turns a later reject into a deferral", nil, "smtpd_client_restrictions = permit_dnswl_client servfail.test, reject_rbl_client bl.test",
			facts(from("127.0.0.2")), refused(450, "4.7.1", "<127.0.0.2>: Client host rejected: Service unavailable", "reject_rbl_client bl.test", "smtpd_client_restrictions")},
		{"rhswl permits the verified name", nil, "smtpd_client_restrictions = permit_rhswl_client wl.test, reject",
			facts(), permitted()},
		// client names
		{"unknown client: verified", nil, "smtpd_client_restrictions = reject_unknown_client_hostname",
			facts(), permitted()},
		{"unknown client: verified IPv6", nil, "smtpd_client_restrictions = reject_unknown_client_hostname",
			facts(from("2001:db8::5")), permitted()},
		{"unknown client: forged", nil, "smtpd_client_restrictions = reject_unknown_client_hostname",
			facts(from("203.0.113.6")), refused(450, "4.7.25", "Client host rejected: cannot find your hostname, [203.0.113.6]", "reject_unknown_client_hostname", "smtpd_client_restrictions")},
		{"unknown client: no PTR, unknown_client_reject_code", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_client",
			facts(from("203.0.113.7")), refused(550, "5.7.25", "Client host rejected: cannot find your hostname, [203.0.113.7]", "reject_unknown_client", "smtpd_client_restrictions")},
		{"unknown client: PTR SERVFAIL is 450 whatever the code", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_client_hostname",
			facts(from("203.0.113.8")), refused(450, "4.7.25", "Client host rejected: cannot find your hostname, [203.0.113.8]", "", "")},
		{"unknown client: PTR timeout is 450", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_client_hostname",
			facts(from("203.0.113.10")), refused(450, "4.7.25", "Client host rejected: cannot find your hostname, [203.0.113.10]", "", "")},
		{"unknown client: forward lookup timeout is 450", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_client_hostname",
			facts(from("203.0.113.9")), refused(450, "4.7.25", "Client host rejected: cannot find your hostname, [203.0.113.9]", "", "")},
		{"unknown reverse client: a forged PTR is a PTR", nil, "smtpd_client_restrictions = reject_unknown_reverse_client_hostname",
			facts(from("203.0.113.6")), permitted()},
		{"unknown reverse client: no PTR", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_reverse_client_hostname",
			facts(from("203.0.113.7")), refused(550, "5.7.1", "Client host rejected: cannot find your reverse hostname, [203.0.113.7]", "reject_unknown_reverse_client_hostname", "smtpd_client_restrictions")},
		{"unknown reverse client: SERVFAIL", nil, "unknown_client_reject_code = 550\nsmtpd_client_restrictions = reject_unknown_reverse_client_hostname",
			facts(from("203.0.113.8")), refused(450, "4.7.1", "Client host rejected: cannot find your reverse hostname, [203.0.113.8]", "", "")},
		// HELO
		{"unknown helo: MX only", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("mx.example")), permitted()},
		{"unknown helo: null MX is a name", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("nullmx.example")), permitted()},
		{"unknown helo: NXDOMAIN", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("nx.example")), refused(450, "4.7.1", "<nx.example>: Helo command rejected: Host not found", "reject_unknown_helo_hostname", "smtpd_helo_restrictions")},
		{"unknown helo: unknown_hostname_reject_code", nil, "unknown_hostname_reject_code = 550\nsmtpd_helo_restrictions = reject_unknown_hostname",
			facts(helo("nx.example")), refused(550, "5.7.1", "<nx.example>: Helo command rejected: Host not found", "", "")},
		{"unknown helo: SERVFAIL is defer_if_permit", nil, "unknown_hostname_reject_code = 550\nsmtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("servfail.example")), deferred(450, "4.7.1", "<servfail.example>: Helo command rejected: Host not found")},
		{"unknown helo: defer_if_permit yields to a reject", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname, reject",
			facts(helo("servfail.example")), refused(554, "5.7.1", "<servfail.example>: Helo command rejected: Access denied", "", "")},
		{"unknown helo: unknown_helo_hostname_tempfail_action = defer", nil, "unknown_helo_hostname_tempfail_action = defer\nsmtpd_helo_restrictions = reject_unknown_helo_hostname, reject",
			facts(helo("host.timeout.example")), refused(450, "4.7.1", "<host.timeout.example>: Helo command rejected: Host not found", "reject_unknown_helo_hostname", "smtpd_helo_restrictions")},
		{"unknown helo: bad address literal", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("[192.0.2]")), refused(501, "5.5.2", "<[192.0.2]>: Helo command rejected: invalid ip address", "", "")},
		{"unknown helo: address literal", nil, "smtpd_helo_restrictions = reject_unknown_helo_hostname",
			facts(helo("[192.0.2.1]")), permitted()},
		// sender and recipient domains
		{"unknown sender domain: MX", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@mx.example")), permitted()},
		{"unknown sender domain: A only", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@aonly.example")), permitted()},
		{"unknown sender domain: NXDOMAIN", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@nx.example")), refused(450, "4.1.8", "<x@nx.example>: Sender address rejected: Domain not found", "reject_unknown_sender_domain", "smtpd_sender_restrictions")},
		{"unknown sender domain: unknown_address_reject_code", nil, "unknown_address_reject_code = 550\nsmtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@nx.example")), refused(550, "5.1.8", "<x@nx.example>: Sender address rejected: Domain not found", "", "")},
		{"unknown sender domain: null MX", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@nullmx.example")), refused(550, "5.7.27", "<x@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)", "", "")},
		{"unknown sender domain: SERVFAIL is defer_if_permit", nil, "unknown_address_reject_code = 550\nsmtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@servfail.example")), deferred(450, "4.1.8", "<x@servfail.example>: Sender address rejected: Domain not found")},
		{"unknown sender domain: a server that never answers is defer_if_permit", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@timeout.example")), deferred(450, "4.1.8", "<x@timeout.example>: Sender address rejected: Domain not found")},
		{"unknown sender domain: unknown_address_tempfail_action = defer", nil, "unknown_address_tempfail_action = defer\nsmtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@timeout.example")), refused(450, "4.1.8", "<x@timeout.example>: Sender address rejected: Domain not found", "reject_unknown_sender_domain", "smtpd_sender_restrictions")},
		{"unknown sender domain: our own domain, literals and the null sender are not looked up", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@example.org")), permitted()},
		{"unknown sender domain: address literal", nil, "smtpd_sender_restrictions = reject_unknown_sender_domain",
			facts(sender("x@[192.0.2.1]")), permitted()},
		{"unknown recipient domain: null MX", nil, "smtpd_relay_restrictions = reject_unknown_recipient_domain, reject_unauth_destination",
			facts(to("u@nullmx.example")), refused(556, "5.1.10", "<u@nullmx.example>: Recipient address rejected: Domain nullmx.example does not accept mail (nullMX)", "reject_unknown_recipient_domain", "smtpd_relay_restrictions")},
		{"unknown recipient domain: NXDOMAIN", nil, "smtpd_relay_restrictions = reject_unknown_recipient_domain, reject_unauth_destination",
			facts(to("u@nx.example")), refused(450, "4.1.2", "<u@nx.example>: Recipient address rejected: Domain not found", "", "")},
		// SPF
		{"spf fail", nil, "smtpd_recipient_restrictions = check_spf",
			facts(sender("x@spffail.example")), refused(550, "5.7.23", "<x@spffail.example>: Sender address rejected: SPF fail - not authorized", "check_spf", "smtpd_recipient_restrictions")},
		{"spf temperror", nil, "smtpd_recipient_restrictions = check_spf",
			facts(sender("x@spftemp.example")), refused(451, "4.7.24", "<x@spftemp.example>: Sender address rejected: SPF temporary error", "", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileDNS(t, r, tc.files, tc.conf)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := verdictOf(t, e, tc.facts, tc.want)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckSPFHeaderAndActions(t *testing.T) {
	stub := startDNSStub(t)
	r := testResolver(t, stub)
	for _, tc := range []struct {
		name, conf, sender string
		action             Action
		header             string // prefix of the Received-SPF value
		warnings           []string
	}{
		{"pass", "", "x@spfpass.example", ActionPermit, "Received-SPF: pass (mail.example.org: domain of x@spfpass.example designates 203.0.113.5 as permitted sender)", nil},
		{"softfail warns", "", "x@spfsoft.example", ActionPermit, "Received-SPF: softfail ", []string{"warn: <x@spfsoft.example>: Sender address: SPF softfail - not authorized (203.0.113.5)"}},
		{"permerror ignored", "", "x@spfperm.example", ActionPermit, "Received-SPF: permerror ", nil},
		{"none", "", "x@aonly.example", ActionPermit, "Received-SPF: none ", nil},
		{"fail as a warning", "smtpgate_spf_fail_action = warn\n", "x@spffail.example", ActionPermit, "Received-SPF: fail ", []string{"warn: <x@spffail.example>: Sender address: SPF fail - not authorized (203.0.113.5)"}},
		{"temperror ignored", "smtpgate_spf_temperror_action = ignore\n", "x@spftemp.example", ActionPermit, "Received-SPF: temperror ", nil},
		{"softfail rejected", "smtpgate_spf_softfail_action = reject\n", "x@spfsoft.example", ActionReject, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileDNS(t, r, nil, tc.conf+"smtpd_recipient_restrictions = check_spf, check_spf")
			if err != nil {
				t.Fatal(err)
			}
			v, err := e.Check(context.Background(), facts(sender(tc.sender)))
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tc.action {
				t.Fatalf("action %v, want %v (%v)", v.Action, tc.action, v.Reply)
			}
			if tc.header == "" {
				return
			}
			// check_spf twice in the list: one evaluation, one header.
			if len(v.Prepend) != 1 || !strings.HasPrefix(v.Prepend[0], tc.header) {
				t.Errorf("prepend %q, want one starting %q", v.Prepend, tc.header)
			}
			if diff := cmp.Diff(tc.warnings, v.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDNSNeedsResolver(t *testing.T) {
	for _, conf := range []string{
		"smtpd_client_restrictions = reject_rbl_client bl.test",
		"smtpd_client_restrictions = reject_unknown_client_hostname",
		"smtpd_recipient_restrictions = check_spf",
	} {
		_, err := CompileWith(config(t, conf), Options{})
		if err == nil || !strings.Contains(err.Error(), "needs a resolver") {
			t.Errorf("%s: got %v, want a \"needs a resolver\" error", conf, err)
		}
	}
	r := testResolver(t, startDNSStub(t))
	for conf, want := range map[string]string{
		"smtpd_client_restrictions = reject_rbl_client":                               "needs a domain name after it",
		"smtpd_client_restrictions = reject_rbl_client, reject":                       "needs a domain name after it",
		"smtpd_client_restrictions = reject_rbl_client bl.test=127.0.0":               "want four octets",
		"smtpd_client_restrictions = reject_rbl_client bl.test=1.2.3.[9..2]":          "bad octet list",
		"smtpgate_spf_fail_action = bounce\nsmtpd_recipient_restrictions = check_spf": "want reject, defer, warn or ignore",
	} {
		_, err := compileDNS(t, r, nil, conf)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", conf, err, want)
		}
	}
}

func TestDNSExplainShowsLookups(t *testing.T) {
	r := testResolver(t, startDNSStub(t))
	e, err := compileDNS(t, r, nil, "smtpd_client_restrictions = reject_unknown_client_hostname, reject_rbl_client bl.test")
	if err != nil {
		t.Fatal(err)
	}
	_, steps, err := e.Explain(context.Background(), facts(from("127.0.0.2")))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]Lookup
	for _, s := range steps {
		got = append(got, s.Lookups)
	}
	want := [][]Lookup{
		{{Table: "dns", Key: "2.0.0.127.in-addr.arpa PTR", Value: "not found"}},
		{
			{Table: "dns", Key: "2.0.0.127.bl.test A", Found: true, Value: "127.0.0.2"},
			{Table: "dns", Key: "2.0.0.127.bl.test TXT", Found: true, Value: "listed: see http://bl.test/127.0.0.2"},
		},
	}
	// The first step refuses (no PTR): evaluate the second alone.
	if diff := cmp.Diff(want[:1], got); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
	e, err = compileDNS(t, r, nil, "smtpd_client_restrictions = reject_rbl_client bl.test")
	if err != nil {
		t.Fatal(err)
	}
	_, steps, _ = e.Explain(context.Background(), facts(from("127.0.0.2")))
	if len(steps) != 1 {
		t.Fatalf("steps %v", steps)
	}
	if diff := cmp.Diff(want[1], steps[0].Lookups); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
}

// The open-relay check accepts allow lists before
// reject_unauth_destination: they only permit authorised recipients.
func TestDNSAllowListsDoNotOpenRelay(t *testing.T) {
	r := testResolver(t, startDNSStub(t))
	for _, list := range []string{
		"permit_dnswl_client wl.test, permit_rhswl_client wl.test, reject_unauth_destination",
		"permit_dnswl_client wl.test, permit_rhswl_client wl.test, permit_auth_destination, reject",
	} {
		e, err := compileDNS(t, r, nil, "smtpd_relay_restrictions = "+list)
		if err != nil {
			t.Fatalf("%s: %v", list, err)
		}
		v, err := e.Check(context.Background(), facts(to("x@elsewhere.example")))
		if err != nil {
			t.Fatal(err)
		}
		if v.Action == ActionPermit {
			t.Errorf("%s: a listed stranger relays", list)
		}
		if v, _ := e.Check(context.Background(), facts()); v.Action != ActionPermit {
			t.Errorf("%s: listed client to a local user: %v", list, v)
		}
	}
}

func TestFilterParse(t *testing.T) {
	f, err := parseIPFilter("127.0.[0..2].[2;4;10..12]")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"127.0.0.2": true, "127.0.2.11": true, "127.0.3.2": false, "127.0.1.5": false, "::1": false} {
		if got := f.matchAny([]netip.Addr{netip.MustParseAddr(addr)}); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
}

func TestJoinTXT(t *testing.T) {
	long := strings.Repeat("x", 300)
	got := joinTXT([]string{long, long})
	if len(got) != rblTXTLimit || !strings.HasPrefix(got, long+" / ") {
		t.Errorf("joinTXT: %d octets %q...", len(got), got[:310])
	}
}

// BenchmarkCachedDNSBL is a reject_rbl_client check answered from the
// in-process cache.
func BenchmarkCachedDNSBL(b *testing.B) {
	stub := startDNSStub(b)
	r, err := resolver.New(resolver.Config{Servers: []string{stub.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	f, err := maincf.Parse("main.cf", strings.NewReader(base+"smtpd_client_restrictions = reject_rbl_client bl.test, reject_rhsbl_sender rhsbl.test\n"))
	if err != nil {
		b.Fatal(err)
	}
	e, err := CompileWith(maincf.New(testCatalogue(), f, b.TempDir()), Options{DNS: r})
	if err != nil {
		b.Fatal(err)
	}
	fs := facts(from("198.51.100.7"))
	ctx := context.Background()
	if v, _ := e.Check(ctx, fs); v.Action != ActionPermit {
		b.Fatal(v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Check(ctx, fs); err != nil {
			b.Fatal(err)
		}
	}
}
