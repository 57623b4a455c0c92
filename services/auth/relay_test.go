package auth

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xdg-go/scram"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/dovecottest"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// The real Dovecot of this package's tests: started by the first test
// that needs it, stopped by TestMain.
var (
	dovecotOnce sync.Once
	dovecotSrv  *dovecottest.Server
	dovecotErr  error
	dovecotDir  string
)

// Its users: several doveadm pw schemes in the passwd-file, and SQL.
var (
	dovecotPasswdUsers = []dovecottest.User{
		{Name: "d512@example.org", Password: "d512-pw", Scheme: "SHA512-CRYPT"},
		{Name: "dbcrypt@example.org", Password: "dbcrypt-pw", Scheme: "BLF-CRYPT"},
		{Name: "dssha@example.org", Password: "dssha-pw", Scheme: "SSHA256"},
		{Name: "dcram@example.org", Password: "dcram-pw", Scheme: "CRAM-MD5"},
		{Name: "dscram@example.org", Password: "dscram-pw", Scheme: "SCRAM-SHA-256"},
		{Name: "dscram1@example.org", Password: "dscram1-pw", Scheme: "SCRAM-SHA-1"},
	}
	dovecotSQLUsers = []dovecottest.User{
		{Name: "dsql@example.org", Password: "dsql-pw", Scheme: "SHA256-CRYPT"},
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if dovecotSrv != nil {
		dovecotSrv.Stop()
	}
	if dovecotDir != "" {
		os.RemoveAll(dovecotDir)
	}
	os.Exit(code)
}

// realDovecot returns the package's Dovecot, starting it once.
func realDovecot(t *testing.T) *dovecottest.Server {
	t.Helper()
	dovecotOnce.Do(func() {
		if dovecotDir, dovecotErr = os.MkdirTemp("", "auth-dovecot"); dovecotErr != nil {
			return
		}
		dovecotSrv, dovecotErr = dovecottest.Start(dovecotDir, dovecottest.Options{
			PasswdUsers: dovecotPasswdUsers, SQLUsers: dovecotSQLUsers,
			Mechanisms: []string{"plain", "login", "cram-md5", "scram-sha-1", "scram-sha-256", "digest-md5"}})
	})
	if dovecotErr != nil {
		t.Fatal(dovecotErr)
	}
	return dovecotSrv
}

// clientAddr gives each exchange its own client address, so that neither
// Dovecot's penalty nor smtpgate's throttle sees a series unless a test
// means one.
var clientAddr = dovecottest.Addresses("127.1")

// startDovecotReplica runs a server whose main.cf listener checks its own
// passwd-file (deploy/local's) and whose master.cf listeners relay to the
// real Dovecot: "dove" on its unix socket (unix:/path), "doveinet" on
// TCP, "doverel" on the unix socket again (/path).
func startDovecotReplica(t *testing.T, extra string) (*replica, *dovecottest.Server) {
	t.Helper()
	return startDovecotReplicaWith(t, extra, nil)
}

// startDovecotReplicaWith is startDovecotReplica with metrics on reg.
func startDovecotReplicaWith(t *testing.T, extra string, reg prometheus.Registerer) (*replica, *dovecottest.Server) {
	t.Helper()
	d := realDovecot(t)
	dir := t.TempDir()
	passwd, err := os.ReadFile("../../deploy/local/passwd")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte(fmt.Sprintf(`smtpgate_passwd_file = passwd
myhostname = mail.example.org
smtpd_sasl_security_options = noanonymous, noplaintext
smtpd_sasl_tls_security_options = noanonymous
smtpgate_auth_failure_delay = 0
smtpgate_dovecot_userdb_path = unix:%s
%s`, d.UserdbSocket, extra)), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "master.cf"), []byte(fmt.Sprintf(`dove inet n - n - - smtpd
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=unix:%s
doveinet inet n - n - - smtpd
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:%s
doverel inet n - n - - smtpd
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=%s
`, d.ClientSocket, d.ClientAddr, d.ClientSocket)), 0o600))
	return serveDir(t, dir, reg), d
}

func dsession(listener string, tls bool) *authv1.Session {
	return &authv1.Session{Id: "d", Listener: listener, ClientAddress: clientAddr(), ClientPort: 40000, ServerAddress: "127.0.0.1", Tls: tls}
}

