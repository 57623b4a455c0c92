package dovecotclient

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/pkg/dovecottest"
)

// theDovecot is the real Dovecot the tests here talk to: started by the
// first test that needs one (not by TestMain, so that fuzzing workers,
// which run FuzzReply only, start none), stopped by TestMain.
var theDovecot struct {
	sync.Once
	srv *dovecottest.Server
	dir string
	err error
}

// The users, in several of the schemes doveadm pw makes.
var (
	passwdUsers = []dovecottest.User{
		{Name: "sha512@example.org", Password: "pw-sha512", Scheme: "SHA512-CRYPT"},
		{Name: "sha256@example.org", Password: "pw-sha256", Scheme: "SHA256-CRYPT"},
		{Name: "bcrypt@example.org", Password: "pw-bcrypt", Scheme: "BLF-CRYPT"},
		{Name: "ssha256@example.org", Password: "pw-ssha256", Scheme: "SSHA256"},
		{Name: "pbkdf2@example.org", Password: "pw-pbkdf2", Scheme: "PBKDF2"},
		{Name: "md5crypt@example.org", Password: "pw-md5crypt", Scheme: "MD5-CRYPT"},
		{Name: "cram@example.org", Password: "pw-cram", Scheme: "CRAM-MD5"},
		{Name: "scram@example.org", Password: "pw-scram", Scheme: "SCRAM-SHA-256"},
		{Name: "tab\tuser@example.org", Password: "pw-tab", Scheme: "SHA512-CRYPT"},
	}
	sqlUsers = []dovecottest.User{
		{Name: "sql512@example.org", Password: "pw-sql512", Scheme: "SHA512-CRYPT"},
		{Name: "sqlssha@example.org", Password: "pw-sqlssha", Scheme: "SSHA512"},
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theDovecot.srv != nil {
		theDovecot.srv.Stop()
		if code != 0 {
			fmt.Fprintln(os.Stderr, theDovecot.srv.Log())
		}
	}
	if theDovecot.dir != "" {
		os.RemoveAll(theDovecot.dir)
	}
	os.Exit(code)
}

// realDovecot returns the package's Dovecot, starting it once.
func realDovecot(t *testing.T) *dovecottest.Server {
	t.Helper()
	theDovecot.Do(func() {
		if theDovecot.dir, theDovecot.err = os.MkdirTemp("", "dovecotclient"); theDovecot.err != nil {
			return
		}
		// The tab user cannot live in a passwd-file (Dovecot splits
		// protocol fields on TAB); it stays out.
		var users []dovecottest.User
		for _, u := range passwdUsers {
			if !strings.Contains(u.Name, "\t") {
				users = append(users, u)
			}
		}
		theDovecot.srv, theDovecot.err = dovecottest.Start(theDovecot.dir, dovecottest.Options{PasswdUsers: users, SQLUsers: sqlUsers,
			Mechanisms: []string{"plain", "login", "cram-md5", "scram-sha-256"}})
	})
	if theDovecot.err != nil {
		t.Fatal(theDovecot.err)
	}
	return theDovecot.srv
}

func client(t *testing.T, path string) *Client {
	t.Helper()
	c, err := New(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextRIP gives each request its own client address (Dovecot's penalty).
var nextRIP = dovecottest.Addresses("198.18")

func plainReq(user, pass string) Request {
	return Request{Mechanism: "PLAIN", LocalIP: "127.0.0.1", RemoteIP: nextRIP(), LocalPort: 587, RemotePort: 40000,
		Secured: true, Response: []byte("\x00" + user + "\x00" + pass), HasResponse: true}
}

func TestMechanisms(t *testing.T) {
	dovecot := realDovecot(t)
	for _, path := range []string{"unix:" + dovecot.ClientSocket, dovecot.ClientSocket, "inet:" + dovecot.ClientAddr} {
		ms, err := client(t, path).Mechanisms(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		got := strings.Join(names, " ")
		for _, want := range []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"} {
			if !strings.Contains(" "+got+" ", " "+want+" ") {
				t.Errorf("%s: mechanisms %q lack %s", path, got, want)
			}
		}
	}
}

// TestPlain: every user, in every scheme and both passdbs, gets in with
// the right password and not with a wrong one.
func TestPlain(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "unix:"+dovecot.ClientSocket)
	ctx := context.Background()
	for _, u := range append(passwdUsers[:len(passwdUsers)-1:len(passwdUsers)-1], sqlUsers...) {
		_, rep, err := c.Start(ctx, plainReq(u.Name, u.Password))
		if err != nil || rep.Result != OK || rep.User != u.Name {
			t.Errorf("%s (%s): %+v, %v; want OK user=%s", u.Name, u.Scheme, rep, err, u.Name)
		}
		_, rep, err = c.Start(ctx, plainReq(u.Name, u.Password+"x"))
		if err != nil || rep.Result != Fail || rep.Temp {
			t.Errorf("%s with a wrong password: %+v, %v; want a FAIL that is not temporary", u.Name, rep, err)
		}
	}
	_, rep, err := c.Start(ctx, plainReq("nobody@example.org", "x"))
	if err != nil || rep.Result != Fail || rep.Temp {
		t.Errorf("unknown user: %+v, %v", rep, err)
	}
}

func TestLogin(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "inet:"+dovecot.ClientAddr)
	ctx := context.Background()
	for _, pass := range []string{"pw-sql512", "wrong"} {
		x, rep, err := c.Start(ctx, Request{Mechanism: "LOGIN", LocalIP: "127.0.0.1", RemoteIP: nextRIP(), Secured: true})
		if err != nil || rep.Result != Continue || string(rep.Challenge) != "Username:" {
			t.Fatalf("LOGIN start: %+v, %v", rep, err)
		}
		rep, err = x.Continue(ctx, []byte("sql512@example.org"))
		if err != nil || rep.Result != Continue || string(rep.Challenge) != "Password:" {
			t.Fatalf("LOGIN user: %+v, %v", rep, err)
		}
		rep, err = x.Continue(ctx, []byte(pass))
		verdict(t, "LOGIN with "+pass, rep, err, pass == "pw-sql512")
	}
}

// verdict fails t unless the exchange ended in OK (ok) or in a FAIL that
// is not temporary.
func verdict(t *testing.T, what string, rep Reply, err error, ok bool) {
	t.Helper()
	want := map[bool]Result{true: OK, false: Fail}[ok]
	if err != nil || rep.Result != want || rep.Temp {
		t.Fatalf("%s: %+v, %v; want result %d", what, rep, err, want)
	}
}

func TestCRAMMD5(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "unix:"+dovecot.ClientSocket)
	ctx := context.Background()
	for _, pass := range []string{"pw-cram", "wrong"} {
		x, rep, err := c.Start(ctx, Request{Mechanism: "CRAM-MD5", RemoteIP: nextRIP()})
		if err != nil || rep.Result != Continue || !strings.HasPrefix(string(rep.Challenge), "<") {
			t.Fatalf("CRAM-MD5 start: %+v, %v", rep, err)
		}
		m := hmac.New(md5.New, []byte(pass))
		m.Write(rep.Challenge)
		rep, err = x.Continue(ctx, []byte("cram@example.org "+hex.EncodeToString(m.Sum(nil))))
		verdict(t, "CRAM-MD5 with "+pass, rep, err, pass == "pw-cram")
	}
}

func TestSCRAM(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "unix:"+dovecot.ClientSocket)
	ctx := context.Background()
	for _, pass := range []string{"pw-scram", "wrong"} {
		sc, err := scram.SHA256.NewClient("scram@example.org", pass, "")
		if err != nil {
			t.Fatal(err)
		}
		conv := sc.NewConversation()
		first, _ := conv.Step("")
		x, rep, err := c.Start(ctx, Request{Mechanism: "SCRAM-SHA-256", RemoteIP: nextRIP(), Response: []byte(first), HasResponse: true})
		for err == nil && rep.Result == Continue {
			var next string
			next, err = conv.Step(string(rep.Challenge))
			if err != nil {
				break
			}
			rep, err = x.Continue(ctx, []byte(next))
		}
		if pass == "pw-scram" && (err != nil || rep.Result != OK || rep.User != "scram@example.org" || !conv.Valid()) {
			t.Fatalf("SCRAM-SHA-256: %+v, %v (server verified: %v)", rep, err, conv.Valid())
		}
		if pass == "wrong" && (err != nil || rep.Result != Fail) {
			t.Fatalf("SCRAM-SHA-256 with a wrong password: %+v, %v; want FAIL", rep, err)
		}
	}
}

