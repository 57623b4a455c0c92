package smtpd

import (
	"sync/atomic"
)

// Memory is smtpgate_memory_budget: the memory the edge process is to
// stay under, shared by all its sessions. A quarter of it is what
// sessions may hold of what their clients sent (recipients, policy
// headers, message content kept in memory); the rest is left to
// everything else: the program itself, the Go runtime and the garbage
// collector's headroom (twice what is live, or less near Go's memory
// limit), goroutines, the read and write buffers of every session, TLS,
// gRPC.
//
// Of the sessions' quarter, message content may take half at most:
// content that does not fit streams to the next hop at once (stream.go),
// so content never keeps a transaction from starting. What cannot
// stream (a recipient, a header) is refused when the
// sessions' quarter is held: MAIL and RCPT get "452 4.3.1 Insufficient
// system storage", the reply Postfix gives when its queue file system is
// short of space (queue_minfree), and the client tries again later.
//
// A nil *Memory has no budget: everything fits.
type Memory struct {
	// share is what sessions may hold; content is content's part of it.
	share, content int64
	held           atomic.Int64
}

// NewMemory returns the budget of budget bytes; 0 or less: none (nil).
func NewMemory(budget int64) *Memory {
	if budget <= 0 {
		return nil
	}
	return &Memory{share: budget / 4, content: budget / 8}
}

// Held is what sessions hold now.
func (m *Memory) Held() int64 {
	if m == nil {
		return 0
	}
	return m.held.Load()
}

// hold takes n bytes for something that cannot be spilled; false (and
// nothing taken) when the sessions' share would be passed.
func (m *Memory) hold(n int64) bool { return m.take(n, m.limit(false)) }

// holdContent takes n bytes of message content; false (and nothing
// taken) when content's part would be passed: the content goes to disk.
func (m *Memory) holdContent(n int64) bool { return m.take(n, m.limit(true)) }

func (m *Memory) limit(content bool) int64 {
	if m == nil {
		return 0
	}
	if content {
		return m.content
	}
	return m.share
}

func (m *Memory) take(n, limit int64) bool {
	if m == nil || n <= 0 {
		return true
	}
	for {
		old := m.held.Load()
		if old+n > limit {
			return false
		}
		if m.held.CompareAndSwap(old, old+n) {
			return true
		}
	}
}

// release gives back n bytes taken with hold or holdContent.
func (m *Memory) release(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.held.Add(-n)
}

// txCost is what a transaction holds before its first recipient: its
// state, the sender, the parameters of MAIL. MAIL is refused when not
// even that fits.
const txCost = 1024

// rcptCost is what a recipient holds besides its address: its place in
// the session's list and in the next hop's transaction.
const rcptCost = 64
