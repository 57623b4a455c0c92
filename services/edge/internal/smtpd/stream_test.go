package smtpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
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
// it. It counts the bytes it read of the message under way (so a test
// can see the content reach it before the client's end of data) and the
// messages abandoned while it read them.
type hashHop struct {
	fail error // returned after reading 1000 bytes of the message

	mu        sync.Mutex
	sums      [][32]byte
	sizes     []int64
	read      int64
	abandoned int
}

func (h *hashHop) String() string { return "hash" }

func (h *hashHop) Begin(context.Context, handoff.Envelope) (handoff.Tx, error) {
	return &hashTx{h: h}, nil
}

type hashTx struct{ h *hashHop }

func (t *hashTx) Rcpt(context.Context, string, handoff.RecipientDSN) error { return nil }
func (t *hashTx) Abort()                                                   {}

func (t *hashTx) Data(_ context.Context, r io.Reader) error {
	if t.h.fail != nil {
		_, _ = io.CopyN(io.Discard, r, 1000)
		return t.h.fail
	}
	t.h.mu.Lock()
	t.h.read = 0
	t.h.mu.Unlock()
	// The edge's own headers come first; the content starts at the
	// client's Subject.
	all := &bytes.Buffer{}
	sum := sha256.New()
	var n int64
	head := true
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		t.h.mu.Lock()
		t.h.read += int64(k)
		t.h.mu.Unlock()
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
			t.h.mu.Lock()
			t.h.abandoned++
			t.h.mu.Unlock()
			return err
		}
	}
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.h.sums = append(t.h.sums, [32]byte(sum.Sum(nil)))
	t.h.sizes = append(t.h.sizes, n)
	return nil
}

// received is how many bytes of the message under way the hop has read.
func (h *hashHop) received() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.read
}

// delivered is how many messages the hop took, and how many it was
// given only in part.
func (h *hashHop) delivered() (n, abandoned int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sums), h.abandoned
}

// waitFor polls cond for up to 5 s.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// streamHarness is a harness whose listener holds 64 KiB of content in
// memory, with hop as its next hop.
func streamHarness(t *testing.T, hop *hashHop, tune func(*Listener)) *harness {
	t.Helper()
	return newHarness(t, permit, func(l *Listener) {
		l.MemoryMessageLimit = 64 << 10
		l.NextHop = hop
		if tune != nil {
			tune(l)
		}
	})
}

func startTx(c *client) {
	c.t.Helper()
	c.reply()
	c.do("EHLO client.example.net", "250-")
	c.do("MAIL FROM:<a@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
}

// TestStreamLargeMessage: a 5 MiB message reaches the next hop while the
// client sends it (all but the end before the client's final dot), and
// arrives byte for byte once the client ends it. A small one is handed
// off whole at the end.
func TestStreamLargeMessage(t *testing.T) {
	hop := &hashHop{}
	h := streamHarness(t, hop, nil)
	content, wire := bigMessage(5 << 20)
	c := h.dial()
	startTx(c)
	c.do("DATA", "354 ")
	c.send(strings.TrimSuffix(wire, ".\r\n"))
	// What the sockets and the pipes hold is not at the next hop yet.
	if !waitFor(func() bool { return hop.received() > 4<<20 }) {
		t.Errorf("the next hop has %d bytes of a 5 MiB message whose client has sent all but its end, want 4 MiB or more", hop.received())
	}
	if n, _ := hop.delivered(); n != 0 {
		t.Fatalf("the next hop took the message before its end")
	}
	c.send(".\r\n")
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
	if !h.loggedWith("accepted", "streamed", true) || !h.loggedWith("accepted", "streamed", false) {
		t.Errorf("the accepted lines do not say streamed=true for the large message and false for the small one")
	}
}

// TestStreamAbandoned: every way a streaming transaction can end without
// a delivery ends the hand-off before the next hop takes the message,
// with a reply that is not 250.
func TestStreamAbandoned(t *testing.T) {
	_, wire := bigMessage(3 << 20)
	half := wire[:len(wire)/2]
	for _, tc := range []struct {
		name string
		tune func(*Listener)
		fail error
		// run drives the client after RCPT; want is the reply expected
		// at the end ("" when the client hangs up).
		run       func(c *client)
		want      string
		abandoned bool
	}{
		{name: "over message_size_limit", tune: func(l *Listener) { l.MaxMessageSize = 1 << 20 },
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "552 5.3.4 Message size exceeds fixed limit", abandoned: true},
		{name: "next hop fails", fail: reply.NextHopFailed(fmt.Errorf("connection reset")),
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "451 4.4.2 "},
		{name: "next hop refuses", fail: reply.NextHopRefused(554, "5.7.1", "Message refused"),
			run: func(c *client) { c.do("DATA", "354 "); c.send(wire) }, want: "554 5.7.1 Message refused"},
		{name: "client disconnects", run: func(c *client) { c.do("DATA", "354 "); c.send(half); c.conn.Close() }, abandoned: true},
		{name: "timeout", tune: func(l *Listener) { l.Timeout = 300 * time.Millisecond },
			run: func(c *client) { c.do("DATA", "354 "); c.send(half) }, want: "421 4.4.2 mail.example.org Error: timeout exceeded", abandoned: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hop := &hashHop{fail: tc.fail}
			h := streamHarness(t, hop, tc.tune)
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
			if tc.want == "" && !waitFor(func() bool { return h.logged("disconnect") }) {
				t.Error("no disconnect logged")
			}
			n, abandoned := hop.delivered()
			if n != 0 {
				t.Errorf("%d messages delivered, want none", n)
			}
			if tc.abandoned && abandoned != 1 {
				t.Errorf("%d hand-offs abandoned, want 1", abandoned)
			}
			if tc.want != "" && !strings.HasPrefix(tc.want, "421") {
				// The session is still in step with the client.
				c.do("NOOP", "250 ")
			}
		})
	}
}