// TestConcurrent: exchanges in parallel on one connection each get their
// own answer.
func TestConcurrent(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "unix:"+dovecot.ClientSocket)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := sqlUsers[i%2]
			pass := u.Password
			if i%3 == 0 {
				pass = "wrong"
			}
			req := plainReq(u.Name, pass)
			_, rep, err := c.Start(context.Background(), req)
			want := map[bool]Result{true: OK, false: Fail}[pass == u.Password]
			if err != nil || rep.Result != want || (want == OK && rep.User != u.Name) {
				errs <- fmt.Errorf("request %d (%s): %+v, %v; want result %d", i, u.Name, rep, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUserdb(t *testing.T) {
	dovecot := realDovecot(t)
	for _, path := range []string{"unix:" + dovecot.UserdbSocket, dovecot.UserdbSocket} {
		c, err := NewUserDB(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		for _, u := range []string{"sha512@example.org", "sql512@example.org"} {
			if name, ok, err := c.Lookup(ctx, u, "smtp"); err != nil || !ok || name != u {
				t.Errorf("Lookup(%s) = %q, %v, %v", u, name, ok, err)
			}
		}
		for _, u := range []string{"nobody@example.org", "evil\tuser=sha512@example.org", "x\x00y"} {
			if _, ok, err := c.Lookup(ctx, u, "smtp"); err != nil || ok {
				t.Errorf("Lookup(%q) = %v, %v; want not found", u, ok, err)
			}
		}
	}
}

// TestWrongSocket: each client refuses the other kind of socket, as
// Postfix refuses auth-master for auth-client.
func TestWrongSocket(t *testing.T) {
	dovecot := realDovecot(t)
	u, _ := NewUserDB("unix:"+dovecot.ClientSocket, 0)
	if _, _, err := u.Lookup(context.Background(), "sha512@example.org", ""); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "auth-client socket") {
		t.Errorf("userdb lookup on auth-client: %v", err)
	}
	c := client(t, "unix:"+dovecot.UserdbSocket)
	if _, _, err := c.Start(context.Background(), plainReq("sha512@example.org", "pw-sha512")); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not auth-client") {
		t.Errorf("AUTH on auth-userdb: %v", err)
	}
}

// TestUnreachable: no Dovecot, or one that never answers, is an error
// wrapping ErrUnavailable, never a verdict.
func TestUnreachable(t *testing.T) {
	c := client(t, "unix:"+t.TempDir()+"/none")
	if _, _, err := c.Start(context.Background(), plainReq("sha512@example.org", "pw-sha512")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("missing socket: %v", err)
	}
	addr, _ := silentServer(t)
	silent, err := New("inet:"+addr, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if _, _, err := silent.Start(context.Background(), plainReq("sha512@example.org", "pw-sha512")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("silent server: %v", err)
	}
}

// silentServer accepts connections on loopback and never says a word,
// as a hung Dovecot; accepted counts them.
func silentServer(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var held []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String(), accepted
}

// TestSilentDialShared: requests that arrive while a dial to a Dovecot
// that never answers is under way take its failure instead of each
// dialling (and waiting out the timeout) in turn.
func TestSilentDialShared(t *testing.T) {
	addr, accepted := silentServer(t)
	silent, err := New("inet:"+addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, _, err := silent.Start(context.Background(), plainReq("sha512@example.org", "pw-sha512")); !errors.Is(err, ErrUnavailable) {
				t.Errorf("silent server: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := accepted.Load(); got >= n {
		t.Errorf("%d requests dialled %d times; want the waiting ones to share a failed dial", n, got)
	}
}

// TestRestart: a Dovecot killed under a client gives ErrUnavailable, and
// once it is back the same client authenticates again, without being
// made anew.
func TestRestart(t *testing.T) {
	dovecot := realDovecot(t)
	c := client(t, "unix:"+dovecot.ClientSocket)
	u, err := NewUserDB("unix:"+dovecot.UserdbSocket, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx := context.Background()
	check := func(when string, wantUp bool) {
		t.Helper()
		_, rep, err := c.Start(ctx, plainReq("sha512@example.org", "pw-sha512"))
		_, found, uerr := u.Lookup(ctx, "sha512@example.org", "smtp")
		if wantUp && (err != nil || rep.Result != OK || uerr != nil || !found) {
			t.Fatalf("%s: %+v, %v; lookup %v, %v", when, rep, err, found, uerr)
		}
		if !wantUp && (!errors.Is(err, ErrUnavailable) || !errors.Is(uerr, ErrUnavailable)) {
			t.Fatalf("%s: %+v, %v; lookup %v, %v; want ErrUnavailable", when, rep, err, found, uerr)
		}
	}
	check("before", true)
	if c.Errors() != 0 || u.Errors() != 0 {
		t.Fatalf("errors counted with Dovecot up: %d, %d", c.Errors(), u.Errors())
	}
	dovecot.Kill()
	check("killed", false)
	if c.Errors() != 1 || u.Errors() != 1 {
		t.Errorf("errors counted with Dovecot killed: %d, %d; want 1, 1", c.Errors(), u.Errors())
	}
	if err := dovecot.Restart(); err != nil {
		t.Fatal(err)
	}
	check("restarted", true)
	dovecot.Stop()
	if err := dovecot.Restart(); err != nil {
		t.Fatal(err)
	}
	check("stopped and started", true)
}

// FuzzReply: no reply line makes an OK without a user name, nor panics.
func FuzzReply(f *testing.F) {
	f.Add("OK\t1\tuser=a@b")
	f.Add("OK\t1\tuser=a\tnologin")
	f.Add("FAIL\t1\tcode=temp_fail\treason=x\x01t")
	f.Add("CONT\t1\tVXNlcm5hbWU6")
	f.Add("CONT\t1\t#")
	f.Fuzz(func(t *testing.T, line string) {
		x := &Exchange{c: &Client{path: "fuzz"}}
		rep, err := x.parse(strings.Split(line, "\t"))
		if err == nil && rep.Result == OK && (rep.User == "" || !strings.HasPrefix(line, "OK\t")) {
			t.Fatalf("%q gave OK as %q", line, rep.User)
		}
	})
}
