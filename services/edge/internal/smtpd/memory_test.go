package smtpd

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMemoryShares(t *testing.T) {
	if NewMemory(0) != nil || NewMemory(-1) != nil {
		t.Error("a budget of 0 or less is not nil (no budget)")
	}
	var none *Memory
	if !none.hold(1<<40) || !none.holdContent(1<<40) || none.Held() != 0 {
		t.Error("no budget refused something")
	}
	none.release(5) // no panic
	m := NewMemory(800)
	// Content: an eighth of the budget, whatever else is held.
	if !m.holdContent(100) || m.holdContent(1) {
		t.Errorf("content share: held %d, want 100 and no more", m.Held())
	}
	// Everything together: a quarter.
	if !m.hold(100) || m.hold(1) {
		t.Errorf("sessions' share: held %d, want 200 and no more", m.Held())
	}
	m.release(150)
	// Content cannot take what others hold: 50 held, 50 of content left.
	if m.holdContent(51) || !m.holdContent(50) {
		t.Errorf("content after release: held %d", m.Held())
	}
	m.release(100)
	if m.Held() != 0 {
		t.Errorf("held %d after everything was released", m.Held())
	}
}

// memoryHarness is a harness whose server has a memory budget of budget
// bytes and whose listener takes up to 1,000 recipients.
func memoryHarness(t *testing.T, budget int64, tune func(*Listener)) (*harness, *Memory) {
	t.Helper()
	h := &harness{t: t, policy: &testPolicy{decide: permit}, auth: &testAuth{}, sink: &sink{refuse: map[string]bool{}}, logs: &logBuffer{}}
	h.l = &Listener{Name: "test", Hostname: "mail.example.org", Banner: "mail.example.org ESMTP smtpgate",
		MaxMessageSize: 10240000, MaxRecipients: 1000, LineLimit: 2048, Timeout: 10 * time.Second,
		DisableVRFY: true, HardErrorLimit: 100, NextHop: h.sink}
	if tune != nil {
		tune(h.l)
	}
	mem := NewMemory(budget)
	srv := &Server{Config: Config{Policy: h.policy, Auth: h.auth, PolicyTimeout: time.Second, AuthTimeout: time.Second,
		Memory: mem, Logger: slog.New(slog.NewJSONHandler(h.logs, nil))}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	stop := serveAll(t, srv, ln, h.l)
	t.Cleanup(func() {
		stop()
		// Every session has ended: everything was given back.
		if n := mem.Held(); n != 0 {
			t.Errorf("%d bytes of the budget still held after every session ended", n)
		}
	})
	return h, mem
}

// TestMemoryBudgetRefusesRecipients: when the sessions' share is held,
// RCPT and MAIL get "452 4.3.1 Insufficient system storage"; the
// session goes on, and RSET gives the memory back.
func TestMemoryBudgetRefusesRecipients(t *testing.T) {
	h, mem := memoryHarness(t, 256<<10, nil) // sessions: 64 KiB
	a, b := h.dial(), h.dial()
	a.reply()
	b.reply()
	a.do("EHLO a.example.net", "250")
	b.do("EHLO b.example.net", "250")
	a.do("MAIL FROM:<a@example.net>", "250 2.1.0")
	accepted, refused := 0, 0
	for i := range 100 {
		rcpt := fmt.Sprintf("r%d-%s@example.org", i, strings.Repeat("x", 900))
		switch got := a.do("RCPT TO:<"+rcpt+">", ""); got {
		case "250 2.1.5 Ok":
			accepted++
		case "452 4.3.1 Insufficient system storage":
			refused++
		default:
			t.Fatalf("RCPT %d: %q", i, got)
		}
	}
	// 64 KiB hold about 66 recipients of 920 bytes with their
	// bookkeeping.
	if accepted < 50 || accepted > 70 || refused != 100-accepted {
		t.Errorf("%d recipients accepted, %d refused; want about 66 accepted, the rest refused", accepted, refused)
	}
	if held := mem.Held(); held > 64<<10 {
		t.Errorf("sessions hold %d bytes, over their share of 64 KiB", held)
	}
	// Another session cannot start a transaction meanwhile...
	b.do("MAIL FROM:<b@example.net>", "452 4.3.1 Insufficient system storage")
	// ...until the first gives its recipients back.
	a.do("RSET", "250")
	if held := mem.Held(); held != 0 {
		t.Errorf("%d bytes held after RSET", held)
	}
	b.do("MAIL FROM:<b@example.net>", "250 2.1.0")
	b.do("RCPT TO:<john@example.org>", "250 2.1.5")
	b.do("DATA", "354")
	b.send("Subject: after the budget was free again\r\n\r\nhi\r\n.\r\n")
	if got := b.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("message after the budget was free again: %q", got)
	}
	a.do("QUIT", "221")
	b.do("QUIT", "221")
}

