package auth

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotauth"
)

// dovecotSettings are the Dovecot-protocol listener's parameters.
type dovecotSettings struct {
	// clients is smtpgate_dovecot_auth_clients.
	clients dovecotauth.Clients
	// mode, uid and gid are the unix sockets' permissions and owner (-1:
	// the process's).
	mode     os.FileMode
	uid, gid int
}

// lookupID reads a numeric id, or looks a name up.
func lookupID(v string, lookup func(string) (string, error)) (int, error) {
	id := v
	if _, err := strconv.Atoi(v); err != nil {
		if id, err = lookup(v); err != nil {
			return -1, err
		}
	}
	n, err := strconv.Atoi(id)
	if err != nil || n < 0 {
		return -1, fmt.Errorf("%q: not a user or group id", v)
	}
	return n, nil
}

// listenDovecot listens on "host:port" or "unix:/path". A unix socket is
// made under a temporary name in its directory, given its owner, group
// and mode, and only then renamed to its path (replacing a stale socket,
// never another kind of file), so that nobody can connect to it before
// its permissions are set; it is removed when the listener closes.
func (s *Server) listenDovecot(a string) (net.Listener, error) {
	p, ok := strings.CutPrefix(a, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("listen %s: %s exists and is not a socket", a, p)
	}
	tmp := filepath.Join(filepath.Dir(p), fmt.Sprintf(".%s.%d.tmp", filepath.Base(p), os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	d := s.set.dovecot
	if d.uid >= 0 || d.gid >= 0 {
		if err := os.Lchown(tmp, d.uid, d.gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, d.mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: ul, path: p}, nil
}

// unixListener removes its socket file when it first closes. Only then:
// a listener is closed twice (by Serve when its context ends, and by its
// owner), and a late second removal would delete whatever took the path
// in between, such as the next instance's socket.
type unixListener struct {
	*net.UnixListener
	path  string
	once  sync.Once
	close error
}

// Close implements net.Listener.
func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.close = l.UnixListener.Close()
		_ = os.Remove(l.path)
	})
	return l.close
}
