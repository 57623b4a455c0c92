package dovecotauth

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

type users map[string]string

func (u users) Verify(_ context.Context, user string, pw []byte) (bool, error) {
	if user == "broken" {
		return false, errors.New("database down")
	}
	p, ok := u[user]
	return ok && p == string(pw), nil
}

func (u users) CRAMMD5(context.Context, string, []byte) ([]byte, bool, error) { return nil, false, nil }

func newServer() *Server {
	all := sasl.Mechanisms()
	loopback, _ := ParseClients([]string{"127.0.0.0/8", "[::1]"})
	return &Server{
		Clients:  loopback,
		Backend:  users{"john@example.org": "secret"},
		Hostname: "mail.example.org",
		Mechanisms: func(secured bool) []sasl.Mechanism {
			if secured {
				return []sasl.Mechanism{all["PLAIN"], all["LOGIN"], all["CRAM-MD5"]}
			}
			return []sasl.Mechanism{all["CRAM-MD5"]}
		},
	}
}

// session connects a scripted client to a fresh server.
type session struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func start(t *testing.T) *session {
	t.Helper()
	c := dialServed(t, newServer(), "tcp", "127.0.0.1:0")
	return &session{t: t, c: c, br: bufio.NewReader(c)}
}

// dialServed serves s on a listener at address ("tcp", "127.0.0.1:0":
// a free loopback port; "unix", a path) until the test ends and returns
// a connection to it, closed when the test ends.
func dialServed(t *testing.T, s *Server, network, address string) net.Conn {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *session) line() string {
	s.t.Helper()
	l, err := s.br.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(l, "\n")
}

func (s *session) send(l string) {
	s.t.Helper()
	if _, err := io.WriteString(s.c, l+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// handshake reads the server's greeting as Postfix does and returns the
// MECH lines.
func (s *session) handshake() []string {
	s.t.Helper()
	s.send("VERSION\t1\t0")
	s.send("CPID\t4242")
	var mechs []string
	if l := s.line(); l != "VERSION\t1\t2" {
		s.t.Fatalf("first line %q", l)
	}
	for {
		l := s.line()
		switch {
		case strings.HasPrefix(l, "MECH\t"):
			mechs = append(mechs, l)
		case strings.HasPrefix(l, "SPID\t"):
			if len(mechs) == 0 {
				s.t.Fatal("SPID before any MECH: Postfix would take this for the auth-master socket")
			}
		case l == "DONE":
			return mechs
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestHandshakeAndAuth(t *testing.T) {
	s := start(t)
	mechs := s.handshake()
	if got := strings.Join(mechs, "|"); got != "MECH\tPLAIN\tplaintext|MECH\tLOGIN\tplaintext|MECH\tCRAM-MD5\tdictionary" {
		t.Errorf("MECH lines = %q", got)
	}
	for _, tc := range []struct{ send, want string }{
		{"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.1\tsecured\tresp=" + b64("\x00john@example.org\x00secret"), "OK\t1\tuser=john@example.org"},
		{"AUTH\t2\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.1\tsecured\tresp=" + b64("\x00john@example.org\x00wrong"), "FAIL\t2\treason=authentication failure"},
		{"AUTH\t3\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.1\tresp=" + b64("\x00john@example.org\x00secret"), "FAIL\t3\treason=authentication failure"},
		{"AUTH\t4\tPLAIN\tservice=smtp\tsecured\tresp=!!!", "FAIL\t4\treason=authentication failure"},
		{"AUTH\t5\tNOPE\tservice=smtp\tsecured", "FAIL\t5\treason=authentication failure"},
		{"AUTH\t6\tPLAIN\tservice=smtp\tsecured\tresp=" + b64("\x00broken\x00x"), "FAIL\t6\tcode=temp_fail"},
		{"AUTH\t7\tPLAIN\tservice=smtp\tsecured", "CONT\t7\t"},
		{"CONT\t7\t" + b64("\x00john@example.org\x00secret"), "OK\t7\tuser=john@example.org"},
		{"AUTH\t8\tLOGIN\tservice=smtp\tsecured", "CONT\t8\t" + b64("Username:")},
		{"CONT\t8\t" + b64("john@example.org"), "CONT\t8\t" + b64("Password:")},
		{"CONT\t8\t" + b64("secret"), "OK\t8\tuser=john@example.org"},
		{"FOO\tbar", ""},
		{"AUTH\t9\tPLAIN\tservice=smtp\tsecured\tresp=" + b64("\x00john@example.org\x00secret") + "\tlater=x", "FAIL\t9\treason=authentication failure"},
	} {
		s.send(tc.send)
		if tc.want == "" {
			continue
		}
		if got := s.line(); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.send, got, tc.want)
		}
	}
}

func TestAuthBeforeVersionCloses(t *testing.T) {
	s := start(t)
	s.send("AUTH\t1\tPLAIN\tsecured\tresp=" + b64("\x00john@example.org\x00secret"))
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			return // closed, as it should
		}
		if strings.HasPrefix(l, "OK") {
			t.Fatal("authenticated without a VERSION handshake")
		}
	}
}

// FuzzConn feeds arbitrary client lines after a valid handshake: the
// server never panics, and never says OK without a correct password.
func FuzzConn(f *testing.F) {
	f.Add("AUTH\t1\tPLAIN\tsecured\tresp=" + b64("\x00john@example.org\x00wrong") + "\nCONT\t1\tx\n")
	f.Add("AUTH\t1\tLOGIN\tsecured\nCONT\t1\t" + b64("john@example.org") + "\nCONT\t1\t\n")
	f.Add("AUTH\t\x01\tPLAIN\nCONT\t\nVERSION\t2\n")
	f.Fuzz(func(t *testing.T, in string) {
		s := newServer()
		server, client := net.Pipe()
		done := make(chan struct{})
		var out strings.Builder
		go func() {
			defer close(done)
			_ = s.serveConn(context.Background(), struct {
				io.Reader
				io.Writer
			}{strings.NewReader("VERSION\t1\t0\n" + in), &out})
		}()
		server.Close()
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("serveConn did not return at end of input")
		}
		if strings.Contains(out.String(), "\nOK\t") && !strings.Contains(in, b64("\x00john@example.org\x00secret")) && !strings.Contains(in, b64("secret")) {
			t.Fatalf("OK without the password for input %q", in)
		}
	})
}
