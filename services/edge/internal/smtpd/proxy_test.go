package smtpd

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
)

// newProxyHarness is newHarness on a listener with
// smtpd_upstream_proxy_protocol = haproxy, believing trusted.
func newProxyHarness(t *testing.T, trusted []string, timeout time.Duration) *harness {
	t.Helper()
	h := newHarness(t, relayDenied, nil)
	nets, err := listener.ParseNetworks(trusted)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, PolicyTimeout: time.Second, AuthTimeout: time.Second,
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil))}}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := listener.Proxy(raw, nets, timeout, srv.Logger)
	h.addr = raw.Addr().String()
	serveAll(t, srv, ln, h.l)
	return h
}

// v2 is a PROXY v2 header for a TCP client.
func v2(t *testing.T, cmd proxyproto.ProtocolVersionAndCommand, src, dst string) string {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: proxyproto.TCPv4,
		SourceAddr: tcpAddr(t, src), DestinationAddr: tcpAddr(t, dst)}
	if strings.Contains(src, "[") {
		h.TransportProtocol = proxyproto.TCPv6
	}
	if cmd == proxyproto.LOCAL {
		h.TransportProtocol, h.SourceAddr, h.DestinationAddr = proxyproto.UNSPEC, nil, nil
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// closed reports whether the server closed the connection without a
// word.
func closed(t *testing.T, c *client) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(bufio.NewReader(c.conn))
	// A server that closes without reading what the client sent makes the
	// kernel answer with a reset instead of a clean end of stream: both
	// are the silent close wanted.
	if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("server sent %q (err %v), want a silent close", b, err)
	}
}

func TestProxyProtocol(t *testing.T) {
	h := newProxyHarness(t, []string{"127.0.0.1/32"}, 2*time.Second)
	for _, tc := range []struct {
		name, header, addr, port string
		origin                   policyv1.Origin
	}{
		{"v1 TCP4", "PROXY TCP4 192.0.2.66 192.0.2.25 40000 25\r\n", "192.0.2.66", "40000", policyv1.Origin_ORIGIN_PROXY},
		{"v1 TCP6", "PROXY TCP6 2001:db8::66 2001:db8::25 40001 25\r\n", "2001:db8::66", "40001", policyv1.Origin_ORIGIN_PROXY},
		{"v2 TCP4", v2(t, proxyproto.PROXY, "192.0.2.67:40002", "192.0.2.25:25"), "192.0.2.67", "40002", policyv1.Origin_ORIGIN_PROXY},
		{"v2 TCP6", v2(t, proxyproto.PROXY, "[2001:db8::67]:40003", "[2001:db8::25]:25"), "2001:db8::67", "40003", policyv1.Origin_ORIGIN_PROXY},
		// The proxy's own health check, and v1 UNKNOWN: the socket's
		// addresses, as Postfix.
		{"v2 LOCAL", v2(t, proxyproto.LOCAL, "", ""), "127.0.0.1", "", policyv1.Origin_ORIGIN_SOCKET},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", "127.0.0.1", "", policyv1.Origin_ORIGIN_SOCKET},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.requests())
			c := h.dial()
			c.send(tc.header)
			c.reply()
			c.do("EHLO client.example.net", "250")
			c.do("MAIL FROM:<a@example.net>", "250")
			c.do("RCPT TO:<b@example.com>", "554 5.7.1 <b@example.com>: Relay access denied")
			c.do("QUIT", "221")
			reqs := h.requests()[before:]
			if len(reqs) != 4 {
				t.Fatalf("%d policy requests", len(reqs))
			}
			s := reqs[3].GetSession()
			if s.GetClientAddress() != tc.addr || s.GetOrigin() != tc.origin || (tc.port != "" && itoa(s.GetClientPort()) != tc.port) {
				t.Errorf("policy saw %v, want %s port %s origin %v", s, tc.addr, tc.port, tc.origin)
			}
			if tc.origin == policyv1.Origin_ORIGIN_PROXY && s.GetServerPort() != 25 {
				t.Errorf("server endpoint %s:%d, want the header's", s.GetServerAddress(), s.GetServerPort())
			}
		})
	}
}

func TestProxyProtocolDrops(t *testing.T) {
	h := newProxyHarness(t, []string{"127.0.0.1/32"}, 300*time.Millisecond)
	for _, tc := range []struct{ name, send string }{
		{"no header, SMTP instead", "EHLO client.example.net\r\n"},
		{"garbage v1", "PROXY TCP4 bogus\r\n"},
		{"v1 without CRLF", "PROXY TCP4 192.0.2.66 192.0.2.25 40000 25\n"},
		{"v2 with a bad version", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x00", 12)},
		{"truncated v2, then silence (timeout)", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01"},
		{"silence (timeout)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial()
			c.send(tc.send)
			closed(t, c)
		})
	}
	// A peer outside smtpgate_proxy_networks is dropped whatever it sends.
	h2 := newProxyHarness(t, []string{"192.0.2.0/24"}, time.Second)
	c := h2.dial()
	// The server may already have closed: a failed write is fine here.
	_, _ = io.WriteString(c.conn, "PROXY TCP4 192.0.2.66 192.0.2.25 40000 25\r\n")
	closed(t, c)
	// Nobody asked policy anything, and the servers still serve.
	if n := len(h.requests()) + len(h2.requests()); n != 0 {
		t.Errorf("%d policy requests for dropped connections", n)
	}
	c = h.dial()
	c.send("PROXY TCP4 192.0.2.66 192.0.2.25 40000 25\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "220 ") {
		t.Errorf("after the drops: %q", got)
	}
	var drops, notTrusted int
	for _, r := range append(h.logs.records(t), h2.logs.records(t)...) {
		msg, _ := r["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "PROXY protocol: connection dropped") && r["peer"] != nil:
			drops++
		case strings.HasPrefix(msg, "PROXY protocol: peer not in smtpgate_proxy_networks") && strings.HasPrefix(r["peer"].(string), "127.0.0.1:"):
			notTrusted++
		}
	}
	if drops != 6 || notTrusted != 1 {
		t.Errorf("log lines: %d drops (want 6), %d untrusted peers (want 1)", drops, notTrusted)
	}
}
