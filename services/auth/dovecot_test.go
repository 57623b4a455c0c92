package auth

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// TestDovecotUnixSocket: the unix socket gets the configured group and
// mode before it appears at its path, serves Postfix's protocol, replaces
// a stale socket, refuses to replace anything else, and goes away when
// the listener closes.
func TestDovecotUnixSocket(t *testing.T) {
	r := startReplica(t, "smtpgate_dovecot_auth_socket_mode = 0640\nsmtpgate_dovecot_auth_socket_group = mail\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "auth")
	stale, err := net.Listen("unix", path)
	must(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ln, err := r.srv.listenDovecot("unix:" + path)
	must(t, err)
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 {
		t.Errorf("socket mode %v, want a socket with 0640", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Gid != 8 {
		t.Errorf("socket group %d, want 8 (mail)", st.Gid)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want the socket only", len(entries))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.ServeDovecot(ctx, ln) }()
	d := dialDovecot(t, "unix", path)
	if got := d.plain("1", "192.0.2.5", "john@example.org", password); !strings.HasPrefix(got, "OK\t1\t") {
		t.Errorf("AUTH on the unix socket: %q, want OK", got)
	}
	d.c.Close()
	cancel()
	must(t, <-done)
	ln.Close() // as Run does
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the socket outlived its listener: %v", err)
	}

	must(t, os.WriteFile(path, []byte("not a socket"), 0o600))
	// Serve closes the listener too when its context ends, maybe only
	// now: a second Close removes nothing that took the path since.
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("a second Close of the listener removed the file now at its path: %v", err)
	}
	if _, err := r.srv.listenDovecot("unix:" + path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listening over a regular file: %v, want refused", err)
	}
}

// TestDovecotSettingsChecked: check names each bad setting with its line.
func TestDovecotSettingsChecked(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte(`smtpgate_dovecot_auth_listen = 127.0.0.1:10051
smtpgate_dovecot_auth_clients = 127.0.0.1 postfix.example.org
smtpgate_dovecot_auth_socket_mode = rw-rw----
smtpgate_dovecot_auth_socket_user = no-such-user-smtpgate
smtpgate_dovecot_auth_socket_group = no-such-group-smtpgate
`), 0o600))
	cfg, services, err := maincf.Load(Catalogue(), dir)
	must(t, err)
	err = validate(cfg, services)
	if err == nil {
		t.Fatal("Validate accepted bad Dovecot listener settings")
	}
	for _, want := range []string{
		"main.cf:2: smtpgate_dovecot_auth_clients: \"postfix.example.org\": not an address or network",
		"main.cf:3: smtpgate_dovecot_auth_socket_mode",
		"main.cf:4: smtpgate_dovecot_auth_socket_user",
		"main.cf:5: smtpgate_dovecot_auth_socket_group",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nwant it to say %q", err, want)
		}
	}
}

// TestDovecotRipFromTrustedOnly: with smtpgate_dovecot_auth_clients =
// 127.0.0.1, a caller at 127.0.0.66 rotating rip= gets nothing (closed
// unanswered, logged); the trusted caller's rip= rotation gets exactly the
// user's 10 checks.
func TestDovecotRipFromTrustedOnly(t *testing.T) {
	r := startReplica(t, "smtpgate_dovecot_auth_clients = 127.0.0.1\n")
	recordSleeps(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.ServeDovecot(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	guesses := func(from string) (answers []string) {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
		c, err := dl.Dial("tcp", ln.Addr().String())
		must(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var b strings.Builder
		b.WriteString("VERSION\t1\t2\nCPID\t1\n")
		for i := range 30 {
			resp := base64.StdEncoding.EncodeToString([]byte("\x00john@example.org\x00guess"))
			fmt.Fprintf(&b, "AUTH\t%d\tPLAIN\tservice=smtp\tsecured\trip=10.%d.0.1\tresp=%s\n", i+1, i, resp)
		}
		_, _ = c.Write([]byte(b.String()))
		br := bufio.NewReader(c)
		for len(answers) < 30 {
			l, err := br.ReadString('\n')
			if err != nil {
				return answers
			}
			if strings.HasPrefix(l, "FAIL\t") || strings.HasPrefix(l, "OK\t") {
				answers = append(answers, strings.TrimSuffix(l, "\n"))
			}
		}
		return answers
	}
	if got := guesses("127.0.0.66"); len(got) != 0 {
		t.Errorf("an untrusted caller got %d answers (%q…), want none", len(got), got[0])
	}
	if !strings.Contains(r.logs.String(), "dovecot auth connection refused") {
		t.Errorf("the refusal is not logged:\n%s", r.logs)
	}
	// john logged in from 10.99.0.1 before (over gRPC).
	if got := plainAuth(t, r, "10.99.0.1", "john@example.org", password); got != success {
		t.Fatalf("john from home: %v", got)
	}
	checked, refused := 0, 0
	for _, a := range guesses("127.0.0.1") {
		switch {
		case strings.Contains(a, "reason=authentication failure"):
			checked++
		case strings.Contains(a, "code=temp_fail"):
			refused++
		}
	}
	if checked != 10 || refused != 20 {
		t.Errorf("the trusted caller's 30 guesses over 30 rip= networks: %d checked, %d refused; want 10 and 20 (the user's maximum)", checked, refused)
	}
	// Through Postfix, from home, john still gets in; from elsewhere not.
	d := dialDovecot(t, "tcp", ln.Addr().String())
	if got := d.plain("1", "10.99.0.1", "john@example.org", password); !strings.HasPrefix(got, "OK\t1\t") {
		t.Errorf("john from home through the Dovecot port: %q, want OK", got)
	}
	if got := d.plain("2", "10.98.0.1", "john@example.org", password); !strings.Contains(got, "code=temp_fail") {
		t.Errorf("john from a new address through the Dovecot port: %q, want FAIL code=temp_fail", got)
	}
}
