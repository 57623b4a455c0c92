// Package redistest runs throwaway Redis for tests: one redis-server
// (Start), a Redis Cluster (StartCluster) or a primary with a replica and
// three Sentinels (StartSentinel). Each redis-server runs on loopback,
// on a free port (or a given one, to restart a server where it was),
// without persistence, killed by its process id when the test ends. A
// missing redis-server fails the test (scripts/deps --test installs it);
// it is never skipped. Test support only.
//
// It trusts the redis-server it starts, which listens on loopback only and
// is reached by nobody but the test.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is the redis-server run.
const Binary = "/usr/bin/redis-server"

// Server is one running redis-server.
type Server struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	out  *bytes.Buffer
	// exited is closed when the process has exited.
	exited chan struct{}
	once   sync.Once
}

// URL is the server's redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs a redis-server on a free port and waits until it answers PING.
func Start(t testing.TB) *Server { return StartOn(t, 0) }

// StartOn runs a redis-server on port (0: a free one), as Start does; a
// port still held by a server just stopped is retried for a while.
func StartOn(t testing.TB, port int) *Server {
	t.Helper()
	return startServer(t, port)
}

// startServer runs a redis-server on port (0: a free one) with extra
// arguments, as StartOn does.
func startServer(t testing.TB, port int, extra ...string) *Server {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--logfile", ""}, extra...)
	return startProcess(t, port, args...)
}

// freePort is a loopback port free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs redis-server with args, which make it listen on
// port, and waits until it answers PING there; a port still held by a
// server just stopped is retried for a while.
func startProcess(t testing.TB, port int, args ...string) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("%s is needed (install it with scripts/deps --test): %v", Binary, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, out: new(bytes.Buffer), exited: make(chan struct{})}
		s.cmd = exec.Command(Binary, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start %s (install it with scripts/deps --test): %v", Binary, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		t.Cleanup(s.Stop)
		for {
			if ping(s.Addr) == nil {
				return s
			}
			select {
			case <-s.exited: // the port may still be held: start again
			case <-time.After(10 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				s.Stop()
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d does not answer PING:\n%s", port, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server by its process id and waits for it to exit.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
	})
}

// ping speaks just enough RESP to ask PING.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
