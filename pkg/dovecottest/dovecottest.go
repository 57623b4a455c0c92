// Package dovecottest runs a throwaway Dovecot for tests: Debian's
// dovecot-core with dovecot-sqlite, authentication only (no mail
// protocols), from a configuration it writes into its own directory, with
// base_dir, state and log there too, listening on unix sockets in that
// directory and on loopback only; no system file is read or changed. Its
// users are in a passwd-file, hashed with `doveadm pw -s SCHEME`, and in
// an sqlite3 database (dovecot-sqlite). It is stopped by its master's
// process id. A missing dovecot fails the caller (scripts/deps --test
// installs it); it is never skipped. Test support only: start one per
// package (TestMain), not one per test.
//
// It trusts the Dovecot it starts, which is reached only through its own
// sockets and loopback, by the test alone.
package dovecottest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The binaries used.
const (
	Dovecot = "/usr/sbin/dovecot"
	Doveadm = "/usr/bin/doveadm"
	SQLite  = "/usr/bin/sqlite3"
)

// User is one user: Scheme is a doveadm pw scheme (SHA512-CRYPT, BLF-CRYPT,
// SSHA256, PBKDF2, PLAIN, ...).
type User struct {
	Name, Password, Scheme string
}

// Options say what the Dovecot holds.
type Options struct {
	// PasswdUsers go into a passwd-file (passdb and userdb).
	PasswdUsers []User
	// SQLUsers go into an sqlite3 database (passdb and userdb sql).
	SQLUsers []User
	// Mechanisms is auth_mechanisms; empty: "plain login".
	Mechanisms []string
	// DisablePlaintextAuth is Dovecot's disable_plaintext_auth (its
	// default is yes; here the zero value is no).
	DisablePlaintextAuth bool
	// Debug is auth_debug: the log shows each request as received
	// (passwords hidden; auth_debug_passwords stays no).
	Debug bool
}

// Server is one running Dovecot.
type Server struct {
	// Dir holds the configuration, the user files, base_dir and the log.
	Dir string
	// ClientSocket and UserdbSocket are the unix auth-client and
	// auth-userdb sockets; ClientAddr is auth-client on loopback TCP
	// (host:port).
	ClientSocket, UserdbSocket, ClientAddr string
	conf                                   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start writes the configuration and user files into a new directory
// under dir and starts Dovecot, waiting until its auth-client socket
// completes a handshake.
func Start(dir string, o Options) (*Server, error) {
	for _, b := range []string{Dovecot, Doveadm, SQLite} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is needed (install dovecot-core, dovecot-sqlite and sqlite3 with scripts/deps --test): %w", b, err)
		}
	}
	d, err := os.MkdirTemp(dir, "dovecot")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: d, conf: filepath.Join(d, "dovecot.conf")}
	run := filepath.Join(d, "run")
	for _, sub := range []string{run, filepath.Join(d, "state")} {
		if err := os.Mkdir(sub, 0o755); err != nil {
			return nil, err
		}
	}
	s.ClientSocket, s.UserdbSocket = filepath.Join(run, "auth-client"), filepath.Join(run, "auth-userdb")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.ClientAddr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(s.ClientAddr)
	mechs := strings.Join(o.Mechanisms, " ")
	if mechs == "" {
		mechs = "plain login"
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	conf := fmt.Sprintf(`# Written by smtpgate's pkg/dovecottest.
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = smtpgate-test-%[2]s
log_path = %[1]s/dovecot.log
protocols =
listen = 127.0.0.1
default_internal_user = nobody
default_internal_group = nogroup
default_login_user = nobody
auth_mechanisms = %[3]s
disable_plaintext_auth = %[4]s
auth_debug = %[6]s
auth_failure_delay = 0
%[5]sservice auth {
  user = root
  unix_listener auth-client {
    mode = 0666
  }
  unix_listener auth-userdb {
    mode = 0666
  }
  inet_listener auth-client {
    address = 127.0.0.1
    port = %[2]s
  }
}
`, d, port, mechs, yesNo[o.DisablePlaintextAuth], dbs(d), yesNo[o.Debug])
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	sqlConf := fmt.Sprintf(`driver = sqlite
connect = %[1]s/users.db
password_query = SELECT username AS user, password FROM users WHERE username = '%%u'
user_query = SELECT username AS user, 65534 AS uid, 65534 AS gid, '/nonexistent' AS home FROM users WHERE username = '%%u'
`, d)
	if err := os.WriteFile(filepath.Join(d, "sql.conf.ext"), []byte(sqlConf), 0o644); err != nil {
		return nil, err
	}
	var passwd strings.Builder
	for _, u := range o.PasswdUsers {
		h, err := s.Hash(u.Scheme, u.Password)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&passwd, "%s:%s:65534:65534::/nonexistent::\n", u.Name, h)
	}
	if err := os.WriteFile(filepath.Join(d, "passwd"), []byte(passwd.String()), 0o644); err != nil {
		return nil, err
	}
	sql := "CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT NOT NULL);\n"
	for _, u := range o.SQLUsers {
		h, err := s.Hash(u.Scheme, u.Password)
		if err != nil {
			return nil, err
		}
		sql += fmt.Sprintf("INSERT INTO users VALUES ('%s', '%s');\n", strings.ReplaceAll(u.Name, "'", "''"), strings.ReplaceAll(h, "'", "''"))
	}
	cmd := exec.Command(SQLite, filepath.Join(d, "users.db"))
	cmd.Stdin = strings.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sqlite3: %w: %s", err, out)
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// dbs are the passdb and userdb sections: the passwd-file, then sqlite.
func dbs(dir string) string {
	var b strings.Builder
	for _, db := range []string{"passdb", "userdb"} {
		for _, src := range [][2]string{{"passwd-file", "passwd"}, {"sql", "sql.conf.ext"}} {
			fmt.Fprintf(&b, "%s {\n  driver = %s\n  args = %s\n}\n", db, src[0], filepath.Join(dir, src[1]))
		}
	}
	return b.String()
}

