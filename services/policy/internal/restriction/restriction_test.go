package restriction

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	policyparams "github.com/smtpgate/smtpgate/services/policy/params"
)

// base is the main.cf every test starts from; a test's settings go after
// it and win, as later settings do in main.cf.
const base = `
myhostname = mail.example.org
mydomain = example.org
mydestination = $mydomain, localhost
mynetworks = 127.0.0.0/8 [::1]/128 192.0.2.0/24
relay_domains = relay.example.net
virtual_alias_domains = alias.example
virtual_mailbox_domains = mbox.example
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_reject_unlisted_recipient = no
`

func config(t testing.TB, extra string) *maincf.Config {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(base+extra))
	if err != nil {
		t.Fatal(err)
	}
	return maincf.New(testCatalogue(), f, t.TempDir())
}

func compile(t testing.TB, extra string) *Engine {
	t.Helper()
	e, err := Compile(config(t, extra))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

const (
	strangerAddr = "203.0.113.5"
	trustedAddr  = "127.0.0.1"
)

// rcpt is a RCPT TO from a client at addr.
func rcpt(addr, recipient string) *Facts {
	return &Facts{
		Stage: Rcpt, SessionID: "test", ClientAddr: netip.MustParseAddr(addr),
		HELO: "client.example.net", InTransaction: true, Sender: "someone@example.net", Recipient: recipient,
	}
}

func relayDenied(rcpt string) Verdict {
	return Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<" + rcpt + ">: Relay access denied"},
		Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}
}

func check(t *testing.T, e *Engine, f *Facts, want Verdict) {
	t.Helper()
	got, err := e.Check(context.Background(), f)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check(%s %q) mismatch (-want +got):\n%s", f.Stage, f.Recipient, diff)
	}
}

