package importcf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/services/policy/internal/importcf"
)

// TestDelivery: where Postfix would send the mail, and whether smtpgate's
// one next hop does the same, for each way of routing.
func TestDelivery(t *testing.T) {
	T, I, B, C := importcf.Taken, importcf.Ignored, importcf.BehavesDifferently, importcf.CannotHonour
	const noLocal = "myhostname = mx.example.org\nmydestination =\n" // lines 1-2
	for _, tc := range []struct {
		name string
		main string
		// want are verdicts of some settings ("main.cf:N name", line 0
		// for Postfix's default).
		want verdicts
		// reason are parts of the reason of some settings.
		reason map[string]string
		// written and notWritten are lines of the written main.cf.
		written, notWritten []string
	}{
		{
			name:    "relayhost in brackets with a port",
			main:    noLocal + "relayhost = [relay.example.net]:587\n",
			want:    verdicts{"main.cf:3 relayhost": T},
			written: []string{"smtpgate_next_hop = smtp://relay.example.net:587"},
		},
		{
			name:    "relayhost in brackets, Postfix's port 25",
			main:    noLocal + "relayhost = [relay.example.net]\n",
			want:    verdicts{"main.cf:3 relayhost": T},
			written: []string{"smtpgate_next_hop = smtp://relay.example.net:25"},
		},
		{
			name:    "relayhost with a service name",
			main:    noLocal + "relayhost = [relay.example.net]:submission\n",
			want:    verdicts{"main.cf:3 relayhost": T},
			written: []string{"smtpgate_next_hop = smtp://relay.example.net:587"},
		},
		{
			name:    "relayhost IPv6",
			main:    noLocal + "relayhost = [ipv6:2001:db8::25]:25\n",
			want:    verdicts{"main.cf:3 relayhost": T},
			written: []string{"smtpgate_next_hop = smtp://[2001:db8::25]:25"},
		},
		{
			name:    "relayhost without brackets: Postfix looks up MX",
			main:    noLocal + "relayhost = relay.example.net:2525\n",
			want:    verdicts{"main.cf:3 relayhost": B},
			reason:  map[string]string{"main.cf:3 relayhost": "never looks up MX records"},
			written: []string{"smtpgate_next_hop = smtp://relay.example.net:2525"},
		},
		{
			name:    "relayhost without brackets or port",
			main:    noLocal + "relayhost = example.net\n",
			want:    verdicts{"main.cf:3 relayhost": B},
			reason:  map[string]string{"main.cf:3 relayhost": "relayhost = [example.net]:25 says the same in Postfix"},
			written: []string{"smtpgate_next_hop = smtp://example.net:25"},
		},
		{
			name:    "relayhost list",
			main:    noLocal + "relayhost = [a.example.net]:25, [b.example.net]:25\n",
			want:    verdicts{"main.cf:3 relayhost": B},
			reason:  map[string]string{"main.cf:3 relayhost": "to the first only"},
			written: []string{"smtpgate_next_hop = smtp://a.example.net:25"},
		},
		{
			name:    "relayhost naming a parameter",
			main:    noLocal + "mydomain = example.net\nrelayhost = ${mydomain}\n",
			want:    verdicts{"main.cf:4 relayhost": B},
			reason:  map[string]string{"main.cf:4 relayhost": "looks up the MX records of example.net"},
			written: []string{"smtpgate_next_hop = smtp://example.net:25"},
		},
		{
			name:       "relayhost naming a parameter main.cf does not set",
			main:       noLocal + "relayhost = $mydomain\n",
			want:       verdicts{"main.cf:3 relayhost": C},
			reason:     map[string]string{"main.cf:3 relayhost": "$mydomain is not set in main.cf"},
			notWritten: []string{"smtpgate_next_hop"},
		},
		{
			name:    "smarthost as default_transport",
			main:    noLocal + "default_transport = smtp:[smarthost.example.net]:587\n",
			want:    verdicts{"main.cf:3 default_transport": T},
			written: []string{"smtpgate_next_hop = smtp://smarthost.example.net:587"},
		},
		{
			name:   "IPv4 only",
			main:   noLocal + "relayhost = [relay.example.net]\ninet_protocols = ipv4\n",
			want:   verdicts{"main.cf:4 inet_protocols": B},
			reason: map[string]string{"main.cf:4 inet_protocols": "accept IPv4 and IPv6 clients alike"},
		},
		{
			name: "IPv4 only, on an address",
			main: noLocal + "relayhost = [relay.example.net]\ninet_protocols = ipv4\ninet_interfaces = 127.0.0.1\n",
			want: verdicts{"main.cf:4 inet_protocols": I, "main.cf:5 inet_interfaces": I},
		},
		{
			name:       "relayhost that cannot be translated",
			main:       noLocal + "relayhost = [relay.example.net]:nosuchservice\n",
			want:       verdicts{"main.cf:3 relayhost": C},
			notWritten: []string{"smtpgate_next_hop"},
		},
		{
			name: "TLS and SASL to the relayhost",
			main: noLocal + "relayhost = [relay.example.net]:587\nsmtp_tls_security_level = may\nsmtp_sasl_auth_enable = yes\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 smtp_tls_security_level": B, "main.cf:5 smtp_sasl_auth_enable": C},
		},
		{
			name: "TLS required to the relayhost",
			main: noLocal + "relayhost = [relay.example.net]:587\nsmtp_tls_security_level = encrypt\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 smtp_tls_security_level": C},
		},
		{
			name: "no relayhost: MX delivery",
			main: noLocal + "relayhost =\nsmtp_tls_security_level = may\n",
			want: verdicts{"main.cf:3 relayhost": B, "main.cf:4 smtp_tls_security_level": I},
			reason: map[string]string{"main.cf:3 relayhost": "smtpgate looks up no MX records and hands that mail to smtpgate_next_hop, " +
				"which the written main.cf leaves at its default maildir:var/maildir"},
			notWritten: []string{"smtpgate_next_hop", "relayhost"},
		},
		{
			name:   "local only: remote mail bounced",
			main:   noLocal + "default_transport = error\nrelay_transport = error\n",
			want:   verdicts{"main.cf:3 default_transport": B, "main.cf:4 relay_transport": I},
			reason: map[string]string{"main.cf:3 default_transport": "error(8) (error), which bounces it"},
		},
		{
			name: "Dovecot LMTP for the local mailboxes",
			main: "myhostname = mx.example.org\nmailbox_transport = lmtp:unix:private/dovecot-lmtp\nlocal_recipient_maps =\nrelayhost = [relay.example.net]\n",
			want: verdicts{"main.cf:0 mydestination": B, "main.cf:2 mailbox_transport": B, "main.cf:3 local_recipient_maps": T, "main.cf:4 relayhost": T},
			reason: map[string]string{"main.cf:2 mailbox_transport": "dovecot-lmtp by LMTP",
				"main.cf:0 mydestination": "no alias expansion, no .forward, no local mailbox), to smtpgate_next_hop = smtp://relay.example.net:25"},
			written: []string{"smtpgate_next_hop = smtp://relay.example.net:25", "local_recipient_maps ="},
		},
		{
			name: "Dovecot LMTP as the only next hop",
			main: "myhostname = mx.example.org\nmailbox_transport = lmtp:unix:private/dovecot-lmtp\nlocal_recipient_maps =\n",
			want: verdicts{"main.cf:0 mydestination": B, "main.cf:0 relayhost": B, "main.cf:2 mailbox_transport": T, "main.cf:3 local_recipient_maps": T},
			reason: map[string]string{"main.cf:0 mydestination": "local(8) (alias_maps, ~/.forward",
				"main.cf:0 relayhost": "lmtp+unix:///var/spool/postfix/private/dovecot-lmtp (written from main.cf:2 mailbox_transport)"},
			written: []string{"smtpgate_next_hop = lmtp+unix:///var/spool/postfix/private/dovecot-lmtp"},
		},
		{
			name:    "local_transport by LMTP is the next hop: nothing changes for local mail",
			main:    "myhostname = mx.example.org\nlocal_transport = lmtp:inet:[127.0.0.1]:24\nlocal_recipient_maps =\n",
			want:    verdicts{"main.cf:2 local_transport": T, "main.cf:3 local_recipient_maps": T, "main.cf:0 relayhost": B},
			written: []string{"smtpgate_next_hop = lmtp://127.0.0.1:24"},
		},
		{
			name: "virtual mailboxes by LMTP elsewhere than the relayhost",
			main: noLocal + "relayhost = [relay.example.net]\nvirtual_mailbox_domains = example.com\nvirtual_mailbox_maps = texthash:vmailbox\n" +
				"virtual_transport = lmtp:inet:127.0.0.1:24\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 virtual_mailbox_domains": B, "main.cf:5 virtual_mailbox_maps": T,
				"main.cf:6 virtual_transport": B},
			reason:  map[string]string{"main.cf:6 virtual_transport": "sends the mail for virtual_mailbox_domains to inet:127.0.0.1:24 by LMTP"},
			written: []string{"virtual_mailbox_domains = example.com", "virtual_mailbox_maps = texthash:vmailbox"},
		},
		{
			name:    "virtual aliases are only checked",
			main:    noLocal + "relayhost = [relay.example.net]\nvirtual_alias_domains = example.com\nvirtual_alias_maps = texthash:valias\n",
			want:    verdicts{"main.cf:3 relayhost": T, "main.cf:4 virtual_alias_domains": T, "main.cf:5 virtual_alias_maps": B},
			reason:  map[string]string{"main.cf:5 virtual_alias_maps": "under the address the client gave"},
			written: []string{"virtual_alias_maps = texthash:valias"},
		},
		{
			name: "transport_maps",
			main: noLocal + "relayhost = [relay.example.net]\ntransport_maps = hash:/etc/postfix/transport\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 transport_maps": B},
		},
		{
			name:       "local_recipient_maps smtpgate cannot read",
			main:       "myhostname = mx.example.org\nrelayhost = [relay.example.net]\nlocal_recipient_maps = proxy:unix:passwd.byname $alias_maps\n",
			want:       verdicts{"main.cf:2 relayhost": T, "main.cf:3 local_recipient_maps": B, "main.cf:0 mydestination": B},
			reason:     map[string]string{"main.cf:3 local_recipient_maps": "the next hop may still refuse it at RCPT TO"},
			notWritten: []string{"local_recipient_maps"},
		},
		{
			name:    "local_recipient_maps smtpgate reads",
			main:    "myhostname = mx.example.org\nrelayhost = [relay.example.net]\nlocal_recipient_maps = texthash:vmailbox\n",
			want:    verdicts{"main.cf:2 relayhost": T, "main.cf:3 local_recipient_maps": T, "main.cf:0 mydestination": B},
			written: []string{"local_recipient_maps = texthash:vmailbox"},
		},
		{
			name: "local_recipient_maps without local domains",
			main: noLocal + "relayhost = [relay.example.net]\nlocal_recipient_maps = unix:passwd.byname\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 local_recipient_maps": I},
		},
		{
			name: "Cyrus SASL",
			main: noLocal + "relayhost = [relay.example.net]\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\n",
			want: verdicts{"main.cf:3 relayhost": T, "main.cf:4 smtpd_sasl_auth_enable": C, "main.cf:5 smtpd_sasl_type": C, "main.cf:6 smtpd_sasl_path": C},
			reason: map[string]string{"main.cf:5 smtpd_sasl_type": "smtpgate-auth cannot ask Cyrus or saslauthd",
				"main.cf:6 smtpd_sasl_path": "Cyrus's application configuration (smtpd.conf)"},
		},
		{
			name:       "Cyrus SASL by default",
			main:       noLocal + "relayhost = [relay.example.net]\nsmtpd_sasl_auth_enable = yes\n",
			want:       verdicts{"main.cf:3 relayhost": T, "main.cf:4 smtpd_sasl_auth_enable": C, "main.cf:0 smtpd_sasl_type": C},
			notWritten: []string{"smtpd_sasl_auth_enable"},
			reason:     map[string]string{"main.cf:0 smtpd_sasl_type": "AUTH on main.cf: Postfix checks passwords with Cyrus SASL"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, map[string]string{"main.cf": tc.main, "vmailbox": "a@example.com x\n", "valias": "b@example.com a@example.com\n"})
			r, err := importcf.Import(importcf.Options{Main: filepath.Join(dir, "main.cf")})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*importcf.Setting{}
			for _, s := range r.Settings {
				got[s.Pos.String()+" "+s.Name] = s
			}
			for k, v := range tc.want {
				if s, ok := got[k]; !ok {
					t.Errorf("%s: not reported", k)
				} else if s.Verdict != v {
					t.Errorf("%s: %v, want %v (%s)", k, s.Verdict, v, s.Reason)
				}
			}
			for k, part := range tc.reason {
				if s, ok := got[k]; ok && !strings.Contains(s.Reason, part) {
					t.Errorf("%s: reason lacks %q:\n%s", k, part, s.Reason)
				}
			}
			out := t.TempDir()
			if err := r.WriteConfig(out); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(out, "main.cf"))
			if err != nil {
				t.Fatal(err)
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(string(data), "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tc.written {
				if !lines[w] {
					t.Errorf("written main.cf lacks %q:\n%s", w, data)
				}
			}
			for _, w := range tc.notWritten {
				for l := range lines {
					if strings.HasPrefix(l, w) {
						t.Errorf("written main.cf has %q:\n%s", l, data)
					}
				}
			}
			wantOK := true
			for _, s := range r.Settings {
				if s.Verdict == B || s.Verdict == C {
					wantOK = false
				}
			}
			if r.OK() != wantOK {
				t.Errorf("OK() = %v", r.OK())
			}
		})
	}
}
