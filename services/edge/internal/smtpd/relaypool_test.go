package smtpd

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff/handofftest"
)

// TestRelayPoolThroughSessions: clients' messages relayed by the engine
// reuse the next hop's connections; when the next hop dies between
// messages, the next client gets 451 4.4.x (not a 250 for mail nobody
// took) and, once it is back, 250 again.
func TestRelayPoolThroughSessions(t *testing.T) {
	hop := handofftest.Start(t, "127.0.0.1:0", false)
	addr := hop.Addr()
	target, err := handoff.Parse("smtp://"+addr, nil, handoff.Options{Hostname: "mail.example.org", Timeout: 5 * time.Second,
		IdleConnections: 4, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = target.(io.Closer).Close() })
	h := newHarness(t, permit, func(l *Listener) { l.NextHop = target })
	send := func(rcptWant, dataWant string) {
		t.Helper()
		c := h.ehlo("250")
		c.do("MAIL FROM:<a@example.net>", "250")
		if got := c.do("RCPT TO:<john@example.org>", rcptWant); !strings.HasPrefix(got, "250") {
			c.do("QUIT", "221")
			return
		}
		c.do("DATA", "354")
		c.do("Subject: x\r\n\r\nhi\r\n.", dataWant)
		c.do("QUIT", "221")
	}
	for range 5 {
		send("250", "250 2.0.0")
	}
	if conns, msgs := hop.Conns(), hop.Messages(); msgs != 5 || conns != 1 {
		t.Errorf("next hop: %d messages over %d connections, want 5 over 1", msgs, conns)
	}
	hop.Die()
	send("451 4.4.", "")
	hop2 := handofftest.Start(t, addr, false)
	send("250", "250 2.0.0")
	send("250", "250 2.0.0")
	if conns, msgs := hop2.Conns(), hop2.Messages(); msgs != 2 || conns != 1 {
		t.Errorf("next hop back: %d messages over %d connections, want 2 over 1", msgs, conns)
	}
}
