package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The lifecycle of the real smtpgate-edge process: SIGHUP reloads
// main.cf, master.cf and the certificates for new sessions only, a broken
// configuration is refused and logged, SIGTERM drains and exits 0.

// lifeSession is an SMTP session read reply by reply.
type lifeSession struct {
	t *testing.T
	*rawSMTP
	// greeting is the 220 reply's text.
	greeting string
}

// session connects from the trusted address (mynetworks) to port and
// reads the greeting.
func session(t *testing.T, port int) *lifeSession {
	t.Helper()
	raw, err := dialRaw(Trusted, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.close() })
	r := &lifeSession{t: t, rawSMTP: raw}
	code, msg, err := r.response(220)
	if err != nil {
		t.Fatalf("greeting: %d %s: %v", code, msg, err)
	}
	r.greeting = msg
	return r
}

// reply reads the next reply: "code text", lines joined by "|".
func (r *lifeSession) reply() string {
	r.t.Helper()
	code, msg, err := r.response(0)
	if err != nil && code == 0 {
		r.t.Fatalf("reading a reply: %v", err)
	}
	return fmt.Sprintf("%d %s", code, strings.ReplaceAll(msg, "\n", "|"))
}

// do sends one command and checks that its reply starts with want.
func (r *lifeSession) do(cmd, want string) string {
	r.t.Helper()
	if err := r.writeLine(cmd); err != nil {
		r.t.Fatal(err)
	}
	got := r.reply()
	if !strings.HasPrefix(got, want) {
		r.t.Errorf("%s: got %q, want %q", cmd, got, want)
	}
	return got
}

// startTLS runs STARTTLS and returns the certificate the server showed.
func (r *lifeSession) startTLS() []byte {
	r.t.Helper()
	r.do("STARTTLS", "220 ")
	cert, err := r.handshake()
	if err != nil {
		r.t.Fatal(err)
	}
	return cert
}

// message sends DATA and a message of about size bytes whose Subject is
// token, and returns the reply to the end of data.
func (r *lifeSession) message(token string, size int) string {
	r.t.Helper()
	r.do("DATA", "354 ")
	w := r.tp.DotWriter()
	fmt.Fprintf(w, "From: <someone@example.net>\r\nSubject: %s\r\n\r\n", token)
	line := strings.Repeat("x", 76) + "\r\n"
	for n := 0; n < size; n += len(line) {
		_, _ = io.WriteString(w, line)
	}
	if err := w.Close(); err != nil {
		r.t.Fatal(err)
	}
	return r.reply()
}

