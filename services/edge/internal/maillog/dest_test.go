package maillog

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFileReopen: after the file is moved away (logrotate), Reopen makes
// the log write to a new file of the same name; the old one keeps what
// was written before.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	l, err := Open(Destination{File: path, Name: "postfix", Facility: "mail", Host: "mx"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Removed("AAAAAAAAAAAA")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Removed("BBBBBBBBBBBB") // still the old file: not reopened yet
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Removed("CCCCCCCCCCCC")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "AAAAAAAAAAAA: removed") || !strings.Contains(string(old), "BBBBBBBBBBBB: removed") || strings.Contains(string(old), "CCCC") {
		t.Errorf("rotated file:\n%s", old)
	}
	if !strings.HasSuffix(string(cur), " mx postfix/qmgr["+strconv.Itoa(os.Getpid())+"]: CCCCCCCCCCCC: removed\n") || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file:\n%s", cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file's mode: %v %v", fi.Mode(), err)
	}
}

// TestSyslogSocket: a syslog log sends each line as one datagram in
// syslog(3)'s form, "<PRI>Mmm dd hh:mm:ss name/prog[pid]: msg", with
// syslog_facility's priority; it reconnects after syslogd comes back.
func TestSyslogSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	listen := func() *net.UnixConn {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := listen()
	l, err := Open(Destination{Socket: sock, Name: "postfix-out", Facility: "local3", Host: "mx"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Now = func() time.Time { return time.Date(2026, 3, 14, 5, 6, 7, 0, time.UTC) }
	read := func(c *net.UnixConn) string {
		buf := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	pid := strconv.Itoa(os.Getpid())
	l.SASLFailed(Peer{Name: "unknown", Addr: "192.0.2.7"}, "LOGIN", "authentication failure")
	// local3 (19) * 8 + warning (4)
	if got, want := read(srv), "<156>Mar 14 05:06:07 postfix-out/smtpd["+pid+"]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: authentication failure"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// syslogd restarts: a new socket of the same name.
	srv.Close()
	os.Remove(sock)
	srv = listen()
	defer srv.Close()
	l.Removed("0123456789AB")
	if got, want := read(srv), "<158>Mar 14 05:06:07 postfix-out/qmgr["+pid+"]: 0123456789AB: removed"; got != want {
		t.Errorf("after restart: got  %q\nwant %q", got, want)
	}
}

func TestOpenChecks(t *testing.T) {
	for _, d := range []Destination{
		{Socket: "/dev/log", Name: "postfix", Facility: "nope"},
		{Socket: "/dev/log", Name: "post fix", Facility: "mail"},
		{Socket: "/dev/log", Name: "", Facility: "mail"},
		{File: "/nonexistent/dir/mail.log", Name: "postfix", Facility: "mail"},
	} {
		if l, err := Open(d); err == nil {
			l.Close()
			t.Errorf("%+v: no error", d)
		}
	}
}

// TestSyslogAbsent: with no syslogd, lines are dropped without a
// connection attempt each; once it listens, Reopen (or the retry delay)
// brings the lines back.
func TestSyslogAbsent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	l, err := Open(Destination{Socket: sock, Name: "postfix", Facility: "mail", Host: "mx"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.out.(*syslogSocket).retry = time.Hour // no timing in the test
	l.Removed("AAAAAAAAAAAA")               // lost: nobody listens
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l.Removed("BBBBBBBBBBBB") // lost: not tried again within the delay
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Removed("CCCCCCCCCCCC")
	buf := make([]byte, 2048)
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); !strings.HasSuffix(got, "]: CCCCCCCCCCCC: removed") {
		t.Errorf("first line syslogd got: %q", got)
	}
}
