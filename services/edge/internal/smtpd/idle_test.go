package smtpd

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleSession opens b.N sessions that greet, say EHLO and NOOP
// and then wait, and reports what each holds: its goroutine's stack
// (4 KiB without the race detector: idle.go keeps deep calls off it) and
// heap (no read or write buffer while idle). scripts/bench's scenario e
// measures the same on the real edge, as RSS.
func BenchmarkIdleSession(b *testing.B) {
	h := newHarness(b, permit, nil)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	stack0, heap0, g0 := ms.StackInuse, ms.HeapAlloc, runtime.NumGoroutine()
	for range b.N {
		c := h.ehlo("250")
		c.do("NOOP", "250")
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if g := runtime.NumGoroutine() - g0; g < b.N {
		b.Fatalf("%d goroutines more than before, want at least one per session (%d)", g, b.N)
	}
	b.ReportMetric(float64(ms.StackInuse-stack0)/float64(b.N), "stack-B/session")
	b.ReportMetric(float64(ms.HeapAlloc-heap0)/float64(b.N), "heap-B/session")
}

// nopJob does nothing on a worker but say it is done.
type nopJob struct{ done chan struct{} }

func (j *nopJob) run() { j.done <- struct{}{} }

// BenchmarkHandOff is what handing one job to a worker and waiting for
// it costs (a session does it for every command and for each record it
// logs itself): reused, as session.offStack and offStackHandler do, and
// through offStack, with a channel and a closure per call.
func BenchmarkHandOff(b *testing.B) {
	b.Run("reused", func(b *testing.B) {
		w := newWorkers()
		j := &nopJob{done: make(chan struct{}, 1)}
		b.ReportAllocs()
		for b.Loop() {
			w.run(j)
			<-j.done
		}
	})
	b.Run("offStack", func(b *testing.B) {
		w := newWorkers()
		b.ReportAllocs()
		for b.Loop() {
			if n, _ := offStack(w, func() (int, error) { return 1, nil }); n != 1 {
				b.Fatal("offStack lost the result")
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		j := &nopJob{done: make(chan struct{}, 1)}
		b.ReportAllocs()
		for b.Loop() {
			j.run()
			<-j.done
		}
	})
}

// TestIdleRead: the client's bytes that idle reads (prefetch) reach the
// session as if it had read the socket itself: in order, whatever their
// size, and with what the client sent ahead still seen as sent ahead.
func TestIdleRead(t *testing.T) {
	t.Run("group larger than the buffer", func(t *testing.T) {
		h := newHarness(t, permit, nil)
		c := h.ehlo("250")
		const n = 1000 // 6,000 bytes in one write: more than ioBufSize
		c.send(strings.Repeat("RSET\r\n", n) + "NOOP\r\n")
		for i := range n {
			if got := c.reply(); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("RSET %d: got %q, want 250", i+1, got)
			}
		}
		if got := c.reply(); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("NOOP: got %q, want 250", got)
		}
		c.do("QUIT", "221")
		waitLogged(t, h, "disconnect")
		if h.logged("improper command pipelining after RSET") {
			t.Error("RSET in a pipelined group after EHLO logged as improper pipelining")
		}
	})
	t.Run("command in pieces", func(t *testing.T) {
		h := newHarness(t, permit, nil)
		c := h.dial()
		c.reply()
		c.send("EH")
		c.send("LO client.exa")
		c.send("mple.net\r\n")
		if got := c.reply(); !strings.HasPrefix(got, "250") {
			t.Fatalf("EHLO in three writes: got %q, want 250", got)
		}
		c.do("NOOP", "250")
	})
	t.Run("sent ahead before EHLO's reply", func(t *testing.T) {
		h := newHarness(t, permit, nil)
		c := h.dial()
		c.reply()
		c.send("EHLO client.example.net\r\nNOOP\r\n")
		c.reply()
		if got := c.reply(); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("NOOP: got %q, want 250", got)
		}
		c.do("QUIT", "221")
		waitLogged(t, h, "disconnect")
		var next any
		for _, r := range h.logs.records(t) {
			if r["msg"] == "improper command pipelining after EHLO" {
				next = r["next"]
			}
		}
		if next != `NOOP\r\n` {
			t.Errorf("improper pipelining after EHLO logged with next %v, want NOOP\\r\\n", next)
		}
	})
	t.Run("connection reset while idle", func(t *testing.T) {
		h := newHarness(t, permit, nil)
		c := h.ehlo("250")
		// A close with SO_LINGER 0 sends RST: the idle session's read
		// fails with ECONNRESET.
		if err := c.conn.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		_ = c.conn.Close()
		waitLogged(t, h, "disconnect")
		found := false
		for _, r := range h.logs.records(t) {
			if err, _ := r["err"].(string); r["msg"] == "read" && strings.Contains(err, "read: connection reset by peer") {
				found = true
			}
		}
		if !found {
			t.Errorf("no read error \"connection reset by peer\" logged; records: %v", h.logs.records(t))
		}
		// The server goes on.
		h.ehlo("250")
	})
}

// waitLogged polls until a record with message msg is logged.
func waitLogged(t *testing.T, h *harness, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !h.logged(msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged in 10 s", msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
