package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ticketKey is one line of a ticket keys file (openssl rand -hex 32).
func ticketKey(t *testing.T) string {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k[:])
}

// TestTLSSessionTicketsSharedByReplicas runs two real edges that read one
// smtpgate_tls_session_ticket_keys_file (as two pods mounting one Secret):
// a submission client that reconnects resumes its TLS session on the other
// edge; after a rotation (a new key in front, SIGHUP) old tickets still
// resume; once the old key is gone and the session ticket with it, the
// handshake is a full one; and a resumed session still needs AUTH.
func TestTLSSessionTicketsSharedByReplicas(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "tickets")
	k1, k2 := ticketKey(t), ticketKey(t)
	write(t, keysFile, k1+"\n")
	s := newStack(t, "smtpgate_tls_session_ticket_keys_file = "+keysFile+"\n")

	// edge2: the same configuration on other ports.
	dir2 := t.TempDir()
	port2, metrics2 := freePort(t), freePort(t)
	mainCF, err := os.ReadFile(filepath.Join(s.conf, "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir2, "main.cf"), string(mainCF)+fmt.Sprintf("smtpgate_edge_metrics_listen = 127.0.0.1:%d\n", metrics2))
	masterCF, err := os.ReadFile(filepath.Join(s.conf, "master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the submission listener, moved.
	var sub []string
	inSub := false
	for _, line := range strings.Split(string(masterCF), "\n") {
		switch {
		case strings.HasPrefix(line, fmt.Sprintf("127.0.0.1:%d ", s.port["submission"])):
			inSub = true
			line = strings.Replace(line, fmt.Sprintf("127.0.0.1:%d", s.port["submission"]), fmt.Sprintf("127.0.0.1:%d", port2), 1)
		case line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#':
			inSub = false
		}
		if inSub {
			sub = append(sub, line)
		}
	}
	write(t, filepath.Join(dir2, "master.cf"), strings.Join(sub, "\n")+"\n")
	// Policy and auth know every edge's listeners (as in a cluster, one
	// master.cf lists them all): restart them with edge2's added.
	write(t, filepath.Join(s.conf, "master.cf"), string(masterCF)+"\n"+strings.Join(sub, "\n")+"\n")
	for _, svc := range []string{"policy", "auth"} {
		s.kill(svc)
		s.start(svc)
	}
	passwd, err := os.ReadFile(filepath.Join(s.conf, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir2, "passwd"), string(passwd))
	s.checkIn("edge", dir2)
	s.startAs("edge2", "edge", dir2, []string{fmt.Sprintf("127.0.0.1:%d", port2)})
	// edge1's gRPC clients meet the restarted policy and auth: until
	// they reconnect a session is refused (fail closed).
	for _, port := range []int{s.port["submission"], port2} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("127.0.0.1:%d never greeted after policy's restart: %v", port, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	cache := tls.NewLRUClientSessionCache(4)
	// session runs STARTTLS on port and says whether the TLS session
	// was resumed; with auth it also sends a message.
	session := func(port int, auth bool) bool {
		t.Helper()
		c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example.org"); err != nil {
			t.Fatal(err)
		}
		cfg := tlsConfig()
		cfg.ClientSessionCache = cache
		if err := c.StartTLS(cfg); err != nil {
			t.Fatal(err)
		}
		state, _ := c.TLSConnectionState()
		if auth {
			// A resumed session is not an authenticated one.
			if err := c.Mail("john@example.org"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("someone@example.net"); err == nil || codeOf(err) != 554 {
				t.Fatalf("RCPT before AUTH on a resumed session: %v, want 554", err)
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(smtp.PlainAuth("", "john@example.org", "john-example-password", "127.0.0.1")); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			token := newToken("ticket")
			if err := mailTx(c, message{sender: "john@example.org", rcpts: []string{"someone@example.net"}, token: token}); err != nil {
				t.Fatalf("a message on a resumed session: %v", err)
			}
			if s.maildirTokens()[token] != 1 {
				t.Fatalf("the message sent on the resumed session is not in the Maildir once")
			}
		} else if err := c.Noop(); err != nil { // reads the ticket
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		return state.DidResume
	}
	if session(s.port["submission"], false) {
		t.Fatal("the first session resumed a TLS session it never had")
	}
	if !session(port2, true) {
		t.Fatal("edge2 did not resume the session edge1 issued, with the same keys file")
	}

	// Rotation: a new key in front, the old one kept; edge2 reloads.
	write(t, keysFile, k2+"\n"+k1+"\n")
	reloadEdge(t, s, "edge2")
	if !session(port2, false) {
		t.Fatal("after the rotation, a ticket under the old key did not resume")
	}
	// That resumption issued a ticket under k2: edge1, which still has
	// only k1, cannot read it.
	if session(s.port["submission"], false) {
		t.Fatal("edge1 resumed a ticket under a key it was never given")
	}
	// The old key dropped: edge1's ticket (k1) is refused by edge2.
	write(t, keysFile, k2+"\n")
	reloadEdge(t, s, "edge2")
	if session(port2, false) {
		t.Fatal("a ticket under a key removed from the file resumed")
	}

	// A bad keys file fails the reload and the keys in use stay.
	write(t, keysFile, "not a key\n")
	if log := reloadEdge(t, s, "edge2"); !strings.Contains(log, "smtpgate_tls_session_ticket_keys_file") ||
		!strings.Contains(log, "a ticket key is 64 hex digits") {
		t.Fatalf("a bad keys file: the reload did not say why:\n%s", log)
	}
	if !session(port2, false) {
		t.Fatal("after a failed reload, the keys in use were lost")
	}
}

// reloadEdge sends SIGHUP to the edge process name and returns its log
// since, once the outcome is logged.
func reloadEdge(t *testing.T, s *stack, name string) string {
	t.Helper()
	s.mu.Lock()
	cmd, logPath := s.procs[name], s.logs[name]
	s.mu.Unlock()
	whole := func() string {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := len(whole())
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		since := whole()[before:]
		if strings.Contains(since, `msg="configuration reloaded"`) || strings.Contains(since, `configuration reload failed`) {
			return since
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged after SIGHUP:\n%s", since)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
