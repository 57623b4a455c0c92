// Package maillog writes the edge's mail log in Postfix's words, with
// Postfix's program names ("postfix/smtpd[PID]", "postfix/cleanup",
// "postfix/qmgr", "postfix/smtp", as syslog_name says), so that tools made
// for Postfix's maillog (pflogsumm, fail2ban's postfix filters) read it
// unchanged. Lines go to syslog over a Unix datagram socket (/dev/log), to
// a file (reopened by Reopen, for logrotate), or to any writer (stdout or
// stderr for journald). It trusts its callers to pass printable text
// where it does not escape.
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
// (or a zero one) writes nothing. Logs made by Named share one output.
type Log struct {
	*sink
	// name is syslog_name: the programs are name/smtpd, name/qmgr, ...;
	// smtpd's own lines use smtpdName when it is set (Named).
	name, smtpdName string
}

// sink is where a Log's lines go, shared by the Logs Named makes.
type sink struct {
	mu  sync.Mutex
	out io.Writer
	// syslog: out is a syslog socket; lines are "<PRI>Mmm dd hh:mm:ss
	// tag: msg", without the host (syslogd adds it) and without a
	// newline, as syslog(3) sends them.
	syslog   bool
	facility int
	host     string
	pid      int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	buf []byte
}

// Named returns a log writing to l's output whose smtpd lines are under
// syslog_name name (a master.cf -o syslog_name=postfix/submission
// override; the other programs' lines keep l's name, as Postfix's
// cleanup, qmgr and smtp have main.cf's); l itself when the name is l's
// or empty.
func (l *Log) Named(name string) *Log {
	if l == nil || name == "" || name == l.name {
		return l
	}
	return &Log{sink: l.sink, name: l.name, smtpdName: name}
}

// Severities (RFC 5424) of the lines: Postfix's msg_info and msg_warn.
const (
	severityWarning = 4
	severityInfo    = 6
)

// Programs: the Postfix daemons whose lines the edge writes.
const (
	progSmtpd   = "smtpd"
	progCleanup = "cleanup"
	progQmgr    = "qmgr"
)

// New returns a log writing lines in a file's format ("Mmm dd hh:mm:ss
// host name/program[pid]: msg\n") to w, host being the syslog host name
// ("localhost" when empty) and name syslog_name ("postfix" when empty).
func New(w io.Writer, host, name string) *Log {
	if host == "" {
		host = "localhost"
	}
	if name == "" {
		name = DefaultName
	}
	return &Log{sink: &sink{out: w, host: host, pid: os.Getpid(), facility: facilityMail}, name: name}
}

// DefaultName is syslog_name's default: Postfix's, so that the tools'
// stock patterns ("postfix/smtpd[...]") match.
const DefaultName = "postfix"

// Printf writes one smtpd line: the header, then the message.
func (l *Log) Printf(format string, args ...any) {
	l.line(progSmtpd, severityInfo, false, func(b []byte) []byte { return fmt.Appendf(b, format, args...) })
}

// line writes one line of program prog: the header, then what write
// appends to it, made printable (escape) when escaped is set. A nil Log
// writes nothing; lines of concurrent sessions do not mix.
func (l *Log) line(prog string, severity int, escaped bool, write func(b []byte) []byte) {
	if !l.On() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.begin(prog, severity)
	from := len(l.buf)
	l.buf = write(l.buf)
	if !escaped {
		from = len(l.buf)
	}
	l.buf = escape(l.buf, from)
	if !l.syslog {
		l.buf = append(l.buf, '\n')
	}
	// A log that cannot be written loses the line, as syslog(3) does;
	// the mail is not refused for it.
	_, _ = l.out.Write(l.buf)
}

// begin starts a line in l.buf with its header; l.mu is held.
func (l *Log) begin(prog string, severity int) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	l.buf = l.buf[:0]
	if l.syslog {
		l.buf = append(l.buf, '<')
		l.buf = strconv.AppendInt(l.buf, int64(l.facility<<3|severity), 10)
		l.buf = append(l.buf, '>')
	}
	// RFC 3164's timestamp, as syslogd writes Postfix's lines.
	l.buf = now().AppendFormat(l.buf, time.Stamp)
	l.buf = append(l.buf, ' ')
	if !l.syslog {
		l.buf = append(append(l.buf, l.host...), ' ')
	}
	name := l.name
	if prog == progSmtpd && l.smtpdName != "" {
		name = l.smtpdName
	}
	l.buf = append(append(append(l.buf, name...), '/'), prog...)
	l.buf = append(strconv.AppendInt(append(l.buf, '['), int64(l.pid), 10), "]: "...)
}

// escape makes b[from:] printable as Go quotes a string (control
// characters, non-ASCII, '"' and '\\' escaped); b is returned as it is
// when there is nothing to escape.
func escape(b []byte, from int) []byte {
	for i := from; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q := strconv.Quote(string(b[from:]))
			return append(b[:from], q[1:len(q)-1]...)
		}
	}
	return b
}

// Peer is the client as Postfix's smtpd names it, "Name[Addr]"; Name is
// "unknown" when the name is not known.
type Peer struct{ Name, Addr string }

