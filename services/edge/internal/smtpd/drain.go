package smtpd

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// Drain stops the sessions of a Server gracefully, in two steps, so that
// no message the next hop accepted misses its 250:
//
//   - Start: a session between transactions (no MAIL given, or its
//     transaction finished) that waits for its next command gets
//     reply.ShuttingDown ("421 4.3.2 <myhostname> Service shutting
//     down, closing transmission channel") at once, and so does every
//     session when its current transaction ends. A session inside a
//     transaction goes on.
//   - Close (the deadline, smtpgate_shutdown_timeout): every session that
//     waits for the client, for a command, DATA content, a BDAT chunk or
//     an AUTH response, gets the 421 and ends; a transaction whose content
//     was not complete is dropped (the client had no 250 and retries).
//     A session busy on the server side (a policy check, the hand-off to
//     the next hop) finishes that step and sends its reply first, so a
//     message the next hop accepted gets its 250.
//
// Abort closes every connection still open. The zero value is ready to
// use; a nil *Drain never drains.
type Drain struct {
	state atomic.Int32

	mu   sync.Mutex
	live map[*session]struct{}

	finished, closedIdle, closedAtDeadline atomic.Int64
}

// The states of a Drain.
const (
	serving int32 = iota
	draining
	closing
)

// DrainStats counts how the sessions of a Drain ended since Start.
type DrainStats struct {
	// Live are the sessions open now.
	Live int
	// ClosedIdle got the 421 between transactions, before the deadline;
	// ClosedAtDeadline got it at the deadline.
	ClosedIdle, ClosedAtDeadline int64
	// Finished ended otherwise (QUIT, the client went away, an error).
	Finished int64
}

// Start begins the drain.
func (d *Drain) Start() { d.to(draining) }

// Close is the deadline.
func (d *Drain) Close() { d.to(closing) }

// Abort closes the connection of every session still open; their
// sessions end at their next read or write.
func (d *Drain) Abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for s := range d.live {
		_ = s.wire.raw.Close()
	}
}

// Stats returns the counts.
func (d *Drain) Stats() DrainStats {
	d.mu.Lock()
	live := len(d.live)
	d.mu.Unlock()
	return DrainStats{Live: live, ClosedIdle: d.closedIdle.Load(), ClosedAtDeadline: d.closedAtDeadline.Load(), Finished: d.finished.Load()}
}

// to moves the drain to state and wakes the sessions that must stop now:
// their blocked read returns at once (touch sets the same deadline when
// the session reads next).
func (d *Drain) to(state int32) {
	d.state.Store(state)
	d.mu.Lock()
	defer d.mu.Unlock()
	for s := range d.live {
		s.drain.mu.Lock()
		if d.stops(s) {
			_ = s.wire.raw.SetReadDeadline(time.Now())
		}
		s.drain.mu.Unlock()
	}
}

// stops says whether s must end instead of reading from the client;
// the caller holds s.drain.mu or is s's goroutine.
func (d *Drain) stops(s *session) bool {
	if d == nil {
		return false
	}
	switch d.state.Load() {
	case closing:
		return true
	case draining:
		return s.drain.betweenTx
	}
	return false
}

// closing says whether the deadline has passed.
func (d *Drain) closing() bool { return d != nil && d.state.Load() == closing }

func (d *Drain) add(s *session) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.live == nil {
		d.live = map[*session]struct{}{}
	}
	d.live[s] = struct{}{}
}

// remove forgets s and counts how it ended.
func (d *Drain) remove(s *session) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.live, s)
	d.mu.Unlock()
	switch {
	case s.drain.shutDown && s.drain.shutDownAtDeadline:
		d.closedAtDeadline.Add(1)
	case s.drain.shutDown:
		d.closedIdle.Add(1)
	case d.state.Load() != serving:
		d.finished.Add(1)
	}
}

// waitCommand marks the session as waiting for its next command (on) or
// not; the drain stops a waiting session between transactions at once.
func (s *session) waitCommand(on bool) {
	s.drain.mu.Lock()
	s.drain.betweenTx = on && s.tx == nil
	s.drain.mu.Unlock()
}

// mustStop says whether the drain wants the session to end instead of
// reading its next command.
func (s *session) mustStop() bool {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	return s.srv.Drain.stops(s)
}

// shutdown is the session's last reply when the edge stops.
func (s *session) shutdown() reply.Reply {
	s.drain.shutDown, s.drain.shutDownAtDeadline = true, s.srv.Drain.closing()
	s.log.Info("shutting down: session closed", "at_deadline", s.drain.shutDownAtDeadline, "in_transaction", s.tx != nil)
	return reply.ShuttingDown(s.l.Hostname)
}
