package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMailLogFile: with smtpgate_maillog_file (maillog_file's old name),
// the real edge writes a mail log in Postfix's words, reopens it on
// SIGUSR1 and on SIGHUP after it was moved away, and Debian's pflogsumm
// counts the three files right with no --syslog-name.
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
	// logrotate moves the file away and sends SIGUSR1 (deploy/logrotate),
	// or a reload's SIGHUP comes: each time the edge writes a new file of
	// the same name.
	s.mu.Lock()
	edge := s.procs["edge"]
	s.mu.Unlock()
	rotate := func(sig syscall.Signal, to string) {
		t.Helper()
		if err := os.Rename(file, to); err != nil {
			t.Fatal(err)
		}
		if err := edge.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(file); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new %s after %v", file, sig)
			}
		}
	}
	rotate(syscall.SIGUSR1, file+".1")
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "after@example.net", rcpts: []string{"john@example.org"}})
	rotate(syscall.SIGHUP, file+".2")
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "hup@example.net", rcpts: []string{"john@example.org"}})
	s.kill("edge") // the disconnect lines are written; the file is complete
	rotated, _ := os.ReadFile(file + ".1")
	rotated2, _ := os.ReadFile(file + ".2")
	data, _ := os.ReadFile(file)
	if !strings.Contains(string(rotated), "from=<someone@example.net>") || strings.Contains(string(rotated), "after@example.net") {
		t.Errorf("the first file, rotated before SIGUSR1:\n%s", rotated)
	}
	if !strings.Contains(string(rotated2), "from=<after@example.net>") || strings.Contains(string(rotated2), "someone@example.net") || strings.Contains(string(rotated2), "hup@example.net") {
		t.Errorf("after SIGUSR1, the second file, rotated before SIGHUP, does not hold the new session alone:\n%s", rotated2)
	}
	if !strings.Contains(string(data), "from=<hup@example.net>") || strings.Contains(string(data), "after@example.net") {
		t.Errorf("after SIGHUP, the new file does not hold the new session alone:\n%s", data)
	}
	log := string(rotated) + string(rotated2) + string(data)
	for _, want := range []string{"connect from unknown[127.0.0.66]", "NOQUEUE: reject: RCPT from unknown[127.0.0.66]: 554 5.7.1 <lisa@example.com>: Relay access denied;"} {
		if !strings.Contains(log, want) {
			t.Errorf("mail log lacks %q:\n%s", want, log)
		}
	}
	out, err := exec.Command(pflogsumm, file+".1", file+".2", file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^\s+4\s+received$`, `(?m)^\s+4\s+delivered$`, `(?m)^\s+1\s+rejected \(`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("pflogsumm: no %s in\n%s\nlog:\n%s", want, out, log)
		}
	}
}