// edgeLog returns the whole log of smtpgate-edge.
func (s *stack) edgeLog() string {
	b, err := os.ReadFile(s.logs["edge"])
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// reload sends SIGHUP and waits until the edge logs the outcome; it
// returns the log written since.
func (s *stack) reload() string {
	s.t.Helper()
	return reloadEdge(s.t, s, "edge")
}

// appendFile adds text to the configuration file name and returns the
// number of its first new line.
func (s *stack) appendFile(name, text string) int {
	s.t.Helper()
	path := filepath.Join(s.conf, name)
	old, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	write(s.t, path, string(old)+text)
	return strings.Count(string(old), "\n") + 1
}

func ehloSize(t *testing.T, ehlo string) string {
	t.Helper()
	for _, l := range strings.Split(ehlo, "|") {
		if v, ok := strings.CutPrefix(l, "SIZE "); ok {
			return v
		}
	}
	t.Fatalf("no SIZE in %q", ehlo)
	return ""
}

// TestReloadKeepsLiveSessions: a SIGHUP during a session changes nothing
// for it (TLS certificate, SIZE, recipient limit); a session after it
// gets the new values.
func TestReloadKeepsLiveSessions(t *testing.T) {
	t.Parallel()
	s := newStack(t, "")
	old := session(t, s.port["mx"])
	oldSize := ehloSize(t, old.do("EHLO client.example.net", "250"))
	if strings.Contains(old.greeting, "reloaded") || oldSize != "10240000" {
		t.Fatalf("before the reload: greeting %q, SIZE %s", old.greeting, oldSize)
	}
	before := session(t, s.port["mx"])
	before.do("EHLO client.example.net", "250")
	oldCert := before.startTLS()
	// A renewed certificate (the same files, a new key), and new limits.
	writeCert(t, s.conf)
	s.appendFile("main.cf", "smtpd_banner = $myhostname ESMTP reloaded\nmessage_size_limit = 4000\nsmtpd_recipient_limit = 1\n")
	if out := s.reload(); !strings.Contains(out, `msg="configuration reloaded"`) {
		t.Fatalf("reload failed:\n%s", out)
	}

	// The new session sees the new configuration.
	fresh := session(t, s.port["mx"])
	if !strings.Contains(fresh.greeting, "mail.example.org ESMTP reloaded") {
		t.Errorf("new session's greeting = %q, want the new smtpd_banner", fresh.greeting)
	}
	fresh.do("EHLO client.example.net", "250")
	if bytes.Equal(fresh.startTLS(), oldCert) {
		t.Error("new session after the reload got the old certificate")
	}
	if got := ehloSize(t, fresh.do("EHLO client.example.net", "250")); got != "4000" {
		t.Errorf("new session's SIZE = %s, want 4000", got)
	}
	fresh.do("MAIL FROM:<someone@example.net>", "250 ")
	fresh.do("RCPT TO:<john@example.org>", "250 ")
	fresh.do("RCPT TO:<carol@example.org>", "452 4.5.3 Error: too many recipients")
	tooBig := newToken("reload-new")
	if got := fresh.message(tooBig, 8000); !strings.HasPrefix(got, "552 5.3.4") {
		t.Errorf("new session, 8000-byte message: %q, want 552 5.3.4", got)
	}
	fresh.do("QUIT", "221")

	// The live session keeps its own: its certificate, SIZE, two
	// recipients, a message over the new limit.
	if !bytes.Equal(old.startTLS(), oldCert) {
		t.Error("live session's STARTTLS after the reload showed the new certificate, want the one of its configuration")
	}
	if got := ehloSize(t, old.do("EHLO client.example.net", "250")); got != oldSize {
		t.Errorf("live session's SIZE after the reload = %s, want %s", got, oldSize)
	}
	old.do("MAIL FROM:<someone@example.net>", "250 ")
	old.do("RCPT TO:<john@example.org>", "250 ")
	old.do("RCPT TO:<carol@example.org>", "250 ")
	kept := newToken("reload-live")
	if got := old.message(kept, 8000); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("live session, 8000-byte message: %q, want 250", got)
	}
	old.do("QUIT", "221")
	counts := s.maildirTokens()
	if counts[kept] != 1 || counts[tooBig] != 0 {
		t.Errorf("Maildir: live session's message %d times, new session's too big one %d times; want 1 and 0", counts[kept], counts[tooBig])
	}
}