// TestRecipientLimit: smtpd_recipient_limit recipients are taken, the
// next is refused as Postfix refuses it, and the message goes to all
// that were taken. Each recipient keeps its address, not its command
// line: 1,000 RCPTs with 1.9 KB ORCPT parameters hold well under the
// 2 MB of their lines (the edge used to keep every line whole).
func TestRecipientLimit(t *testing.T) {
	h, _ := memoryHarness(t, 0, func(l *Listener) { l.MaxRecipients = 1000 })
	c := h.dial()
	c.reply()
	c.do("EHLO a.example.net", "250")
	c.do("MAIL FROM:<a@example.net>", "250")
	orcpt := " ORCPT=rfc822;" + strings.Repeat("o", 1900) + "@example.org"
	before := heapInUse()
	var pipelined strings.Builder
	for i := range 1001 {
		fmt.Fprintf(&pipelined, "RCPT TO:<r%d@example.org>%s\r\n", i, orcpt)
	}
	c.send(pipelined.String())
	for i := range 1001 {
		want := "250 2.1.5 Ok"
		if i == 1000 {
			want = "452 4.5.3 Error: too many recipients"
		}
		if got := c.reply(); got != want {
			t.Fatalf("RCPT %d: %q, want %q", i+1, got, want)
		}
	}
	pipelined.Reset()
	grown := heapInUse() - before
	t.Logf("1,000 recipients with their ORCPT: the heap grew by %d KiB", grown>>10)
	if grown > 1<<20 {
		t.Errorf("the session's 1,000 recipients hold %d KiB, want under 1 MiB (their lines were %d KiB)", grown>>10, 1000*len(orcpt)>>10)
	}
	c.do("DATA", "354")
	c.send("Subject: many\r\n\r\nhi\r\n.\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data: %q", got)
	}
	c.do("QUIT", "221")
}

// TestMemoryBudgetStreamsContent: content the budget has no room for
// streams to the next hop even under smtpgate_memory_message_limit, and
// arrives whole; nothing stays held after.
func TestMemoryBudgetStreamsContent(t *testing.T) {
	h, mem := memoryHarness(t, 256<<10, func(l *Listener) { l.MemoryMessageLimit = 1 << 20 }) // content: 32 KiB
	line := strings.Repeat("c", 998) + "\r\n"
	body := strings.Repeat(line, 100) // 100 KB, under the 1 MiB per message
	c := h.dial()
	c.reply()
	c.do("EHLO a.example.net", "250")
	c.do("MAIL FROM:<a@example.net>", "250")
	c.do("RCPT TO:<john@example.org>", "250")
	c.do("DATA", "354")
	c.send("Subject: streamed\r\n\r\n" + body)
	// The content is on its way in; while the dot is not sent, it is
	// on its way to the next hop and the budget holds no more than its
	// eighth.
	deadline := time.Now().Add(5 * time.Second)
	for h.sink.inData() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.sink.inData(); n != 1 {
		t.Errorf("%d messages on their way to the next hop while the content of 100 KB comes in with 32 KiB of room, want 1", n)
	}
	if held := mem.Held(); held > 32<<10 {
		t.Errorf("content holds %d bytes of the budget, over its 32 KiB", held)
	}
	if n := len(h.sink.messages()); n != 0 {
		t.Errorf("the next hop has %d messages before the end of data", n)
	}
	c.send(".\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data: %q", got)
	}
	msgs := h.sink.messages()
	if len(msgs) != 1 || !strings.HasSuffix(msgs[0], "Subject: streamed\r\n\r\n"+body) {
		t.Errorf("the next hop got %d messages, the content whole: %v", len(msgs), len(msgs) == 1 && strings.HasSuffix(msgs[0], body))
	}
	c.do("QUIT", "221")
}