func TestDovecotMechanisms(t *testing.T) {
	r, _ := startDovecotReplica(t, "")
	for _, tc := range []struct {
		listener string
		tls      bool
		want     string
	}{
		// Dovecot's list, without DIGEST-MD5 (smtpgate cannot relay it),
		// filtered by the security options with Dovecot's flags.
		{"dove", true, "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"},
		{"dove", false, "CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"},
		{"doveinet", true, "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"},
		{"doverel", true, "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"},
		// main.cf's listener: smtpgate's own (smtpgate_sasl_mechanisms).
		{"", true, "PLAIN LOGIN"},
	} {
		resp, err := r.client.Mechanisms(context.Background(), &authv1.MechanismsRequest{Session: dsession(tc.listener, tc.tls)})
		if err != nil {
			t.Fatalf("%s: %v", tc.listener, err)
		}
		got := resp.GetMechanisms()
		if strings.Join(got, " ") != tc.want {
			t.Errorf("listener %q tls %v: %v, want %s", tc.listener, tc.tls, got, tc.want)
		}
	}
}

// TestDovecotPlain: every Dovecot user gets in through each Dovecot
// listener with the right password and is refused (535) with a wrong one;
// a user only smtpgate's passwd-file knows is refused there and let in
// on main.cf's listener.
func TestDovecotPlain(t *testing.T) {
	r, _ := startDovecotReplica(t, "")
	plain := func(listener, user, pw string) *authv1.Outcome {
		_, o := exchange(t, r.client, dsession(listener, true), "PLAIN", []byte("\x00"+user+"\x00"+pw))
		return o
	}
	for _, l := range []string{"dove", "doveinet", "doverel"} {
		for _, u := range append(append([]dovecottest.User{}, dovecotPasswdUsers...), dovecotSQLUsers...) {
			if o := plain(l, u.Name, u.Password); o.GetResult() != authv1.Result_RESULT_SUCCESS || o.GetUsername() != u.Name {
				t.Errorf("%s: %s (%s): %v", l, u.Name, u.Scheme, o)
			}
			if o := plain(l, u.Name, "not-"+u.Password); o.GetResult() != authv1.Result_RESULT_FAILURE {
				t.Errorf("%s: %s with a wrong password: %v", l, u.Name, o)
			}
		}
	}
	if o := plain("dove", "john@example.org", password); o.GetResult() != authv1.Result_RESULT_FAILURE {
		t.Errorf("a passwd-file-only user through Dovecot: %v", o)
	}
	if o := plain("", "john@example.org", password); o.GetResult() != authv1.Result_RESULT_SUCCESS {
		t.Errorf("main.cf's listener lost its passwd-file: %v", o)
	}
	if o := plain("", "d512@example.org", "d512-pw"); o.GetResult() != authv1.Result_RESULT_FAILURE {
		t.Errorf("main.cf's listener asked Dovecot: %v", o)
	}
	// Malformed PLAIN never reaches Dovecot: 501.
	if _, o := exchange(t, r.client, dsession("dove", true), "PLAIN", []byte("no-nuls")); o.GetResult() != authv1.Result_RESULT_MALFORMED {
		t.Errorf("malformed PLAIN: %v", o)
	}
}