// TestReloadBrokenConfigKeepsOld: a configuration that does not validate
// is logged with its file:line and the old one stays in use; the process
// stays up, and the next valid reload applies.
func TestReloadBrokenConfigKeepsOld(t *testing.T) {
	t.Parallel()
	s := newStack(t, "")
	line := s.appendFile("main.cf", "smtpd_banner = $myhostname ESMTP broken\nsmtpd_recipient_limit = lots\n")
	mline := s.appendFile("master.cf", "127.0.0.1:1 inet n - n - - smtpd -o smtpd_nosuch=1\n")
	out := s.reload()
	for _, want := range []string{
		`msg="configuration reload failed; the configuration in use stays"`,
		fmt.Sprintf("main.cf:%d: smtpd_recipient_limit", line+1),
		fmt.Sprintf("master.cf:%d: service 127.0.0.1:1: -o smtpd_nosuch: unknown parameter", mline),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log after a broken reload lacks %q:\n%s", want, out)
		}
	}
	c := session(t, s.port["mx"])
	if strings.Contains(c.greeting, "broken") {
		t.Errorf("greeting after a broken reload = %q: the new banner was applied", c.greeting)
	}
	c.do("EHLO client.example.net", "250")
	c.do("MAIL FROM:<someone@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("RCPT TO:<carol@example.org>", "250 ")
	c.do("QUIT", "221")

	// Fixed, but with a listener on an address in use: the listener
	// cannot be opened, and the whole reload fails.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	write(t, filepath.Join(s.conf, "main.cf"), strings.Replace(readFile(t, filepath.Join(s.conf, "main.cf")), "smtpd_recipient_limit = lots", "smtpd_recipient_limit = 10", 1))
	write(t, filepath.Join(s.conf, "master.cf"), strings.Replace(readFile(t, filepath.Join(s.conf, "master.cf")), "127.0.0.1:1 inet n - n - - smtpd -o smtpd_nosuch=1\n", busy.Addr().String()+" inet n - n - - smtpd\n", 1))
	out = s.reload()
	if want := "listen " + busy.Addr().String() + ": "; !strings.Contains(out, want) || !strings.Contains(out, "configuration in use stays") {
		t.Errorf("reload with a listener on a busy address: the log lacks %q:\n%s", want, out)
	}
	if c := session(t, s.port["mx"]); strings.Contains(c.greeting, "broken") {
		t.Errorf("greeting after a failed reload = %q: the new banner was applied", c.greeting)
	}

	// Fixed, it applies.
	write(t, filepath.Join(s.conf, "master.cf"), strings.Replace(readFile(t, filepath.Join(s.conf, "master.cf")), busy.Addr().String()+" inet n - n - - smtpd\n", "", 1))
	if out := s.reload(); !strings.Contains(out, `msg="configuration reloaded"`) {
		t.Fatalf("valid reload failed:\n%s", out)
	}
	if c := session(t, s.port["mx"]); !strings.Contains(c.greeting, "ESMTP broken") {
		t.Errorf("greeting after the fixed reload = %q, want the new banner", c.greeting)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadListeners: a listener added to master.cf opens on SIGHUP with
// its -o overrides; one moved to another address closes its old address,
// opens the new one, and its live session goes on.
func TestReloadListeners(t *testing.T) {
	t.Parallel()
	s := newStack(t, "")
	added, moved := freePort(t), freePort(t)
	live := session(t, s.port["mx"])
	live.do("EHLO client.example.net", "250")
	live.do("MAIL FROM:<someone@example.net>", "250 ")

	master := readFile(t, filepath.Join(s.conf, "master.cf"))
	oldMX := fmt.Sprintf("127.0.0.1:%d ", s.port["mx"])
	if !strings.Contains(master, oldMX) {
		t.Fatalf("master.cf has no %s", oldMX)
	}
	master = strings.Replace(master, oldMX, fmt.Sprintf("127.0.0.1:%d ", moved), 1)
	master += fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n  -o message_size_limit=1234\n", added)
	write(t, filepath.Join(s.conf, "master.cf"), master)
	if out := s.reload(); !strings.Contains(out, `msg="configuration reloaded"`) {
		t.Fatalf("reload failed:\n%s", out)
	}

	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port["mx"])); err == nil {
		conn.Close()
		t.Errorf("the moved listener's old address %d still accepts", s.port["mx"])
	}
	// The live session of the moved listener completes its transaction.
	live.do("RCPT TO:<john@example.org>", "250 ")
	token := newToken("moved")
	if got := live.message(token, 100); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("live session on the moved listener: %q, want 250", got)
	}
	live.do("QUIT", "221")
	if n := s.maildirTokens()[token]; n != 1 {
		t.Errorf("Maildir holds the live session's message %d times, want 1", n)
	}

	// policy knows the listeners of master.cf by name from its start
	// (docs/operations.md): restarted, it knows the new ones.
	s.kill("policy")
	s.start("policy")
	// The edge's connection to policy comes back within about a second:
	// until then a session is refused with 421 4.3.0.
	deadline := time.Now().Add(30 * time.Second)
	for !greets(added) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	c := session(t, added)
	if got := ehloSize(t, c.do("EHLO client.example.net", "250")); got != "1234" {
		t.Errorf("added listener's SIZE = %s, want its -o message_size_limit=1234", got)
	}
	c.do("QUIT", "221")
	c = session(t, moved)
	c.do("EHLO client.example.net", "250")
	c.do("MAIL FROM:<someone@example.net>", "250 ")
	c.do("RCPT TO:<john@example.org>", "250 ")
	c.do("QUIT", "221")
}

// greets says whether the listener on port greets with 220.
func greets(port int) bool {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	code, _, _ := textproto.NewConn(conn).ReadResponse(0)
	return code == 220
}

// holdingHop is an SMTP next hop that holds every message's end of data
// until release is closed; entered gets a value when a message waits.
type holdingHop struct {
	addr    string
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	msgs    []string
}

func newHoldingHop(t *testing.T) *holdingHop {
	t.Helper()
	h := &holdingHop{entered: make(chan struct{}, 10), release: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &holdingSession{h: h}, nil }))
	srv.Domain = "next-hop.example.org"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		_ = srv.Close()
	})
	return h
}

func (h *holdingHop) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

type holdingSession struct{ h *holdingHop }

func (*holdingSession) Reset()                               {}
func (*holdingSession) Logout() error                        { return nil }
func (*holdingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*holdingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *holdingSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.h.entered <- struct{}{}
	<-x.h.release
	x.h.mu.Lock()
	x.h.msgs = append(x.h.msgs, string(b))
	x.h.mu.Unlock()
	return nil
}

