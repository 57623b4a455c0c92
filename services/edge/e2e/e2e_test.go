package e2e

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ledger records what each client was told, so the Maildir can be compared
// with it at the end: exactly the accepted messages, each once.
type ledger struct {
	accepted, refused []string
}

func (l *ledger) expectAccepted(t *testing.T, s *stack, m message) {
	t.Helper()
	if m.token == "" {
		m.token = newToken("ok")
	}
	if err := s.send(m); err != nil {
		t.Errorf("from %s via %s to %v: got %q, want the message queued", m.from, m.listener, m.rcpts, replyOf(err))
		l.refused = append(l.refused, m.token)
		return
	}
	l.accepted = append(l.accepted, m.token)
}

func (l *ledger) expectRefused(t *testing.T, s *stack, m message, want string) {
	t.Helper()
	m.token = newToken("no")
	l.refused = append(l.refused, m.token)
	err := s.send(m)
	if err == nil {
		t.Errorf("from %s via %s to %v: message queued, want %q", m.from, m.listener, m.rcpts, want)
		l.accepted = append(l.accepted, m.token)
		return
	}
	if got := replyOf(err); !strings.HasPrefix(got, want) {
		t.Errorf("from %s via %s to %v: got %q, want %q", m.from, m.listener, m.rcpts, got, want)
	}
}

func (l *ledger) checkMaildir(t *testing.T, s *stack) {
	t.Helper()
	counts := s.maildirTokens()
	for _, tok := range l.accepted {
		if counts[tok] != 1 {
			t.Errorf("accepted message %s is in the Maildir %d times, want once", tok, counts[tok])
		}
		delete(counts, tok)
	}
	for _, tok := range l.refused {
		if counts[tok] != 0 {
			t.Errorf("refused message %s reached the Maildir", tok)
		}
	}
	for tok, n := range counts {
		t.Errorf("Maildir holds %d copies of %s, which no client saw accepted", n, tok)
	}
}

func plain(password string) smtp.Auth {
	return smtp.PlainAuth("", "john@example.org", password, "mail.example.org")
}