// TestDovecotMultiStep: LOGIN, CRAM-MD5, SCRAM-SHA-1 and SCRAM-SHA-256 run their
// rounds through Dovecot's challenges.
func TestDovecotMultiStep(t *testing.T) {
	r, _ := startDovecotReplica(t, "")
	for _, pw := range []string{"dsql-pw", "wrong"} {
		ch, o := exchange(t, r.client, dsession("dove", true), "LOGIN", nil, []byte("dsql@example.org"), []byte(pw))
		want := map[bool]authv1.Result{true: authv1.Result_RESULT_SUCCESS, false: authv1.Result_RESULT_FAILURE}[pw == "dsql-pw"]
		if o.GetResult() != want || strings.Join(ch, ",") != "Username:,Password:" {
			t.Errorf("LOGIN %s: %v after %q", pw, o, ch)
		}
	}
	// CRAM-MD5: the challenge is Dovecot's, the digest computed on it.
	for _, pw := range []string{"dcram-pw", "wrong"} {
		ctx := context.Background()
		st, err := r.client.Authenticate(ctx)
		must(t, err)
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: dsession("dove", false), Mechanism: "CRAM-MD5"}}}))
		resp, err := st.Recv()
		must(t, err)
		m := hmac.New(md5.New, []byte(pw))
		m.Write(resp.GetChallenge().GetData())
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte("dcram@example.org " + hex.EncodeToString(m.Sum(nil)))}}))
		resp, err = st.Recv()
		must(t, err)
		want := map[bool]authv1.Result{true: authv1.Result_RESULT_SUCCESS, false: authv1.Result_RESULT_FAILURE}[pw == "dcram-pw"]
		if resp.GetOutcome().GetResult() != want {
			t.Errorf("CRAM-MD5 %s: %v", pw, resp)
		}
	}
	// SCRAM: Dovecot's server-final is checked by the client.
	for _, tc := range []struct {
		mech, user, pw string
		hash           scram.HashGeneratorFcn
	}{
		{"SCRAM-SHA-256", "dscram@example.org", "dscram-pw", scram.SHA256},
		{"SCRAM-SHA-1", "dscram1@example.org", "dscram1-pw", scram.SHA1},
	} {
		sc, err := tc.hash.NewClient(tc.user, tc.pw, "")
		must(t, err)
		conv := sc.NewConversation()
		first, _ := conv.Step("")
		st, err := r.client.Authenticate(context.Background())
		must(t, err)
		must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: dsession("dove", false), Mechanism: tc.mech, HasInitialResponse: true, InitialResponse: []byte(first)}}}))
		for {
			resp, err := st.Recv()
			must(t, err)
			if o := resp.GetOutcome(); o != nil {
				if o.GetResult() != authv1.Result_RESULT_SUCCESS || !conv.Valid() {
					t.Fatalf("%s: %v (server proved itself: %v)", tc.mech, o, conv.Valid())
				}
				break
			}
			next, err := conv.Step(string(resp.GetChallenge().GetData()))
			must(t, err)
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte(next)}}))
		}
	}
}

// TestDovecotThrottled: smtpgate's throttle stands in front of Dovecot: a
// client that reached its maximum of failures is refused (454) even with
// the right password, and another client still gets in.
func TestDovecotThrottled(t *testing.T) {
	r, _ := startDovecotReplica(t, "smtpgate_auth_max_failures_per_client = 3\n")
	attacker := dsession("dove", true)
	attacker.ClientAddress = "127.2.0.1"
	for i := range 3 {
		if _, o := exchange(t, r.client, attacker, "PLAIN", []byte("\x00d512@example.org\x00guess"+fmt.Sprint(i))); o.GetResult() != authv1.Result_RESULT_FAILURE {
			t.Fatalf("guess %d: %v", i, o)
		}
	}
	if _, o := exchange(t, r.client, attacker, "PLAIN", []byte("\x00d512@example.org\x00d512-pw")); o.GetResult() != authv1.Result_RESULT_TEMPORARY_FAILURE {
		t.Fatalf("locked-out client with the right password: %v, want TEMPORARY_FAILURE", o)
	}
	if _, o := exchange(t, r.client, attacker, "LOGIN", nil, []byte("dsql@example.org"), []byte("dsql-pw")); o.GetResult() != authv1.Result_RESULT_TEMPORARY_FAILURE {
		t.Fatalf("locked-out client with LOGIN: %v, want TEMPORARY_FAILURE", o)
	}
	if _, o := exchange(t, r.client, dsession("dove", true), "PLAIN", []byte("\x00d512@example.org\x00d512-pw")); o.GetResult() != authv1.Result_RESULT_SUCCESS {
		t.Fatalf("another client: %v", o)
	}
}