// TestSIGTERMDrains: on SIGTERM the listeners stop accepting, a session
// between transactions gets the 421 at once, a session inside a
// transaction goes on until smtpgate_shutdown_timeout and then gets the
// 421, a session whose message is being handed off gets its 250 (the
// message is at the next hop) even past the deadline, and the process
// exits 0 after logging the drain.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	hop := newHoldingHop(t)
	s := newStack(t, "smtpgate_next_hop = smtp://"+hop.addr+"\nsmtpgate_shutdown_timeout = 10s\n")
	const bye = "421 4.3.2 mail.example.org Service shutting down, closing transmission channel"

	idle := session(t, s.port["mx"])
	idle.do("EHLO client.example.net", "250")
	inTx := session(t, s.port["mx"])
	inTx.do("EHLO client.example.net", "250")
	inTx.do("MAIL FROM:<someone@example.net>", "250 ")
	inTx.do("RCPT TO:<john@example.org>", "250 ")
	handing := session(t, s.port["mx"])
	handing.do("EHLO client.example.net", "250")
	handing.do("MAIL FROM:<someone@example.net>", "250 ")
	handing.do("RCPT TO:<john@example.org>", "250 ")
	token := newToken("drain")
	handing.do("DATA", "354 ")
	w := handing.tp.DotWriter()
	fmt.Fprintf(w, "Subject: %s\r\n\r\nhanded off during the drain\r\n", token)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	<-hop.entered // the edge is handing the message off

	s.mu.Lock()
	cmd := s.procs["edge"]
	delete(s.procs, "edge") // this test stops it
	s.mu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // should the test fail early
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if got := idle.reply(); got != bye {
		t.Errorf("session between transactions: %q, want %q at once", got, bye)
	}
	// The listeners closed before the drain began.
	for _, l := range []string{"mx", "submission", "submissions"} {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port[l])); err == nil {
			conn.Close()
			t.Errorf("listener %s still accepts after SIGTERM", l)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("listener %s: %v, want connection refused", l, err)
		}
	}
	// A session inside its transaction goes on until the deadline ...
	inTx.do("NOOP", "250 ")
	// ... and then gets the 421.
	if got := inTx.reply(); got != bye {
		t.Errorf("session inside a transaction at the deadline: %q, want %q", got, bye)
	}
	// The hand-off under way finishes past the deadline: the client gets
	// its 250, then the 421.
	close(hop.release)
	if got := handing.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Errorf("session in hand-off: %q, want its 250", got)
	}
	if got := handing.reply(); got != bye {
		t.Errorf("session in hand-off after its 250: %q, want %q", got, bye)
	}
	msgs := hop.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: "+token) {
		t.Errorf("next hop holds %d messages, want the handed-off one", len(msgs))
	}

	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("smtpgate-edge after SIGTERM: %v, want exit status 0\n%s", err, s.log("edge"))
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("smtpgate-edge did not exit after the drain\n%s", s.log("edge"))
	}
	log := s.edgeLog()
	for msg, attrs := range map[string][]string{
		"drain: started; listeners closed": {"listeners=3", "sessions=3", "smtpgate_shutdown_timeout=10s"},
		"drain: smtpgate_shutdown_timeout reached; closing the sessions that wait for their client": {"sessions=2"},
		"drain: done": {"finished=0", "closed_between_transactions=1", "closed_at_deadline=2", "aborted=0"},
	} {
		line := logLine(log, msg)
		for _, a := range attrs {
			if !strings.Contains(line, " "+a) {
				t.Errorf("edge log: %q lacks %s: %q", msg, a, line)
			}
		}
	}
}

// logLine returns the first line of log whose message is msg.
func logLine(log, msg string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, fmt.Sprintf("msg=%q ", msg)) {
			return l
		}
	}
	return ""
}

// TestSecondSIGTERMStops: a second SIGTERM during the drain ends the
// process at once, by the signal, whatever smtpgate_shutdown_timeout
// allows.
func TestSecondSIGTERMStops(t *testing.T) {
	t.Parallel()
	s := newStack(t, "smtpgate_shutdown_timeout = 1h\n")
	inTx := session(t, s.port["mx"])
	inTx.do("EHLO client.example.net", "250")
	inTx.do("MAIL FROM:<someone@example.net>", "250 ")
	s.mu.Lock()
	cmd := s.procs["edge"]
	delete(s.procs, "edge")
	s.mu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // should the test fail early
	before := len(s.edgeLog())
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.edgeLog()[before:], `msg="drain: started; listeners closed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no drain logged after SIGTERM\n%s", s.log("edge"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("smtpgate-edge after a second SIGTERM: %v, want killed by SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("smtpgate-edge still draining after a second SIGTERM\n%s", s.log("edge"))
	}
}
