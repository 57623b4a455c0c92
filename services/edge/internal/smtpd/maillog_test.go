package smtpd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// TestMailLog runs two sessions with the Postfix-format mail log on and
// checks the lines, then has Debian's pflogsumm (scripts/deps --test)
// count them, with no --syslog-name: two messages received and
// delivered, one recipient rejected.
func TestMailLog(t *testing.T) {
	h := newHarness(t, relayDenied, nil)
	var buf logBuffer
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, MailLog: maillog.New(&buf, "mail", "")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveAll(t, srv, ln, h.l)
	h.addr = ln.Addr().String()
	dialogue := func(steps [][2]string) {
		c := h.dial()
		c.reply()
		c.steps(steps...)
	}
	dialogue(append(refusedThenQueued(), [2]string{"QUIT\r\n", "221"}))
	dialogue([][2]string{
		{"HELO client.example.net\r\n", "250"},
		{"MAIL FROM:<>\r\n", "250"},
		{"RCPT TO:<john@example.org>\r\n", "250"},
		{"DATA\r\n", "354"},
		{"Subject: t\r\n\r\nhi\r\n.\r\n", "250 2.0.0"},
		{"QUIT\r\n", "221"},
	})
	stop()

	log := buf.String()
	header := `^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d mail postfix/(smtpd|qmgr|cleanup|smtp)\[\d+\]: `
	for _, want := range []string{
		`connect from unknown\[127\.0\.0\.1\]$`,
		`[0-9A-F]{12}: message-id=<>$`,
		`[0-9A-F]{12}: to=<john@example\.org>, relay=\S+, delay=[0-9.]+, delays=[0-9.]+/0/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 .*\)$`,
		`[0-9A-F]{12}: removed$`,
		`NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <x@elsewhere\.example>: Relay access denied; from=<a@example\.net> to=<x@elsewhere\.example> proto=ESMTP helo=<client\.example\.net>$`,
		`[0-9A-F]{12}: client=unknown\[127\.0\.0\.1\]$`,
		`[0-9A-F]{12}: from=<a@example\.net>, size=\d+, nrcpt=1 \(queue active\)$`,
		`disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6$`,
		`disconnect from unknown\[127\.0\.0\.1\] helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$`,
	} {
		if !regexp.MustCompile(`(?m)` + header + want).MatchString(log) {
			t.Errorf("no line %s in\n%s", want, log)
		}
	}

	pflogsumm, err := exec.LookPath("pflogsumm")
	if err != nil {
		t.Fatal("pflogsumm is not installed: run scripts/deps --test")
	}
	file := filepath.Join(t.TempDir(), "maillog")
	if err := os.WriteFile(file, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pflogsumm, file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^\s+2\s+received$`, `(?m)^\s+2\s+delivered$`, `(?m)^\s+1\s+rejected \(`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("pflogsumm: no %s in\n%s", want, out)
		}
	}
}

// TestMailLogNextHopRefusal: the next hop's refusal of a recipient is
// logged as Postfix's smtp(8) logs a bounce, and pflogsumm counts it
// bounced; the recipient it took is delivered.
func TestMailLogNextHopRefusal(t *testing.T) {
	h := newHarness(t, permit, nil)
	h.sink.refuse["nobody@example.org"] = true
	var buf logBuffer
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, MailLog: maillog.New(&buf, "mail", "")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveAll(t, srv, ln, h.l)
	h.addr = ln.Addr().String()
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("RCPT TO:<nobody@example.org>", "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown")
	c.do("DATA", "354")
	c.send("Message-ID: <m1@example.net>\r\nSubject: t\r\n\r\nhi\r\n.\r\n")
	c.reply()
	c.do("QUIT", "221")
	stop()
	log := buf.String()
	for _, want := range []string{
		`postfix/cleanup\[\d+\]: [0-9A-F]{12}: message-id=<m1@example\.net>$`,
		`postfix/smtp\[\d+\]: [0-9A-F]{12}: to=<nobody@example\.org>, relay=none, delay=[0-9.]+, delays=[0-9.]+/0/0/[0-9.]+, dsn=5\.1\.1, status=bounced \(host none said: 550 5\.1\.1 <nobody@example\.org>: Recipient address rejected: User unknown \(in reply to RCPT TO command\)\)$`,
		`postfix/qmgr\[\d+\]: [0-9A-F]{12}: from=<a@example\.net>, size=\d+, nrcpt=1 \(queue active\)$`,
		`postfix/smtp\[\d+\]: [0-9A-F]{12}: to=<john@example\.org>, relay=none, .* status=sent \(250 Ok\)$`,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(log) {
			t.Errorf("no line %s in\n%s", want, log)
		}
	}
	file := filepath.Join(t.TempDir(), "maillog")
	if err := os.WriteFile(file, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pflogsumm", file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^\s+1\s+received$`, `(?m)^\s+1\s+delivered$`, `(?m)^\s+1\s+bounced$`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("pflogsumm: no %s in\n%s", want, out)
		}
	}
}

// TestMailLogLostConnection: a client gone without QUIT is logged as
// Postfix's smtpd logs it, after the last command, or in DATA with the
// bytes received.
func TestMailLogLostConnection(t *testing.T) {
	h := newHarness(t, permit, nil)
	var buf logBuffer
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, MailLog: maillog.New(&buf, "mail", "")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveAll(t, srv, ln, h.l)
	h.addr = ln.Addr().String()
	c := h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.conn.Close()
	c = h.ehlo("250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("DATA", "354")
	c.send("Subject: x\r\n")
	c.conn.Close()
	for deadline := time.Now().Add(30 * time.Second); strings.Count(buf.String(), "disconnect from") < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	log := buf.String()
	for _, want := range []string{
		`postfix/smtpd\[\d+\]: lost connection after MAIL from unknown\[127\.0\.0\.1\]$`,
		`postfix/smtpd\[\d+\]: lost connection after DATA \(12 bytes\) from unknown\[127\.0\.0\.1\]$`,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(log) {
			t.Errorf("no line %s in\n%s", want, log)
		}
	}
}
