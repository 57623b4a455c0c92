package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/certtest"
)

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "smtpgate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"./services/policy/cmd/smtpgate-policy", "./services/auth/cmd/smtpgate-auth", "./services/edge/cmd/smtpgate-edge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the services: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	defer stopDovecot()
	defer stopSQLServers()
	return m.Run()
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("go.work not found above " + wd)
}

// Stranger and Trusted are the client source addresses: deploy/local's
// mynetworks holds 127.0.0.1 only.
const (
	Trusted  = "127.0.0.1"
	Stranger = "127.0.0.66"
	// JohnPassword is the example user's password stated in the README.
	JohnPassword = "john-example-password"
)

// stack is the three services running on a copy of deploy/local.
type stack struct {
	t       *testing.T
	conf    string
	maildir string
	port    map[string]int // mx, submission, submissions, policy, auth
	mu      sync.Mutex
	procs   map[string]*exec.Cmd
	logs    map[string]string // service → log file
}

// handedOut are the ports freePort gave, never given twice in one test
// binary.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePort returns a port free on 127.0.0.1, below the kernel's ephemeral
// range (32768 and up), so that no outgoing connection of a parallel test
// takes it between now and the moment a service binds it, and not given
// before (parallel stacks start between choosing and binding).
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		// 10000-19999: pkg/postfixtest takes its Postfix ports from
		// 20000-32767.
		port := 10000 + mrand.IntN(10000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("no free port in 10000-19999")
	return 0
}

