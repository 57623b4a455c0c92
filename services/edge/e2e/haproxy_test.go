package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haproxyConfig is deploy/haproxy/haproxy.cfg with its frontend bound to
// 127.0.0.1:port and its backend's server lines replaced by one per
// address of edges (send-proxy-v2, health checks sending v2 LOCAL
// headers, with the check timing in check, e.g. "inter 1s").
func haproxyConfig(t *testing.T, port int, edges []string, check string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy/haproxy/haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	bound, servers := false, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "bind":
			line, bound = fmt.Sprintf("    bind 127.0.0.1:%d", port), true
		case len(f) > 0 && f[0] == "server":
			if !servers {
				for i, e := range edges {
					out = append(out, fmt.Sprintf("    server edge%d %s send-proxy-v2 check check-send-proxy %s", i+1, e, check))
				}
				servers = true
			}
			continue
		}
		out = append(out, line)
	}
	if !bound || !servers {
		t.Fatalf("deploy/haproxy/haproxy.cfg has no single-address bind line or no server lines:\n%s", b)
	}
	return strings.Join(out, "\n")
}

// startHAProxy runs the real HAProxy on haproxyConfig(port, edges, check),
// written to dir, until the test ends, waits until it listens, and returns
// the path of its log.
func startHAProxy(t *testing.T, dir string, port int, edges []string, check string) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed; run scripts/deps --test")
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	write(t, cfgPath, haproxyConfig(t, port, edges, check))
	logPath := filepath.Join(dir, "haproxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", cfgPath, "-db")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- haproxy log ---\n%s", b)
		}
	})
	if err := waitListening(fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("haproxy: %v\n%s", err, b)
	}
	return logPath
}

// newHAProxyStack starts the stack with smtpd_upstream_proxy_protocol =
// haproxy on the MX listener and on a second MX listener ("mx2", the
// second backend), smtpgate_proxy_networks = 127.0.0.1/32, and a real
// HAProxy (listener "haproxy") sending PROXY v2 to both, with health
// checks that send v2 LOCAL headers.
func newHAProxyStack(t *testing.T) *stack {
	t.Helper()
	s := newStack(t, "smtpgate_proxy_networks = 127.0.0.1/32\n")
	// Policy reads master.cf too (per-listener overrides): both restart.
	s.kill("edge")
	s.kill("policy")
	s.port["mx2"], s.port["haproxy"] = freePort(t), freePort(t)
	masterPath := filepath.Join(s.conf, "master.cf")
	b, err := os.ReadFile(masterPath)
	if err != nil {
		t.Fatal(err)
	}
	mx := fmt.Sprintf("127.0.0.1:%d   inet  n       -       n       -       -       smtpd\n", s.port["mx"])
	if !strings.Contains(string(b), mx) {
		t.Fatalf("no MX listener line %q in\n%s", mx, b)
	}
	proxied := mx + "  -o smtpd_upstream_proxy_protocol=haproxy\n"
	second := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n  -o smtpd_upstream_proxy_protocol=haproxy\n", s.port["mx2"])
	write(t, masterPath, strings.Replace(string(b), mx, proxied, 1)+second)
	s.check("policy")
	s.check("edge")
	s.start("policy")
	s.start("edge")

	startHAProxy(t, s.conf, s.port["haproxy"], []string{
		fmt.Sprintf("127.0.0.1:%d", s.port["mx"]), fmt.Sprintf("127.0.0.1:%d", s.port["mx2"])}, "inter 1s")
	return s
}

// TestHAProxy: mail through a real HAProxy is judged by the real client's
// address, and the proxy listeners refuse everyone but HAProxy.
func TestHAProxy(t *testing.T) {
	s := newHAProxyStack(t)
	var l ledger

	// Several of each, so that both backends serve.
	var local []string
	for range 2 {
		// A stranger (not in mynetworks, which holds 127.0.0.1) may not
		// relay: policy saw 127.0.0.66, not HAProxy's 127.0.0.1.
		l.expectRefused(t, s, message{from: "127.0.0.66", listener: "haproxy", sender: "someone@example.net", rcpts: []string{"b@example.com"}}, "554 5.7.1 <b@example.com>: Relay access denied")
		// 127.0.0.1 is in mynetworks: it relays.
		l.expectAccepted(t, s, message{from: "127.0.0.1", listener: "haproxy", sender: "john@example.org", rcpts: []string{"b@example.com"}})
		// The stranger's mail to a local user is accepted, and its
		// Received header names the stranger.
		m := message{from: "127.0.0.66", listener: "haproxy", sender: "someone@example.net", rcpts: []string{"john@example.org"}, token: newToken("haproxy")}
		l.expectAccepted(t, s, m)
		local = append(local, m.token)
	}

	t.Run("dropped without a header from HAProxy", func(t *testing.T) {
		for _, tc := range []struct{ name, from, send, port string }{
			{"stranger straight to the edge", "127.0.0.66", "EHLO x\r\n", "mx"},
			{"stranger with a forged header", "127.0.0.66", "PROXY TCP4 127.0.0.1 127.0.0.1 1 25\r\n", "mx2"},
			{"no header from a trusted address", "127.0.0.1", "EHLO x\r\n", "mx"},
			{"garbage header", "127.0.0.1", "PROXY TCP4 garbage\r\n", "mx2"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, err := s.dialListener(tc.from, tc.port, 15*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer r.close()
				_ = r.write(tc.send)
				got, err := io.ReadAll(r.conn)
				if len(got) != 0 {
					t.Errorf("the edge answered %q (%v), want a silent close", got, err)
				}
			})
		}
	})

	// The edge still serves.
	l.expectAccepted(t, s, message{from: "127.0.0.1", listener: "haproxy", sender: "john@example.org", rcpts: []string{"c@example.com"}})
	l.checkMaildir(t, s)
	for _, tok := range local {
		b := s.maildirFile(tok)
		if !strings.Contains(b, "Received: from client.example.net (unknown [127.0.0.66])") {
			t.Errorf("message %s: Received header does not name 127.0.0.66:\n%.400s", tok, b)
		}
	}
	log := s.log("edge")
	for _, want := range []string{
		"client=unknown[127.0.0.66]", // the accepted message's line
		"PROXY protocol: peer not in smtpgate_proxy_networks",
		"PROXY protocol: connection dropped",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("edge log lacks %q", want)
		}
	}
	// Count sessions whose client came from a PROXY header.
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "msg=connect ") && strings.Contains(line, " proxy=127.0.0.1:") && strings.Contains(line, " client=127.0.0.66 ") {
			n++
		}
	}
	if n < 4 {
		t.Errorf("edge log has %d sessions of 127.0.0.66 through HAProxy, want at least 4", n)
	}
}
