package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Big messages (issue 19): the edge passes message content on to the
// next hop without holding it whole, so that its memory does not grow
// with the size of the messages it takes. 200 clients send a 10 MiB
// message each at the same time (every one of them is halfway through
// its content before any goes on) to an edge whose next hop is a real
// SMTP server on loopback; the edge's resident memory may rise by
// 64 MiB over what it holds at rest, and every message must reach the
// next hop once, byte for byte.

const (
	bigSessions = 200
	bigSize     = 10 << 20
	// bigRise is the most the edge's resident memory may grow by.
	bigRise = 64 << 20
)

func TestBigMessagesNotHeldWhole(t *testing.T) {
	sink := startDigestSink(t)
	// The memory settings are the edge's own defaults (deploy/local
	// sets a smaller budget); message_size_limit lets 10 MiB through;
	// 200 end-of-data checks at once on a loaded machine may take
	// longer than the stack's 3 s.
	s := newStack(t, fmt.Sprintf("smtpgate_next_hop = smtp://%s\nmessage_size_limit = %d\nsmtpgate_memory_budget = 805306368\nsmtpgate_policy_timeout = 60s\n", sink.addr, 2*bigSize))
	pid := s.procs["edge"].Process.Pid

	body := bigBody(bigSize)
	want := sha256.Sum256(body)

	// One message first: the edge's buffers and connections exist, as
	// in any edge that has taken mail.
	if err := sendBig(s, newToken("big-warm"), body, nil, nil); err != nil {
		t.Fatalf("first message: %v", err)
	}
	time.Sleep(time.Second)
	rest := procMemory(t, pid)["VmRSS"]
	t.Logf("edge at rest: VmRSS %d KiB", rest>>10)

	// The peak between samples is VmHWM's; the samples say when.
	stop := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		peak := int64(0)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
				peak = max(peak, procMemory(t, pid)["VmRSS"])
			}
		}
	}()

	stops := []int{768 << 10, len(body) / 2}
	arrived := make([]sync.WaitGroup, len(stops))
	release := make([]chan struct{}, len(stops))
	for k := range stops {
		arrived[k].Add(bigSessions)
		release[k] = make(chan struct{})
	}
	tokens := make([]string, bigSessions)
	errs := make([]error, bigSessions)
	var done sync.WaitGroup
	for i := range bigSessions {
		tokens[i] = newToken("big")
		done.Add(1)
		go func() {
			defer done.Done()
			next := 0 // the first stop not arrived at
			defer func() {
				for ; next < len(stops); next++ {
					arrived[next].Done()
				}
			}()
			errs[i] = sendBig(s, tokens[i], body, stops, func(k int) {
				arrived[k].Done()
				next = k + 1
				<-release[k]
			})
		}()
	}
	for k := range stops {
		arrived[k].Wait()
		// Every session has sent this much of its content; the edge
		// has read what fits its buffers and the sockets'.
		time.Sleep(2 * time.Second)
		t.Logf("all sessions at %d KiB of content: edge VmRSS %d KiB", stops[k]>>10, procMemory(t, pid)["VmRSS"]>>10)
		close(release[k])
	}
	done.Wait()
	close(stop)
	peak := <-sampled
	hwm := procMemory(t, pid)["VmHWM"]
	t.Logf("edge under %d concurrent %d MiB messages: sampled VmRSS peak %d KiB, VmHWM %d KiB, rest %d KiB", bigSessions, bigSize>>20, peak>>10, hwm>>10, rest>>10)

	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("message %d: %v", i, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d messages not accepted", failed, bigSessions)
	}
	for _, tok := range tokens {
		got := sink.get(tok)
		if len(got) != 1 {
			t.Errorf("the next hop got %d copies of %s, want 1", len(got), tok)
			continue
		}
		if got[0].digest != want || got[0].size != int64(len(body)) {
			t.Errorf("%s reached the next hop with a body of %d bytes, sha256 %x; sent %d bytes, sha256 %x", tok, got[0].size, got[0].digest, len(body), want)
		}
	}
	if rise := max(hwm, peak) - rest; rise > bigRise {
		t.Errorf("%d concurrent %d MiB messages raised the edge's resident memory by %d KiB, over %d KiB: content is held in memory", bigSessions, bigSize>>20, rise>>10, bigRise>>10)
	}
}