func TestEndToEnd(t *testing.T) {
	s := newStack(t, "")
	var l ledger

	t.Run("local domain accepted from anyone", func(t *testing.T) {
		for _, from := range []string{Trusted, Stranger} {
			for _, rcpt := range []string{"john@example.org", "john@EXAMPLE.org", "john@example.org.", "postmaster@localhost"} {
				l.expectAccepted(t, s, message{from: from, listener: "mx", sender: "someone@example.net", rcpts: []string{rcpt}})
			}
		}
		l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "", rcpts: []string{"john@example.org"}})
	})

	t.Run("unknown local users refused (local_recipient_maps = auth:users)", func(t *testing.T) {
		for _, from := range []string{Trusted, Stranger} {
			l.expectRefused(t, s, message{from: from, listener: "mx", sender: "someone@example.net", rcpts: []string{"nobody@example.org"}},
				"550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table")
		}
	})

	t.Run("relay refused for the stranger, accepted for the trusted client", func(t *testing.T) {
		l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"lisa@example.com"}},
			"554 5.7.1 <lisa@example.com>: Relay access denied")
		l.expectAccepted(t, s, message{from: Trusted, listener: "mx", sender: "john@example.org", rcpts: []string{"lisa@example.com"}})
	})

	t.Run("every relay trick refused for the stranger", func(t *testing.T) {
		// Sender-specified routing and its disguises (the classic open-relay
		// test lists), plus domain spellings that are not local.
		for _, rcpt := range []string{
			"lisa@example.com",
			"lisa@EXAMPLE.COM",
			"lisa@example.com.",
			"lisa%example.com@example.org",
			"lisa%example.com@EXAMPLE.ORG.",
			`"lisa@example.com"@example.org`,
			`"lisa%example.com"@example.org`,
			`"example.com!lisa"@example.org`,
			"lisa@example.com@example.org",
			"@example.org:lisa@example.com",
			"@example.org,@localhost:lisa@example.com",
			"example.com!lisa@example.org",
			"example.com!lisa",
			"lisa%example.com",
			`"lisa@example.com"`,
			"lisa@[192.0.2.1]",
			"lisa@[127.0.0.1]",
			"lisa@[IPv6:::1]",
			"lisa@example.org.example.com",
			"lisa@sub.example.org",
			"lisa",
		} {
			m := message{from: Stranger, listener: "mx", sender: "spammer@example.net", rcpts: []string{rcpt}}
			m.token = newToken("trick")
			l.refused = append(l.refused, m.token)
			err := s.send(m)
			if code := codeOf(err); code < 500 || code > 599 {
				t.Errorf("RCPT TO:<%s> from a stranger: got %q, want a permanent refusal", rcpt, replyOf(err))
			}
		}
		// A source route to a local mailbox is ignored (RFC 5321 §3.6.1):
		// the mail is for example.org, not a relay.
		l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"@example.com:john@example.org"}})
	})

	t.Run("submission requires STARTTLS and AUTH, then relays", func(t *testing.T) {
		c, err := s.dial(Trusted, "submission", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("AUTH offered before STARTTLS on the submission port")
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Error("STARTTLS not offered on the submission port")
		}
		if err := c.Mail("john@example.org"); codeOf(err) != 530 {
			t.Errorf("MAIL before STARTTLS: got %q, want 530", replyOf(err))
		}
		c.Close()

		l.expectRefused(t, s, message{from: Trusted, listener: "submission", startTLS: true, sender: "john@example.org", rcpts: []string{"lisa@example.com"}},
			"554 5.7.1")
		l.expectRefused(t, s, message{from: Trusted, listener: "submission", startTLS: true, auth: plain("wrong-password"), sender: "john@example.org", rcpts: []string{"lisa@example.com"}},
			"535 5.7.8")
		l.expectAccepted(t, s, message{from: Stranger, listener: "submission", startTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com"}})
		l.expectAccepted(t, s, message{from: Stranger, listener: "submissions", implicitTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com", "bob@example.net"}})
	})

	t.Run("Received header names the client", func(t *testing.T) {
		tok := newToken("received")
		l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}, token: tok})
		got := s.maildirFile(tok)
		for _, want := range []string{"Received: from client.example.net (unknown [127.0.0.66])", "by mail.example.org (smtpgate) with ESMTP id ", "for <john@example.org>;", "Return-Path: <someone@example.net>"} {
			if !strings.Contains(got, want) {
				t.Errorf("delivered message lacks %q:\n%s", want, got)
			}
		}
	})

	t.Run("swaks", func(t *testing.T) {
		swaks := swaksPath(t)
		tok := newToken("swaks")
		out, err := swaksAsJohn(t, s.port["submission"], "LOGIN", "lisa@example.com", tok)
		if err != nil || !strings.Contains(string(out), "250 2.0.0 Ok: queued as") {
			t.Errorf("swaks AUTH LOGIN relay: %v\n%s", err, out)
			l.refused = append(l.refused, tok)
		} else {
			l.accepted = append(l.accepted, tok)
		}

		tok = newToken("swaks")
		l.refused = append(l.refused, tok)
		out, err = exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(s.port["mx"]), "--local-interface", Stranger,
			"--from", "spammer@example.net", "--to", "lisa@example.com", "--header", "Subject: "+tok, "--timeout", "20").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "554 5.7.1 <lisa@example.com>: Relay access denied") {
			t.Errorf("swaks relay attempt from a stranger: %v\n%s", err, out)
		}
	})

	t.Run("Python smtplib over implicit TLS", func(t *testing.T) {
		tok := newToken("smtplib")
		script := `
import smtplib, ssl, sys
port, password, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=20) as s:
    s.login("john@example.org", password)
    s.sendmail("john@example.org", ["lisa@example.com"], "Subject: %s\r\n\r\nhello\r\n" % token)
`
		out, err := exec.Command("python3", "-c", script, itoa(s.port["submissions"]), JohnPassword, tok).CombinedOutput()
		if err != nil {
			t.Errorf("smtplib: %v\n%s", err, out)
			l.refused = append(l.refused, tok)
			return
		}
		l.accepted = append(l.accepted, tok)
	})

	t.Run("Postfix policy delegation protocol, as check_policy_service speaks it", func(t *testing.T) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port["delegation"]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.7\n"+
			"client_name=unknown\nhelo_name=x.example.net\nsender=a@example.net\nrecipient=lisa@example.com\n\n")
		reply, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || reply != "action=554 5.7.1 Relay access denied\n" {
			t.Errorf("policy delegation: %q, %v", reply, err)
		}
	})

	t.Run("Dovecot auth protocol, as Postfix speaks it", func(t *testing.T) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port["dovecot"]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "VERSION\t1\t0\nCPID\t%d\n", os.Getpid())
		var mechs []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("handshake: %v (mechs so far %q)", err, mechs)
			}
			if strings.HasPrefix(l, "MECH\t") {
				mechs = append(mechs, strings.TrimSpace(l))
			}
			if l == "DONE\n" {
				break
			}
		}
		if len(mechs) == 0 {
			t.Fatal("no MECH lines")
		}
		resp := func(pw string) string {
			return base64.StdEncoding.EncodeToString([]byte("\x00john@example.org\x00" + pw))
		}
		fmt.Fprintf(c, "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tsecured\tresp=%s\n", resp(JohnPassword))
		if l, _ := br.ReadString('\n'); l != "OK\t1\tuser=john@example.org\n" {
			t.Errorf("right password: %q", l)
		}
		fmt.Fprintf(c, "AUTH\t2\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tsecured\tresp=%s\n", resp("wrong-password"))
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "FAIL\t2") {
			t.Errorf("wrong password: %q", l)
		}
		fmt.Fprintf(c, "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tresp=%s\n", resp(JohnPassword))
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "FAIL\t3") {
			t.Errorf("plaintext mechanism without TLS: %q", l)
		}
	})

	t.Run("policy down: fail closed, then recover", func(t *testing.T) {
		s.kill("policy")
		for _, from := range []string{Trusted, Stranger} {
			m := message{from: from, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}, token: newToken("nopolicy")}
			l.refused = append(l.refused, m.token)
			err := s.send(m)
			if code := codeOf(err); code < 400 || code > 499 {
				t.Errorf("policy down, from %s: got %q, want a 4xx reply", from, replyOf(err))
			}
			if got := replyOf(err); !strings.Contains(got, "4.3.0") {
				t.Errorf("policy down: got %q, want enhanced code 4.3.0", got)
			}
		}
		s.start("policy")
		l.expectAccepted(t, s, eventually(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}}))
	})

	t.Run("auth down: fail closed, then recover", func(t *testing.T) {
		s.kill("auth")
		m := message{from: Trusted, listener: "submission", startTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com"}, token: newToken("noauth")}
		l.refused = append(l.refused, m.token)
		if got := replyOf(s.send(m)); !strings.HasPrefix(got, "454 4.7.0") {
			t.Errorf("auth down: got %q, want 454 4.7.0", got)
		}
		s.start("auth")
		l.expectAccepted(t, s, eventually(t, s, message{from: Trusted, listener: "submission", startTLS: true, auth: plain(JohnPassword), sender: "john@example.org", rcpts: []string{"lisa@example.com"}}))
	})

	t.Run("the Maildir holds exactly the accepted messages", func(t *testing.T) {
		l.checkMaildir(t, s)
	})

	t.Run("the edge logs SASL logins with the accepted message, as Postfix does", func(t *testing.T) {
		log := s.log("edge")
		for _, want := range []string{"sasl_method=PLAIN", "sasl_username=john@example.org", "sasl_method=LOGIN"} {
			if !strings.Contains(log, want) {
				t.Errorf("edge log lacks %q", want)
			}
		}
	})

	t.Run("no password in any log", func(t *testing.T) {
		for _, svc := range []string{"policy", "auth", "edge"} {
			log := s.log(svc)
			if log == "" {
				t.Errorf("smtpgate-%s wrote no log", svc)
			}
			for _, secret := range []string{JohnPassword, "wrong-password"} {
				if strings.Contains(log, secret) {
					t.Errorf("smtpgate-%s logged a password", svc)
				}
			}
		}
	})
}

