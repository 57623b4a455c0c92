package restriction

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAlwaysPermits: a stage AlwaysPermits names evaluates nothing and
// permits, carrying the defer_if_permit it was given, whatever the facts;
// one with something to evaluate is not named.
func TestAlwaysPermits(t *testing.T) {
	all := []Stage{Connect, HELO, Mail, Rcpt, Data, EndOfData, ETRN, VRFY}
	for _, tc := range []struct {
		name, cf string
		want     []Stage
	}{
		{"deploy/local-like, delayed", "smtpd_delay_reject = yes\nsmtpd_client_restrictions = check_client_access inline:{192.0.2.9=REJECT}\nsmtpd_sender_restrictions = reject_non_fqdn_sender\n",
			[]Stage{Connect, HELO, Mail, Data, EndOfData}},
		{"nothing, not delayed", "smtpd_delay_reject = no\n", []Stage{Connect, HELO, Mail, Data, EndOfData}},
		{"client list, not delayed", "smtpd_delay_reject = no\nsmtpd_client_restrictions = check_client_access inline:{192.0.2.9=REJECT}\n",
			[]Stage{HELO, Mail, Data, EndOfData}},
		{"helo and sender lists, not delayed", "smtpd_delay_reject = no\nsmtpd_helo_restrictions = reject_invalid_helo_hostname\nsmtpd_sender_restrictions = reject_non_fqdn_sender\n",
			[]Stage{Connect, Data, EndOfData}},
		{"unlisted sender, not delayed", "smtpd_delay_reject = no\nsmtpd_reject_unlisted_sender = yes\n",
			[]Stage{Connect, HELO, Data, EndOfData}},
		{"data lists", "smtpd_data_restrictions = reject_unauth_pipelining\nsmtpd_end_of_data_restrictions = warn_if_reject reject_unauth_pipelining\n",
			[]Stage{Connect, HELO, Mail}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := compile(t, tc.cf)
			var got []Stage
			for _, st := range all {
				if e.AlwaysPermits(st) {
					got = append(got, st)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("AlwaysPermits (-want +got):\n%s", diff)
			}
			// What each named stage does, with facts that would trip the
			// lists of other stages: nothing, and a permit.
			carried := &Reply{450, "4.7.1", "Service unavailable"}
			for _, st := range got {
				for _, d := range []*Reply{nil, carried} {
					f := &Facts{Stage: st, SessionID: "t", ClientAddr: netip.MustParseAddr("192.0.2.9"), HELO: "-bad-",
						InTransaction: st != Connect && st != HELO, Sender: "x", Recipient: "lisa@example.com", UnauthPipelining: true, DeferIfPermit: d}
					v, steps, err := e.Explain(context.Background(), f)
					if err != nil {
						t.Fatal(err)
					}
					want := Verdict{Action: ActionPermit, DeferIfPermit: d}
					if diff := cmp.Diff(want, v); diff != "" || len(steps) != 0 {
						t.Errorf("%s with defer_if_permit %v: verdict (-want +got):\n%s\nsteps %v", st, d, diff, steps)
					}
				}
			}
		})
	}
}
