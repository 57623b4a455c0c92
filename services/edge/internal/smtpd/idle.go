package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// ioBufSize is the size of a session's read and write buffers. The read
// buffer's size is not a limit: readLine and readData take a longer line
// in several pieces, so line_length_limit is exact whatever it is.
const ioBufSize = 4096

// contentBufSize is the read buffer of a session while its client sends
// DATA's content (wireConn.widen).
const contentBufSize = 32 << 10

// bufPools keep the read and write buffers of sessions that wait for
// their client: an idle session (between commands, on a plaintext
// socket) holds neither, and a busy one takes a pair back when its
// client's next bytes arrive. Ten thousand idle sessions then cost
// their goroutines and session state, not 80 MB of buffers. raw holds
// the buffers idle reads the client's next bytes into (prefetch).
type bufPools struct {
	r, w, raw sync.Pool
	// wide keeps the read buffers of content (wireConn.widen).
	wide sync.Pool
}

func (p *bufPools) wideReader(r io.Reader) *bufio.Reader {
	if br, ok := p.wide.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, contentBufSize)
}

func (p *bufPools) reader(r io.Reader) *bufio.Reader {
	if br, ok := p.r.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, ioBufSize)
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
		if br.Size() >= contentBufSize {
			p.wide.Put(br)
		} else {
			p.r.Put(br)
		}
	}
	if bw != nil && bw.Buffered() == 0 {
		bw.Reset(nil)
		p.w.Put(bw)
	}
}

func (p *bufPools) rawBuf() *[ioBufSize]byte {
	if b, ok := p.raw.Get().(*[ioBufSize]byte); ok {
		return b
	}
	return new([ioBufSize]byte)
}

// idle waits, under the read deadline already set, until the client's
// next bytes can be read. On a plain socket it waits with the session's
// buffers given back to the pool (the caller has read all it had and
// flushed all it wrote), and the read(2) that finds the bytes there is
// the one that takes them (prefetch): a command already sent costs one
// system call, not a peek and a read. Elsewhere (TLS, a PROXY protocol
// connection) the next read waits instead. An error is the wait's: a
// timeout, or the connection closed under it.
func (w *wireConn) idle() error {
	if !rawWait || w.br.Buffered() > 0 || w.bw.Buffered() > 0 {
		return nil
	}
	sc, ok := w.conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		// No raw access: the next read waits instead, as elsewhere.
		return nil
	}
	f := &w.front
	if f.fill == nil {
		// Made once: a method value passed to RawConn.Read would be
		// allocated for every wait.
		f.w, f.fill = w, f.readFd
	}
	pools := w.pools
	pools.put(w.br, w.bw)
	w.br, w.bw = nil, nil
	err = rc.Read(f.fill)
	w.br, w.bw = pools.reader(f), pools.writer(w.conn)
	if err != nil {
		f.release()
		return fmt.Errorf("wait for the client: %w", err)
	}
	return nil
}

// prefetch sits between a plain connection and the session's reader
// after idle: it hands out what idle's read(2) took, then reads the
// connection. The buffer is taken from the pool for that read(2) only,
// given back at once when there was nothing to read, and as soon as the
// session's reader has taken its bytes (its first fill takes them all:
// it is empty after idle and as large as the buffer). So an idle session
// holds none, and Buffered on the session's reader says what the
// client sent ahead exactly as when it read the socket itself
// (reject_unauth_pipelining). It is part of the session, kept small:
// 10,000 idle sessions hold 10,000 of them.
type prefetch struct {
	w *wireConn
	// fill is readFd as a func value, RawConn.Read's callback.
	fill func(fd uintptr) bool
	// buf[off:end] are the bytes read and not yet handed out.
	buf      *[ioBufSize]byte
	off, end uint16
	// failed is what the read(2) said instead of bytes, handed out once
	// buf is empty: 0 for nothing, failedEOF, or its errno (they are
	// small numbers on every unix). Small fields: the session's size
	// stays in its allocation class.
	failed uint32
}

// failedEOF in prefetch.failed: the read(2) found the end of file.
const failedEOF = 1 << 31

