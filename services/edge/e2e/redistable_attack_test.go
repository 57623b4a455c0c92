package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/redistest"
)

// A redis: access table through the real stack: entries loaded, queried
// and deleted with "smtpgate-policy table" take effect at once, without
// a reload; Redis down defers (451 4.3.0), never lets the sender through.
func TestRedisTableAttack(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	cf := filepath.Join(dir, "senders-redis.cf")
	write(t, cf, "url = "+srv.URL()+"\nkey_prefix = senders:\n")
	write(t, filepath.Join(dir, "senders"), "spammer@example.net REJECT\nexample.com DUNNO\n")
	s := newStack(t, "smtpd_sender_restrictions = check_sender_access redis:"+cf+"\n")

	table := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "smtpgate-policy"), append([]string{"table", "-c", dir}, args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if got := s.rcptReply(t, Stranger, "spammer@example.net", "john@example.org"); got != "ok" {
		t.Errorf("before the table is loaded: %q; want ok", got)
	}
	if code, out := table("redis:"+cf, "senders"); code != 0 || !strings.Contains(out, "2 entries loaded") {
		t.Fatalf("load: exit %d: %s", code, out)
	}
	if got := s.rcptReply(t, Stranger, "Spammer@Example.NET", "john@example.org"); !strings.HasPrefix(got, "554 5.7.1 <Spammer@Example.NET>: Sender address rejected: Access denied") {
		t.Errorf("after the load: %q; want 554 5.7.1 ... Access denied", got)
	}
	if code, out := table("-q", "spammer@example.net", "redis:"+cf); code != 0 || out != "REJECT\n" {
		t.Errorf("-q: exit %d, %q", code, out)
	}
	if code, out := table("-d", "spammer@example.net", "redis:"+cf); code != 0 {
		t.Fatalf("-d: exit %d: %s", code, out)
	}
	if got := s.rcptReply(t, Stranger, "spammer@example.net", "john@example.org"); got != "ok" {
		t.Errorf("after the delete: %q; want ok", got)
	}
	if code, out := table("redis:"+cf, "senders"); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	srv.Stop()
	// The sender is checked at RCPT TO (smtpd_delay_reject = yes): the
	// edge names the command's address, the recipient (Postfix names
	// the sender, the key that failed; docs/postfix-differences.md).
	if got := s.rcptReply(t, Stranger, "spammer@example.net", "john@example.org"); got != "451 4.3.0 <john@example.org>: Temporary lookup failure" {
		t.Errorf("Redis down: %q; want 451 4.3.0", got)
	}
}
