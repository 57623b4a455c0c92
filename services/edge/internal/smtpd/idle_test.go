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