func (p Peer) appendTo(b []byte) []byte {
	b = append(b, p.Name...)
	b = append(b, '[')
	b = append(b, p.Addr...)
	return append(b, ']')
}

// Connect logs a new connection: "connect from name[addr]".
func (l *Log) Connect(client Peer) {
	l.line(progSmtpd, severityInfo, false, func(b []byte) []byte { return client.appendTo(append(b, "connect from "...)) })
}

// Disconnect logs the end of a connection with its commands:
// "disconnect from name[addr] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4".
func (l *Log) Disconnect(client Peer, cmds *Commands) {
	l.line(progSmtpd, severityInfo, false, func(b []byte) []byte {
		b = client.appendTo(append(b, "disconnect from "...))
		return cmds.appendTo(append(b, ' '))
	})
}

// Reject is a refusal as Postfix's smtpd logs it.
type Reject struct {
	// QueueID is the transaction's queue id, "" for NOQUEUE (no
	// recipient accepted yet).
	QueueID string
	// Action is "reject" when empty, or "reject_warning" (a refusal
	// warn_if_reject turned into a warning).
	Action string
	// Stage is the stage as Postfix names it: "CONNECT", "RCPT",
	// "EHLO", "END-OF-MESSAGE"...
	Stage  string
	Client Peer
	// Reason is the reply's text ("554 5.7.1 <x@example.net>: Relay
	// access denied") or what was wrong ("bare <LF> received").
	Reason string
	// Envelope: a transaction was under way; its sender From (which may
	// be empty) is logged, and its recipient To when not empty.
	Envelope bool
	From, To string
	// Proto is "SMTP" or "ESMTP"; Helo, when not empty, the HELO/EHLO
	// name.
	Proto, Helo string
}

// Reject logs a refusal: "NOQUEUE: reject: RCPT from
// unknown[192.0.2.1]: 554 5.7.1 <x@example.net>: Relay access denied;
// from=<a@example.org> to=<x@example.net> proto=ESMTP
// helo=<client.example.net>", escaped as printable text.
func (l *Log) Reject(r Reject) { l.line(progSmtpd, severityInfo, true, r.appendTo) }

// appendTo appends the refusal's message, without the syslog header.
func (r *Reject) appendTo(b []byte) []byte {
	if r.QueueID == "" {
		b = append(b, "NOQUEUE"...)
	} else {
		b = append(b, r.QueueID...)
	}
	b = append(b, ": "...)
	if r.Action == "" {
		b = append(b, "reject"...)
	} else {
		b = append(b, r.Action...)
	}
	b = append(b, ": "...)
	b = append(b, r.Stage...)
	b = r.Client.appendTo(append(b, " from "...))
	b = append(b, ": "...)
	b = append(b, r.Reason...)
	b = append(b, ';')
	if r.Envelope {
		b = append(append(append(b, " from=<"...), r.From...), '>')
		if r.To != "" {
			b = append(append(append(b, " to=<"...), r.To...), '>')
		}
	}
	b = append(append(b, " proto="...), r.Proto...)
	if r.Helo != "" {
		b = append(append(append(b, " helo=<"...), r.Helo...), '>')
	}
	return b
}

// Client logs what Postfix's smtpd logs when it creates a queue file, at
// the first recipient accepted: "QUEUEID: client=name[addr]", with
// ", sasl_method=PLAIN, sasl_username=user" for an authenticated client
// (saslUsername not empty); escaped as printable text.
func (l *Log) Client(queueID string, client Peer, saslMethod, saslUsername string) {
	l.line(progSmtpd, severityInfo, true, func(b []byte) []byte {
		b = client.appendTo(append(append(b, queueID...), ": client="...))
		if saslUsername != "" {
			b = append(append(b, ", sasl_method="...), saslMethod...)
			b = append(append(b, ", sasl_username="...), saslUsername...)
		}
		return b
	})
}

// Queued logs a message handed to the next hop as Postfix's qmgr logs
// one entering the active queue: "QUEUEID: from=<sender>, size=1234,
// nrcpt=1 (queue active)", the sender escaped as printable text.
func (l *Log) Queued(queueID, sender string, size int64, nrcpt int) {
	l.line(progQmgr, severityInfo, false, func(b []byte) []byte {
		b = append(append(b, queueID...), ": from=<"...)
		from := len(b)
		b = escape(append(b, sender...), from)
		b = strconv.AppendInt(append(b, ">, size="...), size, 10)
		b = strconv.AppendInt(append(b, ", nrcpt="...), int64(nrcpt), 10)
		return append(b, " (queue active)"...)
	})
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
	return string(c.appendTo(make([]byte, 0, 96)))
}

func (c *Commands) appendTo(b []byte) []byte {
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
	return appendCount(append(b, "commands"...), ok, total)
}

func appendCount(b []byte, ok, total int) []byte {
	b = append(b, '=')
	if ok != total {
		b = append(strconv.AppendInt(b, int64(ok), 10), '/')
	}
	return strconv.AppendInt(b, int64(total), 10)
}

// On reports whether the log writes anywhere: the caller may skip the
// work of making a line.
func (l *Log) On() bool { return l != nil && l.sink != nil && l.out != nil }
