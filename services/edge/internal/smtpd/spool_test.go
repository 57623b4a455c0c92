package smtpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// bigMessage returns about size bytes of message content as the next hop
// must get it (CRLF lines) and as a client sends it (dot-stuffed, ended
// by "."). Some lines start with a dot.
func bigMessage(size int) (content, wire string) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-"
	var c, w strings.Builder
	c.WriteString("Subject: big\r\n\r\n")
	for c.Len() < size {
		n := 1 + r.IntN(200)
		line := make([]byte, n)
		for i := range line {
			line[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(50) == 0 {
			line[0] = '.'
		}
		c.Write(line)
		c.WriteString("\r\n")
	}
	content = c.String()
	for _, l := range strings.SplitAfter(content, "\r\n") {
		if strings.HasPrefix(l, ".") {
			w.WriteString(".")
		}
		w.WriteString(l)
	}
	w.WriteString(".\r\n")
	return content, w.String()
}

// hashHop is a next hop that hashes what it is given without keeping
// it, and notes whether a spool file existed while it read.
type hashHop struct {
	spool string
	fail  error // returned after reading half the message

	mu      sync.Mutex
	sums    [][32]byte
	sizes   []int64
	spooled []bool
}

func (h *hashHop) String() string { return "hash" }

func (h *hashHop) Begin(context.Context, handoff.Envelope) (handoff.Tx, error) {
	return &hashTx{h: h}, nil
}

type hashTx struct{ h *hashHop }

func (t *hashTx) Rcpt(context.Context, string, handoff.RecipientDSN) error { return nil }
func (t *hashTx) Abort()                                                   {}

func (t *hashTx) Data(_ context.Context, r io.Reader) error {
	files := spoolFiles(t.h.spool)
	if t.h.fail != nil {
		_, _ = io.CopyN(io.Discard, r, 1000)
		return t.h.fail
	}
	// The edge's own headers come first; the content starts at the
	// client's Subject.
	all := &bytes.Buffer{}
	sum := sha256.New()
	var n int64
	head := true
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		p := buf[:k]
		if head {
			all.Write(p)
			if i := bytes.Index(all.Bytes(), []byte("Subject: big\r\n")); i >= 0 {
				head = false
				p = all.Bytes()[i:]
			} else {
				p = nil
			}
		}
		sum.Write(p)
		n += int64(len(p))
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.h.sums = append(t.h.sums, [32]byte(sum.Sum(nil)))
	t.h.sizes = append(t.h.sizes, n)
	t.h.spooled = append(t.h.spooled, files > 0)
	return nil
}

// spoolFiles counts the files in dir (0 when it does not exist).
func spoolFiles(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// spoolHarness is a harness whose listener spools past 64 KiB into a
// fresh directory, with hop as its next hop.
func spoolHarness(t *testing.T, hop *hashHop, tune func(*Listener)) (*harness, string) {
	t.Helper()
	dir := t.TempDir() + "/spool"
	hop.spool = dir
	h := newHarness(t, permit, func(l *Listener) {
		l.MemoryMessageLimit = 64 << 10
		l.SpoolDir = dir
		l.NextHop = hop
		if tune != nil {
			tune(l)
		}
	})
	return h, dir
}

func startTx(c *client) {
	c.t.Helper()
	c.reply()
	c.do("EHLO client.example.net", "250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
}

// TestSpoolLargeMessage: a 5 MiB message goes through a spool file, and
// arrives byte for byte; the file is gone after. A small one stays in
// memory.
func TestSpoolLargeMessage(t *testing.T) {
	hop := &hashHop{}
	h, dir := spoolHarness(t, hop, nil)
	content, wire := bigMessage(5 << 20)
	c := h.dial()
	startTx(c)
	c.do("DATA", "354 ")
	c.send(wire)
	if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("end of data: %q", got)
	}
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("DATA", "354 ")
	c.send("Subject: big\r\n\r\nsmall\r\n.\r\n")
	c.do("QUIT", "250 2.0.0 Ok: queued as ")
	c.reply()
	if len(hop.sums) != 2 {
		t.Fatalf("%d messages delivered, want 2", len(hop.sums))
	}
	if want := sha256.Sum256([]byte(content)); hop.sums[0] != want || hop.sizes[0] != int64(len(content)) {
		t.Errorf("large message arrived with %d bytes, sha256 %x; sent %d bytes, sha256 %x", hop.sizes[0], hop.sums[0], len(content), want)
	}
	if want := sha256.Sum256([]byte("Subject: big\r\n\r\nsmall\r\n")); hop.sums[1] != want {
		t.Errorf("small message arrived changed")
	}
	if !hop.spooled[0] || hop.spooled[1] {
		t.Errorf("spool file present during hand-off: large %v, small %v; want true, false", hop.spooled[0], hop.spooled[1])
	}
	if n := spoolFiles(dir); n != 0 {
		t.Errorf("spool directory holds %d files after the hand-off", n)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
}

// TestSpoolCleanup: every way a spooled transaction can end without a
// delivery leaves the spool directory empty.
func TestSpoolCleanup(t *testing.T) {
	_, wire := bigMessage(3 << 20)
	half := wire[:len(wire)/2]
	for _, tc := range []struct {
		name string
		tune func(*Listener)
		fail error
		// run drives the client after RCPT; want is the reply expected
		// at the end ("" when the client hangs up).
		run  func(c *client)
		want string
	}{
		{name: "over message_size_limit", tune: func(l *Listener) { l.MaxMessageSize = 1 << 20 },
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "552 5.3.4 Message size exceeds fixed limit"},
		{name: "next hop fails", fail: reply.NextHopFailed(fmt.Errorf("connection reset")),
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "451 4.4.2 "},
		{name: "next hop refuses", fail: reply.NextHopRefused(554, "5.7.1", "Message refused"),
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "554 5.7.1 Message refused"},
		{name: "client disconnects", run: func(c *client) { c.do("DATA", "354 "); c.send(half); c.conn.Close() }},
		{name: "timeout", tune: func(l *Listener) { l.Timeout = 300 * time.Millisecond },
			run: func(c *client) { c.do("DATA", "354 "); c.send(half) }, want: "421 4.4.2 mail.example.org Error: timeout exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hop := &hashHop{fail: tc.fail}
			h, dir := spoolHarness(t, hop, tc.tune)
			c := h.dial()
			startTx(c)
			tc.run(c)
			if tc.want != "" {
				if got := c.reply(); !strings.HasPrefix(got, tc.want) {
					t.Errorf("reply %q, want %q", got, tc.want)
				}
			}
			// The session notices a hang-up on its own time: wait for
			// it to log the end of the session.
			deadline := time.Now().Add(5 * time.Second)
			for tc.want == "" && !h.logged("disconnect") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := spoolFiles(dir); n != 0 {
				t.Errorf("spool directory holds %d files", n)
			}
			if len(hop.sums) != 0 {
				t.Errorf("%d messages delivered, want none", len(hop.sums))
			}
			if tc.want != "" && !strings.HasPrefix(tc.want, "421") {
				// The session is still in step with the client.
				c.do("NOOP", "250 ")
			}
		})
	}
}

// logged reports whether a log record with message msg was written.
func (h *harness) logged(msg string) bool {
	for _, r := range h.logs.records(h.t) {
		if r["msg"] == msg {
			return true
		}
	}
	return false
}

// TestSpoolWriteError: a spool directory that cannot be created gives
// Postfix's queue file write error after the content, and the session
// stays in step.
func TestSpoolWriteError(t *testing.T) {
	hop := &hashHop{}
	h, _ := spoolHarness(t, hop, func(l *Listener) {
		file := t.TempDir() + "/file"
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		l.SpoolDir = file + "/spool"
	})
	_, wire := bigMessage(200 << 10)
	c := h.dial()
	startTx(c)
	c.do("DATA", "354 ")
	c.send(wire)
	if got := c.reply(); got != "451 4.3.0 Error: queue file write error" {
		t.Errorf("reply %q", got)
	}
	c.do("NOOP", "250 ")
	if len(hop.sums) != 0 {
		t.Errorf("delivered after a write error")
	}
}

// BenchmarkSpooledMessage sends a 5 MiB message per iteration through a
// session that spools past 64 KiB to a next hop that only hashes it:
// B/op shows what the edge allocates for the message (the client's side
// is built once, before the timer).
func BenchmarkSpooledMessage(b *testing.B) {
	hop := &hashHop{spool: b.TempDir()}
	h := newHarness(b, permit, func(l *Listener) {
		l.MemoryMessageLimit = 64 << 10
		l.SpoolDir = hop.spool
		l.NextHop = hop
	})
	_, w := bigMessage(5 << 20)
	wire := []byte(w)
	c := h.dial()
	c.reply()
	c.send("EHLO bench.example\r\n")
	c.reply()
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
		c.send("MAIL FROM:<a@example.net>\r\n")
		c.reply()
		c.send("RCPT TO:<john@example.org>\r\n")
		c.reply()
		c.send("DATA\r\n")
		c.reply()
		if _, err := c.conn.Write(wire); err != nil {
			b.Fatal(err)
		}
		if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0") {
			b.Fatalf("end of data: %q", r)
		}
	}
}
