package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The ports of deploy/local's main.cf and master.cf, which the deployment
// tests (package, images) run unchanged: SMTP, submission, submissions,
// policy gRPC, policy delegation, auth gRPC, the Dovecot protocol and the
// metrics of edge, policy and auth.
const (
	localMX         = 2525
	localSubmission = 2587
	localEdgeMetric = 9140
)

var localPorts = []int{2525, 2587, 2465, 10040, 10041, 10050, 10051, 9140, 9141, 9142}

// reserveLocalPorts claims deploy/local's fixed ports for the calling
// test: no other test of this binary is handed one of them (freePort),
// and each must be free now, else the test fails loudly (something else
// on the machine listens there: a scripts/up left running?).
func reserveLocalPorts(t *testing.T) {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for _, p := range localPorts {
		handedOut.ports[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("deploy/local's port %d is taken: %v", p, err)
		}
		l.Close()
	}
}

// procs are the processes a deployment test started, with their logs.
type procs struct {
	t    *testing.T
	dir  string
	cmds map[string]*exec.Cmd
}

func newProcs(t *testing.T) *procs {
	p := &procs{t: t, dir: t.TempDir(), cmds: map[string]*exec.Cmd{}}
	t.Cleanup(p.stopAll)
	return p
}

// start runs argv as name, its output to a log file, and waits until
// every address of addrs accepts connections.
func (p *procs) start(name string, argv []string, env []string, addrs ...string) {
	p.t.Helper()
	logFile, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: %v", name, err)
	}
	logFile.Close()
	p.cmds[name] = cmd
	for _, a := range addrs {
		if err := waitListening(a, 60*time.Second); err != nil {
			p.t.Fatalf("%s: %v\n%s", name, err, p.log(name))
		}
	}
}

func (p *procs) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
	return string(b)
}

// stopAll ends every process with SIGTERM (SIGKILL after 20 s) and waits.
func (p *procs) stopAll() {
	for name, cmd := range p.cmds {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			p.t.Errorf("%s did not stop on SIGTERM", name)
		}
		delete(p.cmds, name)
	}
}

// driveLocal runs what a postmaster checks first against a stack running
// deploy/local's listeners: a stranger relaying is refused with Postfix's
// reply, john@example.org submits over STARTTLS with AUTH PLAIN, and the
// message lands in maildir (a host directory). It returns the file the
// message went to.
func driveLocal(t *testing.T, maildir string) string {
	t.Helper()
	swaks := swaksPath(t)
	out, err := exec.Command(swaks, "--server", "127.0.0.1", "--port", itoa(localMX), "--local-interface", Stranger,
		"--from", "someone@example.net", "--to", "lisa@example.com", "--timeout", "20").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "554 5.7.1 <lisa@example.com>: Relay access denied") {
		t.Errorf("relay from a stranger: want 554 5.7.1 Relay access denied, swaks said (%v):\n%s", err, out)
	}
	token := newToken("deployed")
	out, err = swaksAsJohn(t, localSubmission, "PLAIN", "john@example.org", token)
	if err != nil {
		t.Fatalf("submission as john: %v\n%s", err, out)
	}
	var found string
	for deadline := time.Now().Add(10 * time.Second); found == "" && time.Now().Before(deadline); {
		files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(token)) {
				found = f
			}
		}
		if found == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if found == "" {
		t.Fatalf("the submitted message (%s) is not in %s/new", token, maildir)
	}
	return found
}

// buildInfoMatches checks that the edge's smtpgate_build_info (deploy/local
// serves its metrics on 127.0.0.1:9140) says what `smtpgate-edge --version`
// printed (versionOut).
func buildInfoMatches(t *testing.T, versionOut string) {
	t.Helper()
	first, _, _ := strings.Cut(versionOut, "\n")
	// "smtpgate-edge, version V (revision: R)"
	var version, revision string
	if f := strings.Fields(first); len(f) == 5 && f[1] == "version" {
		version, revision = f[2], strings.TrimSuffix(f[4], ")")
	} else {
		t.Fatalf("--version printed %q", versionOut)
	}
	resp, err := http.Get("http://127.0.0.1:" + itoa(localEdgeMetric) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "smtpgate_build_info{") {
			if !strings.Contains(line, `version="`+version+`"`) || !strings.Contains(line, `revision="`+revision+`"`) {
				t.Errorf("metrics: %s\nwant version %s and revision %s as --version says", line, version, revision)
			}
			return
		}
	}
	t.Errorf("no smtpgate_build_info in the edge's metrics")
}
