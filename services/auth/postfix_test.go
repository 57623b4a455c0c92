package auth

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// TestPostfixAuthenticatesThroughDovecotProtocol runs Debian's Postfix with
// smtpd_sasl_type = dovecot pointed at smtpgate-auth's Dovecot port, and
// swaks as the client: john's password is accepted (235) and a wrong one
// refused (535), over STARTTLS, with PLAIN and LOGIN.
func TestPostfixAuthenticatesThroughDovecotProtocol(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: run scripts/deps --test")
	}
	dir := t.TempDir()
	passwd, err := os.ReadFile("../../deploy/local/passwd")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte("smtpgate_passwd_file = passwd\nmyhostname = mail.example.org\n"+
		"smtpgate_sasl_mechanisms = PLAIN LOGIN\nsmtpd_sasl_security_options = noanonymous, noplaintext\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o600))
	cfg, services, err := maincf.Load(Catalogue(), dir)
	must(t, err)
	set, err := Load(cfg, services)
	must(t, err)
	srv, err := New(set, Config{})
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeDovecot(ctx, ln) }()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })

	tlsDir := t.TempDir()
	cert, key := filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem")
	certtest.SelfSigned(t, cert, key, "mail.example.org")
	pf := postfixtest.Start(t, postfixtest.Options{Main: strings.Join([]string{
		"smtpd_sasl_auth_enable = yes",
		"smtpd_sasl_type = dovecot",
		"smtpd_sasl_path = inet:" + ln.Addr().String(),
		"smtpd_tls_security_level = may",
		"smtpd_tls_cert_file = " + cert,
		"smtpd_tls_key_file = " + key,
		"smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
	}, "\n")})

	run := func(mech, password string) (string, error) {
		cmd := exec.Command(swaks, "--server", pf.Addr(), "--tls", "--auth", mech,
			"--auth-user", "john@example.org", "--auth-password", password,
			"--from", "john@example.org", "--to", "lisa@example.com", "--timeout", "20")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out, err := run(mech, "john-example-password")
		if err != nil || !strings.Contains(out, "<~  235 2.7.0 Authentication successful") || !strings.Contains(out, "<~  250 2.0.0 Ok: queued") {
			t.Errorf("%s with the right password through Postfix: %v\n%s", mech, err, out)
		}
		out, err = run(mech, "wrong-password")
		if err == nil || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("%s with a wrong password through Postfix: want 535 5.7.8\n%s", mech, out)
		}
	}
	// Postfix's log daemon writes a moment after the event.
	log := pf.Log()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log, "sasl_method=PLAIN, sasl_username=john@example.org") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		log = pf.Log()
	}
	if !strings.Contains(log, "sasl_method=PLAIN, sasl_username=john@example.org") {
		t.Errorf("Postfix did not log the SASL login:\n%s", log)
	}
}
