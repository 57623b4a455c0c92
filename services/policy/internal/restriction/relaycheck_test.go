package restriction

import (
	"strings"
	"testing"
)

func TestOpenRelayCheck(t *testing.T) {
	const old = "smtpd_relay_restrictions =\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		conf  string
		// want is a part of the error; "" means the configuration is safe.
		want string
	}{
		{name: "default relay list", conf: ""},
		{name: "submission style", conf: "smtpd_relay_restrictions = permit_sasl_authenticated, reject"},
		{
			name:  "the localhost.localdomain HELO pitfall",
			files: map[string]string{"helo_access": "# our own host\nlocalhost.localdomain OK\n"},
			conf: old + "smtpd_recipient_restrictions = permit_mynetworks, check_helo_access texthash:TABLES/helo_access, " +
				"reject_unauth_destination",
			want: `smtpd_recipient_restrictions: check_helo_access texthash:TABLES/helo_access at TABLES/helo_access:2: "localhost.localdomain OK" lets any client that gives HELO localhost.localdomain relay`,
		},
		{
			name:  "the same table after reject_unauth_destination is safe",
			files: map[string]string{"helo_access": "localhost.localdomain OK\n"},
			conf:  old + "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_helo_access texthash:TABLES/helo_access",
		},
		{
			name:  "the pitfall is safe while the relay list refuses strangers",
			files: map[string]string{"helo_access": "localhost.localdomain OK\n"},
			conf:  "smtpd_recipient_restrictions = check_helo_access texthash:TABLES/helo_access, reject_unauth_destination",
		},
		{
			name:  "sender domain whitelist",
			files: map[string]string{"senders": "example.org OK\n"},
			conf:  old + "smtpd_recipient_restrictions = check_sender_access texthash:TABLES/senders, reject_unauth_destination",
			want:  `"example.org OK" lets any client that gives sender example.org relay`,
		},
		{
			name:  "regexp HELO table",
			files: map[string]string{"helo.re": "/^mail\\./ permit_auth_destination\n/^friend\\./ permit\n"},
			conf:  old + "smtpd_recipient_restrictions = check_helo_access regexp:TABLES/helo.re, reject_unauth_destination",
			want:  `"/^friend\\./ permit" lets any client that gives a HELO matching /^friend\./ relay`,
		},
		{
			name:  "client without a name",
			files: map[string]string{"clients": "unknown OK\n"},
			conf:  old + "smtpd_recipient_restrictions = check_client_access texthash:TABLES/clients, reject_unauth_destination",
			want:  `"unknown OK" lets any client that gives client name unknown relay`,
		},
		{
			name:  "client addresses are fine",
			files: map[string]string{"clients": "192.0.2.10 OK\n"},
			conf:  old + "smtpd_recipient_restrictions = check_client_access texthash:TABLES/clients, reject_unauth_destination",
		},
		{
			name: "class that permits",
			conf: old + "smtpd_restriction_classes = lenient\nlenient = permit_mynetworks, permit\n" +
				"smtpd_recipient_restrictions = lenient, reject_unauth_destination",
			want: "restriction class lenient: permit",
		},
		{
			name: "warn_if_reject disarms reject_unauth_destination",
			conf: old + "smtpd_recipient_restrictions = permit_mynetworks, warn_if_reject, reject_unauth_destination",
			want: "smtpd_recipient_restrictions lets it through (no restriction there refuses it)",
		},
		{
			name: "defer_if_permit first",
			conf: old + "smtpd_recipient_restrictions = defer_if_permit, permit",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir, err := compileTables(t, tc.files, tc.conf)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Compile: no error, want one containing %q", tc.want)
			}
			got := strings.ReplaceAll(err.Error(), dir+"/", "TABLES/")
			t.Log(got)
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "open relay") {
				t.Errorf("error:\n%s\ndoes not contain:\n%s", got, tc.want)
			}
		})
	}
}