// Hash returns password hashed by `doveadm pw -s scheme` ("{SCHEME}...").
func (s *Server) Hash(scheme, password string) (string, error) {
	if scheme == "" {
		scheme = "SHA512-CRYPT"
	}
	out, err := exec.Command(Doveadm, "-c", s.conf, "pw", "-s", scheme, "-p", password).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("doveadm pw -s %s: %w: %s", scheme, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Restart starts Dovecot again after Stop or Kill, on the same sockets
// and port (Start starts it the first time).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.exited:
		default:
			return errors.New("dovecot is running")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A file, not a pipe: Dovecot's children inherit it, and Wait
		// would wait for the last of them to close a pipe.
		out, err := os.OpenFile(filepath.Join(s.Dir, "dovecot.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		s.exited = make(chan struct{})
		s.cmd = exec.Command(Dovecot, "-F", "-c", s.conf)
		s.cmd.Stdout, s.cmd.Stderr = out, out
		err = s.cmd.Start()
		out.Close()
		if err != nil {
			return fmt.Errorf("start %s (install it with scripts/deps --test): %w", Dovecot, err)
		}
		exited := s.exited
		cmd := s.cmd
		go func() { _ = cmd.Wait(); close(exited) }()
		for {
			if handshake(s.ClientSocket) == nil {
				return nil
			}
			select {
			case <-exited: // e.g. the port still held by the last run
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				_ = s.cmd.Process.Kill()
				<-exited
			}
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
			out, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.out"))
			return fmt.Errorf("dovecot did not answer on %s:\n%s\n%s", s.ClientSocket, out, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends Dovecot (SIGTERM to its master, which ends its children) and
// waits for the master to exit and the auth-client socket to stop
// answering.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends Dovecot as a crash would: SIGKILL to the master and to each
// of its children (found by their parent process id), and waits until
// they are gone.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	children := s.send(sig, sig == syscall.SIGKILL)
	<-s.exited
	for _, pid := range children {
		for i := 0; i < 500 && syscall.Kill(pid, 0) == nil && !zombie(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := 0; i < 500 && handshake(s.ClientSocket) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// Freeze stops Dovecot's master and children (SIGSTOP), as a hung
// Dovecot: its sockets still accept connections, nothing answers. Thaw
// lets them run again.
func (s *Server) Freeze() { s.stopCont(syscall.SIGSTOP) }

// Thaw undoes Freeze (SIGCONT).
func (s *Server) Thaw() { s.stopCont(syscall.SIGCONT) }

func (s *Server) stopCont(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.send(sig, true)
	}
}

// send signals the master, and each of its children too when all, by
// process id; it returns the children signalled. The caller holds s.mu.
func (s *Server) send(sig syscall.Signal, all bool) []int {
	var children []int
	if all {
		children = childrenOf(s.cmd.Process.Pid)
	}
	_ = s.cmd.Process.Signal(sig)
	for _, pid := range children {
		_ = syscall.Kill(pid, sig)
	}
	return children
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ppid, _ := stat(p); ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// stat returns a process's parent id and state from /proc/PID/stat.
func stat(pid int) (ppid int, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}

// zombie reports whether pid has exited and waits for its reaper.
func zombie(pid int) bool {
	_, st := stat(pid)
	return st == "Z" || st == ""
}

// Log returns Dovecot's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
	return string(b)
}

// handshake checks that an auth-client socket answers up to DONE.
func handshake(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("VERSION\t1\t2\nCPID\t" + strconv.Itoa(os.Getpid()) + "\n")); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if l == "DONE\n" {
			return nil
		}
	}
}

// Addresses returns a function that gives a new IPv4 address under the
// /16 prefix16 ("198.18") at each call, safe for concurrent use: a client
// address per request, so that Dovecot's penalty (which delays every
// failure of an address after its first, up to 15 s) sees no series
// unless a test means one.
func Addresses(prefix16 string) func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("%s.%d.%d", prefix16, n/250%250, n%250+1)
	}
}
