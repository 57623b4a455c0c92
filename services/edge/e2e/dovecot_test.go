package e2e

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/dovecottest"
	"github.com/smtpgate/smtpgate/pkg/postfixtest"
)

// The real Dovecot (Debian's dovecot-core and dovecot-sqlite) of this
// package: started by the first test that needs it, stopped by
// stopDovecot when the package's tests end.
var dovecotOnce struct {
	sync.Once
	srv *dovecottest.Server
	dir string
	err error
}

// Its users: doveadm pw schemes in the passwd-file, and SQL.
var dovecotUsers = []dovecottest.User{
	{Name: "dove512@example.org", Password: "dove512-secret", Scheme: "SHA512-CRYPT"},
	{Name: "dovebf@example.org", Password: "dovebf-secret", Scheme: "BLF-CRYPT"},
	{Name: "dovessha@example.org", Password: "dovessha-secret", Scheme: "SSHA256"},
	{Name: "dovepbkdf2@example.org", Password: "dovepbkdf2-secret", Scheme: "PBKDF2"},
}

var dovecotSQLUsers = []dovecottest.User{
	{Name: "dovesql@example.org", Password: "dovesql-secret", Scheme: "SHA256-CRYPT"},
}

// realDovecot starts the package's Dovecot once.
func realDovecot(t *testing.T) *dovecottest.Server {
	t.Helper()
	dovecotOnce.Do(func() {
		if dovecotOnce.dir, dovecotOnce.err = os.MkdirTemp("", "e2e-dovecot"); dovecotOnce.err != nil {
			return
		}
		dovecotOnce.srv, dovecotOnce.err = dovecottest.Start(dovecotOnce.dir, dovecottest.Options{
			PasswdUsers: dovecotUsers, SQLUsers: dovecotSQLUsers, DisablePlaintextAuth: true, Debug: true})
	})
	if dovecotOnce.err != nil {
		t.Fatal(dovecotOnce.err)
	}
	return dovecotOnce.srv
}

// stopDovecot ends the package's Dovecot, if one was started.
func stopDovecot() {
	if dovecotOnce.srv != nil {
		dovecotOnce.srv.Stop()
	}
	if dovecotOnce.dir != "" {
		os.RemoveAll(dovecotOnce.dir)
	}
}

// dovecotStack runs the stack with deploy/local's configuration, its
// users in Dovecot instead: smtpd_sasl_type = dovecot on every listener,
// and auth:users (local_recipient_maps) through Dovecot's userdb.
func dovecotStack(t *testing.T, extra string) (*stack, *dovecottest.Server) {
	t.Helper()
	d := realDovecot(t)
	s := newStack(t, fmt.Sprintf(`smtpd_sasl_type = dovecot
smtpd_sasl_path = %s
smtpgate_dovecot_userdb_path = unix:%s
# Dovecot's penalty delays a client's failures by up to 15 s.
smtpgate_auth_timeout = 30s
smtpgate_auth_failure_delay = 0
%s`, d.ClientSocket, d.UserdbSocket, extra))
	return s, d
}

// dovecotPlain runs EHLO, STARTTLS and AUTH PLAIN on the submission
// listener from the address from, and returns AUTH's reply ("235 ..." on
// success).
func dovecotPlain(t *testing.T, s *stack, from, user, pass string) string {
	t.Helper()
	c, err := s.dial(from, "submission", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(tlsConfig()); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", user, pass, "mail.example.org")); err != nil {
		return replyOf(err)
	}
	return "235"
}

