package smtpd

import (
	"strings"
	"testing"
)

// BenchmarkTransaction runs one whole mail transaction per iteration over
// a live loopback session (policy and next hop are in-process test seams):
// the engine's own cost per message.
func BenchmarkTransaction(b *testing.B) {
	h := newHarness(b, permit, nil)
	c := h.dial()
	c.reply()
	c.send("EHLO bench.example\r\n")
	c.reply()
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 40)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<john@example.org>\r\nDATA\r\n")
		c.reply()
		c.reply()
		c.reply()
		c.send(body + ".\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0") {
			b.Fatalf("end of data: %q", r)
		}
	}
}
