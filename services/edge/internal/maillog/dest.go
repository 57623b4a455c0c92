package maillog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Destination says where a mail log goes, from main.cf: maillog_file
// (smtpgate_maillog_file is its old name), syslog_name, syslog_facility
// and smtpgate_syslog_socket.
type Destination struct {
	// File is maillog_file: a path (appended to, reopened by Reopen),
	// "/dev/stdout" or "/dev/stderr" (written as they are, for journald
	// or a container's log), or empty: syslog.
	File string
	// Socket is the syslog socket (smtpgate_syslog_socket, "/dev/log").
	Socket string
	// Name is syslog_name; Facility syslog_facility ("mail").
	Name, Facility string
	// Host is the host name a file's lines carry (myhostname).
	Host string
}

// facilityMail is syslog's mail facility, syslog_facility's default.
const facilityMail = 2

// facilities are syslog_facility's values, as Postfix's syslog(3) names
// them.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// CheckFacility checks a syslog_facility value.
func CheckFacility(v string) error {
	if _, ok := facilities[strings.ToLower(v)]; !ok {
		return fmt.Errorf("unknown syslog facility %q", v)
	}
	return nil
}

// CheckName checks a syslog_name value: Postfix's programs are named
// "NAME/smtpd", so NAME must not be empty nor hold white space, ':', '['
// or ']' (a '/' is fine: "postfix/submission").
func CheckName(v string) error {
	if v == "" || strings.ContainsAny(v, " \t:[]") {
		return fmt.Errorf("syslog_name %q: want a name without white space, ':', '[' or ']'", v)
	}
	return nil
}

// Open opens the mail log d says. The caller closes it.
func Open(d Destination) (*Log, error) {
	if err := CheckName(d.Name); err != nil {
		return nil, err
	}
	if err := CheckFacility(d.Facility); err != nil {
		return nil, err
	}
	var out io.Writer
	syslog := false
	switch d.File {
	case "":
		if d.Socket == "" {
			return nil, errors.New("syslog: no socket")
		}
		out = &syslogSocket{path: d.Socket, retry: syslogRetry}
		syslog = true
	case "/dev/stdout":
		out = os.Stdout
	case "/dev/stderr":
		out = os.Stderr
	default:
		f := &file{path: d.File}
		if err := f.reopen(); err != nil {
			return nil, err
		}
		out = f
	}
	l := New(out, d.Host, d.Name)
	l.syslog = syslog
	l.facility = facilities[strings.ToLower(d.Facility)]
	return l, nil
}

// Reopen opens a file log's file again by name (logrotate moved it
// away), or reconnects to the syslog socket; lines written meanwhile go
// to the old file. A log on stdout or stderr does nothing.
func (l *Log) Reopen() error {
	if !l.On() {
		return nil
	}
	r, ok := l.out.(interface{ reopen() error })
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return r.reopen()
}

// Close closes the log's file or socket.
func (l *Log) Close() error {
	if !l.On() {
		return nil
	}
	c, ok := l.out.(io.Closer)
	if !ok || l.out == os.Stdout || l.out == os.Stderr {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return c.Close()
}

// file is a log file appended to, opened again by name by reopen. Its
// methods are called with the Log's lock held.
type file struct {
	path string
	f    *os.File
}

func (f *file) Write(p []byte) (int, error) { return f.f.Write(p) }

func (f *file) reopen() error {
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("mail log: %w", err)
	}
	old := f.f
	f.f = nf
	if old != nil {
		return old.Close()
	}
	return nil
}

func (f *file) Close() error { return f.f.Close() }

// syslogSocket sends each line as one datagram to a syslog socket, as
// syslog(3) does: connected at the first line, and again after an error
// (syslogd restarted); a line that cannot be sent is lost. Its methods
// are called with the Log's lock held.
type syslogSocket struct {
	path string
	conn net.Conn
	// failed is when a connection last failed: no new one is tried for
	// retry (syslogRetry) after it, so that a missing syslogd costs no
	// system call per line.
	failed time.Time
	retry  time.Duration
}

// syslogRetry is how long the lines are dropped after the syslog socket
// could not be reached.
const syslogRetry = time.Second

func (s *syslogSocket) Write(p []byte) (int, error) {
	for try := 0; try < 2; try++ {
		if s.conn == nil {
			if !s.failed.IsZero() && time.Since(s.failed) < s.retry {
				return 0, errors.New("syslog: socket unreachable, line lost")
			}
			c, err := net.Dial("unixgram", s.path)
			if err != nil {
				s.failed = time.Now()
				return 0, fmt.Errorf("syslog: %w", err)
			}
			s.conn, s.failed = c, time.Time{}
		}
		// A syslogd that does not read must not stall every session
		// waiting on the log's lock: the line is lost instead.
		_ = s.conn.SetWriteDeadline(time.Now().Add(syslogWriteTimeout))
		n, err := s.conn.Write(p)
		if err == nil {
			return n, nil
		}
		_ = s.conn.Close()
		s.conn = nil
	}
	return 0, errors.New("syslog: line lost")
}

// syslogWriteTimeout bounds the wait for room in syslogd's socket.
const syslogWriteTimeout = 2 * time.Second

func (s *syslogSocket) reopen() error {
	s.failed = time.Time{}
	if s.conn != nil {
		err := s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

func (s *syslogSocket) Close() error { return s.reopen() }
