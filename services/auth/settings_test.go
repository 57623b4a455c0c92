package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// loadDir writes main.cf and master.cf to a directory and parses them.
func loadDir(t *testing.T, mainCf, masterCf string) (*maincf.Config, []maincf.Service) {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCf), 0o600))
	cfg, services, err := maincf.Load(Catalogue(), dir)
	must(t, err)
	return cfg, services
}

// TestLoadReportsEveryBadValue: one Load reports each bad value of every
// part of the configuration (SASL listeners, passwd-file, throttle,
// Dovecot listener), each with its file:line and each once, not only the
// first; check (validate: Load with the settings dropped) says the same.
func TestLoadReportsEveryBadValue(t *testing.T) {
	cfg, services := loadDir(t, `smtpgate_sasl_mechanisms = PLAIN NO-SUCH-MECH OTHER-MECH
smtpgate_passwd_file = no-such-passwd
smtpgate_auth_failure_window = soon
smtpgate_dovecot_auth_clients = not-a-network
smtpgate_auth_max_failures_per_user = many
`, "sub inet n - n - - smtpd\n  -o smtpgate_sasl_mechanisms=LOGIN\n  -o smtpd_sasl_security_options=no-such-option\n")
	_, err := Load(cfg, services)
	if err == nil {
		t.Fatal("Load accepted bad values")
	}
	for _, want := range []string{
		`main.cf:1: smtpgate_sasl_mechanisms: unknown mechanism "NO-SUCH-MECH"`,
		"main.cf:2: smtpgate_passwd_file: ",
		"main.cf:3: smtpgate_auth_failure_window = soon: ",
		"main.cf:4: smtpgate_dovecot_auth_clients: ",
		"main.cf:5: smtpgate_auth_max_failures_per_user = many: ",
		`main.cf:1: smtpgate_sasl_mechanisms: unknown mechanism "OTHER-MECH"`,
		`master.cf:1: smtpd_sasl_security_options: unknown SASL security option "no-such-option"`,
	} {
		if n := strings.Count(err.Error(), want); n != 1 {
			t.Errorf("Load: %v\nsays %q %d times, want once", err, want, n)
		}
	}
	if verr := validate(cfg, services); verr == nil || verr.Error() != err.Error() {
		t.Errorf("Validate: %v\nwant what Load says: %v", verr, err)
	}
}

// TestLoadTypedValues: the settings carry the configured values, typed,
// and each master.cf service's overrides.
func TestLoadTypedValues(t *testing.T) {
	cfg, services := loadDir(t, `myhostname = mail.example.org
smtpgate_auth_failure_window = 5m
smtpgate_auth_max_failures_per_client = 4
smtpgate_auth_redis_timeout = 150ms
smtpgate_dovecot_auth_listen = 127.0.0.1:0 unix:/run/x/auth
smtpgate_dovecot_auth_socket_mode = 0600
smtpgate_sasl_mechanisms = PLAIN LOGIN
`, "sub inet n - n - - smtpd\n  -o smtpgate_sasl_mechanisms=LOGIN\n")
	set, err := Load(cfg, services)
	must(t, err)
	if set.hostname != "mail.example.org" {
		t.Errorf("hostname %q, want mail.example.org", set.hostname)
	}
	if p := set.throttle.Params; p.Window != 5*time.Minute || p.MaxPerClient != 4 || p.MaxPerUser != 10 {
		t.Errorf("throttle %+v, want window 5m, 4 per client, 10 per user (the default)", p)
	}
	if set.throttle.Timeout != 150*time.Millisecond {
		t.Errorf("redis timeout %v, want 150ms", set.throttle.Timeout)
	}
	if got := strings.Join(set.dovecotListen, " "); got != "127.0.0.1:0 unix:/run/x/auth" {
		t.Errorf("dovecot listen %q", got)
	}
	if set.dovecot.mode != 0o600 || set.dovecot.uid != -1 || set.dovecot.gid != -1 {
		t.Errorf("dovecot socket %v uid %d gid %d, want 0600, -1, -1", set.dovecot.mode, set.dovecot.uid, set.dovecot.gid)
	}
	if n := len(set.listeners[""].mechanisms); n != 2 {
		t.Errorf("main.cf offers %d mechanisms, want 2", n)
	}
	if n := len(set.listeners["sub"].mechanisms); n != 1 {
		t.Errorf("service sub offers %d mechanisms, want 1 (its -o)", n)
	}
}

// TestLoadSASLType: smtpd_sasl_type and smtpd_sasl_path, in main.cf and
// per listener, resolve as documented (a relative path under
// /var/spool/postfix, as Postfix resolves it); what smtpgate cannot honour is reported with its
// file:line.
func TestLoadSASLType(t *testing.T) {
	cfg, services := loadDir(t, `smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpgate_dovecot_userdb_path = inet:127.0.0.1:12346
`, `sub inet n - n - - smtpd
  -o smtpd_sasl_path=inet:[::1]:12345
own inet n - n - - smtpd
  -o smtpd_sasl_type=smtpgate
`)
	set, err := Load(cfg, services)
	must(t, err)
	for name, want := range map[string]string{"": "unix:/var/spool/postfix/private/auth", "sub": "inet:[::1]:12345", "own": ""} {
		if got := set.listeners[name].dovecot; got != want {
			t.Errorf("listener %q: Dovecot socket %q, want %q", name, got, want)
		}
	}
	if set.userdb != "inet:127.0.0.1:12346" || set.dovecotTimeout != 10*time.Second {
		t.Errorf("userdb %q timeout %v", set.userdb, set.dovecotTimeout)
	}

	cfg, services = loadDir(t, `smtpd_sasl_type = cyrus
local_recipient_maps = auth:users
`, `sub inet n - n - - smtpd
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:no-port
`)
	_, err = Load(cfg, services)
	for _, want := range []string{
		"main.cf:1: smtpd_sasl_type = cyrus: cyrus cannot be honoured",
		"service sub: ", "master.cf:1: smtpd_sasl_path: \"inet:no-port\": want inet:host:port",
		"main.cf:2: local_recipient_maps: auth:users has no user database: set smtpgate_dovecot_userdb_path",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v\nwant %q", err, want)
		}
	}
}

