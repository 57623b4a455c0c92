package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMailLogTools: the real stack logs through syslog (maillog_file
// empty, as Postfix) to a real rsyslogd listening on a socket of the
// test's own; a mix of sessions with known counts goes through it; then
// the real fail2ban-regex with the stock postfix and postfix[mode=auth]
// filters, and the real pflogsumm with no --syslog-name, read rsyslog's
// mail log and must count exactly what was sent.
func TestMailLogTools(t *testing.T) {
	tools := map[string]string{}
	for _, tool := range []string{"rsyslogd", "fail2ban-regex", "pflogsumm"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s is not installed: run scripts/deps --test", tool)
		}
		tools[tool] = p
	}
	const filter = "/etc/fail2ban/filter.d/postfix.conf"
	if _, err := os.Stat(filter); err != nil {
		t.Fatalf("fail2ban's stock postfix filter: %v (run scripts/deps --test)", err)
	}
	mailLog, sock := startRsyslog(t, tools["rsyslogd"])
	s := newStack(t, "smtpgate_syslog_socket = "+sock+"\n")

	const (
		accepted      = 3 // one recipient each
		relayRefused  = 2
		unknownUser   = 2
		failedAuth    = 3
		pipelining    = 2
		lostConn      = 2
		tooManyErrors = 1
		acceptedRcpts = accepted
	)
	var l ledger
	for i := 0; i < accepted; i++ {
		l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: fmt.Sprintf("sender%d@example.net", i), rcpts: []string{"john@example.org"}})
	}
	for i := 0; i < relayRefused; i++ {
		l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "spammer@example.net", rcpts: []string{"lisa@example.com"}},
			"554 5.7.1 <lisa@example.com>: Relay access denied")
	}
	for i := 0; i < unknownUser; i++ {
		l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"nobody@example.org"}},
			"550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table")
	}
	for i := 0; i < failedAuth; i++ {
		l.expectRefused(t, s, message{from: Stranger, listener: "submission", startTLS: true, auth: plain("wrong-password"), sender: "john@example.org", rcpts: []string{"lisa@example.com"}},
			"535 5.7.8")
	}
	for i := 0; i < pipelining; i++ {
		// HELO, not EHLO: no command may be sent ahead of its reply.
		r, err := s.dialListener(Stranger, "mx", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.response(220); err != nil {
			t.Fatal(err)
		}
		if err := r.write("HELO client.example.net\r\nMAIL FROM:<a@example.net>\r\n"); err != nil {
			t.Fatal(err)
		}
		_, _ = r.lines()
		_ = r.writeLine("QUIT")
		_, _ = r.lines()
		r.close()
	}
	for i := 0; i < lostConn; i++ {
		r, err := s.dialListener(Stranger, "mx", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.response(220); err != nil {
			t.Fatal(err)
		}
		if err := r.writeLine("EHLO client.example.net"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.lines(); err != nil {
			t.Fatal(err)
		}
		if err := r.writeLine("MAIL FROM:<a@example.net>"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.response(250); err != nil {
			t.Fatal(err)
		}
		r.close() // gone without QUIT
	}
	for i := 0; i < tooManyErrors; i++ {
		// smtpd_hard_error_limit (20) bad commands, then the 421.
		r, err := s.dialListener(Stranger, "mx", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.response(220); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 20; j++ {
			if err := r.writeLine("XYZZY"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.response(5); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := r.response(421); err != nil {
			t.Fatalf("after 20 errors: %v", err)
		}
		r.close()
	}
	sessions := accepted + relayRefused + unknownUser + failedAuth + pipelining + lostConn + tooManyErrors
	// Every session's disconnect line reached the log (the stack's own
	// probes come from 127.0.0.1).
	const disconnect = "]: disconnect from unknown[127.0.0.66] "
	var log string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(mailLog)
		log = string(b)
		if strings.Count(log, disconnect) >= sessions || time.Now().After(deadline) {
			break
		}
	}
	if got := strings.Count(log, disconnect); got != sessions {
		t.Fatalf("%d disconnect lines in rsyslog's mail log, want %d:\n%s", got, sessions, log)
	}
	for _, want := range []string{
		" postfix/smtpd[", " postfix/cleanup[", " postfix/qmgr[", " postfix/virtual[",
		"lost connection after MAIL from unknown[127.0.0.66]",
		"too many errors after UNKNOWN from unknown[127.0.0.66]",
		"improper command pipelining after HELO from unknown[127.0.0.66]: MAIL FROM:<a@example.net>\\r\\n",
		// deploy/local's master.cf: -o syslog_name=postfix/submission.
		" postfix/submission/smtpd[",
		"]: warning: unknown[127.0.0.66]: SASL PLAIN authentication failed: ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("rsyslog's mail log lacks %q:\n%s", want, log)
		}
	}

	// fail2ban: the stock filters, as shipped, no edit.
	f2b := func(filter string) int {
		t.Helper()
		out, err := exec.Command(tools["fail2ban-regex"], mailLog, filter).CombinedOutput()
		if err != nil {
			t.Fatalf("fail2ban-regex %s: %v\n%s", filter, err, out)
		}
		m := regexp.MustCompile(`(?m)^Lines: \d+ lines, \d+ ignored, (\d+) matched`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("fail2ban-regex %s: no count in\n%s", filter, out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	if got, want := f2b(filter), relayRefused+unknownUser+pipelining+tooManyErrors; got != want {
		t.Errorf("fail2ban-regex %s matched %d lines, want %d (relay refused, unknown user, pipelining, too many errors)\n%s", filter, got, want, log)
	}
	if got := f2b("postfix[mode=auth]"); got != failedAuth {
		t.Errorf("fail2ban-regex postfix[mode=auth] matched %d lines, want %d failed AUTHs\n%s", got, failedAuth, log)
	}

	// pflogsumm, with no --syslog-name.
	out, err := exec.Command(tools["pflogsumm"], mailLog).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	count := func(label string) int {
		m := regexp.MustCompile(`(?m)^\s+(\d+)\s+` + regexp.QuoteMeta(label) + `\b`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("pflogsumm: no %q in\n%s", label, out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	for label, want := range map[string]int{
		"received": accepted, "delivered": acceptedRcpts, "rejected": relayRefused + unknownUser,
		"senders": accepted, "recipients": 1, "bounced": 0, "deferred": 0,
	} {
		if got := count(label); got != want {
			t.Errorf("pflogsumm %s: %d, want %d\n%s", label, got, want, out)
		}
	}
	if count("bytes received") == 0 || count("bytes delivered") == 0 {
		t.Errorf("pflogsumm counts no bytes:\n%s", out)
	}
}

// startRsyslog starts a real rsyslogd reading a Unix datagram socket of
// the test's own (as /dev/log) and writing mail.* to a file in its
// traditional format; it returns the file and the socket.
func startRsyslog(t *testing.T, rsyslogd string) (file, sock string) {
	t.Helper()
	dir := t.TempDir()
	file, sock = filepath.Join(dir, "mail.log"), filepath.Join(dir, "log")
	conf := filepath.Join(dir, "rsyslog.conf")
	write(t, conf, fmt.Sprintf(`global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q RateLimit.Interval="0")
mail.* action(type="omfile" file=%q template="RSYSLOG_TraditionalFileFormat")
`, dir, sock, file))
	cmd := exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	out, err := os.Create(filepath.Join(dir, "rsyslogd.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return file, sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("rsyslogd made no socket %s:\n%s", sock, b)
		}
	}
}
