package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// wireConn is the session's connection, below the SMTP session: the socket
// (and the TLS over it after STARTTLS), the read and write buffers taken
// from the server's pools and given back while the client is idle, and
// the prefetch that reads the client's next bytes (idle.go). It knows
// lines and replies, not SMTP; the session reads and writes through
// session.readLine, send and flush, which add the session's limits,
// deadlines and logging.
type wireConn struct {
	// conn is what the session speaks through: raw, or TLS over it.
	conn net.Conn
	// raw is the accepted connection; Drain and stress set its read
	// deadline from other goroutines.
	raw   net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	pools *bufPools
	// front is what br reads a plain conn through after idle.
	front prefetch
}

func (w *wireConn) init(c net.Conn, pools *bufPools) {
	w.raw, w.pools = c, pools
	w.setConn(c)
}

// setConn makes c the connection spoken through (TLS after STARTTLS),
// with buffers of its own.
func (w *wireConn) setConn(c net.Conn) {
	w.pools.put(w.br, w.bw)
	w.conn = c
	w.br, w.bw = w.pools.reader(c), w.pools.writer(c)
}

// widen gives the session a read buffer of contentBufSize while its
// client sends message content, which comes in bulk: a read(2) takes up
// to 32 KiB of it, where the session's own buffer takes 4 KiB. What that
// buffer held is read first. narrow gives the small buffer back when the
// content has been read.
func (w *wireConn) widen() {
	if w.br.Size() >= contentBufSize {
		return
	}
	w.br = w.swap(w.br, w.pools.wideReader)
}

// narrow ends widen: the session reads through a small buffer again,
// unless the client sent more ahead than it holds (commands pipelined
// after the content); the wide one then stays until the session next
// waits for its client (idle), or ends.
func (w *wireConn) narrow() {
	if w.br.Size() < contentBufSize || w.br.Buffered() > ioBufSize {
		return
	}
	w.br = w.swap(w.br, w.pools.reader)
}

// swap returns a reader made by make over the connection, holding what
// old held, and gives old back. It reads the connection through front,
// which hands out first what idle read, if anything is left of it (old
// took it all at its first fill: nothing is).
func (w *wireConn) swap(old *bufio.Reader, make func(io.Reader) *bufio.Reader) *bufio.Reader {
	w.front.w = w
	src := &w.front
	n := old.Buffered()
	if n == 0 {
		w.pools.put(old, nil)
		return make(src)
	}
	held, _ := old.Peek(n)
	held = bytes.Clone(held)
	_, _ = old.Discard(n)
	w.pools.put(old, nil)
	br := make(io.MultiReader(bytes.NewReader(held), src))
	// The held bytes go into br's buffer now, so that Buffered says
	// they are there (idle waits for the client only when it is empty).
	_, _ = br.Peek(n)
	return br
}

// close closes the connection and gives the buffers back.
func (w *wireConn) close() {
	_ = w.conn.Close()
	w.pools.put(w.br, w.bw)
	w.br, w.bw = nil, nil
}

// write puts r in the write buffer, formatted straight into its free
// space (or a new slice, when a long reply does not fit; Write copies
// it then).
func (w *wireConn) write(r reply.Reply) {
	_, _ = w.bw.Write(r.AppendTo(w.bw.AvailableBuffer()))
}

// flush writes what is buffered, within timeout (none when 0).
func (w *wireConn) flush(timeout time.Duration) error {
	if timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	return w.bw.Flush()
}

// pending is how many bytes the client sent that the session has not
// read yet.
func (w *wireConn) pending() int { return w.br.Buffered() }

// peekPending returns up to n bytes the client already sent.
func (w *wireConn) peekPending(n int) []byte {
	n = min(n, w.br.Buffered())
	b, _ := w.br.Peek(n)
	return b
}

// spokeFirst reports whether the client's bytes are there already,
// without waiting and without reading them: buffered, or on a plain
// socket (recv(2) with MSG_PEEK). A connection the edge cannot peek at
// without reading (a PROXY protocol connection) says false.
func (w *wireConn) spokeFirst() bool {
	if w.br.Buffered() > 0 {
		return true
	}
	sc, ok := w.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	if err := rc.Control(func(fd uintptr) { ready = peekRaw(fd) }); err != nil || !ready {
		return false
	}
	return true
}

// sendsWithin waits up to d for the client's first bytes and reports
// whether they came; they stay in the read buffer.
func (w *wireConn) sendsWithin(d time.Duration) bool {
	_ = w.conn.SetReadDeadline(time.Now().Add(d))
	_, err := w.br.Peek(1)
	_ = w.conn.SetReadDeadline(time.Time{})
	return err == nil
}

var errLineTooLong = errors.New("command line too long")

// readLine reads one line of at most limit bytes, without its line end;
// a longer one is consumed to its end and reported as errLineTooLong.
// bareLF says the line ended in a bare LF, not CRLF.
func (w *wireConn) readLine(limit int) (line string, bareLF bool, err error) {
	// Most lines are in the buffer whole: one string, made from the
	// buffer itself.
	chunk, err := w.br.ReadSlice('\n')
	if err == nil && len(chunk) <= limit+2 {
		return string(bytes.TrimRight(chunk, "\r\n")), len(chunk) < 2 || chunk[len(chunk)-2] != '\r', nil
	}
	var b []byte
	tooLong := false
	for {
		if !tooLong {
			b = append(b, chunk...)
			if len(b) > limit+2 {
				tooLong, b = true, nil
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			chunk, err = w.br.ReadSlice('\n')
			continue
		}
		if err != nil {
			return "", false, err
		}
		break
	}
	if tooLong {
		return "", false, errLineTooLong
	}
	return strings.TrimRight(string(b), "\r\n"), len(b) < 2 || b[len(b)-2] != '\r', nil
}
