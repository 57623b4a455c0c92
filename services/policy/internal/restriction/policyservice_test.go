package restriction

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePolicyServer is a policy server on loopback answering action(req)
// for every request; it counts connections and requests.
type fakePolicyServer struct {
	addr        string
	mu          sync.Mutex
	conns, reqs int
	last        map[string]string
}

func startPolicyServer(t *testing.T, action func(map[string]string) string) *fakePolicyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakePolicyServer{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				req := map[string]string{}
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimSuffix(line, "\n")
					if line != "" {
						k, v, _ := strings.Cut(line, "=")
						req[k] = v
						continue
					}
					s.mu.Lock()
					s.reqs++
					s.last = req
					s.mu.Unlock()
					a := action(req)
					if a == "" {
						return // no answer: the client must fall back
					}
					fmt.Fprintf(c, "action=%s\n\n", a)
					req = map[string]string{}
				}
			}()
		}
	}()
	return s
}

func TestCheckPolicyService(t *testing.T) {
	srv := startPolicyServer(t, func(req map[string]string) string {
		switch req["sender"] {
		case "spammer@example.net":
			return "550 5.7.1 you are on my list"
		case "slow@example.net":
			return "DEFER_IF_PERMIT come back later"
		case "silent@example.net":
			return ""
		}
		return "DUNNO"
	})
	conf := "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service { inet:" + srv.addr + ", timeout=2s, default_action=451 4.3.5 policy server down, try_limit=1 }"
	e := compile(t, conf)
	for _, tc := range []struct {
		sender string
		want   Verdict
	}{
		{"friend@example.net", permitted()},
		{"spammer@example.net", refused(550, "5.7.1", "<john@example.org>: Recipient address rejected: you are on my list", "", "")},
		{"slow@example.net", refused(450, "4.7.1", "<john@example.org>: Recipient address rejected: come back later", "", "")},
		{"silent@example.net", refused(451, "4.3.5", "<john@example.org>: Recipient address rejected: policy server down", "", "")},
		{"friend@example.net", permitted()},
	} {
		got := verdictOf(t, e, facts(sender(tc.sender)), tc.want)
		got.Warnings = nil
		if got.Action != tc.want.Action || got.Reply != tc.want.Reply {
			t.Errorf("%s: got %v %v, want %v %v", tc.sender, got.Action, got.Reply, tc.want.Action, tc.want.Reply)
		}
	}
	srv.mu.Lock()
	last, conns, reqs := srv.last, srv.conns, srv.reqs
	srv.mu.Unlock()
	if last["request"] != "smtpd_access_policy" || last["protocol_state"] != "RCPT" || last["client_address"] != strangerAddr ||
		last["recipient"] != "john@example.org" || last["helo_name"] != "client.example.net" || last["sender"] != "friend@example.net" {
		t.Errorf("request attributes: %v", last)
	}
	// Four requests on one reused connection; the silent answer cost it,
	// and the next request opened another.
	if reqs != 5 || conns != 2 {
		t.Errorf("%d requests on %d connections, want 5 on 2", reqs, conns)
	}
	// "stress" is empty normally (asserted above with the others) and
	// "yes" while the edge is under stress, as Postfix's smtpd sends
	// $stress.
	if last["stress"] != "" {
		t.Errorf("stress = %q without stress, want empty", last["stress"])
	}
	verdictOf(t, e, facts(sender("friend@example.net"), func(f *Facts) { f.Stress = true }), permitted())
	srv.mu.Lock()
	last = srv.last
	srv.mu.Unlock()
	if v, ok := last["stress"]; !ok || v != "yes" {
		t.Errorf("stress = %q (sent: %v) under stress, want yes", v, ok)
	}
	// Nothing listening: the default action.
	e = compile(t, "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service { inet:127.0.0.1:1, try_limit=2, retry_delay=10ms }")
	if v := verdictOf(t, e, facts(), Verdict{}); v.Reply.Code != 451 || v.Reply.Text != "<john@example.org>: Recipient address rejected: Server configuration problem" {
		t.Errorf("server down: %v", v)
	}
}

func TestCheckPolicyServiceBeforeRelayCheckIsOpen(t *testing.T) {
	_, err := Compile(config(t, "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:9, reject_unauth_destination"))
	if err == nil || !strings.Contains(err.Error(), "open relay") || !strings.Contains(err.Error(), "check_policy_service inet:127.0.0.1:9") {
		t.Errorf("Compile: %v", err)
	}
}

// TestPostgrey delegates to Debian's postgrey: the first attempt is
// greylisted (450), a retry after the delay passes.
func TestPostgrey(t *testing.T) {
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		t.Fatal("postgrey is not installed: run scripts/deps --test")
	}
	if os.Getuid() != 0 {
		t.Fatal("postgrey drops privileges to its own user: run the tests as root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// postgrey runs as its own user: its directory must be reachable,
	// which t.TempDir()'s private parent is not.
	db, err := os.MkdirTemp("", "smtpgate-postgrey")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(db) })
	if u, err := user.Lookup("postgrey"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(db, uid, gid)
	}
	cmd := exec.Command(bin, "--inet=127.0.0.1:"+strconv.Itoa(port), "--dbdir="+db, "--delay=1", "--pidfile="+db+"/pid")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("postgrey did not start:\n%s", out)
		}
	}
	e := compile(t, "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:"+strconv.Itoa(port))
	f := facts(sender("someone@example.net"))
	v, err := e.Check(context.Background(), f)
	if err != nil || v.Action != ActionDefer || v.Reply.Code != 450 || !strings.Contains(v.Reply.Text, "Greylisted") {
		t.Fatalf("first attempt: %v %v, want 450 Greylisted", v, err)
	}
	time.Sleep(2 * time.Second)
	v, err = e.Check(context.Background(), f)
	if err != nil || v.Action != ActionPermit {
		t.Fatalf("retry after the delay: %v %v, want a permit", v, err)
	}
}
