package smtpd

import (
	"bufio"
	"errors"
	"io"
)

// defaultMemoryLimit is smtpgate_memory_message_limit's default.
const defaultMemoryLimit = 64 << 10

// memoryStart is what a message's memory buffer starts with.
const memoryStart = 4096

// streamBufSize is the write buffer of content streaming to the next hop:
// the hand-off gets it in pieces of this size, not line by line.
const streamBufSize = 16 << 10

// deliverFunc starts handing a message's content to the next hop: first
// is what the edge held in memory. It runs on the session's side and
// returns send, which sends first and then what rest gives, to its end,
// and which may run on a goroutine of its own while the session goes on
// (stream): send touches nothing of the session's. send returns nil only
// when the next hop has accepted the message; rest failing makes it
// fail.
type deliverFunc func(first []byte) (send func(rest io.Reader) error)

// body is one message's content on its way from the client to the next
// hop. Its first Listener.MemoryMessageLimit bytes are held in memory
// while the edge's memory budget has room for them (Memory.holdContent):
// a message that fits is handed off whole at the end of data, once
// policy has seen it end. A longer one streams: once memory is full, the
// hand-off starts on a goroutine of its own (stream) with what was held,
// and the rest goes on to the next hop while the client sends it. The
// next hop sees the content end, and can accept it, only at Deliver,
// after policy's end-of-data check; Close before that abandons the
// hand-off and the next hop drops what it got (RFC 5321 §4.1.1.4). So
// the edge's memory does not grow with the size of a message, and a
// message is no more accepted than before: 250 only after the next
// hop's.
//
// With no deliver (a DISCARDed transaction), content past memory is
// counted and dropped.
//
// Write never fails: once the hand-off has failed, later content is
// dropped, so that the session stays in step with the client; Deliver
// reports the failure once the client's content has all been read.
type body struct {
	m     *Memory
	limit int64
	mem   []byte
	// held is what mem's capacity took from the budget.
	held    int64
	size    int64
	deliver deliverFunc
	st      *stream
}

func newBody(l *Listener, m *Memory, deliver deliverFunc) *body {
	limit := l.MemoryMessageLimit
	if limit <= 0 {
		limit = defaultMemoryLimit
	}
	return &body{m: m, limit: limit, deliver: deliver}
}

func (b *body) Write(p []byte) (int, error) {
	b.size += int64(len(p))
	switch {
	case b.st != nil:
		b.st.write(p)
	case b.grow(len(p)):
		b.mem = append(b.mem, p...)
	case b.deliver != nil:
		b.st = startStream(b.deliver(b.mem))
		b.st.write(p)
	}
	return len(p), nil
}

// grow makes room in memory for n more bytes, within the limit and the
// budget; false: the content must stream.
func (b *body) grow(n int) bool {
	need := int64(len(b.mem)) + int64(n)
	if need > b.limit {
		return false
	}
	if need <= int64(cap(b.mem)) {
		return true
	}
	// Room for a small message at once, then doubling, as
	// bytes.Buffer, but never past the limit.
	c := min(max(need, 2*int64(cap(b.mem)), min(b.limit, memoryStart)), b.limit)
	if !b.m.holdContent(c - b.held) {
		return false
	}
	grown := make([]byte, len(b.mem), c)
	copy(grown, b.mem)
	b.mem, b.held = grown, c
	return true
}

// Size is the number of content bytes written.
func (b *body) Size() int64 { return b.size }

// Streamed reports whether the content went on to the next hop while
// the client sent it.
func (b *body) Streamed() bool { return b.st != nil || b.size > int64(len(b.mem)) }

// First is the content held in memory: all of it, or its start when it
// streamed.
func (b *body) First() []byte { return b.mem }

// Deliver ends the content and returns the hand-off's result: the
// next hop gets the content's end and answers. A message held whole in
// memory is handed off now, on the caller's goroutine.
func (b *body) Deliver() error {
	if b.st == nil {
		if b.deliver == nil {
			return errNoDelivery
		}
		return b.deliver(b.mem)(eof{})
	}
	st := b.st
	b.st = nil
	return st.finish()
}

var errNoDelivery = errors.New("content of a discarded transaction delivered")

// Close abandons a hand-off under way (the next hop never sees the
// content end) and gives the memory back; safe to call more than once
// and after Deliver.
func (b *body) Close() error {
	if b.st != nil {
		b.st.abandon()
		b.st = nil
	}
	b.mem = nil
	b.m.release(b.held)
	b.held = 0
	return nil
}

// eof is an empty reader.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// stream is content on its way to the next hop while the client sends
// it: the hand-off reads it from a pipe on a goroutine of its own, so
// that the client's bytes are read while the last ones are written to
// the next hop, and each waits for the other only when the pipe's
// buffer is full.
type stream struct {
	pw *io.PipeWriter
	w  *bufio.Writer
	// done gets the hand-off's result.
	done chan error
	// broken: a write failed, the hand-off has ended (failed); the rest
	// of the content is dropped.
	broken bool
}

// errAbandoned is what the hand-off reads when the transaction ends
// without its content (a refusal at end of data, a lost client).
var errAbandoned = errors.New("message abandoned before the end of its content")

// errHandoffEnded is what writes get once the hand-off stopped reading.
var errHandoffEnded = errors.New("hand-off ended")

func startStream(deliver func(rest io.Reader) error) *stream {
	pr, pw := io.Pipe()
	st := &stream{pw: pw, w: bufio.NewWriterSize(pw, streamBufSize), done: make(chan error, 1)}
	go func() {
		err := deliver(pr)
		// What the hand-off did not read nobody will: the writer
		// stops waiting.
		_ = pr.CloseWithError(errHandoffEnded)
		st.done <- err
	}()
	return st
}

func (st *stream) write(p []byte) {
	if st.broken {
		return
	}
	if _, err := st.w.Write(p); err != nil {
		st.broken = true
	}
}

// finish ends the content and waits for the next hop's answer.
func (st *stream) finish() error {
	if !st.broken {
		if err := st.w.Flush(); err != nil {
			st.broken = true
		}
	}
	_ = st.pw.Close()
	err := <-st.done
	if err == nil && st.broken {
		// The hand-off cannot succeed without reading the whole
		// content; should it, the message is not taken.
		err = errHandoffEnded
	}
	return err
}

// abandon ends the content with an error and waits for the hand-off to
// end: it fails, and the next hop discards what it got.
func (st *stream) abandon() {
	_ = st.pw.CloseWithError(errAbandoned)
	<-st.done
}
