package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newHAProxyStack starts the stack with smtpd_upstream_proxy_protocol =
// haproxy on the MX listener and on a second MX listener ("mx2", the
// second backend), smtpgate_proxy_networks = 127.0.0.1/32, and a real
// HAProxy (listener "haproxy") sending PROXY v2 to both, with health
// checks that send v2 LOCAL headers.
func newHAProxyStack(t *testing.T) *stack {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed; run scripts/deps --test")
	}
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

	cfg := fmt.Sprintf(`global
    log stderr format short local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend smtp
    bind 127.0.0.1:%d
    default_backend edges
backend edges
    balance roundrobin
    server edge1 127.0.0.1:%d send-proxy-v2 check check-send-proxy inter 1s
    server edge2 127.0.0.1:%d send-proxy-v2 check check-send-proxy inter 1s
`, s.port["haproxy"], s.port["mx"], s.port["mx2"])
	cfgPath := filepath.Join(s.conf, "haproxy.cfg")
	write(t, cfgPath, cfg)
	logPath := filepath.Join(s.conf, "haproxy.log")
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port["haproxy"]), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("haproxy does not listen: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
				c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port[tc.port]))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(15 * time.Second))
				_, _ = io.WriteString(c, tc.send)
				got, err := io.ReadAll(c)
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
