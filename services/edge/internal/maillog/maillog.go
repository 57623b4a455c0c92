// Package maillog writes the edge's mail log in Postfix's words and
// syslog's line format ("Mon DD HH:MM:SS host smtpgate/smtpd[PID]: ..."),
// so that tools made for Postfix's maillog (pflogsumm, fail2ban's postfix
// filters) can read it. It trusts its callers to pass printable text.
package maillog

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Log is a mail log. Its methods are safe for concurrent use; a nil *Log
// writes nothing.
type Log struct {
	mu   sync.Mutex
	w    io.Writer
	host string
	pid  int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	buf []byte
	// tag is " host smtpgate/smtpd[pid]: ", made once by New.
	tag string
}

// New returns a log writing to w with host as the syslog host name
// ("localhost" when empty).
func New(w io.Writer, host string) *Log {
	if host == "" {
		host = "localhost"
	}
	l := &Log{w: w, host: host, pid: os.Getpid()}
	l.tag = fmt.Sprintf(" %s smtpgate/smtpd[%d]: ", l.host, l.pid)
	return l
}

// Printf writes one line: the syslog header, then the message.
func (l *Log) Printf(format string, args ...any) {
	if l == nil {
		return
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// RFC 3164's timestamp, as syslogd writes Postfix's lines.
	l.buf = now().AppendFormat(l.buf[:0], time.Stamp)
	if l.tag != "" {
		l.buf = append(l.buf, l.tag...)
	} else {
		l.buf = fmt.Appendf(l.buf, " %s smtpgate/smtpd[%d]: ", l.host, l.pid)
	}
	l.buf = fmt.Appendf(l.buf, format, args...)
	l.buf = append(l.buf, '\n')
	_, _ = l.w.Write(l.buf)
}

// Commands counts a session's commands for the disconnect line, in the
// order Postfix's smtpd prints them.
type Commands struct {
	// uint32, not int: every session holds these, idle or not.
	ok, total [len(commandOrder)]uint32
}

// commandOrder is Postfix smtpd's command table order; "unknown" is any
// other verb.
var commandOrder = [...]string{"helo", "ehlo", "xclient", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

// Count records one command (its upper-case verb) and whether its reply
// was positive.
func (c *Commands) Count(verb string, ok bool) {
	i := len(commandOrder) - 1
	for j, name := range commandOrder[:len(commandOrder)-1] {
		if len(name) == len(verb) && equalFold(name, verb) {
			i = j
			break
		}
	}
	c.total[i]++
	if ok {
		c.ok[i]++
	}
}

// Quit tells whether the client sent QUIT.
func (c *Commands) Quit() bool { return c.total[quitIndex] > 0 }

// quitIndex is QUIT's place in commandOrder.
const quitIndex = 13

func equalFold(lower, s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if b != lower[i] {
			return false
		}
	}
	return true
}

// String is the disconnect line's tail: "ehlo=1 mail=1 rcpt=0/1 quit=1
// commands=3/4", a command written ok/total when some of it failed.
func (c *Commands) String() string {
	b := make([]byte, 0, 96)
	ok, total := 0, 0
	for i, name := range commandOrder {
		if c.total[i] == 0 {
			continue
		}
		b = appendCount(append(b, name...), int(c.ok[i]), int(c.total[i]))
		b = append(b, ' ')
		ok += int(c.ok[i])
		total += int(c.total[i])
	}
	return string(appendCount(append(b, "commands"...), ok, total))
}

func appendCount(b []byte, ok, total int) []byte {
	b = append(b, '=')
	if ok != total {
		b = append(strconv.AppendInt(b, int64(ok), 10), '/')
	}
	return strconv.AppendInt(b, int64(total), 10)
}