// TestBodyMemory: a body takes its buffer's memory from the budget as it
// grows and gives it all back when it closes; it streams past its limit,
// or earlier when the budget has no room, and what it delivers is the
// content whole.
func TestBodyMemory(t *testing.T) {
	l := &Listener{MemoryMessageLimit: 1 << 20}
	m := NewMemory(8 << 20) // content: 1 MiB
	var got []byte
	deliver := func(first []byte) func(io.Reader) error {
		return func(rest io.Reader) error {
			b, err := io.ReadAll(rest)
			got = append(append([]byte{}, first...), b...)
			return err
		}
	}
	small := newBody(l, m, deliver)
	_, _ = small.Write([]byte(strings.Repeat("a", 10000)))
	if small.Streamed() || m.Held() < 10000 || m.Held() > 2*10000+memoryStart {
		t.Errorf("a 10 KB body: streamed=%v, held %d", small.Streamed(), m.Held())
	}
	big := newBody(l, m, deliver)
	for range 200 {
		_, _ = big.Write([]byte(strings.Repeat("b", 5000))) // 1 MB: the rest of the room and more
	}
	if !big.Streamed() {
		t.Error("a body the budget has no room for stayed in memory")
	}
	if err := big.Deliver(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000000 || strings.Trim(string(got), "b") != "" {
		t.Errorf("streamed content delivered: %d bytes", len(got))
	}
	if err := small.Deliver(); err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.Repeat("a", 10000) {
		t.Errorf("content held in memory delivered: %d bytes", len(got))
	}
	_ = small.Close()
	_ = big.Close()
	if n := m.Held(); n != 0 {
		t.Errorf("%d bytes held after both bodies closed", n)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestRecipientOvershoot: the RCPTs past smtpd_recipient_limit get
// 452 4.5.3 and, up to smtpd_recipient_overshoot_limit of them, are not
// errors (Postfix's rcpt_overshoot); past it each one is, and
// smtpd_hard_error_limit ends the session.
func TestRecipientOvershoot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		overshoot int
		closes    bool
	}{
		{"within the overshoot limit", 1000, false},
		{"past the overshoot limit", 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := memoryHarness(t, 0, func(l *Listener) {
				l.MaxRecipients, l.RecipientOvershootLimit, l.HardErrorLimit = 2, tc.overshoot, 10
			})
			c := h.dial()
			c.reply()
			c.do("EHLO a.example.net", "250")
			c.do("MAIL FROM:<a@example.net>", "250")
			c.do("RCPT TO:<a@example.org>", "250 2.1.5")
			c.do("RCPT TO:<b@example.org>", "250 2.1.5")
			for i := range 30 {
				got := c.do("RCPT TO:<x@example.org>", "")
				if got == "421 4.7.0 mail.example.org Error: too many errors" {
					if !tc.closes || i != tc.overshoot+10 {
						t.Fatalf("RCPT %d past the limit: %q (overshoot %d, hard error limit 10)", i+1, got, tc.overshoot)
					}
					return
				}
				if got != "452 4.5.3 Error: too many recipients" {
					t.Fatalf("RCPT %d past the limit: %q", i+1, got)
				}
			}
			if tc.closes {
				t.Fatal("30 RCPTs past the limit and the overshoot limit, and the session goes on")
			}
			c.do("DATA", "354")
			c.send("Subject: two\r\n\r\nhi\r\n.\r\n")
			if got := c.reply(); !strings.HasPrefix(got, "250 ") {
				t.Errorf("end of data: %q", got)
			}
		})
	}
}
