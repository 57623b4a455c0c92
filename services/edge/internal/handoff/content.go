package handoff

import (
	"bytes"
	"io"
)

// stuffer writes message content (CRLF line ends, not dot-stuffed) to an
// SMTP or LMTP next hop after its 354: dot-stuffed (RFC 5321 §4.5.2, a
// line that starts with "." gets another), in writes of up to its
// buffer's size, straight to the connection. go-smtp's own writer
// (net/textproto's DotWriter) looks at the content byte by byte and
// writes it in pieces of 4 KiB: most of what the edge spent on a big
// message, measured in scripts/bench's scenario f.
//
// The content's final CRLF is held back and goes through go-smtp's
// writer (dot), whose Close then ends the content with ".CRLF" and reads
// the next hop's reply: given nothing, it would end it with
// "CRLF.CRLF", one empty line too many. So conn gets the content and dot
// the end, in that order (Close flushes conn's part first); go-smtp has
// nothing buffered for conn after the 354.
type stuffer struct {
	conn io.Writer
	dot  io.Writer
	buf  []byte
	// bol: the next byte out starts a line. held is the end of the
	// content so far, not out yet: "", a CR (its LF may come next) or a
	// CRLF.
	bol  bool
	held []byte
	err  error
}

func newStuffer(conn, dot io.Writer, buf []byte) *stuffer {
	return &stuffer{conn: conn, dot: dot, buf: buf[:0], bol: true}
}

var (
	crlf = []byte("\r\n")
	cr   = crlf[:1]
	// leadingDot is what a line that starts with a dot gets first.
	leadingDot = []byte{'.'}
)

func (s *stuffer) Write(p []byte) (int, error) {
	n := len(p)
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(s.held) == 1 && p[0] == '\n' {
		// The CR held back and this LF are a CRLF, perhaps the last.
		s.held, p = crlf, p[1:]
		if len(p) == 0 {
			return n, nil
		}
	}
	if len(s.held) > 0 {
		// What was held back is not the end after all.
		s.out(s.held)
		s.bol, s.held = len(s.held) == 2, nil
	}
	var hold []byte
	switch {
	case bytes.HasSuffix(p, crlf):
		hold, p = crlf, p[:len(p)-2]
	case p[len(p)-1] == '\r':
		hold, p = cr, p[:len(p)-1]
	}
	for len(p) > 0 {
		if s.bol && p[0] == '.' {
			s.out(leadingDot)
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.out(p)
			s.bol = false
			break
		}
		s.out(p[:i+1])
		p, s.bol = p[i+1:], true
	}
	s.held = hold
	if s.err != nil {
		return 0, s.err
	}
	return n, nil
}

// out appends p to the buffer, writing the buffer to conn when full.
func (s *stuffer) out(p []byte) {
	for len(p) > 0 && s.err == nil {
		if len(s.buf) == cap(s.buf) {
			s.flush()
			continue
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
}

func (s *stuffer) flush() {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.conn.Write(s.buf)
	}
	s.buf = s.buf[:0]
}

// Close writes what is buffered to conn and the held-back CRLF to dot;
// dot's Close, the caller's, ends the content.
func (s *stuffer) Close() error {
	s.flush()
	if s.err == nil && len(s.held) > 0 {
		_, s.err = s.dot.Write(s.held)
		s.held = nil
	}
	return s.err
}