// bigBody is n bytes of message body as a client sends it after DATA:
// CRLF lines of printable text, one in ten starting with a dot, stuffed
// (RFC 5321 §4.5.2: the next hop gets them stuffed again, the same).
func bigBody(n int) []byte {
	b := make([]byte, 0, n+100)
	for i := 0; len(b) < n; i++ {
		if i%10 == 0 {
			b = append(b, "..."...)
		}
		b = fmt.Appendf(b, "line %07d of a big message: %s\r\n", i, strings.Repeat("0123456789", 5))
	}
	return b
}

// sendBig sends one message with body (dot-stuffed already) from a
// trusted client, written to the socket in big pieces (a client as cheap
// as can be, so that the edge is what the test measures); stop(k) runs
// once body[:stops[k]] is written. nil: the final dot was answered 250.
func sendBig(s *stack, token string, body []byte, stops []int, stop func(k int)) error {
	c, err := s.dialListener(Trusted, "mx", 20*time.Minute)
	if err != nil {
		return err
	}
	defer c.close()
	if r := c.lastLine(); !strings.HasPrefix(r, "220 ") {
		return fmt.Errorf("greeting %q", r)
	}
	for _, cmd := range []string{"EHLO client.example.net", "MAIL FROM:<alice@example.net>", "RCPT TO:<lisa@example.com>", "DATA"} {
		if err := c.writeLine(cmd); err != nil {
			return err
		}
		want := "250 "
		if cmd == "DATA" {
			want = "354 "
		}
		if r := c.lastLine(); !strings.HasPrefix(r, want) {
			return fmt.Errorf("%s: %q", cmd, r)
		}
	}
	if _, err := fmt.Fprintf(c.conn, "From: <alice@example.net>\r\nTo: <lisa@example.com>\r\nSubject: %s\r\n\r\n", token); err != nil {
		return err
	}
	sent := 0
	for k, at := range stops {
		if _, err := c.conn.Write(body[sent:at]); err != nil {
			return err
		}
		sent = at
		stop(k)
	}
	if _, err := c.conn.Write(append(body[sent:len(body):len(body)], ".\r\n"...)); err != nil {
		return err
	}
	if r := c.lastLine(); !strings.HasPrefix(r, "250 ") {
		return fmt.Errorf("end of data: %q", r)
	}
	_ = c.writeLine("QUIT")
	return nil
}

// digestSink is the next hop: a minimal SMTP server on loopback that
// keeps, of every message it accepts, the token in its Subject and the
// size and SHA-256 of its body as it came (dot-stuffed), reading the
// content line by line as it comes: it holds no message whole, so that
// 2 GB can pass through it, and does little per byte, so that the edge
// is what the test measures.
type digestSink struct {
	addr string
	mu   sync.Mutex
	got  map[string][]digest
}

type digest struct {
	size   int64
	digest [32]byte
}

func startDigestSink(t *testing.T) *digestSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &digestSink{addr: ln.Addr().String(), got: map[string][]digest{}}
	var wg sync.WaitGroup
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				k.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return k
}

func (k *digestSink) get(token string) []digest {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.got[token]
}

// serve speaks the server side of SMTP as far as the edge's client
// needs: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
func (k *digestSink) serve(conn net.Conn) {
	br := bufio.NewReaderSize(conn, 64<<10)
	say := func(r string) bool {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Minute))
		_, err := io.WriteString(conn, r+"\r\n")
		return err == nil
	}
	if !say("220 sink.example.net ESMTP") {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO", "LHLO":
			if !say("250-sink.example.net\r\n250 8BITMIME") {
				return
			}
		case "DATA":
			if !say("354 go ahead") || !k.content(br) || !say("250 2.0.0 Ok: queued") {
				return
			}
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			if !say("250 2.0.0 Ok") {
				return
			}
		}
	}
}

// content reads one message up to its end-of-data line.
func (k *digestSink) content(br *bufio.Reader) bool {
	token := ""
	h := sha256.New()
	var n int64
	inBody := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: the edge folds lines at
			// 998 bytes, so this is no message of the test's.
			return false
		}
		if err != nil {
			return false
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			break
		}
		switch {
		case inBody:
			h.Write(line)
			n += int64(len(line))
		case bytes.Equal(line, []byte("\r\n")):
			inBody = true
		default:
			if v, ok := bytes.CutPrefix(line, []byte("Subject: ")); ok {
				token = string(bytes.TrimSpace(v))
			}
		}
	}
	var d digest
	d.size = n
	h.Sum(d.digest[:0])
	k.mu.Lock()
	k.got[token] = append(k.got[token], d)
	k.mu.Unlock()
	return true
}
