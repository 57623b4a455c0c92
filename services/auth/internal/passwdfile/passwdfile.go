// Package passwdfile reads SASL users from a file in Dovecot's passwd-file
// format (https://doc.dovecot.org/configuration_manual/authentication/passwd_file/):
//
//	user:{SCHEME}password:uid:gid:gecos:home:shell:extra_fields
//
// A password without {SCHEME} is a crypt(3) string (Dovecot's default
// scheme for passwd-files, CRYPT). Only the first two fields are used; '#'
// starts a comment line. User names are compared exactly as written
// (Dovecot's default). The file is read again when its modification time
// or size changes; a broken new version is reported and the previous users
// are kept.
//
// Trust: the file is the operator's and trusted; the user names looked up
// come from SMTP clients, are only compared, and are never logged here.
package passwdfile

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/smtpgate/smtpgate/services/auth/internal/scheme"
)

// Parse reads users from r; name is used in errors (file:line).
func Parse(name string, r io.Reader) (map[string]scheme.Stored, error) {
	users := map[string]scheme.Stored{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if bytes.IndexByte([]byte(line), 0) >= 0 {
			return nil, fmt.Errorf("%s:%d: NUL byte", name, n)
		}
		user, rest, found := strings.Cut(line, ":")
		if !found || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:{SCHEME}password[:...]", name, n)
		}
		pw, _, _ := strings.Cut(rest, ":")
		st, err := scheme.Parse(pw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: %w", name, n, user, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %s listed twice", name, n, user)
		}
		users[user] = st
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return users, nil
}

// File is a passwd-file that follows changes on disk.
type File struct {
	path string
	// minCheck is how long a stat result is trusted.
	minCheck time.Duration

	mu        sync.Mutex
	users     map[string]scheme.Stored
	modTime   time.Time
	size      int64
	checked   time.Time
	reloadErr error
}

// Open reads the file at path; an error here is fatal to the caller (no
// users to fall back on).
func Open(path string) (*File, error) {
	f := &File{path: path, minCheck: time.Second}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) load() error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("passwd-file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("passwd-file: %w", err)
	}
	users, err := Parse(f.path, fh)
	if err != nil {
		return err
	}
	f.users, f.modTime, f.size = users, fi.ModTime(), fi.Size()
	return nil
}

// Lookup returns the stored password of user. It reloads the file first
// when it changed; reloadErr is non-nil when a changed file could not be
// read, in which case the previous users are still served.
func (f *File) Lookup(user string) (st scheme.Stored, ok bool, reloadErr error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) >= f.minCheck {
		f.checked = now
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			f.reloadErr = fmt.Errorf("passwd-file: %w", err)
		case !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size:
			f.reloadErr = f.load()
		}
	}
	st, ok = f.users[user]
	return st, ok, f.reloadErr
}
