package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// ioBufSize is the size of a session's read and write buffers. The read
// buffer's size is not a limit: readLine and readData take a longer line
// in several pieces, so line_length_limit is exact whatever it is.
const ioBufSize = 4096

// bufPools keep the read and write buffers of sessions that wait for
// their client: an idle session (between commands, on a plaintext
// socket) holds neither, and a busy one takes a pair back when its
// client's next bytes arrive. Ten thousand idle sessions then cost
// their goroutines and session state, not 80 MB of buffers.
type bufPools struct {
	r, w sync.Pool
}

func (p *bufPools) reader(c net.Conn) *bufio.Reader {
	if br, ok := p.r.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, ioBufSize)
}

func (p *bufPools) writer(c net.Conn) *bufio.Writer {
	if bw, ok := p.w.Get().(*bufio.Writer); ok {
		bw.Reset(c)
		return bw
	}
	return bufio.NewWriterSize(c, ioBufSize)
}

// put gives back a session's buffers; the caller drops its references.
// Only empty ones are kept, so that no client's bytes reach another
// session.
func (p *bufPools) put(br *bufio.Reader, bw *bufio.Writer) {
	if br != nil && br.Buffered() == 0 {
		br.Reset(nil)
		p.r.Put(br)
	}
	if bw != nil && bw.Buffered() == 0 {
		bw.Reset(nil)
		p.w.Put(bw)
	}
}

// idle waits, under the read deadline already set, until the client's
// next bytes can be read. On a plain socket it waits with the session's
// buffers given back to the pool (the caller has read all it had and
// flushed all it wrote); elsewhere (TLS, a PROXY protocol connection)
// the next read waits instead. An error is the wait's: a timeout, or the
// connection closed under it.
func (s *session) idle() error {
	sc, ok := s.conn.(syscall.Conn)
	if !ok || !rawWait || s.br.Buffered() > 0 || s.bw.Buffered() > 0 {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		// No raw access: the next read waits instead, as elsewhere.
		return nil
	}
	pools := &s.srv.bufs
	pools.put(s.br, s.bw)
	s.br, s.bw = nil, nil
	err = rc.Read(readable)
	s.br, s.bw = pools.reader(s.conn), pools.writer(s.conn)
	if err != nil {
		return fmt.Errorf("wait for the client: %w", err)
	}
	return nil
}

// offStack runs f on another goroutine, one of w's, and waits for it.
// A goroutine's stack grows to what its deepest call needed and shrinks
// only at a garbage collection, and then only when it uses less than a
// quarter of it: a session goroutine that once asked policy over gRPC,
// or logged through log/slog, would keep an 8 or 16 KiB stack for the
// rest of the session, idle or not. Run on w's goroutines, what needs
// deep stacks uses theirs, and the session's goroutine stays at 4 KiB
// (10,000 idle sessions: 40 MB less).
func offStack[T, U any](w *workers, f func() (T, U)) (T, U) {
	type result struct {
		t T
		u U
	}
	ch := make(chan result, 1)
	w.run(func() {
		t, u := f()
		ch <- result{t, u}
	})
	r := <-ch
	return r.t, r.u
}

// workerIdleTime is how long a worker waits for work before it ends.
const workerIdleTime = 10 * time.Second

// workers run functions for sessions (offStack). A worker keeps the
// stack it grew for the next function, instead of a new goroutine's
// growing one again for each; there are as many as functions ran at
// once lately, each ending after workerIdleTime without work.
type workers struct {
	ch chan func()
}

func newWorkers() *workers { return &workers{ch: make(chan func())} }

// run hands f to an idle worker, or starts a new one for it.
func (w *workers) run(f func()) {
	select {
	case w.ch <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	f()
	t := time.NewTimer(workerIdleTime)
	defer t.Stop()
	for {
		select {
		case f := <-w.ch:
			f()
			t.Reset(workerIdleTime)
		case <-t.C:
			return
		}
	}
}

// offStackHandler writes a session's log records from a goroutine of
// their own, for the same reason as offStack: log/slog's handlers need a
// few KiB of stack, more than the rest of an idle session's goroutine.
// It also keeps the session's attributes (With) as they are and adds
// them to each record, where the handlers below would format them ahead
// for every session, used or not: a few hundred bytes per idle session.
type offStackHandler struct {
	h     slog.Handler
	w     *workers
	attrs []slog.Attr
}

func (o offStackHandler) Enabled(ctx context.Context, l slog.Level) bool { return o.h.Enabled(ctx, l) }

func (o offStackHandler) Handle(ctx context.Context, r slog.Record) error {
	_, err := offStack(o.w, func() (struct{}, error) {
		if len(o.attrs) > 0 {
			nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
			nr.AddAttrs(o.attrs...)
			r.Attrs(func(a slog.Attr) bool {
				nr.AddAttrs(a)
				return true
			})
			r = nr
		}
		return struct{}{}, o.h.Handle(ctx, r)
	})
	return err
}

func (o offStackHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(o.attrs) == 0 {
		return offStackHandler{o.h, o.w, attrs} // the handler owns attrs (slog.Handler)
	}
	return offStackHandler{o.h, o.w, append(o.attrs[:len(o.attrs):len(o.attrs)], attrs...)}
}

func (o offStackHandler) WithGroup(name string) slog.Handler {
	// The attributes so far go outside the group: to the handler below.
	return offStackHandler{h: o.h.WithAttrs(o.attrs).WithGroup(name), w: o.w}
}