// TestAuthNeverPossible: check refuses a listener on which AUTH can never
// succeed, naming its master.cf line and the fix, and accepts the same
// listener once the fix is made.
func TestAuthNeverPossible(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	must(t, os.WriteFile(cert, []byte("not read by smtpgate-auth"), 0o600))
	abs, err := filepath.Abs(filepath.Join("..", "..", "deploy", "local", "passwd"))
	must(t, err)
	passwd := "smtpgate_passwd_file = " + abs + "\n"
	const sub = "mx inet n - n - - smtpd\n127.0.0.1:2587 inet n - n - - smtpd\n  -o smtpd_sasl_auth_enable=yes\n"
	for _, tc := range []struct {
		name, main, master, want string
	}{
		{"no user database", "", sub + "  -o smtpd_tls_cert_file=" + cert + "\n",
			"master.cf:2: service 127.0.0.1:2587: smtpd_sasl_auth_enable = yes, but AUTH can never succeed here: there is no user database: set smtpgate_passwd_file, or smtpd_sasl_type = dovecot"},
		{"plaintext only, no TLS", passwd, sub,
			"master.cf:2: service 127.0.0.1:2587: smtpd_sasl_auth_enable = yes, but AUTH can never succeed here: the listener has no TLS and smtpd_sasl_security_options = noanonymous, noplaintext leaves none of smtpgate_sasl_mechanisms (PLAIN LOGIN) before TLS: set smtpd_tls_cert_file"},
		{"TLS only, no TLS", passwd, sub + "  -o smtpd_tls_auth_only=yes\n",
			"master.cf:2: service 127.0.0.1:2587: smtpd_sasl_auth_enable = yes, but AUTH can never succeed here: AUTH is offered only under TLS (smtpd_tls_auth_only = yes) and the listener has no TLS"},
		{"TLS switched off", passwd, sub + "  -o smtpd_tls_cert_file=" + cert + "\n  -o smtpd_tls_security_level=none\n",
			"the listener has no TLS and smtpd_sasl_security_options"},
		{"nothing left under TLS", passwd, sub + "  -o smtpd_tls_cert_file=" + cert + "\n  -o smtpd_sasl_tls_security_options=noanonymous,noplaintext\n",
			"master.cf:2: service 127.0.0.1:2587: smtpd_sasl_auth_enable = yes, but AUTH can never succeed here: smtpd_sasl_tls_security_options = noanonymous,noplaintext leaves none of smtpgate_sasl_mechanisms (PLAIN LOGIN)"},
		{"fixed: TLS", passwd, sub + "  -o smtpd_tls_cert_file=" + cert + "\n", ""},
		{"fixed: plaintext allowed before TLS", passwd, sub + "  -o smtpd_sasl_security_options=noanonymous\n", ""},
		{"fixed: implicit TLS", passwd, sub + "  -o smtpd_tls_cert_file=" + cert + "\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_auth_only=yes\n", ""},
		{"fixed: Dovecot's users", "smtpd_sasl_type = dovecot\nsmtpd_sasl_path = inet:127.0.0.1:12345\n", sub + "  -o smtpd_tls_cert_file=" + cert + "\n", ""},
		{"SASL off", "", "mx inet n - n - - smtpd\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, services := loadDir(t, tc.main, tc.master)
			_, err := Load(cfg, services)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Load: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Load: %v\nwant %q", err, tc.want)
			}
		})
	}
}

// validate is check: Load with the settings dropped.
func validate(main *maincf.Config, services []maincf.Service) error {
	_, err := Load(main, services)
	return err
}

// A bad Sentinel or Cluster URL in smtpgate_auth_redis is reported with
// its file:line and reason, never its password; good ones load.
func TestLoadRedisURLForms(t *testing.T) {
	for url, want := range map[string]string{
		"redis+sentinel://:Hunter2x@s1:26379,s2:26379/mymaster/0": "",
		"rediss+cluster://:Hunter2x@c1:7000,c2:7000":              "",
		"redis+sentinel://:Hunter2x@s1:26379,s2:26379":            "main.cf:2: smtpgate_auth_redis: redis URL: ",
		"redis+cluster://:Hunter2x@c1:7000,c2":                    "host 2 of 2: want host:port",
	} {
		cfg, services := loadDir(t, "\nsmtpgate_auth_redis = "+url+"\n", "")
		_, err := Load(cfg, services)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", url, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "main.cf:2: smtpgate_auth_redis: ")):
			t.Errorf("%s: %v, want %q", url, err, want)
		case err != nil && strings.Contains(err.Error(), "Hunter2x"):
			t.Errorf("%s: the error quotes the password: %v", url, err)
		}
	}
}
