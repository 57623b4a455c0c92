package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMailLogFile: with smtpgate_maillog_file, the real edge writes a mail
// log in Postfix's words, and Debian's pflogsumm counts it right.
func TestMailLogFile(t *testing.T) {
	pflogsumm, err := exec.LookPath("pflogsumm")
	if err != nil {
		t.Fatal("pflogsumm is not installed: run scripts/deps --test")
	}
	file := filepath.Join(t.TempDir(), "mail.log")
	s := newStack(t, "smtpgate_maillog_file = "+file+"\n")
	var l ledger
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "someone@example.net", rcpts: []string{"john@example.org"}})
	l.expectAccepted(t, s, message{from: Trusted, listener: "mx", sender: "john@example.org", rcpts: []string{"lisa@example.com"}})
	l.expectRefused(t, s, message{from: Stranger, listener: "mx", sender: "spammer@example.net", rcpts: []string{"lisa@example.com"}},
		"554 5.7.1 <lisa@example.com>: Relay access denied")
	s.kill("edge") // the disconnect lines are written; the file is complete
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, _ = os.ReadFile(file)
		if strings.Count(string(data), "disconnect from") >= 3 || time.Now().After(deadline) {
			break
		}
	}
	log := string(data)
	for _, want := range []string{"connect from unknown[127.0.0.66]", "NOQUEUE: reject: RCPT from unknown[127.0.0.66]: 554 5.7.1 <lisa@example.com>: Relay access denied;"} {
		if !strings.Contains(log, want) {
			t.Errorf("mail log lacks %q:\n%s", want, log)
		}
	}
	out, err := exec.Command(pflogsumm, "--syslog-name=smtpgate", file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^\s+2\s+received$`, `(?m)^\s+1\s+rejected \(`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("pflogsumm: no %s in\n%s\nlog:\n%s", want, out, log)
		}
	}
}
