package restriction

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDNSBLScore(t *testing.T) {
	stub := startDNSStub(t)
	r := testResolver(t, stub)
	const listed = "203.0.113.5" // on bl.test (127.0.0.4), bl2.test and wl.test
	for _, tc := range []struct {
		name, conf, client string
		want               Verdict
	}{
		{"two lists reach the threshold", "smtpgate_dnsbl_sites = bl.test*2, bl2.test\nsmtpgate_dnsbl_threshold = 3", listed,
			refused(554, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using bl.test, bl2.test (score 3)", "", "")},
		{"an allow list cancels", "smtpgate_dnsbl_sites = bl.test*2, bl2.test, wl.test=127.0.10.1*-2\nsmtpgate_dnsbl_threshold = 3", listed, permitted()},
		{"below the threshold", "smtpgate_dnsbl_sites = bl.test*2\nsmtpgate_dnsbl_threshold = 3", listed, permitted()},
		{"a filter that does not match counts nothing", "smtpgate_dnsbl_sites = bl.test=127.0.0.2*5", listed, permitted()},
		{"a filter that matches", "smtpgate_dnsbl_sites = bl.test=127.0.0.[3..4]*5\nsmtpgate_dnsbl_threshold = 5", listed,
			refused(554, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using bl.test (score 5)", "", "")},
		{"a list that does not answer counts nothing", "smtpgate_dnsbl_sites = timeout.test*9, bl2.test", listed,
			refused(554, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using bl2.test (score 1)", "", "")},
		{"an unlisted client", "smtpgate_dnsbl_sites = bl.test*2, bl2.test", "198.51.100.9", permitted()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileDNS(t, r, nil, tc.conf+"\nsmtpd_client_restrictions = reject_dnsbl_score")
			if err != nil {
				t.Fatal(err)
			}
			got := verdictOf(t, e, facts(from(tc.client)), tc.want)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
	for conf, want := range map[string]string{
		"smtpd_client_restrictions = reject_dnsbl_score":                                     "needs smtpgate_dnsbl_sites",
		"smtpgate_dnsbl_sites = bl.test*x\nsmtpd_client_restrictions = reject_dnsbl_score":   `weight "x" is not a number`,
		"smtpgate_dnsbl_sites = bl.test=1.2\nsmtpd_client_restrictions = reject_dnsbl_score": "bl.test=1.2",
	} {
		if _, err := compileDNS(t, r, nil, conf); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", conf, err, want)
		}
	}
	// The lookups are in the Explain trace.
	e, err := compileDNS(t, r, nil, "smtpgate_dnsbl_sites = bl.test, bl2.test\nsmtpd_client_restrictions = reject_dnsbl_score")
	if err != nil {
		t.Fatal(err)
	}
	_, steps, err := e.Explain(context.Background(), facts(from(listed)))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 || len(steps[0].Lookups) != 2 || steps[0].Lookups[1].Key != "5.113.0.203.bl2.test A" {
		t.Errorf("trace: %+v", steps)
	}
}
