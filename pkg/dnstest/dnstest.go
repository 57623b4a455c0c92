// Package dnstest serves DNS on loopback for tests: a test gives the
// answers as a miekg/dns Handler, ServeUDP runs it on a free UDP port and
// returns the address once the server is up, and the server stops when
// the test ends. Test support only: every test that needs a DNS server
// starts it here.
//
// It trusts the handler it is given and the test that queries it; it
// listens on 127.0.0.1 only.
package dnstest

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// ServeUDP serves h on a free UDP port of 127.0.0.1 until the test ends
// and returns the address ("127.0.0.1:port"), once the server is up.
func ServeUDP(tb testing.TB, h dns.Handler) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	tb.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}
