package e2e

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImportedRelayhost: Debian's stock Postfix with a relayhost, turned
// into an smtpgate configuration by `smtpgate-policy import -o` and run
// as written, hands the mail it relays for mynetworks to that relayhost
// (not to a local Maildir), and the import's report said beforehand that
// the mail for its local domains would go there too.
func TestImportedRelayhost(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	relay := startNextHop(t, false)
	src := t.TempDir()
	debian, err := os.ReadFile(filepath.Join(root, "services/policy/internal/importcf/testdata/debian/main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	mx := freePort(t)
	// The last setting wins: the site's relay replaces Debian's empty
	// relayhost.
	write(t, filepath.Join(src, "main.cf"), string(debian)+"\nrelayhost = ["+strings.Replace(relay.addr, ":", "]:", 1)+"\n")
	write(t, filepath.Join(src, "master.cf"), fmt.Sprintf("127.0.0.1:%d inet n - y - - smtpd\n", mx))

	out := filepath.Join(t.TempDir(), "smtpgate")
	report, err := exec.Command(filepath.Join(binDir, "smtpgate-policy"), "import", "-o", out, filepath.Join(src, "main.cf")).Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("import: %v, want exit 1 (local delivery behaves differently):\n%s", err, report)
	}
	hop := "smtpgate_next_hop = smtp://" + relay.addr
	for _, want := range []string{
		"relayhost = [" + strings.Replace(relay.addr, ":", "]:", 1) + " — written as " + hop + ": the same host and port, no MX lookup, as Postfix",
		"\nbehaves differently (",
		"smtpgate hands it, with the recipient as the client wrote it (no alias expansion, no .forward, no local mailbox), to " + hop,
	} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}

	// This test's ports, as newStack sets them.
	s := &stack{t: t, conf: out, port: map[string]int{"mx": mx, "policy": freePort(t), "auth": freePort(t)},
		procs: map[string]*exec.Cmd{}, logs: map[string]string{}}
	f, err := os.OpenFile(filepath.Join(out, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\nsmtpgate_policy_listen = 127.0.0.1:%d\nsmtpgate_auth_listen = 127.0.0.1:%d\nsmtpgate_shutdown_timeout = 5s\n",
		s.port["policy"], s.port["auth"])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"policy", "auth", "edge"} {
		s.check(svc)
	}
	t.Cleanup(s.stopAll)
	s.startAs("policy", "policy", out, []string{fmt.Sprintf("127.0.0.1:%d", s.port["policy"])})
	s.startAs("auth", "auth", out, []string{fmt.Sprintf("127.0.0.1:%d", s.port["auth"])})
	s.startAs("edge", "edge", out, []string{fmt.Sprintf("127.0.0.1:%d", mx)})

	for _, rcpt := range []string{
		"bob@example.com",     // relayed for mynetworks (127.0.0.0/8)
		"root@mx.example.org", // a local domain: to the relayhost too, as reported
	} {
		token := newToken("import")
		if err := s.send(message{from: "127.0.0.1", listener: "mx", sender: "alice@mx.example.org", rcpts: []string{rcpt}, token: token}); err != nil {
			t.Fatalf("%s: %v", rcpt, err)
		}
		m := relay.message(t, token)
		if _, ok := m.rcpts[rcpt]; !ok || len(m.rcpts) != 1 {
			t.Errorf("%s: the relayhost got it for %v", rcpt, slices.Collect(maps.Keys(m.rcpts)))
		}
	}
	if _, err := os.Stat(filepath.Join(out, "var", "maildir")); err == nil {
		t.Error("a Maildir was written beside the configuration")
	}
}