// TestStreamRefusedAtEndOfData: policy refusing at the end of data
// abandons the hand-off of content that streamed: the next hop never
// sees its end.
func TestStreamRefusedAtEndOfData(t *testing.T) {
	hop := &hashHop{}
	h := newHarness(t, func(req *policyv1.CheckRequest) (*policyv1.Verdict, error) {
		if req.GetStage() == policyv1.Stage_STAGE_END_OF_DATA {
			return &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<END-OF-MESSAGE>: End-of-data rejected"}, nil
		}
		return permit(req)
	}, func(l *Listener) {
		l.MemoryMessageLimit = 64 << 10
		l.NextHop = hop
	})
	_, wire := bigMessage(1 << 20)
	c := h.dial()
	startTx(c)
	c.do("DATA", "354 ")
	c.send(wire)
	expect(c, "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected")
	if n, abandoned := hop.delivered(); n != 0 || abandoned != 1 {
		t.Errorf("%d delivered, %d abandoned; want 0 and 1", n, abandoned)
	}
	c.do("NOOP", "250 ")
}

// loggedWith reports whether a log record with message msg and the
// attribute key = value was written.
func (h *harness) loggedWith(msg, key string, value any) bool {
	for _, r := range h.logs.records(h.t) {
		if r["msg"] == msg && r[key] == value {
			return true
		}
	}
	return false
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

// BenchmarkStreamedMessage sends a 5 MiB message per iteration through a
// session that streams past 64 KiB to a next hop that only hashes it:
// B/op shows what the edge allocates for the message (the client's side
// is built once, before the timer).
func BenchmarkStreamedMessage(b *testing.B) {
	hop := &hashHop{}
	h := newHarness(b, permit, func(l *Listener) {
		l.MemoryMessageLimit = 64 << 10
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

// TestContentPipelinedAfter: commands a client sends right behind its
// content, with PIPELINING, are read and answered in order, whether the
// wide read buffer of the content held few of them or more than a small
// buffer holds.
func TestContentPipelinedAfter(t *testing.T) {
	_, wire := bigMessage(300 << 10)
	for _, noops := range []int{1, 3000} {
		t.Run(fmt.Sprint(noops), func(t *testing.T) {
			hop := &hashHop{}
			h := streamHarness(t, hop, nil)
			c := h.dial()
			startTx(c)
			c.do("DATA", "354 ")
			c.send(wire + strings.Repeat("NOOP\r\n", noops) + "MAIL FROM:<b@example.net>\r\n")
			expect(c, "250 2.0.0 Ok: queued as ")
			for i := range noops {
				if got := c.reply(); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("NOOP %d sent behind the content: %q", i+1, got)
				}
			}
			expect(c, "250 2.1.0 Ok")
			c.do("RCPT TO:<john@example.org>", "250 ")
			c.do("DATA", "354 ")
			c.send("Subject: big\r\n\r\nsmall\r\n.\r\n")
			expect(c, "250 2.0.0 Ok: queued as ")
			if n, _ := hop.delivered(); n != 2 {
				t.Errorf("%d messages delivered, want 2", n)
			}
		})
	}
}