// TestDovecotAuth: through a real Dovecot, every user (passwd-file in
// several schemes, and SQL) authenticates with PLAIN (net/smtp) and LOGIN
// (swaks) and sends to another Dovecot user; a wrong password is 535
// 5.7.8; a recipient Dovecot's userdb does not know is refused.
func TestDovecotAuth(t *testing.T) {
	s, d := dovecotStack(t, "")
	swaks := swaksPath(t)
	for i, u := range append(append([]dovecottest.User{}, dovecotUsers...), dovecotSQLUsers...) {
		from := fmt.Sprintf("127.0.3.%d", 2*i+1)
		if got := dovecotPlain(t, s, from, u.Name, u.Password); got != "235" {
			t.Errorf("AUTH PLAIN %s (%s): %s", u.Name, u.Scheme, got)
		}
		if got := dovecotPlain(t, s, from, u.Name, "wrong-"+u.Password); !strings.HasPrefix(got, "535 5.7.8") {
			t.Errorf("AUTH PLAIN %s with a wrong password: %q, want 535 5.7.8", u.Name, got)
		}
		tok := newToken("dovecot")
		out, err := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["submission"]), "--tls",
			"--local-interface", fmt.Sprintf("127.0.3.%d", 2*i+2),
			"--auth", "LOGIN", "--auth-user", u.Name, "--auth-password", u.Password,
			"--from", u.Name, "--to", "dovesql@example.org", "--header", "Subject: "+tok, "--timeout", "30").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "235 2.7.0 Authentication successful") || !strings.Contains(string(out), "250 2.0.0 Ok: queued as") {
			t.Errorf("swaks AUTH LOGIN %s and a message: %v\n%s", u.Name, err, out)
		}
		if s.maildirTokens()[tok] != 1 {
			t.Errorf("the message of %s is not in the Maildir", u.Name)
		}
	}
	// What Dovecot was told (its auth_debug log): the session as the edge
	// sees it, as Postfix tells it, with the ports besides.
	want := regexp.MustCompile(`client in: AUTH\t\d+\tPLAIN\tservice=smtp\tnologin\tlip=127\.0\.0\.1\trip=127\.0\.3\.1\tlport=` +
		itoa(s.port["submission"]) + `\trport=[1-9]\d*\tsecured\tresp=<hidden>\n`)
	if !want.MatchString(d.Log()) {
		t.Errorf("Dovecot's log has no AUTH matching %s", want)
	}
	// A recipient only Dovecot's userdb decides on (local_recipient_maps
	// = auth:users): a user smtpgate's passwd-file knows, Dovecot does not.
	out, err := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]),
		"--from", "someone@example.net", "--to", "john@example.org", "--quit-after", "RCPT", "--timeout", "30").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "550 5.1.1 <john@example.org>: Recipient address rejected") {
		t.Errorf("a recipient Dovecot does not know: want 550 5.1.1\n%s", out)
	}
	out, err = exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]),
		"--from", "someone@example.net", "--to", "dove512@example.org", "--quit-after", "RCPT", "--timeout", "30").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.1.5 Ok") {
		t.Errorf("a recipient Dovecot knows: %v\n%s", err, out)
	}
	// Before TLS no plaintext mechanism is offered (noplaintext), as
	// Postfix filters Dovecot's list.
	c, err := s.dial("127.0.3.99", "mx", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); ok && (strings.Contains(mechs, "PLAIN") || strings.Contains(mechs, "LOGIN")) {
		t.Errorf("AUTH %q before TLS", mechs)
	}
}

// TestDovecotLockout: smtpgate's brute-force throttle stands in front of
// Dovecot: after 3 wrong passwords from one address, the right one from
// there is refused with 454 4.7.0, with PLAIN and with LOGIN, without
// Dovecot being asked, and the user still gets in from another address.
func TestDovecotLockout(t *testing.T) {
	s, d := dovecotStack(t, "smtpgate_auth_max_failures_per_client = 3\n")
	for i := range 3 {
		if got := dovecotPlain(t, s, "127.0.4.1", "dove512@example.org", fmt.Sprintf("guess-%d", i)); !strings.HasPrefix(got, "535 5.7.8") {
			t.Fatalf("guess %d: %q, want 535 5.7.8", i, got)
		}
	}
	if got := dovecotPlain(t, s, "127.0.4.1", "dove512@example.org", "dove512-secret"); !strings.HasPrefix(got, "454 4.7.0") {
		t.Fatalf("the right password from a locked-out address: %q, want 454 4.7.0", got)
	}
	out, _ := exec.Command(swaksPath(t), "--server", "127.0.0.1", "--port", itoa(s.port["submission"]), "--tls",
		"--local-interface", "127.0.4.1", "--auth", "LOGIN", "--auth-user", "dovesql@example.org", "--auth-password", "dovesql-secret",
		"--quit-after", "AUTH", "--timeout", "30").CombinedOutput()
	if !strings.Contains(string(out), "454 4.7.0") {
		t.Fatalf("AUTH LOGIN from a locked-out address: want 454 4.7.0\n%s", out)
	}
	// Dovecot saw the 3 guesses, and nothing of the locked-out address
	// after them (its auth_debug log shows every request).
	if n := strings.Count(d.Log(), "\trip=127.0.4.1\t"); n != 3 {
		t.Errorf("Dovecot got %d requests from 127.0.4.1, want the 3 guesses only", n)
	}
	if got := dovecotPlain(t, s, "127.0.4.2", "dove512@example.org", "dove512-secret"); got != "235" {
		t.Fatalf("the user from another address: %q", got)
	}
}

