package restriction

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// withTables compiles base+extra after writing the table files into a
// temporary directory; "TABLES/" in extra and in the files is that
// directory.
func withTables(t *testing.T, files map[string]string, extra string) (*Engine, string) {
	t.Helper()
	e, dir, err := compileTables(t, files, extra)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e, dir
}

func compileTables(t *testing.T, files map[string]string, extra string) (*Engine, string, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(content, "TABLES/", dir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := Compile(config(t, strings.ReplaceAll(extra, "TABLES/", dir+"/")))
	return e, dir, err
}

// fact modifies the facts of a test RCPT TO.
type fact func(*Facts)

func from(addr string) fact    { return func(f *Facts) { f.ClientAddr = netip.MustParseAddr(addr) } }
func named(name string) fact   { return func(f *Facts) { f.ClientName = name } }
func helo(name string) fact    { return func(f *Facts) { f.HELO = name } }
func sender(addr string) fact  { return func(f *Facts) { f.Sender = addr } }
func to(addr string) fact      { return func(f *Facts) { f.Recipient = addr } }
func login(user string) fact   { return func(f *Facts) { f.SASLUsername = user } }
func pipelining() fact         { return func(f *Facts) { f.UnauthPipelining = true } }
func stage(s Stage) fact       { return func(f *Facts) { f.Stage = s } }
func etrn(domain string) fact  { return func(f *Facts) { f.ETRNDomain = domain } }
func reverse(name string) fact { return func(f *Facts) { f.ReverseClientName = name } }

// facts is a stranger's RCPT TO a local user, modified by fs.
func facts(fs ...fact) *Facts {
	f := rcpt(strangerAddr, "john@example.org")
	for _, fn := range fs {
		fn(f)
	}
	return f
}

func permitted() Verdict { return Verdict{Action: ActionPermit} }

func refused(code int, dsn, text, restriction, list string) Verdict {
	a := ActionReject
	if code < 500 {
		a = ActionDefer
	}
	return Verdict{Action: a, Reply: Reply{code, dsn, text}, Restriction: restriction, List: list}
}

// verdictOf returns the verdict without the fields a case does not
// name: the deciding restriction is only compared when the case gives it.
func verdictOf(t *testing.T, e *Engine, f *Facts, want Verdict) Verdict {
	t.Helper()
	got, err := e.Check(context.Background(), f)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if want.Restriction == "" {
		got.Restriction, got.List = "", ""
	}
	return got
}

// The examples of Postfix's SMTPD_ACCESS_README, access(5) and
// RESTRICTION_CLASS_README, and the lookup rules of smtpd_check.c.
func TestAccessTables(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		conf  string
		facts *Facts
		want  Verdict
	}{
		{"client address REJECT", map[string]string{"client": "203.0.113.5 REJECT\n"},
			"smtpd_client_restrictions = check_client_access texthash:TABLES/client", facts(), refused(554, "5.7.1", "<unknown[203.0.113.5]>: Client host rejected: Access denied", "check_client_access texthash:TABLES/client", "smtpd_client_restrictions")},
		{"client network by octets", map[string]string{"client": "203.0.113 REJECT no thanks\n"},
			"smtpd_client_restrictions = check_client_access texthash:TABLES/client", facts(from("203.0.113.77")), refused(554, "5.7.1", "<unknown[203.0.113.77]>: Client host rejected: no thanks", "", "")},
		{"client name and parent domain before the address", map[string]string{"client": "bad.example 550 5.7.9 go away\n203.0.113.5 OK\n"},
			"smtpd_client_restrictions = check_client_access texthash:TABLES/client", facts(named("mail.bad.example")), refused(550, "5.7.9", "<mail.bad.example[203.0.113.5]>: Client host rejected: go away", "", "")},
		{
			name:  "client IPv6 by colon parts",
			files: map[string]string{"client": "2001:db8:1 REJECT\n"},
			conf:  "smtpd_client_restrictions = check_client_access texthash:TABLES/client",
			facts: facts(from("2001:db8:1::25")),
			// Looked up as "2001:db8:1::25", "2001:db8:1:", "2001:db8:1".
			want: refused(554, "5.7.1", "<unknown[2001:db8:1::25]>: Client host rejected: Access denied", "", ""),
		},
		{"client cidr", map[string]string{"client.cidr": "203.0.113.0/24 REJECT listed\n"},
			"smtpd_client_restrictions = check_client_access cidr:TABLES/client.cidr", facts(), refused(554, "5.7.1", "<unknown[203.0.113.5]>: Client host rejected: listed", "", "")},
		{"bare table means the list's access check", map[string]string{"client.cidr": "203.0.113.0/24 DEFER busy\n"},
			"smtpd_client_restrictions = cidr:TABLES/client.cidr", facts(), refused(450, "4.7.1", "<unknown[203.0.113.5]>: Client host rejected: busy", "", "")},
		{"unverified client name OK is refused", map[string]string{"rev": "friendly.example OK\n"},
			"smtpd_client_restrictions = check_reverse_client_hostname_access texthash:TABLES/rev", facts(reverse("mx.friendly.example")), refused(451, "4.3.5", "Server configuration error", "", "")},
		{"HELO localhost.localdomain", map[string]string{"helo": "localhost.localdomain REJECT You are not me\n"},
			"smtpd_helo_restrictions = check_helo_access texthash:TABLES/helo", facts(helo("localhost.localdomain")), refused(554, "5.7.1", "<localhost.localdomain>: Helo command rejected: You are not me", "", "")},
		{"HELO regexp", map[string]string{"helo.re": "/^[0-9.]+$/ REJECT numeric HELO\n"},
			"smtpd_helo_restrictions = check_helo_access regexp:TABLES/helo.re", facts(helo("192.0.2.1")), refused(554, "5.7.1", "<192.0.2.1>: Helo command rejected: numeric HELO", "", "")},
		{"null sender key", map[string]string{"sender": "<> 550 no bounces here\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("")), refused(550, "5.7.1", "<>: Sender address rejected: no bounces here", "", "")},
		{"sender domain matches subdomains (parent_domain_matches_subdomains)", map[string]string{"sender": "spammer.example REJECT\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@mail.spammer.example")), refused(554, "5.7.1", "<a@mail.spammer.example>: Sender address rejected: Access denied", "", "")},
		{"dot style without smtpd_access_maps in parent_domain_matches_subdomains", map[string]string{"sender": "spammer.example REJECT\n"},
			"parent_domain_matches_subdomains = relay_domains\nsmtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@mail.spammer.example")), permitted()},
		{"dot style pattern", map[string]string{"sender": ".spammer.example REJECT\n"},
			"parent_domain_matches_subdomains = relay_domains\nsmtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@mail.spammer.example")), refused(554, "5.7.1", "<a@mail.spammer.example>: Sender address rejected: Access denied", "", "")},
		{"user@ matches any domain", map[string]string{"sender": "abuse@ REJECT forged\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("abuse@anywhere.example")), refused(554, "5.7.1", "<abuse@anywhere.example>: Sender address rejected: forged", "", "")},
		{"DUNNO stops the search in this table", map[string]string{"sender": "ok@spammer.example DUNNO\nspammer.example REJECT\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("ok@spammer.example")), permitted()},
		{"regexp tables get the whole address only", map[string]string{"sender.re": "/^example\\.net$/ REJECT\n"},
			"smtpd_sender_restrictions = check_sender_access regexp:TABLES/sender.re", facts(sender("user@example.net")), permitted()},
		{"access_map_reject_code", map[string]string{"rcpt": "john@example.org REJECT\n"},
			"access_map_reject_code = 550\nsmtpd_recipient_restrictions = check_recipient_access texthash:TABLES/rcpt", facts(), refused(550, "5.7.1", "<john@example.org>: Recipient address rejected: Access denied", "", "")},
		{"recipient OK cannot open a relay through sender-specified routing", map[string]string{"rcpt": "example.org OK\n"},
			"smtpd_relay_restrictions = check_recipient_access texthash:TABLES/rcpt, reject_unauth_destination", facts(to("lisa%example.com@example.org")), refused(554, "5.7.1", "<lisa%example.com@example.org>: Relay access denied", "reject_unauth_destination", "smtpd_relay_restrictions")},
		{"all-numeric value is OK", map[string]string{"client": "203.0.113.5 1700000000\n"},
			"smtpd_relay_restrictions = check_client_access texthash:TABLES/client, reject_unauth_destination", facts(to("lisa@example.com")), Verdict{Action: ActionPermit, Restriction: "check_client_access texthash:TABLES/client", List: "smtpd_relay_restrictions"}},
		{"value naming restrictions", map[string]string{"sender": "example.net permit_mynetworks, reject\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@example.net")), refused(554, "5.7.1", "<a@example.net>: Sender address rejected: Access denied", "", "")},
		{
			name: "RESTRICTION_CLASS_README: protected destination, outsider",
			files: map[string]string{
				"protected_destinations": "all@example.org insiders_only\n",
				"insiders":               "example.org OK\nanother.example OK\n",
			},
			conf: "smtpd_restriction_classes = insiders_only\ninsiders_only = check_sender_access texthash:TABLES/insiders, reject\n" +
				"smtpd_recipient_restrictions = check_recipient_access texthash:TABLES/protected_destinations",
			facts: facts(to("all@example.org"), sender("someone@example.net")),
			want:  refused(554, "5.7.1", "<all@example.org>: Recipient address rejected: Access denied", "reject", "insiders_only"),
		},
		{
			name: "RESTRICTION_CLASS_README: protected destination, insider",
			files: map[string]string{
				"protected_destinations": "all@example.org insiders_only\n",
				"insiders":               "example.org OK\nanother.example OK\n",
			},
			conf: "smtpd_restriction_classes = insiders_only\ninsiders_only = check_sender_access texthash:TABLES/insiders, reject\n" +
				"smtpd_recipient_restrictions = check_recipient_access texthash:TABLES/protected_destinations",
			facts: facts(to("all@example.org"), sender("boss@another.example")),
			want:  permitted(),
		},
		{"warn_if_reject", nil,
			"smtpd_sender_restrictions = warn_if_reject, reject_non_fqdn_sender", facts(sender("root@localhost")), Verdict{Action: ActionPermit, Warnings: []string{"reject_warning: 504 5.5.2 <root@localhost>: Sender address rejected: need fully-qualified address"}}},
		{
			name:  "warn_if_reject applies to the next restriction only",
			conf:  "smtpd_sender_restrictions = warn_if_reject, reject_non_fqdn_helo_hostname, reject_non_fqdn_sender",
			facts: facts(sender("root@localhost"), helo("localhost")),
			want: Verdict{Action: ActionReject, Reply: Reply{504, "5.5.2", "<root@localhost>: Sender address rejected: need fully-qualified address"},
				Warnings: []string{"reject_warning: 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"}},
		},
		{"defer_if_permit turns the permit into a deferral", nil,
			"smtpd_client_restrictions = defer_if_permit", facts(), refused(450, "4.7.0", "<unknown[203.0.113.5]>: Client host rejected: defer_if_permit requested", "", "")},
		{"defer_if_permit does not soften a reject", nil,
			"smtpd_client_restrictions = defer_if_permit", facts(to("lisa@example.com")), refused(554, "5.7.1", "<lisa@example.com>: Relay access denied", "", "")},
		{"defer_if_reject turns a reject into a deferral", nil,
			"smtpd_sender_restrictions = defer_if_reject, reject_non_fqdn_sender", facts(sender("root@localhost")), refused(450, "4.7.0", "<root@localhost>: Sender address rejected: defer_if_reject requested", "", "")},
		{
			// Postfix resets defer_if_reject at every smtpd_check_*()
			// call: the sender list's does not soften the recipient
			// list's reject (seen in the differential test).
			name:  "defer_if_reject ends with its phase",
			files: map[string]string{"sender": "harsh.example DEFER_IF_REJECT soften it\n", "rcpt": "john@example.org REJECT\n"},
			conf:  "smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender\nsmtpd_recipient_restrictions = check_recipient_access texthash:TABLES/rcpt",
			facts: facts(sender("a@harsh.example")),
			want:  refused(554, "5.7.1", "<john@example.org>: Recipient address rejected: Access denied", "", ""),
		},
		{"DEFER_IF_REJECT action within its phase", map[string]string{"sender": "harsh.example DEFER_IF_REJECT soften it\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender, reject", facts(sender("a@harsh.example")), refused(450, "4.7.1", "<a@harsh.example>: Sender address rejected: soften it", "", "")},
		{"DEFER_IF_PERMIT action", map[string]string{"sender": "example.net DEFER_IF_PERMIT try later\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@example.net")), refused(450, "4.7.1", "<a@example.net>: Sender address rejected: try later", "", "")},
		{"DISCARD", map[string]string{"sender": "spam.example DISCARD\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender, reject", facts(sender("a@spam.example")), Verdict{Action: ActionDiscard, Warnings: []string{"discard: <a@spam.example>: Sender address triggers DISCARD action"}}},
		{"PREPEND", map[string]string{"sender": "example.net PREPEND X-Sender-Checked: example.net\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@example.net")), Verdict{Action: ActionPermit, Prepend: []string{"X-Sender-Checked: example.net"}}},
		{"WARN", map[string]string{"sender": "example.net WARN watch this one\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender", facts(sender("a@example.net")), Verdict{Action: ActionPermit, Warnings: []string{"warn: watch this one"}}},
		{"invalid HELO", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("bad_host!")), refused(501, "5.5.2", "<bad_host!>: Helo command rejected: Invalid name", "", "")},
		{"invalid HELO address literal", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("[192.0.2.999]")), refused(501, "5.5.2", "<[192.0.2.999]>: Helo command rejected: invalid ip address", "", "")},
		// Address literals as Postfix's valid_mailhost_addr judges them,
		// not as a Go address parser would.
		{"HELO literal with leading zeros is valid", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("[010.1.1.1]")), permitted()},
		{"HELO literal 0.1.2.3 is invalid", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("[0.1.2.3]")), refused(501, "5.5.2", "<[0.1.2.3]>: Helo command rejected: invalid ip address", "", "")},
		{"HELO IPv6 literal of seven fields is valid", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("[IPv6:1:2:3:4:5:6:7]")), permitted()},
		{"HELO bare 0.1.2.3 is an invalid name", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname", facts(helo("0.1.2.3")), refused(501, "5.5.2", "<0.1.2.3>: Helo command rejected: Invalid name", "", "")},
		{"valid HELO address literal", nil,
			"smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname", facts(helo("[192.0.2.1]")), permitted()},
		{"non-FQDN HELO", nil,
			"smtpd_helo_restrictions = reject_non_fqdn_helo_hostname", facts(helo("localhost")), refused(504, "5.5.2", "<localhost>: Helo command rejected: need fully-qualified hostname", "", "")},
		{"non-FQDN recipient", nil,
			"smtpd_relay_restrictions = reject_non_fqdn_recipient, reject_unauth_destination", facts(to("lisa")), refused(504, "5.5.2", "<lisa>: Recipient address rejected: need fully-qualified address", "", "")},
		{"non_fqdn_reject_code", nil,
			"non_fqdn_reject_code = 450\nsmtpd_sender_restrictions = reject_non_fqdn_sender", facts(sender("root@localhost")), refused(450, "4.5.2", "<root@localhost>: Sender address rejected: need fully-qualified address", "", "")},
		{"unlisted local recipient (smtpd_reject_unlisted_recipient)", map[string]string{"users": "john@example.org x\n"},
			"smtpd_reject_unlisted_recipient = yes\nlocal_recipient_maps = texthash:TABLES/users", facts(to("nobody@example.org")), refused(550, "5.1.1", "<nobody@example.org>: Recipient address rejected: User unknown in local recipient table", "smtpd_reject_unlisted_recipient", "")},
		{"listed local recipient", map[string]string{"users": "john@example.org x\n"},
			"smtpd_reject_unlisted_recipient = yes\nlocal_recipient_maps = texthash:TABLES/users", facts(to("John@Example.org")), permitted()},
		{"postmaster is always a local recipient", map[string]string{"users": "john@example.org x\n"},
			"smtpd_recipient_restrictions = reject_unlisted_recipient\nlocal_recipient_maps = texthash:TABLES/users", facts(to("postmaster@example.org")), permitted()},
		{"unlisted recipient with an extension", map[string]string{"users": "john@example.org x\n"},
			"recipient_delimiter = +\nsmtpd_recipient_restrictions = reject_unlisted_recipient\nlocal_recipient_maps = texthash:TABLES/users", facts(to("john+lists@example.org")), permitted()},
		{"virtual alias domain without an alias", nil,
			"smtpd_reject_unlisted_recipient = yes", facts(to("x@alias.example")), refused(550, "5.1.1", "<x@alias.example>: Recipient address rejected: User unknown in virtual alias table", "", "")},
		{"sender not owned by the logged-in user", map[string]string{"logins": "john@example.org john\n"},
			"smtpd_sender_login_maps = texthash:TABLES/logins\nsmtpd_sender_restrictions = reject_sender_login_mismatch", facts(sender("john@example.org"), login("lisa")), refused(553, "5.7.1", "<john@example.org>: Sender address rejected: not owned by user lisa", "", "")},
		{"owned sender", map[string]string{"logins": "john@example.org lisa, john\n"},
			"smtpd_sender_login_maps = texthash:TABLES/logins\nsmtpd_sender_restrictions = reject_sender_login_mismatch", facts(sender("john@example.org"), login("John")), permitted()},
		{"owned sender used without login", map[string]string{"logins": "john@example.org john\n"},
			"smtpd_sender_login_maps = texthash:TABLES/logins\nsmtpd_sender_restrictions = reject_sender_login_mismatch", facts(sender("john@example.org")), refused(553, "5.7.1", "<john@example.org>: Sender address rejected: not logged in", "", "")},
		{"known mismatch lets a user send as an unowned address", map[string]string{"logins": "john@example.org john\n"},
			"smtpd_sender_login_maps = texthash:TABLES/logins\nsmtpd_sender_restrictions = reject_known_sender_login_mismatch", facts(sender("lisa@example.net"), login("lisa")), permitted()},
		{"reject_unauth_pipelining", nil,
			"smtpd_data_restrictions = reject_unauth_pipelining", facts(stage(Data), pipelining()), refused(503, "5.5.0", "<DATA>: Data command rejected: Improper use of SMTP command pipelining", "", "")},
		{"check_sasl_access", map[string]string{"sasl": "mallory REJECT account suspended\n"},
			"smtpd_relay_restrictions = check_sasl_access texthash:TABLES/sasl, permit_sasl_authenticated, reject_unauth_destination", facts(login("mallory"), to("lisa@example.com")), refused(554, "5.7.1", "<mallory>: SASL login name rejected: account suspended", "", "")},
		{"check_etrn_access", map[string]string{"etrn": "example.net REJECT\n"},
			"smtpd_etrn_restrictions = check_etrn_access texthash:TABLES/etrn", facts(stage(ETRN), etrn("mail.example.net")), refused(554, "5.7.1", "<mail.example.net>: Etrn command rejected: Access denied", "", "")},
		{"soft_bounce turns a table's 5xx into 4xx", map[string]string{"client": "203.0.113.5 REJECT\n"},
			"soft_bounce = yes\nsmtpd_client_restrictions = check_client_access texthash:TABLES/client", facts(), refused(454, "4.7.1", "<unknown[203.0.113.5]>: Client host rejected: Access denied", "", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, dir := withTables(t, tc.files, tc.conf)
			got := verdictOf(t, e, tc.facts, tc.want)
			got.Restriction = strings.ReplaceAll(got.Restriction, dir+"/", "TABLES/")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

// The lookup order of an address in an access table: what Explain shows.
func TestAccessLookupOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		want []string
	}{
		{"parent style", "recipient_delimiter = +",
			[]string{"user+tag@mail.example.net", "user@mail.example.net", "mail.example.net", "example.net", "net", "user+tag@", "user@"}},
		{"dot style", "recipient_delimiter = +\nparent_domain_matches_subdomains =",
			[]string{"user+tag@mail.example.net", "user@mail.example.net", "mail.example.net", ".example.net", ".net", "user+tag@", "user@"}},
		{"no delimiter", "",
			[]string{"user+tag@mail.example.net", "mail.example.net", "example.net", "net", "user+tag@"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := withTables(t, map[string]string{"sender": "nothing.example OK\n"},
				tc.conf+"\nsmtpd_sender_restrictions = check_sender_access texthash:TABLES/sender")
			_, steps, err := e.Explain(context.Background(), facts(sender("user+tag@mail.example.net")))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				if strings.HasPrefix(s.Restriction, "check_sender_access") {
					for _, l := range s.Lookups {
						got = append(got, l.Key)
					}
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lookup keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientAddressLookupOrder(t *testing.T) {
	e, _ := withTables(t, map[string]string{"client": "nothing.example OK\n"}, "smtpd_client_restrictions = check_client_access texthash:TABLES/client")
	for _, tc := range []struct {
		facts *Facts
		want  []string
	}{
		{facts(named("mx.example.net")), []string{"mx.example.net", "example.net", "net", "203.0.113.5", "203.0.113", "203.0", "203"}},
		{facts(from("2001:db8::25")), []string{"unknown", "2001:db8::25", "2001:db8:", "2001:db8", "2001"}},
	} {
		_, steps, err := e.Explain(context.Background(), tc.facts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range steps {
			for _, l := range s.Lookups {
				got = append(got, l.Key)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("lookup keys (-want +got):\n%s", diff)
		}
	}
}

func TestAccessTableErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		conf  string
		want  string
	}{
		{"HOLD needs a queue", map[string]string{"sender": "# comment\nexample.net HOLD\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender",
			"sender:2: texthash:TABLES/sender: action HOLD needs a mail queue"},
		{"REDIRECT needs a queue", map[string]string{"rcpt": "a@example.org REDIRECT b@example.org\n"},
			"smtpd_recipient_restrictions = check_recipient_access texthash:TABLES/rcpt",
			"rcpt:1: texthash:TABLES/rcpt: action REDIRECT needs a mail queue"},
		{"lookup table in a value", map[string]string{"sender": "example.net check_client_access texthash:TABLES/other\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender",
			`names a lookup table; define a restriction class and name it instead`},
		{"unknown restriction in a value", map[string]string{"sender": "example.net permit_mynetwork\n"},
			"smtpd_sender_restrictions = check_sender_access texthash:TABLES/sender",
			`entry "permit_mynetwork": unknown restriction "permit_mynetwork"`},
		{"access check without a table", nil,
			"smtpd_sender_restrictions = check_sender_access, reject",
			"restriction check_sender_access needs a lookup table (type:name) after it"},
		{"bare table in the DATA list", map[string]string{"t": "x OK\n"},
			"smtpd_data_restrictions = texthash:TABLES/t",
			"say which access check it is for"},
		{"login mismatch without maps", nil,
			"smtpd_sender_restrictions = reject_sender_login_mismatch",
			"restriction reject_sender_login_mismatch needs smtpd_sender_login_maps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir, err := compileTables(t, tc.files, tc.conf)
			if err == nil {
				t.Fatal("Compile: no error")
			}
			got := strings.ReplaceAll(err.Error(), dir+"/", "TABLES/")
			if !strings.Contains(got, tc.want) {
				t.Errorf("error %q does not contain %q", got, tc.want)
			}
		})
	}
}

func TestAccessTableReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "client")
	if err := os.WriteFile(path, []byte("203.0.113.5 OK\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := compile(t, "smtpd_client_restrictions = check_client_access texthash:"+path+", reject")
	if v, err := e.Check(context.Background(), facts()); err != nil || v.Action != ActionPermit {
		t.Fatalf("before the change: %v, %v", v, err)
	}
	if err := os.WriteFile(path, []byte("203.0.113.5 REJECT changed my mind\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := e.Check(context.Background(), facts())
		if err != nil {
			t.Fatal(err)
		}
		if v.Action == ActionReject {
			if v.Reply.Text != "<unknown[203.0.113.5]>: Client host rejected: changed my mind" {
				t.Errorf("reply %q", v.Reply)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the table change was not picked up within 5s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
