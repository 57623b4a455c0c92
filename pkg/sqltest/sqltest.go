// Package sqltest runs throwaway database servers for tests: a MariaDB
// (Debian's mariadb-server) and a PostgreSQL (Debian's postgresql-15),
// each in its own temporary data directory, listening on loopback on a
// free port (or a given one, to restart a server where it was), with a
// user that logs in with a password over TCP. A package starts each
// server once (e.g. from a sync.Once) and stops it by its process id
// when its tests end. A missing server binary is an error (scripts/deps
// --test installs them), never a skip. Test support only.
//
// It trusts the servers it starts, which listen on loopback only and are
// reached by nobody but the tests.
package sqltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The binaries run.
const (
	MariaDBServer  = "/usr/sbin/mariadbd"
	MariaDBInstall = "/usr/bin/mariadb-install-db"
	MariaDBClient  = "/usr/bin/mariadb"
	PostgresBin    = "/usr/lib/postgresql/15/bin"
	PostgresClient = "/usr/bin/psql"
)

// startTimeout bounds a server's start on a loaded machine.
const startTimeout = 90 * time.Second

// Server is one database server.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Socket is the UNIX-domain socket (MariaDB) or its directory
	// (PostgreSQL).
	Socket string
	// User, Password and DB are the account the tests' tables use,
	// and its database.
	User, Password, DB string

	kind  string
	dir   string
	extra []string
	cred  *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Log is what the server wrote.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartMariaDB creates a MariaDB data directory in dir (which must
// exist and be empty), starts the server on a free port with the extra
// mariadbd options (e.g. --ssl-cert=...) and creates the user "smtpgate"
// with password and the database "mail".
func StartMariaDB(dir, password string, extra ...string) (*Server, error) {
	for _, b := range []string{MariaDBServer, MariaDBInstall, MariaDBClient} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is needed (install mariadb-server with scripts/deps --test): %w", b, err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{kind: "mariadb", dir: dir, Port: port, Socket: filepath.Join(dir, "mysqld.sock"),
		User: "smtpgate", Password: password, DB: "mail", extra: extra}
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(MariaDBInstall, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	setup := fmt.Sprintf("CREATE DATABASE mail CHARACTER SET utf8mb4;\n"+
		"CREATE USER 'smtpgate'@'127.0.0.1' IDENTIFIED BY '%s';\n"+
		"CREATE USER 'smtpgate'@'localhost' IDENTIFIED BY '%s';\n"+
		"GRANT SELECT ON mail.* TO 'smtpgate'@'127.0.0.1';\n"+
		"GRANT SELECT ON mail.* TO 'smtpgate'@'localhost';\n", mariaQuote(password), mariaQuote(password))
	if _, err := s.Exec("", setup); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// StartPostgres creates a PostgreSQL cluster in dir, starts it on a free
// port and creates the user "smtpgate" with password (scram-sha-256 over
// TCP) and the database "mail". As root, the server runs as the
// postgres user (PostgreSQL refuses root): dir is then made its own.
func StartPostgres(dir, password string) (*Server, error) {
	for _, b := range []string{filepath.Join(PostgresBin, "initdb"), filepath.Join(PostgresBin, "postgres"), PostgresClient} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is needed (install postgresql with scripts/deps --test): %w", b, err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{kind: "postgres", dir: dir, Port: port, Socket: dir, User: "smtpgate", Password: password, DB: "mail"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root, and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The server must reach its directory: the parents of a
		// temporary directory are searchable by all (/tmp).
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	pw := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pw, []byte("postgres-"+password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(pw, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(PostgresBin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--pwfile="+pw, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	setup := fmt.Sprintf("CREATE USER smtpgate PASSWORD '%s';\nCREATE DATABASE mail OWNER postgres ENCODING 'UTF8';\n",
		strings.ReplaceAll(password, "'", "''"))
	if _, err := s.Exec("", setup); err != nil {
		s.Stop()
		return nil, err
	}
	if _, err := s.Exec("mail", "GRANT USAGE ON SCHEMA public TO smtpgate;\n"+
		"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO smtpgate;\n"); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Start starts the server on its port and data directory: again after
// Stop, where it was.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	var cmd *exec.Cmd
	switch s.kind {
	case "mariadb":
		args := []string{"--no-defaults", "--datadir=" + filepath.Join(s.dir, "data"), "--socket=" + s.Socket,
			"--port=" + strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(s.dir, "mysqld.pid"),
			"--log-error=" + filepath.Join(s.dir, "error.log"), "--skip-log-bin", "--innodb-buffer-pool-size=16M",
			"--performance-schema=OFF", "--skip-name-resolve"}
		if os.Geteuid() == 0 {
			args = append(args, "--user=root")
		}
		cmd = exec.Command(MariaDBServer, append(args, s.extra...)...)
	case "postgres":
		cmd = exec.Command(filepath.Join(PostgresBin, "postgres"), "-D", filepath.Join(s.dir, "data"),
			"-p", strconv.Itoa(s.Port), "-k", s.Socket, "-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	s.out = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := s.execLocked("", "SELECT 1;")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("%s exited: %w\n%s%s", s.kind, err, s.out, s.errorLog())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("%s does not answer after %v: %w\n%s%s", s.kind, startTimeout, err, s.out, s.errorLog())
		}
	}
}

func (s *Server) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
	return string(b)
}

// Stop stops the server (SIGTERM to MariaDB's process id, SIGINT to
// PostgreSQL's, then SIGKILL after a while) and waits for it to exit. The data directory stays.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	// PostgreSQL's SIGTERM waits for its clients to leave (a smart
	// shutdown); SIGINT is its fast shutdown. MariaDB stops on SIGTERM.
	sig := syscall.SIGTERM
	if s.kind == "postgres" {
		sig = syscall.SIGINT
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Exec runs SQL as the administrator (MariaDB's root, PostgreSQL's
// postgres) over the UNIX-domain socket with the command-line client,
// in database db ("" for none, or PostgreSQL's postgres), and returns
// its output: tab-separated rows without headers.
func (s *Server) Exec(db, sql string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return "", fmt.Errorf("%s is not running", s.kind)
	}
	return s.execLocked(db, sql)
}

func (s *Server) execLocked(db, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	switch s.kind {
	case "mariadb":
		args := []string{"--no-defaults", "--socket=" + s.Socket, "-u", "root", "--batch", "--skip-column-names"}
		if db != "" {
			args = append(args, db)
		}
		cmd = exec.CommandContext(ctx, MariaDBClient, args...)
	case "postgres":
		if db == "" {
			db = "postgres"
		}
		cmd = exec.CommandContext(ctx, PostgresClient, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
			"-h", s.Socket, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	}
	cmd.Stdin = strings.NewReader(sql)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// mariaQuote escapes s for a '...' literal in MariaDB's default sql_mode.
func mariaQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s)
}