// TestCheckRejectsBrokenConfig: each binary's check refuses an unknown
// parameter and a bad value with the file:line of each.
func TestCheckRejectsBrokenConfig(t *testing.T) {
	dir, main := localConfig(t)
	lines := strings.Count(string(main), "\n")
	broken := string(main) + "smtpd_tls_cert_file =\nsmtpd_tls_security_level = may\nsmtpd_delay_reject = perhaps\nsmtpd_relay_restriction = permit\n"
	write(t, filepath.Join(dir, "main.cf"), broken)
	for _, svc := range []string{"policy", "auth", "edge"} {
		out, err := exec.Command(filepath.Join(binDir, "smtpgate-"+svc), "-c", dir, "check").CombinedOutput()
		if code := exitCode(err); code != 1 {
			t.Errorf("smtpgate-%s check exit %d, want 1\n%s", svc, code, out)
		}
		want := fmt.Sprintf("main.cf:%d: unknown parameter \"smtpd_relay_restriction\" (did you mean smtpd_relay_restrictions?)", lines+4)
		if !strings.Contains(string(out), want) {
			t.Errorf("smtpgate-%s check does not say %q:\n%s", svc, want, out)
		}
		if svc == "policy" && !strings.Contains(string(out), fmt.Sprintf("main.cf:%d: smtpd_delay_reject = perhaps", lines+3)) {
			t.Errorf("smtpgate-policy check misses the bad boolean:\n%s", out)
		}
	}
}

// localConfig copies deploy/local's master.cf and passwd into a new
// directory, for a test to write its own main.cf there, and returns the
// directory and deploy/local's main.cf.
func localConfig(t *testing.T) (dir string, main []byte) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	for _, f := range []string{"master.cf", "passwd"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy/local", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, f), string(b))
	}
	main, err = os.ReadFile(filepath.Join(root, "deploy/local/main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, main
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// eventually retries a message with temporary failures for up to 20 seconds
// (a restarted dependency takes a moment to be reached again) and returns
// it with the token of the attempt that should now succeed. Attempts that
// were refused with 4xx are never delivered, so they need no bookkeeping.
func eventually(t *testing.T, s *stack, m message) message {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		probe := m
		probe.token = newToken("probe")
		probe.rcpts = nil
		c, err := s.dial(probe.from, probe.listener, probe.implicitTLS)
		if err == nil {
			err = c.Hello("client.example.net")
			if err == nil && probe.startTLS {
				err = c.StartTLS(tlsConfig())
			}
			if err == nil && probe.auth != nil {
				err = c.Auth(probe.auth)
			}
			if err == nil {
				err = c.Mail(probe.sender)
			}
			if err == nil {
				err = c.Rcpt(m.rcpts[0])
			}
			c.Close()
		}
		if err == nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stack did not recover within 20s: last reply %q", replyOf(err))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