// readFd is RawConn.Read's callback: it reads what fd has, and says
// false (the runtime's poller waits, under the read deadline, and calls
// it again) when there is nothing yet.
func (f *prefetch) readFd(fd uintptr) bool {
	pools := f.w.pools
	b := pools.rawBuf()
	for {
		n, err := readRaw(fd, b[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			pools.raw.Put(b)
			return false
		case err != nil:
			pools.raw.Put(b)
			errno, ok := err.(syscall.Errno)
			if !ok || errno == 0 {
				errno = syscall.EIO
			}
			f.failed = uint32(errno)
			return true
		case n == 0:
			pools.raw.Put(b)
			f.failed = failedEOF
			return true
		}
		f.buf, f.off, f.end = b, 0, uint16(n)
		return true
	}
}

// Read hands out the bytes idle read, then its end of file or error,
// then reads the connection.
func (f *prefetch) Read(p []byte) (int, error) {
	switch {
	case f.buf != nil:
		n := copy(p, f.buf[f.off:f.end])
		f.off += uint16(n)
		if f.off == f.end {
			f.release()
		}
		return n, nil
	case f.failed == failedEOF:
		f.failed = 0
		return 0, io.EOF
	case f.failed != 0:
		// As the conn's own Read would have said it.
		c := f.w.conn
		err := &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", syscall.Errno(f.failed))}
		f.failed = 0
		return 0, err
	}
	return f.w.conn.Read(p)
}

// release gives the buffer back; what it held is dropped.
func (f *prefetch) release() {
	if f.buf != nil {
		f.w.pools.raw.Put(f.buf)
		f.buf, f.off, f.end = nil, 0, 0
	}
}

// maxDiscard bounds what discardPending reads.
const maxDiscard = 16 * ioBufSize

// discardPending reads and drops, without waiting, what the client sent
// that the session has not read, before the server closes a session the
// client did not end with QUIT (a 421, too many errors). Closing a
// socket with unread input sends a reset instead of a FIN, and the reset
// may destroy the last reply in the client's receive queue. On a plain
// socket only, as idle; a TLS session's close sends its close_notify.
func (w *wireConn) discardPending() {
	if !rawWait {
		return
	}
	sc, ok := w.conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	// The read deadline may have passed (the 421 of a timeout or of a
	// drain); the reads below never wait.
	_ = w.conn.SetReadDeadline(time.Time{})
	b := w.pools.rawBuf()
	defer w.pools.raw.Put(b)
	_ = rc.Read(func(fd uintptr) bool {
		for read := 0; read < maxDiscard; {
			n, err := readRaw(fd, b[:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n == 0 {
				break
			}
			read += n
		}
		return true
	})
}

// offStack runs f on another goroutine, one of w's, and waits for it.
// A goroutine's stack grows to what its deepest call needed and shrinks
// only at a garbage collection, and then only when it uses less than a
// quarter of it: a session goroutine that once asked policy over gRPC,
// or logged through log/slog, would keep an 8 or 16 KiB stack for the
// rest of the session, idle or not. Run on w's goroutines, what needs
// deep stacks uses theirs, and the session's goroutine stays at 4 KiB
// (10,000 idle sessions: 40 MB less). offStack costs a channel and a
// closure per call: what runs for every command goes through
// session.offStack and offStackHandler instead, whose jobs are reused.
func offStack[T, U any](w *workers, f func() (T, U)) (T, U) {
	type result struct {
		t T
		u U
	}
	ch := make(chan result, 1)
	w.run(funcJob(func() {
		t, u := f()
		ch <- result{t, u}
	}))
	r := <-ch
	return r.t, r.u
}

// workerIdleTime is how long a worker waits for work before it ends.
const workerIdleTime = 10 * time.Second

// A job is what a worker runs for a session.
type job interface{ run() }

// funcJob runs a function (offStack's jobs).
type funcJob func()

func (f funcJob) run() { f() }

// workers run jobs for sessions (offStack). A worker keeps the stack it
// grew for the next job, instead of a new goroutine's growing one again
// for each; there are as many as jobs ran at once lately, each ending
// after workerIdleTime without work. commands and records keep the jobs
// of session.offStack and offStackHandler for reuse (*commandJob,
// *logJob): a job is needed only while a session waits for it, so a
// pool, not every session, holds them.
type workers struct {
	ch       chan job
	commands sync.Pool
	records  sync.Pool
}

func newWorkers() *workers { return &workers{ch: make(chan job)} }

// run hands j to an idle worker, or starts a new one for it.
func (w *workers) run(j job) {
	select {
	case w.ch <- j:
	default:
		go w.work(j)
	}
}

func (w *workers) work(j job) {
	j.run()
	t := time.NewTimer(workerIdleTime)
	defer t.Stop()
	for {
		select {
		case j := <-w.ch:
			j.run()
			t.Reset(workerIdleTime)
		case <-t.C:
			return
		}
	}
}

// commandJob is a session's command line, or its connect stage's check,
// run on a worker; done gets a value when r and ok are set.
type commandJob struct {
	s       *session
	ctx     context.Context
	line    string
	connect bool
	r       reply.Reply
	ok      bool
	done    chan struct{}
}

func (j *commandJob) run() {
	if j.connect {
		j.r, j.ok = j.s.connectCheck(j.ctx)
	} else {
		j.r, j.ok = j.s.command(j.ctx, j.line), true
	}
	j.done <- struct{}{}
}

// offStack runs the command line on a worker (connect: the connect
// stage's check instead) and returns its reply; ok is connectCheck's.
// While it runs, the session's records are written by the worker itself
// (offStackHandler): the session's goroutine only waits.
func (s *session) offStack(ctx context.Context, line string, connect bool) (r reply.Reply, ok bool) {
	w := s.srv.workers()
	j, _ := w.commands.Get().(*commandJob)
	if j == nil {
		j = &commandJob{done: make(chan struct{}, 1)}
	}
	j.s, j.ctx, j.line, j.connect = s, ctx, line, connect
	s.onWorker.Store(true)
	w.run(j)
	<-j.done
	s.onWorker.Store(false)
	r, ok = j.r, j.ok
	j.s, j.ctx, j.line, j.r = nil, nil, "", reply.Reply{}
	w.commands.Put(j)
	return r, ok
}

// offStackHandler writes a session's log records from a goroutine of
// their own, for the same reason as offStack: log/slog's handlers need a
// few KiB of stack, more than the rest of an idle session's goroutine.
// A record logged while the session's command runs on a worker
// (onWorker) is written there and then: that goroutine's stack is not
// the session's. The handler also keeps the session's attributes (With)
// as they are and adds them to each record, where the handlers below
// would format them ahead for every session, used or not: a few hundred
// bytes per idle session.
type offStackHandler struct {
	h        slog.Handler
	w        *workers
	attrs    []slog.Attr
	onWorker *atomic.Bool // nil: never
}

func (o *offStackHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return o.h.Enabled(ctx, l)
}

// Handle is kept small: on the session's goroutine, its frame and
// handOff's are all the logging that stack holds.
func (o *offStackHandler) Handle(ctx context.Context, r slog.Record) error {
	if o.onWorker != nil && o.onWorker.Load() {
		return o.handle(ctx, &r)
	}
	return o.handOff(ctx, &r)
}

// handOff has a worker write *r, and waits.
func (o *offStackHandler) handOff(ctx context.Context, r *slog.Record) error {
	j, _ := o.w.records.Get().(*logJob)
	if j == nil {
		j = &logJob{done: make(chan struct{}, 1)}
	}
	j.o, j.ctx, j.r = o, ctx, *r
	o.w.run(j)
	<-j.done
	err := j.err
	j.o, j.ctx, j.r, j.err = nil, nil, slog.Record{}, nil
	o.w.records.Put(j)
	return err
}

// handle writes *r with the session's attributes first.
func (o *offStackHandler) handle(ctx context.Context, r *slog.Record) error {
	if len(o.attrs) == 0 {
		return o.h.Handle(ctx, *r)
	}
	// The attributes are gathered first and added at once: the record
	// then grows its storage once, not attribute by attribute.
	var buf [16]slog.Attr
	attrs := append(buf[:0], o.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(attrs...)
	return o.h.Handle(ctx, nr)
}

// logJob is a record offStackHandler has a worker write.
type logJob struct {
	o    *offStackHandler
	ctx  context.Context
	r    slog.Record
	err  error
	done chan struct{}
}

func (j *logJob) run() {
	j.err = j.o.handle(j.ctx, &j.r)
	j.done <- struct{}{}
}

func (o *offStackHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *o
	if len(o.attrs) == 0 {
		c.attrs = attrs // the handler owns attrs (slog.Handler)
	} else {
		c.attrs = append(o.attrs[:len(o.attrs):len(o.attrs)], attrs...)
	}
	return &c
}

func (o *offStackHandler) WithGroup(name string) slog.Handler {
	// The attributes so far go outside the group: to the handler below.
	return &offStackHandler{h: o.h.WithAttrs(o.attrs).WithGroup(name), w: o.w, onWorker: o.onWorker}
}