func relayTricks(t *testing.T) []string {
	t.Helper()
	fh, err := os.Open("testdata/relay-tricks.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	s := bufio.NewScanner(fh)
	for s.Scan() {
		if l := s.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRelayTricks(t *testing.T) {
	e := compile(t, "")
	for _, addr := range relayTricks(t) {
		t.Run(addr, func(t *testing.T) {
			check(t, e, rcpt(strangerAddr, addr), relayDenied(addr))
			// A trusted client may relay, whatever the address says; the
			// next hop's problem.
			check(t, e, rcpt(trustedAddr, addr), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"})
			f := rcpt(strangerAddr, addr)
			f.SASLUsername = "john@example.org"
			check(t, e, f, Verdict{Action: ActionPermit, Restriction: "permit_sasl_authenticated", List: "smtpd_relay_restrictions"})
		})
	}
}

func TestAuthorisedDestinations(t *testing.T) {
	e := compile(t, "")
	for _, addr := range []string{
		"john@example.org", "john@EXAMPLE.org", "JOHN@Example.Org.", "postmaster@localhost", `"john"@example.org`,
		`"john smith"@example.org`, "john@relay.example.net", "john@sub.relay.example.net", "x@alias.example",
		"x@mbox.example", "postmaster", "PostMaster",
	} {
		t.Run(addr, func(t *testing.T) {
			check(t, e, rcpt(strangerAddr, addr), Verdict{Action: ActionPermit})
		})
	}
	// Subdomains of mydestination and virtual domains are not local.
	for _, addr := range []string{"x@sub.alias.example", "x@sub.mbox.example", "x@sub.localhost"} {
		t.Run(addr, func(t *testing.T) {
			check(t, e, rcpt(strangerAddr, addr), relayDenied(addr))
		})
	}
}

func TestRestrictions(t *testing.T) {
	remote := "lisa@example.com"
	for _, tc := range []struct {
		name  string
		extra string
		facts *Facts
		want  Verdict
	}{
		{"permit ends the list", "smtpd_relay_restrictions = permit, reject\nsmtpd_recipient_restrictions = reject_unauth_destination",
			rcpt(strangerAddr, "john@example.org"), Verdict{Action: ActionPermit, Restriction: "permit", List: "smtpd_relay_restrictions"}},
		{"reject in the recipient list", "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = reject",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<user@x>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_recipient_restrictions"}},
		{"names are case-insensitive", "smtpd_relay_restrictions = REJECT",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<user@x>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_relay_restrictions"}},
		{"reject_code", "reject_code = 550\nsmtpd_relay_restrictions = reject",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionReject, Reply: Reply{550, "5.7.1", "<user@x>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_relay_restrictions"}},
		{"reject_code 521 disconnects", "reject_code = 521\nsmtpd_relay_restrictions = reject",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionReject, Reply: Reply{521, "5.7.1", "<user@x>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_relay_restrictions", Disconnect: true}},
		{"defer", "smtpd_relay_restrictions = defer",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionDefer, Reply: Reply{450, "4.3.2", "<user@x>: Recipient address rejected: Try again later"}, Restriction: "defer", List: "smtpd_relay_restrictions"}},
		{"defer_code", "defer_code = 451\nsmtpd_relay_restrictions = defer",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionDefer, Reply: Reply{451, "4.3.2", "<user@x>: Recipient address rejected: Try again later"}, Restriction: "defer", List: "smtpd_relay_restrictions"}},
		{"defer_unauth_destination", "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination",
			rcpt(strangerAddr, remote), Verdict{Action: ActionDefer, Reply: Reply{454, "4.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "defer_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"defer_unauth_destination, local recipient", "smtpd_relay_restrictions = defer_unauth_destination",
			rcpt(strangerAddr, "john@example.org"), Verdict{Action: ActionPermit}},
		{"relay_domains_reject_code 550", "relay_domains_reject_code = 550",
			rcpt(strangerAddr, remote), Verdict{Action: ActionReject, Reply: Reply{550, "5.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"relay_domains_reject_code 450: the enhanced code follows", "relay_domains_reject_code = 450",
			rcpt(strangerAddr, remote), Verdict{Action: ActionDefer, Reply: Reply{450, "4.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"defer_unauth_destination with relay_domains_reject_code 450 gives Postfix's fallback", "relay_domains_reject_code = 450\nsmtpd_relay_restrictions = defer_unauth_destination",
			rcpt(strangerAddr, remote), Verdict{Action: ActionDefer, Reply: Reply{450, "4.7.1", "Service unavailable"}, Restriction: "defer_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"soft_bounce turns 554 5.7.1 into 454 4.7.1", "soft_bounce = yes",
			rcpt(strangerAddr, remote), Verdict{Action: ActionDefer, Reply: Reply{454, "4.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"soft_bounce and reject", "soft_bounce = yes\nreject_code = 550\nsmtpd_relay_restrictions = reject",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionDefer, Reply: Reply{450, "4.7.1", "<user@x>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_relay_restrictions"}},
		{"soft_bounce leaves 4xx alone", "soft_bounce = yes\nsmtpd_relay_restrictions = defer",
			rcpt(trustedAddr, "user@x"), Verdict{Action: ActionDefer, Reply: Reply{450, "4.3.2", "<user@x>: Recipient address rejected: Try again later"}, Restriction: "defer", List: "smtpd_relay_restrictions"}},
		{"permit_mynetworks IPv6", "",
			rcpt("::1", remote), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"}},
		{"permit_mynetworks IPv4-mapped", "",
			rcpt("::ffff:192.0.2.9", remote), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"}},
		{"permit_mynetworks, unknown client address", "",
			&Facts{Stage: Rcpt, InTransaction: true, Recipient: remote}, relayDenied(remote)},
		{"permit_mynetworks per mynetworks", "mynetworks = 203.0.113.0/24",
			rcpt(strangerAddr, remote), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"}},
		{"permit_auth_destination, then reject", "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_auth_destination, reject",
			rcpt(strangerAddr, "john@example.org"), Verdict{Action: ActionPermit, Restriction: "permit_auth_destination", List: "smtpd_recipient_restrictions"}},
		{"permit_auth_destination does not permit a relay", "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_auth_destination, reject",
			rcpt(strangerAddr, "lisa%example.com@example.org"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<lisa%example.com@example.org>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_recipient_restrictions"}},
		{"relay permit does not skip the recipient list", "smtpd_recipient_restrictions = reject",
			rcpt(trustedAddr, "john@example.org"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<john@example.org>: Recipient address rejected: Access denied"}, Restriction: "reject", List: "smtpd_recipient_restrictions"}},
		{"relay reject stops before the recipient list", "smtpd_recipient_restrictions = defer",
			rcpt(strangerAddr, remote), relayDenied(remote)},
		{"client list names the client", "smtpd_client_restrictions = reject",
			func() *Facts {
				f := rcpt(strangerAddr, "john@example.org")
				f.ClientName = "mail.example.net"
				return f
			}(), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<mail.example.net[203.0.113.5]>: Client host rejected: Access denied"}, Restriction: "reject", List: "smtpd_client_restrictions"}},
		{"client list, unknown name", "smtpd_client_restrictions = permit_sasl_authenticated, reject",
			rcpt("2001:db8::5", "john@example.org"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<unknown[2001:db8::5]>: Client host rejected: Access denied"}, Restriction: "reject", List: "smtpd_client_restrictions"}},
		{"helo list", "smtpd_helo_restrictions = reject",
			rcpt(strangerAddr, "john@example.org"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<client.example.net>: Helo command rejected: Access denied"}, Restriction: "reject", List: "smtpd_helo_restrictions"}},
		{"sender list", "smtpd_sender_restrictions = reject",
			rcpt(strangerAddr, "john@example.org"), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<someone@example.net>: Sender address rejected: Access denied"}, Restriction: "reject", List: "smtpd_sender_restrictions"}},
		{"sender list, null sender", "smtpd_sender_restrictions = reject",
			func() *Facts { f := rcpt(strangerAddr, "john@example.org"); f.Sender = ""; return f }(), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<>: Sender address rejected: Access denied"}, Restriction: "reject", List: "smtpd_sender_restrictions"}},
		{"data list", "smtpd_data_restrictions = reject",
			&Facts{Stage: Data, ClientAddr: netip.MustParseAddr(strangerAddr), InTransaction: true, RecipientCount: 2}, Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<DATA>: Data command rejected: Access denied"}, Restriction: "reject", List: "smtpd_data_restrictions"}},
		{"data list with one recipient: reject_unauth_destination sees it", "smtpd_data_restrictions = reject_unauth_destination",
			&Facts{Stage: Data, ClientAddr: netip.MustParseAddr(strangerAddr), InTransaction: true, Recipient: remote, RecipientCount: 1}, Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "smtpd_data_restrictions"}},
		{"end-of-data list", "smtpd_end_of_data_restrictions = defer",
			&Facts{Stage: EndOfData, ClientAddr: netip.MustParseAddr(strangerAddr), InTransaction: true, RecipientCount: 1}, Verdict{Action: ActionDefer, Reply: Reply{450, "4.3.2", "<END-OF-MESSAGE>: End-of-data rejected: Try again later"}, Restriction: "defer", List: "smtpd_end_of_data_restrictions"}},
		{"etrn list", "smtpd_etrn_restrictions = permit_mynetworks, reject",
			&Facts{Stage: ETRN, ClientAddr: netip.MustParseAddr(strangerAddr), ETRNDomain: "example.org"}, Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<example.org>: Etrn command rejected: Access denied"}, Restriction: "reject", List: "smtpd_etrn_restrictions"}},
		{"etrn list, trusted", "smtpd_etrn_restrictions = permit_mynetworks, reject",
			&Facts{Stage: ETRN, ClientAddr: netip.MustParseAddr(trustedAddr), ETRNDomain: "example.org"}, Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_etrn_restrictions"}},
		{"VRFY is checked as a recipient", "",
			&Facts{Stage: VRFY, ClientAddr: netip.MustParseAddr(strangerAddr), Recipient: remote}, relayDenied(remote)},
		{"bare postmaster is accepted before any list (RFC 5321 section 4.5.1)", "smtpd_client_restrictions = reject\nsmtpd_relay_restrictions = reject",
			rcpt(strangerAddr, "postmaster"), Verdict{Action: ActionPermit}},
		{"control characters in the reply become spaces", "smtpd_helo_restrictions = reject",
			func() *Facts { f := rcpt(strangerAddr, "john@example.org"); f.HELO = "a\tb\x00c"; return f }(), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<a b c>: Helo command rejected: Access denied"}, Restriction: "reject", List: "smtpd_helo_restrictions"}},
		{"restriction class decides, named as the list", "smtpd_restriction_classes = strangers\nstrangers = permit_mynetworks, reject_unauth_destination\nsmtpd_relay_restrictions = strangers, permit",
			rcpt(strangerAddr, remote), Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "strangers"}},
		{"restriction class permit ends the enclosing list", "smtpd_restriction_classes = trusted\ntrusted = permit_mynetworks\nsmtpd_relay_restrictions = trusted, reject",
			rcpt(trustedAddr, remote), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "trusted"}},
		{"restriction class without opinion: the enclosing list goes on", "smtpd_restriction_classes = trusted\ntrusted = permit_mynetworks\nsmtpd_relay_restrictions = trusted, reject_unauth_destination",
			rcpt(strangerAddr, remote), relayDenied(remote)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, compile(t, tc.extra), tc.facts, tc.want)
		})
	}
}

func TestLongReplyIsCut(t *testing.T) {
	e := compile(t, "")
	long := strings.Repeat("a", 600) + "@example.com"
	v, err := e.Check(context.Background(), rcpt(strangerAddr, long))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(v.Reply.String()); got != 510 {
		t.Errorf("reply length %d, want 510", got)
	}
}

// TestDelayReject checks which lists each stage evaluates, in which order,
// with smtpd_delay_reject = yes and no.
func TestDelayReject(t *testing.T) {
	// Every list ends with a restriction that has no opinion (a class that
	// says nothing), so every list in the plan is visible in the trace.
	const lists = `
smtpd_restriction_classes = nothing
nothing = permit_sasl_authenticated
smtpd_client_restrictions = nothing
smtpd_helo_restrictions = nothing
smtpd_sender_restrictions = nothing
smtpd_relay_restrictions = nothing, reject_unauth_destination
smtpd_recipient_restrictions = nothing
smtpd_data_restrictions = nothing
smtpd_end_of_data_restrictions = nothing
smtpd_etrn_restrictions = nothing
`
	stranger := netip.MustParseAddr(strangerAddr)
	for _, tc := range []struct {
		name  string
		delay string
		facts Facts
		want  []string
	}{
		{"CONNECT, delayed", "yes", Facts{Stage: Connect, ClientAddr: stranger}, nil},
		{"HELO, delayed", "yes", Facts{Stage: HELO, ClientAddr: stranger, HELO: "h"}, nil},
		{"MAIL, delayed", "yes", Facts{Stage: Mail, ClientAddr: stranger, HELO: "h", InTransaction: true}, nil},
		{"RCPT, delayed", "yes", Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "john@example.org"},
			[]string{"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions", "smtpd_relay_restrictions", "smtpd_recipient_restrictions"}},
		{"RCPT without HELO, delayed", "yes", Facts{Stage: Rcpt, ClientAddr: stranger, InTransaction: true, Recipient: "john@example.org"},
			[]string{"smtpd_client_restrictions", "smtpd_sender_restrictions", "smtpd_relay_restrictions", "smtpd_recipient_restrictions"}},
		{"VRFY outside a transaction, delayed", "yes", Facts{Stage: VRFY, ClientAddr: stranger, HELO: "h", Recipient: "john@example.org"},
			[]string{"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_relay_restrictions", "smtpd_recipient_restrictions"}},
		{"ETRN, delayed", "yes", Facts{Stage: ETRN, ClientAddr: stranger, HELO: "h", InTransaction: true, ETRNDomain: "example.org"},
			[]string{"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_etrn_restrictions"}},
		{"DATA, delayed", "yes", Facts{Stage: Data, ClientAddr: stranger, HELO: "h", InTransaction: true}, []string{"smtpd_data_restrictions"}},
		{"END-OF-MESSAGE, delayed", "yes", Facts{Stage: EndOfData, ClientAddr: stranger, HELO: "h", InTransaction: true}, []string{"smtpd_end_of_data_restrictions"}},
		{"CONNECT", "no", Facts{Stage: Connect, ClientAddr: stranger}, []string{"smtpd_client_restrictions"}},
		{"HELO", "no", Facts{Stage: HELO, ClientAddr: stranger, HELO: "h"}, []string{"smtpd_helo_restrictions"}},
		{"MAIL", "no", Facts{Stage: Mail, ClientAddr: stranger, HELO: "h", InTransaction: true}, []string{"smtpd_sender_restrictions"}},
		{"RCPT", "no", Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "john@example.org"},
			[]string{"smtpd_relay_restrictions", "smtpd_recipient_restrictions"}},
		{"ETRN", "no", Facts{Stage: ETRN, ClientAddr: stranger, HELO: "h", ETRNDomain: "example.org"}, []string{"smtpd_etrn_restrictions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := compile(t, lists+"smtpd_delay_reject = "+tc.delay+"\n")
			v, steps, err := e.Explain(context.Background(), &tc.facts)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != ActionPermit {
				t.Errorf("verdict %+v, want permit", v)
			}
			var got []string
			for _, s := range steps {
				if s.Restriction == "nothing" {
					got = append(got, s.List)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lists evaluated (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDelayRejectRefusals checks that the first refusal in the order wins
// and that a refusal at an early stage waits for RCPT with
// smtpd_delay_reject = yes.
func TestDelayRejectRefusals(t *testing.T) {
	const all = `
smtpd_client_restrictions = reject
smtpd_helo_restrictions = reject
smtpd_sender_restrictions = reject
`
	stranger := netip.MustParseAddr(strangerAddr)
	clientRejected := Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<unknown[203.0.113.5]>: Client host rejected: Access denied"}, Restriction: "reject", List: "smtpd_client_restrictions"}
	for _, tc := range []struct {
		name  string
		extra string
		facts Facts
		want  Verdict
	}{
		{"delayed: CONNECT permits", all, Facts{Stage: Connect, ClientAddr: stranger}, Verdict{Action: ActionPermit}},
		{"delayed: MAIL permits", all, Facts{Stage: Mail, ClientAddr: stranger, HELO: "h", InTransaction: true}, Verdict{Action: ActionPermit}},
		{"delayed: RCPT gives the client refusal", all, Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "a@b"}, clientRejected},
		{"delayed: helo before sender", "smtpd_helo_restrictions = defer\nsmtpd_sender_restrictions = reject",
			Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "a@b"},
			Verdict{Action: ActionDefer, Reply: Reply{450, "4.3.2", "<h>: Helo command rejected: Try again later"}, Restriction: "defer", List: "smtpd_helo_restrictions"}},
		{"delayed: sender before relay", "smtpd_sender_restrictions = reject",
			Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Sender: "s@x", Recipient: "a@b"},
			Verdict{Action: ActionReject, Reply: Reply{554, "5.7.1", "<s@x>: Sender address rejected: Access denied"}, Restriction: "reject", List: "smtpd_sender_restrictions"}},
		{"delayed: a client permit does not skip the relay list", "smtpd_client_restrictions = permit",
			Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "a@b"}, relayDenied("a@b")},
		{"not delayed: CONNECT refuses", all + "smtpd_delay_reject = no", Facts{Stage: Connect, ClientAddr: stranger}, clientRejected},
		{"not delayed: RCPT does not run the client list", all + "smtpd_delay_reject = no",
			Facts{Stage: Rcpt, ClientAddr: stranger, HELO: "h", InTransaction: true, Recipient: "john@example.org"}, Verdict{Action: ActionPermit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, compile(t, tc.extra), &tc.facts, tc.want)
		})
	}
}

func TestPerListenerOverrides(t *testing.T) {
	cfg := config(t, "")
	services, err := maincf.ParseMaster("master.cf", strings.NewReader(`
127.0.0.1:2587 inet n - n - - smtpd
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o soft_bounce=yes
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(cfg.WithOverrides(services[0].Overrides))
	if err != nil {
		t.Fatal(err)
	}
	check(t, e, rcpt(trustedAddr, "john@example.org"), Verdict{Action: ActionDefer,
		Reply: Reply{454, "4.7.1", "<unknown[127.0.0.1]>: Client host rejected: Access denied"}, Restriction: "reject", List: "smtpd_client_restrictions"})
	f := rcpt(strangerAddr, "lisa@example.com")
	f.SASLUsername = "john"
	check(t, e, f, Verdict{Action: ActionPermit, Restriction: "permit_sasl_authenticated", List: "smtpd_relay_restrictions"})
	// main.cf alone is unchanged.
	check(t, compile(t, ""), rcpt(trustedAddr, "john@example.org"), Verdict{Action: ActionPermit, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"})
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		want  []string
	}{
		{"unknown restriction", "smtpd_recipient_restrictions = permit_mynetwork",
			[]string{`main.cf:11: smtpd_recipient_restrictions: unknown restriction "permit_mynetwork"`}},
		{"not implemented yet", "smtpd_client_restrictions = reject_unverified_sender",
			[]string{`main.cf:11: smtpd_client_restrictions: restriction "reject_unverified_sender" is not implemented yet`}},
		{"missing table", "smtpd_sender_restrictions = hash:/nonexistent/access",
			[]string{`main.cf:11: smtpd_sender_restrictions: table hash:/nonexistent/access: stat /nonexistent/access: no such file or directory`}},
		{"class without definition", "smtpd_restriction_classes = empty",
			[]string{"main.cf:11: smtpd_restriction_classes: restriction class `empty' needs a definition"}},
		{"class loop", "smtpd_restriction_classes = a, b\na = b\nb = a",
			[]string{"main.cf:12: a: restriction class a refers to itself (a -> b -> a)"}},
		{"unknown name in a class", "smtpd_restriction_classes = a\na = nonsense",
			[]string{`main.cf:12: a: unknown restriction "nonsense"`}},
		{"safety check", "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated",
			[]string{"main.cf:11: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit"}},
		{"safety check, through a class", "smtpd_restriction_classes = c\nc = permit_mynetworks\nsmtpd_relay_restrictions = c",
			[]string{"main.cf:13: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit"}},
		{"bad mynetworks", "mynetworks = ::1/128",
			[]string{`main.cf:11: mynetworks: IPv6 network "::1/128" must be written in brackets, e.g. [::1]/128`}},
		{"missing table in mydestination", "mydestination = hash:/etc/postfix/domains",
			[]string{`main.cf:11: mydestination: table hash:/etc/postfix/domains: stat /etc/postfix/domains: no such file or directory`}},
		{"file in mydestination", "mydestination = /etc/postfix/domains",
			[]string{`main.cf:11: mydestination: file "/etc/postfix/domains": file patterns are not supported yet`}},
		{"several problems at once", "smtpd_helo_restrictions = x\nsmtpd_data_restrictions = y",
			[]string{`main.cf:11: smtpd_helo_restrictions: unknown restriction "x"`, `main.cf:12: smtpd_data_restrictions: unknown restriction "y"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(config(t, tc.extra))
			if err == nil {
				t.Fatal("Compile: no error")
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSafetyCheckRecipientList(t *testing.T) {
	// The classic Postfix 2.9 layout: empty relay list, the check in the
	// recipient list.
	e := compile(t, "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination")
	check(t, e, rcpt(strangerAddr, "lisa@example.com"), Verdict{Action: ActionReject,
		Reply: Reply{554, "5.7.1", "<lisa@example.com>: Relay access denied"}, Restriction: "reject_unauth_destination", List: "smtpd_recipient_restrictions"})
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
		"reject", "defer_unauth_destination", "c, reject", "PERMIT reject", "check_policy_service { inet:127.0.0.1:9998, timeout=10s }",
		"hash:/etc/x", "permit_auth_destination,,defer", "{", "}",
	} {
		f.Add(s, "lisa%example.com@example.org")
	}
	f.Fuzz(func(t *testing.T, list, recipient string) {
		extra := "smtpd_restriction_classes = c\nc = permit_mynetworks, reject_unauth_destination\n" +
			"smtpd_relay_restrictions = " + strings.ReplaceAll(list, "\n", " ") + "\n"
		file, err := maincf.Parse("main.cf", strings.NewReader(base+extra))
		if err != nil {
			return
		}
		e, err := Compile(maincf.New(testCatalogue(), file, ""))
		if err != nil {
			return
		}
		for _, addr := range []string{strangerAddr, trustedAddr} {
			v, err := e.Check(context.Background(), rcpt(addr, recipient))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if v.Action == ActionPermit && v.Reply != (Reply{}) {
				t.Fatalf("permit with a reply: %+v", v)
			}
			if v.Action != ActionPermit && (v.Reply.Code < 400 || v.Reply.Code > 599 || v.Reply.DSN[0] != byte('0'+v.Reply.Code/100)) {
				t.Fatalf("bad reply %+v", v.Reply)
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	e := compile(b, "smtpd_client_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\n"+
		"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination")
	ctx := context.Background()
	for _, bc := range []struct{ name, rcpt string }{
		{"local", "john@example.org"},
		{"relay denied", "lisa%example.com@example.org"},
	} {
		f := rcpt(strangerAddr, bc.rcpt)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Check(ctx, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// testCatalogue is what smtpgate-policy reads main.cf through, as far as
// the restrictions go: the shared parameters and policy's own.
func testCatalogue() *maincf.Catalogue {
	return maincf.NewCatalogue(append(maincf.Shared(), policyparams.Defs()...)...)
}