// newStack copies deploy/local into a temporary directory, moves every
// listener to a free port, points the Maildir and the certificate there,
// and starts policy, auth and edge.
func newStack(t *testing.T, extraMain string) *stack {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, conf: t.TempDir(), port: map[string]int{}, procs: map[string]*exec.Cmd{}, logs: map[string]string{}}
	s.maildir = filepath.Join(s.conf, "maildir")
	for _, name := range []string{"mx", "submission", "submissions", "policy", "delegation", "auth", "dovecot",
		"edge-metrics", "policy-metrics", "auth-metrics"} {
		s.port[name] = freePort(t)
	}
	mainCF, err := os.ReadFile(filepath.Join(root, "deploy/local/main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeCert(t, s.conf)
	// Policy resolves every client's names: by default against a DNS
	// server of the test's own that knows no name, not the machine's
	// (a test's extraMain may name another).
	noNames := startZone(t, nil, nil)
	// Later settings win in main.cf, as in Postfix.
	mainCF = append(mainCF, fmt.Sprintf(`
# --- end-to-end test overrides ---
smtpgate_policy_listen = 127.0.0.1:%d
smtpgate_policy_delegation_listen = 127.0.0.1:%d
smtpgate_auth_listen = 127.0.0.1:%d
smtpgate_dovecot_auth_listen = 127.0.0.1:%d
smtpgate_next_hop = maildir:%s
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpgate_policy_timeout = 3s
smtpgate_auth_timeout = 3s
# stopAll waits 15 s for each service: the edge's drain must end sooner.
smtpgate_shutdown_timeout = 5s
smtpgate_edge_metrics_listen = 127.0.0.1:%d
smtpgate_policy_metrics_listen = 127.0.0.1:%d
smtpgate_auth_metrics_listen = 127.0.0.1:%d
smtpgate_dns_servers = %s
%s
`, s.port["policy"], s.port["delegation"], s.port["auth"], s.port["dovecot"], s.maildir, certFile, keyFile,
		s.port["edge-metrics"], s.port["policy-metrics"], s.port["auth-metrics"], noNames, extraMain)...)
	write(t, filepath.Join(s.conf, "main.cf"), string(mainCF))
	masterCF, err := os.ReadFile(filepath.Join(root, "deploy/local/master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	m := string(masterCF)
	for old, name := range map[string]string{"127.0.0.1:2525": "mx", "127.0.0.1:2587": "submission", "127.0.0.1:2465": "submissions"} {
		if !strings.Contains(m, old) {
			t.Fatalf("deploy/local/master.cf has no %s listener", old)
		}
		m = strings.ReplaceAll(m, old, fmt.Sprintf("127.0.0.1:%d", s.port[name]))
	}
	write(t, filepath.Join(s.conf, "master.cf"), m)
	passwd, err := os.ReadFile(filepath.Join(root, "deploy/local/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.conf, "passwd"), string(passwd))

	for _, svc := range []string{"policy", "auth", "edge"} {
		s.check(svc)
	}
	t.Cleanup(s.stopAll)
	s.start("policy")
	s.start("auth")
	s.start("edge")
	return s
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCert makes a self-signed certificate for mail.example.org.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certtest.SelfSigned(t, certFile, keyFile, "mail.example.org")
	return certFile, keyFile
}

// check runs "smtpgate-<svc> -c conf check" and fails the test on a problem.
func (s *stack) check(svc string) { s.checkIn(svc, s.conf) }

// checkIn runs "smtpgate-<svc> -c dir check" and fails the test on a
// problem.
func (s *stack) checkIn(svc, dir string) {
	s.t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "smtpgate-"+svc), "-c", dir, "check").CombinedOutput()
	if err != nil {
		s.t.Fatalf("smtpgate-%s -c %s check: %v\n%s", svc, dir, err, out)
	}
}

// ports returns the TCP ports svc listens on.
func (s *stack) ports(svc string) []int {
	switch svc {
	case "edge":
		return []int{s.port["mx"], s.port["submission"], s.port["submissions"]}
	case "auth":
		return []int{s.port["auth"], s.port["dovecot"]}
	case "policy":
		return []int{s.port["policy"], s.port["delegation"]}
	default:
		return []int{s.port[svc]}
	}
}

// start runs svc and waits until all its ports accept connections.
func (s *stack) start(svc string) {
	s.t.Helper()
	var addrs []string
	for _, p := range s.ports(svc) {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	s.startAs(svc, svc, s.conf, addrs)
}

// startAs runs smtpgate-<svc> on the configuration in dir as the process
// called name (several replicas of one service have several names), and
// waits until it accepts connections on every address of addrs.
func (s *stack) startAs(name, svc, dir string, addrs []string) {
	s.t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "smtpgate-"+svc), "-c", dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	logFile.Close()
	s.mu.Lock()
	s.procs[name], s.logs[name] = cmd, logPath
	s.mu.Unlock()
	for _, a := range addrs {
		if err := waitListening(a, 30*time.Second); err != nil {
			s.t.Fatalf("%s (smtpgate-%s): %v\n%s", name, svc, err, s.log(name))
		}
	}
}

// waitListening polls addr until it accepts a TCP connection.
func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process svc (a service, or a replica's name) at once
// (SIGKILL), as a crash would.
func (s *stack) kill(svc string) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.procs[svc]
	delete(s.procs, svc)
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func (s *stack) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = map[string]*exec.Cmd{}
	s.mu.Unlock()
	for svc, cmd := range procs {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !s.t.Failed() {
				s.t.Errorf("%s did not exit cleanly on SIGINT: %v\n%s", svc, err, s.log(svc))
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			s.t.Errorf("%s did not stop within 15s of SIGINT", svc)
		}
	}
	if s.t.Failed() {
		for svc := range s.logs {
			s.t.Logf("--- %s log ---\n%s", svc, s.log(svc))
		}
	}
}

func (s *stack) log(svc string) string {
	b, _ := os.ReadFile(s.logs[svc])
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// dial opens an SMTP session from the source address from to a listener;
// implicit makes it a TLS connection from the first byte.
func (s *stack) dial(from, listener string, implicit bool) (*smtp.Client, error) {
	conn, err := dialConn(from, fmt.Sprintf("127.0.0.1:%d", s.port[listener]), 30*time.Second)
	if err != nil {
		return nil, err
	}
	if implicit {
		conn = tls.Client(conn, &tls.Config{ServerName: "mail.example.org", InsecureSkipVerify: true})
	}
	c, err := smtp.NewClient(conn, "mail.example.org")
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// message is one test message; token makes it findable in the Maildir.
type message struct {
	from, listener string
	implicitTLS    bool
	startTLS       bool
	auth           smtp.Auth
	sender         string
	rcpts          []string
	token          string
}

var tokenSeq struct {
	sync.Mutex
	n int
}

func newToken(label string) string {
	tokenSeq.Lock()
	defer tokenSeq.Unlock()
	tokenSeq.n++
	return fmt.Sprintf("e2e-%s-%d-%d", label, time.Now().UnixNano(), tokenSeq.n)
}

// send runs one whole transaction and returns the first error reply (a
// *textproto.Error for SMTP replies) or nil when the message was queued.
func (s *stack) send(m message) error {
	c, err := s.dial(m.from, m.listener, m.implicitTLS)
	if err != nil {
		return err
	}
	return sendOn(c, m)
}

// sendOn runs send's transaction on a session already open, and closes
// it.
func sendOn(c *smtp.Client, m message) error {
	defer c.Close()
	if err := transact(c, m); err != nil {
		return err
	}
	return c.Quit()
}

// transact runs one transaction (with EHLO, STARTTLS and AUTH as m asks)
// on an open session: nil means the final dot was answered 250.
func transact(c *smtp.Client, m message) error {
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	if m.startTLS {
		if err := c.StartTLS(&tls.Config{ServerName: "mail.example.org", InsecureSkipVerify: true}); err != nil {
			return err
		}
	}
	if m.auth != nil {
		if err := c.Auth(m.auth); err != nil {
			return err
		}
	}
	return mailTx(c, m)
}

// mailTx runs MAIL, RCPT and DATA with m's message on a session past
// EHLO: nil means the final dot was answered 250.
func mailTx(c *smtp.Client, m message) error {
	if err := c.Mail(m.sender); err != nil {
		return err
	}
	for _, r := range m.rcpts {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@client.example.net>\r\n\r\nbody of %s\r\n", m.sender, strings.Join(m.rcpts, ">, <"), m.token, m.token, m.token)
	return w.Close()
}

// startData says HELO client.example.net, MAIL FROM:<from> and RCPT
// TO:<to> on c and opens DATA; a refusal fails the test.
func startData(t *testing.T, c *smtp.Client, from, to string) io.WriteCloser {
	t.Helper()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// replyOf returns "code text" of an SMTP error, or the error text.
func replyOf(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return strconv.Itoa(te.Code) + " " + te.Msg
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// codeOf returns the SMTP reply code of err, or 0.
func codeOf(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// maildirTokens counts, for every token, the Maildir files that hold it.
// It also fails the test on any file left in tmp/ (a partial write).
func (s *stack) maildirTokens() map[string]int {
	s.t.Helper()
	return s.maildirCounts(true)
}

// maildirCounts is maildirTokens; checkTmp: tmp/ must be empty (false
// while other messages are on their way in).
func (s *stack) maildirCounts(checkTmp bool) map[string]int {
	s.t.Helper()
	counts := map[string]int{}
	entries, err := os.ReadDir(filepath.Join(s.maildir, "new"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Fatal(err)
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(s.maildir, "new", e.Name()))
		if err != nil {
			s.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		seen := map[string]bool{}
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "Subject: "); ok && strings.HasPrefix(v, "e2e-") && !seen[v] {
				seen[v] = true
				counts[v]++
			}
		}
		f.Close()
	}
	tmp, _ := os.ReadDir(filepath.Join(s.maildir, "tmp"))
	if checkTmp && len(tmp) != 0 {
		s.t.Errorf("Maildir tmp/ holds %d leftover files", len(tmp))
	}
	return counts
}

// maildirFile returns the content of the Maildir file holding token.
func (s *stack) maildirFile(token string) string {
	s.t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.maildir, "new"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.maildir, "new", e.Name()))
		if err == nil && bytes.Contains(b, []byte("Subject: "+token)) {
			return string(b)
		}
	}
	s.t.Fatalf("no Maildir file holds %s", token)
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

// swaksPath is where swaks is; a missing swaks fails the test
// (scripts/deps --test installs it).
func swaksPath(t *testing.T) string {
	t.Helper()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: scripts/test installs it (scripts/deps --test)")
	}
	return swaks
}

// swaksAsJohn runs swaks against the listener on port: STARTTLS, AUTH
// mech as john@example.org, and a message from john to rcpt, with
// "Subject: token" when token is not empty. It returns what swaks said
// (stdout and stderr, as CombinedOutput).
func swaksAsJohn(t *testing.T, port int, mech, rcpt, token string) ([]byte, error) {
	t.Helper()
	args := []string{"--server", "127.0.0.1", "--port", itoa(port), "--tls",
		"--auth", mech, "--auth-user", "john@example.org", "--auth-password", JohnPassword,
		"--from", "john@example.org", "--to", rcpt}
	if token != "" {
		args = append(args, "--header", "Subject: "+token)
	}
	return exec.Command(swaksPath(t), append(args, "--timeout", "20")...).CombinedOutput()
}

func tlsConfig() *tls.Config {
	return &tls.Config{ServerName: "mail.example.org", InsecureSkipVerify: true}
}
