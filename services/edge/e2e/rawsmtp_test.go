package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"time"
)

// rawSMTP is the one raw SMTP client of these tests: a connection from a
// chosen source address, spoken line by line, for the dialogues net/smtp
// will not speak (commands sent ahead, bytes that are not UTF-8, a reply
// read line by line, a server that refuses at connect). The tests'
// session types (greeted, lifeSession, rawClient, rawSession, the
// differential test's client) are views on it.
type rawSMTP struct {
	conn net.Conn
	tp   *textproto.Conn
}

// dialRaw connects from the source address from to addr (10 s to
// connect); the whole connection must be over within life (0: the
// caller sets deadlines).
func dialRaw(from, addr string, life time.Duration) (*rawSMTP, error) {
	conn, err := dialConn(from, addr, life)
	if err != nil {
		return nil, err
	}
	return &rawSMTP{conn: conn, tp: textproto.NewConn(conn)}, nil
}

// dialConn is the connection under dialRaw, for the tests that speak
// through net/smtp.
func dialConn(from, addr string, life time.Duration) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if life > 0 {
		_ = conn.SetDeadline(time.Now().Add(life))
	}
	return conn, nil
}

// dialListener is dialRaw to a listener of the stack on 127.0.0.1.
func (s *stack) dialListener(from, listener string, life time.Duration) (*rawSMTP, error) {
	return dialRaw(from, fmt.Sprintf("127.0.0.1:%d", s.port[listener]), life)
}

// line reads one line of a reply, without its CRLF.
func (r *rawSMTP) line() (string, error) { return r.tp.ReadLine() }

// lines reads one whole reply, its lines as sent ("250-a", "250 b"); on
// a read error it returns what it read.
func (r *rawSMTP) lines() ([]string, error) {
	var lines []string
	for {
		l, err := r.tp.ReadLine()
		if err != nil {
			return lines, err
		}
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines, nil
		}
	}
}

// last reads one whole reply and returns its last line.
func (r *rawSMTP) last() (string, error) {
	lines, err := r.lines()
	if err != nil {
		return "", err
	}
	return lines[len(lines)-1], nil
}

// lastLine is last without the error: "" when no reply could be read.
func (r *rawSMTP) lastLine() string {
	l, _ := r.last()
	return l
}

// response reads one whole reply as net/textproto does: its code and its
// text, lines joined by "\n"; a code other than expect (0: any) is an
// error.
func (r *rawSMTP) response(expect int) (int, string, error) {
	return r.tp.ReadResponse(expect)
}

// writeLine writes one command line.
func (r *rawSMTP) writeLine(line string) error { return r.tp.PrintfLine("%s", line) }

// write writes bytes as they are.
func (r *rawSMTP) write(s string) error {
	_, err := r.conn.Write([]byte(s))
	return err
}

// handshake starts TLS (after the server's 220 to STARTTLS) and returns
// the certificate the server showed.
func (r *rawSMTP) handshake() ([]byte, error) {
	tc := tls.Client(r.conn, tlsConfig())
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	r.conn, r.tp = tc, textproto.NewConn(tc)
	return tc.ConnectionState().PeerCertificates[0].Raw, nil
}

// close closes the connection.
func (r *rawSMTP) close() error { return r.conn.Close() }
