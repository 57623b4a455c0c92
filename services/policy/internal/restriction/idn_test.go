package restriction

import (
	"context"
	"testing"
)

// The two forms of one internationalised domain (RFC 5890).
const (
	uLabel = "пример.испытание"
	aLabel = "xn--e1afmkfd.xn--80akhbyknj4f"
)

// TestIDNRelayDomains: relay decisions compare domains in their A-label
// form, so a domain listed in either form in relay_domains or
// mydestination takes mail addressed in either form, and no other.
func TestIDNRelayDomains(t *testing.T) {
	for _, conf := range []string{
		"relay_domains = " + uLabel,
		"relay_domains = " + aLabel,
		"relay_domains = " + uLabel + ".",
		"mydestination = " + uLabel,
		"mydestination = " + aLabel,
	} {
		t.Run(conf, func(t *testing.T) {
			e := compile(t, conf)
			for _, rcpt := range []string{"user@" + uLabel, "user@" + aLabel, "user@" + uLabel + ".", "user@XN--E1AFMKFD.xn--80akhbyknj4f", "user@ПРИМЕР.испытание"} {
				check(t, e, facts(to(rcpt)), Verdict{Action: ActionPermit})
			}
			for _, rcpt := range []string{"user@xn--e1afmkfd.example", "user@пример.example", "user@" + uLabel + ".example"} {
				check(t, e, facts(to(rcpt)), relayDenied(rcpt))
			}
		})
	}
	// relay_domains matches subdomains (parent_domain_matches_subdomains);
	// mydestination does not.
	e := compile(t, "relay_domains = "+uLabel)
	check(t, e, facts(to("user@mail.xn--e1afmkfd.xn--80akhbyknj4f")), Verdict{Action: ActionPermit})
	e = compile(t, "mydestination = "+aLabel)
	check(t, e, facts(to("user@почта."+uLabel)), relayDenied("user@почта."+uLabel))
}

// TestIDNAccessTable: an access table finds a domain written in either
// form, whichever form the address has: the A-label key first, then the
// UTF-8 one.
func TestIDNAccessTable(t *testing.T) {
	for _, key := range []string{uLabel, aLabel} {
		e, _ := withTables(t, map[string]string{"rcpt": key + " REJECT\n"},
			"relay_domains = "+aLabel+"\nsmtpd_recipient_restrictions = check_recipient_access texthash:TABLES/rcpt")
		for _, rcpt := range []string{"user@" + uLabel, "user@" + aLabel} {
			got, err := e.Check(context.Background(), facts(to(rcpt)))
			if want := "<" + rcpt + ">: Recipient address rejected: Access denied"; err != nil || got.Action != ActionReject || got.Reply.Text != want {
				t.Errorf("table key %s, RCPT TO:<%s>: %v %+v, %v; want %q", key, rcpt, got.Action, got.Reply, err, want)
			}
		}
		check(t, e, facts(to("user@example.org")), Verdict{Action: ActionPermit})
	}
	e, _ := withTables(t, map[string]string{"rcpt": "user@" + uLabel + " REJECT\n"},
		"relay_domains = "+uLabel+"\nsmtpd_recipient_restrictions = check_recipient_access texthash:TABLES/rcpt")
	_, steps, err := e.Explain(context.Background(), facts(to("user@"+aLabel)))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, s := range steps {
		for _, l := range s.Lookups {
			keys = append(keys, l.Key)
		}
	}
	if want := []string{"user@" + aLabel, "user@" + uLabel}; len(keys) != 2 || keys[0] != want[0] || keys[1] != want[1] {
		t.Errorf("lookup keys %q, want %q", keys, want)
	}
}
