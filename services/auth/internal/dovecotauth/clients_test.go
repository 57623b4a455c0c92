package dovecotauth

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

func TestParseClients(t *testing.T) {
	for _, tc := range []struct {
		items   []string
		allowed []string
		refused []string
		err     string
	}{
		{items: []string{"127.0.0.1", "[::1]"}, allowed: []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"}, refused: []string{"127.0.0.2", "::2"}},
		{items: []string{"192.0.2.0/24", "[2001:db8::]/32"}, allowed: []string{"192.0.2.77", "2001:db8:1::5"}, refused: []string{"192.0.3.1", "2001:db9::1"}},
		{items: []string{"::ffff:192.0.2.0/120"}, allowed: []string{"192.0.2.9"}, refused: []string{"192.0.3.9"}},
		{items: nil, refused: []string{"127.0.0.1", "::1"}},
		{items: []string{"192.0.2.1/24"}, err: "non-null host address bits, perhaps 192.0.2.0/24"},
		{items: []string{"mail.example.org"}, err: "not an address or network"},
		{items: []string{"hash:/etc/postfix/clients"}, err: "not an address or network"},
		{items: []string{"192.0.2.0/33"}, err: "bad network"},
		{items: []string{"192.0.2.0/x"}, err: "bad network"},
		{items: []string{"fe80::1%eth0"}, err: "not an address"},
	} {
		c, err := ParseClients(tc.items)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseClients(%q) = %v, want an error with %q", tc.items, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseClients(%q): %v", tc.items, err)
			continue
		}
		for _, a := range tc.allowed {
			if !c.Allows(&net.TCPAddr{IP: net.ParseIP(a), Port: 4711}) {
				t.Errorf("%q refuses %s", tc.items, a)
			}
		}
		for _, a := range tc.refused {
			if c.Allows(&net.TCPAddr{IP: net.ParseIP(a), Port: 4711}) {
				t.Errorf("%q lets in %s", tc.items, a)
			}
		}
		if !c.Allows(&net.UnixAddr{Name: "@", Net: "unix"}) {
			t.Errorf("%q refuses a unix socket peer", tc.items)
		}
	}
}

func FuzzParseClients(f *testing.F) {
	f.Add("127.0.0.1 [::1]/128 192.0.2.0/24")
	f.Add("[2001:db8::]/32 ::ffff:10.0.0.0/104")
	f.Add("1.2.3.4/99 [x]")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseClients(strings.Fields(in))
		if err != nil {
			return
		}
		// Whatever parsed matches only what it lists.
		if len(c.prefixes) != len(strings.Fields(in)) {
			t.Fatalf("%d prefixes from %q", len(c.prefixes), in)
		}
		for _, p := range c.prefixes {
			if p.Masked() != p {
				t.Fatalf("%q: prefix %s with host bits", in, p)
			}
		}
	})
}

// serve runs s on ln until the test ends.
func serve(t *testing.T, s *Server, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// TestStrangerRefused: a TCP caller outside Clients is closed before the
// server says anything, never gets a password checked (rip= rotation
// included), and is logged.
func TestStrangerRefused(t *testing.T) {
	s := newServer()
	var err error
	if s.Clients, err = ParseClients([]string{"192.0.2.25"}); err != nil {
		t.Fatal(err)
	}
	checked := 0
	var mu sync.Mutex
	s.Start = func(m sasl.Mechanism, client string) sasl.Exchange {
		mu.Lock()
		checked++
		mu.Unlock()
		return m.Start(s.Backend, s.Hostname)
	}
	out := &logtest.Buffer{}
	s.Logger = slog.New(slog.NewTextHandler(out, nil))
	c := dialServed(t, s, "tcp", "127.0.0.1:0")
	var lines strings.Builder
	lines.WriteString("VERSION\t1\t0\nCPID\t1\n")
	for i := range 30 {
		lines.WriteString("AUTH\t" + itoa(i+1) + "\tPLAIN\tservice=smtp\tsecured\trip=10.0." + itoa(i) + ".1\tresp=" + b64("\x00john@example.org\x00guess") + "\n")
	}
	_, _ = io.WriteString(c, lines.String())
	got, _ := io.ReadAll(c)
	if len(got) != 0 {
		t.Errorf("a stranger was answered %q, want the connection closed unanswered", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if checked != 0 {
		t.Errorf("%d exchanges started for a stranger, want 0", checked)
	}
	if l := out.String(); !strings.Contains(l, "dovecot auth connection refused") || !strings.Contains(l, "127.0.0.1:") {
		t.Errorf("the refusal is not logged with the caller's address:\n%s", l)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestUnixSocketLetIn: a unix socket caller is let in even with no TCP
// client allowed (the socket's permissions decide).
func TestUnixSocketLetIn(t *testing.T) {
	s := newServer()
	s.Clients = Clients{}
	c := dialServed(t, s, "unix", filepath.Join(t.TempDir(), "auth"))
	sess := &session{t: t, c: c, br: bufio.NewReader(c)}
	sess.handshake()
	sess.send("AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp=" + b64("\x00john@example.org\x00secret"))
	if got := sess.line(); got != "OK\t1\tuser=john@example.org" {
		t.Errorf("AUTH on the unix socket: %q", got)
	}
}

// ended records End calls.
type ended struct {
	sasl.Exchange
	n *int
	m *sync.Mutex
}

func (e ended) End(context.Context) {
	e.m.Lock()
	defer e.m.Unlock()
	*e.n++
}

// TestDroppedExchangesEnded: an exchange left waiting for CONT is ended
// when its CONT is malformed and when the connection goes away.
func TestDroppedExchangesEnded(t *testing.T) {
	s := newServer()
	var mu sync.Mutex
	n := 0
	s.Start = func(m sasl.Mechanism, client string) sasl.Exchange {
		return ended{Exchange: m.Start(s.Backend, s.Hostname), n: &n, m: &mu}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
	var out bytes.Buffer
	in := "VERSION\t1\t0\n" +
		"AUTH\t1\tLOGIN\tservice=smtp\tsecured\n" + "CONT\t1\t!!!\n" +
		"AUTH\t2\tLOGIN\tservice=smtp\tsecured\n" + "AUTH\t3\tPLAIN\tservice=smtp\tsecured\n"
	_ = s.serveConn(context.Background(), struct {
		io.Reader
		io.Writer
	}{strings.NewReader(in), &out})
	if got := count(); got != 3 {
		t.Errorf("%d exchanges ended, want 3 (a bad CONT, two left pending at the end)\n%s", got, out.String())
	}
}