// TestDovecotDown: with Dovecot killed every AUTH through it is a
// temporary failure (454), never a success, and a user lookup is
// Unavailable, never "unknown user"; once Dovecot is back the same
// server authenticates again, without a restart.
func TestDovecotDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, d := startDovecotReplicaWith(t, "", reg)
	errorsTotal := func() float64 {
		mfs, err := reg.Gather()
		must(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "smtpgate_auth_dovecot_errors_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no smtpgate_auth_dovecot_errors_total")
		return 0
	}
	plain := func() authv1.Result {
		_, o := exchange(t, r.client, dsession("dove", true), "PLAIN", []byte("\x00d512@example.org\x00d512-pw"))
		return o.GetResult()
	}
	lookup := func() (bool, codes.Code) {
		resp, err := r.client.LookupUser(context.Background(), &authv1.LookupUserRequest{Username: "dsql@example.org"})
		return resp.GetExists(), status.Code(err)
	}
	if got := plain(); got != authv1.Result_RESULT_SUCCESS {
		t.Fatalf("before: %v", got)
	}
	if n := errorsTotal(); n != 0 {
		t.Fatalf("smtpgate_auth_dovecot_errors_total = %v with Dovecot up", n)
	}
	d.Kill()
	// Back for the other tests, whatever happens here.
	defer func() { _ = d.Restart() }()
	if got := plain(); got != authv1.Result_RESULT_TEMPORARY_FAILURE {
		t.Errorf("Dovecot killed: %v, want TEMPORARY_FAILURE", got)
	}
	// AUTH stays advertised (the last handshake's list) and answers 454.
	resp, err := r.client.Mechanisms(context.Background(), &authv1.MechanismsRequest{Session: dsession("dove", true)})
	if err != nil || len(resp.GetMechanisms()) == 0 {
		t.Errorf("Dovecot killed: mechanisms %v, %v", resp.GetMechanisms(), err)
	}
	if ok, code := lookup(); code != codes.Unavailable {
		t.Errorf("Dovecot killed: lookup %v, %v; want Unavailable", ok, code)
	}
	// The AUTH and the lookup that got no answer are counted.
	if n := errorsTotal(); n < 2 {
		t.Errorf("smtpgate_auth_dovecot_errors_total = %v with Dovecot killed, want at least 2", n)
	}
	must(t, d.Restart())
	if got := plain(); got != authv1.Result_RESULT_SUCCESS {
		t.Errorf("Dovecot back: %v", got)
	}
	if ok, code := lookup(); !ok || code != codes.OK {
		t.Errorf("Dovecot back: lookup %v, %v", ok, code)
	}
}

// TestDovecotHung: a Dovecot that accepts and never answers (stopped
// with SIGSTOP) gets smtpgate_dovecot_timeout, then a temporary failure
// (454), never a success; running again, it answers the next AUTH on
// the same server.
func TestDovecotHung(t *testing.T) {
	r, d := startDovecotReplica(t, "smtpgate_dovecot_timeout = 1s\n")
	plain := func() authv1.Result {
		_, o := exchange(t, r.client, dsession("dove", true), "PLAIN", []byte("\x00dsql@example.org\x00dsql-pw"))
		return o.GetResult()
	}
	if got := plain(); got != authv1.Result_RESULT_SUCCESS {
		t.Fatalf("before: %v", got)
	}
	d.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			d.Thaw()
		}
	}()
	if got := plain(); got != authv1.Result_RESULT_TEMPORARY_FAILURE {
		t.Errorf("Dovecot stopped: %v, want TEMPORARY_FAILURE", got)
	}
	d.Thaw()
	thawed = true
	if got := plain(); got != authv1.Result_RESULT_SUCCESS {
		t.Errorf("Dovecot running again: %v", got)
	}
}

// TestDovecotUserdb: auth:users answers through Dovecot's userdb (both
// its passdbs' users), not the passwd-file.
func TestDovecotUserdb(t *testing.T) {
	r, _ := startDovecotReplica(t, "")
	for user, want := range map[string]bool{"d512@example.org": true, "dsql@example.org": true, "john@example.org": false, "nobody@example.org": false} {
		resp, err := r.client.LookupUser(context.Background(), &authv1.LookupUserRequest{Username: user})
		if err != nil || resp.GetExists() != want || (want && resp.GetUsername() != user) {
			t.Errorf("LookupUser(%s) = %v, %v; want exists %v", user, resp, err, want)
		}
	}
}

// FuzzReadUser: whatever the client sends, readUser never panics, names
// a user only with data that holds it, and says a response carries
// credentials only with a user name known (LOGIN's comes a step before).
func FuzzReadUser(f *testing.F) {
	f.Add("PLAIN", 1, "\x00user@example.org\x00pw")
	f.Add("LOGIN", 1, "user@example.org")
	f.Add("CRAM-MD5", 1, "user@example.org 0123456789abcdef")
	f.Add("SCRAM-SHA-256", 1, "n,,n=us=2Cer,r=nonce")
	f.Fuzz(func(t *testing.T, mech string, n int, resp string) {
		user, creds, err := readUser(mech, n, []byte(resp))
		if err != nil && (user != "" || creds) {
			t.Fatalf("readUser(%q, %d, %q) = %q, %v with error %v", mech, n, resp, user, creds, err)
		}
		if creds && user == "" && !(mech == "LOGIN" && n == 2) {
			t.Fatalf("readUser(%q, %d, %q): credentials without a user name", mech, n, resp)
		}
		if user != "" && mech == "PLAIN" && !strings.Contains(resp, "\x00"+user+"\x00") {
			t.Fatalf("readUser(%q, %q) named %q", mech, resp, user)
		}
	})
}