// TestDovecotKilled: Dovecot killed under a running stack: AUTH is
// answered 454 4.7.0, never a success, and a recipient check is a
// temporary refusal (451 4.3.0), never "unknown user"; Dovecot back, the same stack
// (no restart) authenticates again.
func TestDovecotKilled(t *testing.T) {
	s, d := dovecotStack(t, "")
	if got := dovecotPlain(t, s, "127.0.5.1", "dovesql@example.org", "dovesql-secret"); got != "235" {
		t.Fatalf("before: %q", got)
	}
	d.Kill()
	defer func() { _ = d.Restart() }()
	for _, pass := range []string{"dovesql-secret", "wrong"} {
		if got := dovecotPlain(t, s, "127.0.5.2", "dovesql@example.org", pass); !strings.HasPrefix(got, "454 4.7.0") {
			t.Errorf("Dovecot killed, password %q: %q, want 454 4.7.0", pass, got)
		}
	}
	swaks := swaksPath(t)
	out, _ := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]),
		"--from", "someone@example.net", "--to", "dovesql@example.org", "--quit-after", "RCPT", "--timeout", "30").CombinedOutput()
	if !strings.Contains(string(out), "451 4.3.0 <dovesql@example.org>: Temporary lookup failure") {
		t.Errorf("a recipient check with Dovecot down: want Postfix's 451 4.3.0 Temporary lookup failure\n%s", out)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := dovecotPlain(t, s, "127.0.5.3", "dovesql@example.org", "dovesql-secret"); got != "235" {
		t.Errorf("Dovecot back: %q", got)
	}
	out, err := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]),
		"--from", "someone@example.net", "--to", "dovesql@example.org", "--quit-after", "RCPT", "--timeout", "30").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.1.5 Ok") {
		t.Errorf("a recipient check with Dovecot back: %v\n%s", err, out)
	}
}

// TestDovecotDifferential: a real Postfix (pkg/postfixtest) with
// smtpd_sasl_type = dovecot and smtpgate, both asking the same Dovecot
// over TCP, give the same reply codes (and enhanced codes) for every
// user's right and wrong password, and for every AUTH while Dovecot is
// down. The texts after the codes differ as docs/postfix-differences.md
// says ("SASL through Dovecot").
func TestDovecotDifferential(t *testing.T) {
	s, d := dovecotStack(t, "")
	certFile, keyFile := writeCert(t, t.TempDir())
	pf := postfixtest.Start(t, postfixtest.Options{Main: fmt.Sprintf(`smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:%s
smtpd_tls_security_level = may
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_auth_only = yes
`, d.ClientAddr, certFile, keyFile)})
	// auth runs STARTTLS and AUTH PLAIN against addr from the address
	// from, and returns the reply's code and enhanced code.
	auth := func(addr, from, user, pass string) string {
		conn, err := dialConn(from, addr, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClient(conn, "mail.example.org")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(tlsConfig()); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if err := c.Auth(smtp.PlainAuth("", user, pass, "mail.example.org")); err != nil {
			f := strings.Fields(replyOf(err))
			if len(f) < 2 {
				return replyOf(err)
			}
			return f[0] + " " + f[1]
		}
		return "235 2.7.0"
	}
	smtpgate := fmt.Sprintf("127.0.0.1:%d", s.port["submission"])
	n := 0
	from := func() string { n++; return fmt.Sprintf("127.0.6.%d", n) }
	compare := func(what, user, pass, want string) {
		t.Helper()
		p, g := auth(pf.Addr(), from(), user, pass), auth(smtpgate, from(), user, pass)
		if p != g || p != want {
			t.Errorf("%s: Postfix %q, smtpgate %q, want %q from both", what, p, g, want)
		}
	}
	for _, u := range append(append([]dovecottest.User{}, dovecotUsers...), dovecotSQLUsers...) {
		compare(u.Name+" ("+u.Scheme+")", u.Name, u.Password, "235 2.7.0")
		compare(u.Name+" with a wrong password", u.Name, "wrong-"+u.Password, "535 5.7.8")
	}
	compare("an unknown user", "nobody@example.org", "x", "535 5.7.8")
	d.Kill()
	defer func() { _ = d.Restart() }()
	compare("Dovecot killed", "dovesql@example.org", "dovesql-secret", "454 4.7.0")
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	// The first AUTH after the restart: smtpgate's finds its connection
	// dead before answering and sends the request again on a new one;
	// Postfix's smtpd answers 454 ("Connection lost to authentication
	// server") and connects again for the next.
	if g := auth(smtpgate, from(), "dovesql@example.org", "dovesql-secret"); g != "235 2.7.0" {
		t.Errorf("smtpgate's first AUTH with Dovecot back: %q, want 235 2.7.0", g)
	}
	if p := auth(pf.Addr(), from(), "dovesql@example.org", "dovesql-secret"); p != "235 2.7.0" && p != "454 4.7.0" {
		t.Errorf("Postfix's first AUTH with Dovecot back: %q", p)
	}
	compare("Dovecot back", "dovesql@example.org", "dovesql-secret", "235 2.7.0")
}
