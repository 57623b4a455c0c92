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
// SIGUSR1 after logrotate moved it, and Debian's pflogsumm counts both
// files right with no --syslog-name.
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
	// logrotate moves the file away and sends SIGUSR1: the edge writes
	// a new file of the same name.
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	edge := s.procs["edge"]
	s.mu.Unlock()
	if err := edge.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var rotated []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(file); err == nil || time.Now().After(deadline) {
			break
		}
	}
	l.expectAccepted(t, s, message{from: Stranger, listener: "mx", sender: "after@example.net", rcpts: []string{"john@example.org"}})
	s.kill("edge") // the disconnect lines are written; the file is complete
	rotated, _ = os.ReadFile(file + ".1")
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		data, _ = os.ReadFile(file)
		if strings.Count(string(data), "disconnect from unknown[127.0.0.66]") >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(string(data), "from=<after@example.net>") || strings.Contains(string(rotated), "after@example.net") ||
		!strings.Contains(string(rotated), "from=<someone@example.net>") {
		t.Errorf("after SIGUSR1, the new session's lines are not alone in the new file:\nnew:\n%s\nrotated:\n%s", data, rotated)
	}
	log := string(rotated) + string(data)
	for _, want := range []string{"connect from unknown[127.0.0.66]", "NOQUEUE: reject: RCPT from unknown[127.0.0.66]: 554 5.7.1 <lisa@example.com>: Relay access denied;"} {
		if !strings.Contains(log, want) {
			t.Errorf("mail log lacks %q:\n%s", want, log)
		}
	}
	out, err := exec.Command(pflogsumm, file+".1", file).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	for _, want := range []string{`(?m)^\s+3\s+received$`, `(?m)^\s+3\s+delivered$`, `(?m)^\s+1\s+rejected \(`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("pflogsumm: no %s in\n%s\nlog:\n%s", want, out, log)
		}
	}
}
