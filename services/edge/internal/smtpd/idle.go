package smtpd

import (
	"bufio"
	"net"
	"sync"
	"syscall"
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
	if !ok || s.br.Buffered() > 0 || s.bw.Buffered() > 0 {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil //nolint:nilerr // the next read waits instead
	}
	pools := &s.srv.bufs
	pools.put(s.br, s.bw)
	s.br, s.bw = nil, nil
	err = rc.Read(readable)
	s.br, s.bw = pools.reader(s.conn), pools.writer(s.conn)
	return err
}

// readable reports whether fd has bytes to read, an end of file or an
// error, without taking any of them: a RawConn.Read callback that lets
// the runtime's poller wait while it says false.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EINTR
}
