package smtpd

import (
	"runtime"
	"testing"
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
		c := h.dial()
		c.reply()
		c.do("EHLO client.example.net", "250")
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
