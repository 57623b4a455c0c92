package restriction

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkTwentyRestrictions is a realistic worst case: a stranger's RCPT
// TO a local user that passes all 20 restrictions of the client, HELO,
// sender, relay and recipient lists (smtpd_delay_reject = yes), with a
// 10,000-entry cidr table, a 1,000-rule regexp table and hash tables.
func BenchmarkTwentyRestrictions(b *testing.B) {
	dir := b.TempDir()
	write := func(name string, fill func(*strings.Builder)) string {
		var sb strings.Builder
		fill(&sb)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	cidr := write("clients.cidr", func(sb *strings.Builder) {
		for i := range 10000 {
			fmt.Fprintf(sb, "10.%d.%d.0/24 REJECT listed %d\n", i/256, i%256, i)
		}
	})
	heloRE := write("helo.re", func(sb *strings.Builder) {
		for i := range 1000 {
			fmt.Fprintf(sb, "/^host%d\\.bad[0-9]*\\.example$/ REJECT bad helo %d\n", i, i)
		}
	})
	senders := write("senders", func(sb *strings.Builder) {
		for i := range 1000 {
			fmt.Fprintf(sb, "spammer%d.example REJECT\n", i)
		}
	})
	rcpts := write("rcpts", func(sb *strings.Builder) {
		for i := range 1000 {
			fmt.Fprintf(sb, "closed%d@example.org REJECT\n", i)
		}
	})
	users := write("users", func(sb *strings.Builder) {
		for i := range 1000 {
			fmt.Fprintf(sb, "user%d@example.org ok\n", i)
		}
		sb.WriteString("john@example.org ok\n")
	})
	e := compile(b, fmt.Sprintf(`
local_recipient_maps = texthash:%[5]s
smtpd_reject_unlisted_recipient = yes
smtpd_client_restrictions = permit_mynetworks, check_client_access cidr:%[1]s, reject_unauth_pipelining
smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, check_helo_access regexp:%[2]s
smtpd_sender_restrictions = permit_mynetworks, reject_non_fqdn_sender, check_sender_access texthash:%[3]s, reject_unlisted_sender
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access texthash:%[4]s, reject_unlisted_recipient, reject_unauth_pipelining, check_client_access cidr:%[1]s, permit_auth_destination
`, cidr, heloRE, senders, rcpts, users))
	f := facts(from("203.0.113.5"), helo("mail.client.example.net"), sender("someone@client.example.net"), to("john@example.org"))
	steps := 0
	if _, s, err := e.Explain(context.Background(), f); err == nil {
		steps = len(s)
	}
	if steps != 20 {
		b.Fatalf("evaluated %d restrictions, want 20", steps)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v, err := e.Check(ctx, f)
		if err != nil || v.Action != ActionPermit {
			b.Fatalf("%v %v", v, err)
		}
	}
}
