package restriction

import (
	"context"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// FuzzNoOpenRelay checks the promise of the open-relay check: whatever
// relay and recipient lists and access table entries are configured, if
// Compile accepts them, a stranger's mail to a foreign domain is never
// permitted, whatever HELO, sender and recipient local part it gives.
func FuzzNoOpenRelay(f *testing.F) {
	for _, s := range [][5]string{
		{"", "check_helo_access TABLE, reject_unauth_destination", "localhost.localdomain", "OK", "x"},
		{"", "check_sender_access TABLE, permit_mynetworks, reject_unauth_destination", "example.org", "OK", "x"},
		{"permit_mynetworks, reject_unauth_destination", "check_helo_access TABLE", "a", "permit", "b"},
		{"", "c, reject_unauth_destination", "a", "reject", "b"},
		{"", "check_helo_access TABLE, reject_unauth_destination", "a", "permit_auth_destination, permit", "b"},
		{"warn_if_reject, reject_unauth_destination", "defer_if_permit", "a", "DUNNO", "b"},
		{"", "check_recipient_access TABLE, reject_unauth_destination", "user@", "OK", "user"},
		{"", "check_client_access TABLE, reject_unauth_destination", "unknown", "1234", "user"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, relay, recipientList, key, value, local string) {
		clean := func(s string) string {
			return strings.Map(func(r rune) rune {
				switch r {
				case '\n', '\r', '{', '}', '=', '$', '#', '\\', 0:
					return -1
				}
				return r
			}, s)
		}
		key, value = strings.TrimSpace(clean(key)), strings.TrimSpace(clean(value))
		if key == "" || value == "" {
			return
		}
		// TABLE in a list is an inline table with the fuzzed entry.
		tbl := "inline:{ {" + key + " = " + value + "} }"
		expand := func(l string) string {
			return strings.ReplaceAll(clean(l), "TABLE", tbl)
		}
		extra := "smtpd_restriction_classes = c\nc = permit_mynetworks, check_helo_access " + tbl + "\n"
		extra += "smtpd_relay_restrictions = " + expand(relay) + "\nsmtpd_recipient_restrictions = " + expand(recipientList) + "\n"
		file, err := maincf.Parse("main.cf", strings.NewReader(base+extra))
		if err != nil {
			return
		}
		e, err := Compile(maincf.New(testCatalogue(), file, t.TempDir()))
		if err != nil {
			return
		}
		local = clean(local)
		if local == "" || strings.ContainsAny(local, "@\"") {
			local = "user"
		}
		for _, fs := range [][]fact{
			{helo(key), sender("someone@example.net")},
			{helo("client.example.net"), sender(key)},
			{helo(key), sender(key + "@" + key)},
			{helo(key), sender("")},
		} {
			f := facts(append(fs, to(local+"@relay-target.example"))...)
			v, err := e.Check(context.Background(), f)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if v.Action == ActionPermit {
				t.Fatalf("open relay accepted by Compile:\n%s\nstranger HELO %q sender %q to %q permitted by %s in %s",
					extra, f.HELO, f.Sender, f.Recipient, v.Restriction, v.List)
			}
		}
	})
}
