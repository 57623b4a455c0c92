package auth

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

const password = "john-example-password"

// startServer runs the real server on 127.0.0.1:0 with deploy/local's
// passwd-file and a submission listener, and returns a client. Failures
// are answered without delay (throttle_test.go tests the delays).
func startServer(t *testing.T) (authv1.AuthServiceClient, *grpc.ClientConn, *logtest.Buffer) {
	t.Helper()
	r := startReplica(t, "smtpgate_auth_failure_delay = 0\n")
	return r.client, r.conn, r.logs
}

// replica is one running server.
type replica struct {
	srv    *Server
	client authv1.AuthServiceClient
	conn   *grpc.ClientConn
	logs   *logtest.Buffer
}

// startReplica is startServer with extra main.cf lines.
func startReplica(t *testing.T, extra string) *replica {
	t.Helper()
	return startReplicaWith(t, extra, nil)
}

// startReplicaWith is startReplica with metrics registered on reg.
func startReplicaWith(t *testing.T, extra string, reg prometheus.Registerer) *replica {
	t.Helper()
	dir := t.TempDir()
	passwd, err := os.ReadFile("../../deploy/local/passwd")
	if err != nil {
		t.Fatal(err)
	}
	passwd = append(passwd, "jane@example.org:{PLAIN}jane-pw\n"...)
	// doveadm pw -s SCRAM-SHA-256 -p test
	passwd = append(passwd, "scram@example.org:{SCRAM-SHA-256}4096,iwSrrNWY2nhUAy6rMLpkPQ==,J3b+MW73LWua5SWtpuv9/K/+Bpafli0Ii0Bk93cgyj4=,BYZG8Nk5pCRizf6WmSTlf9IUfGcAv6STLK//2/NzZr0=\n"...)
	must(t, os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "main.cf"), []byte(`smtpgate_passwd_file = passwd
myhostname = mail.example.org
smtpgate_sasl_mechanisms = PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256
smtpd_sasl_security_options = noanonymous, noplaintext
smtpd_sasl_tls_security_options = noanonymous
`+extra), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "master.cf"), []byte("sub inet n - n - - smtpd\n  -o smtpgate_sasl_mechanisms=LOGIN\n"), 0o600))
	return serveDir(t, dir, reg)
}

// serveDir runs the real server on the main.cf and master.cf of dir.
func serveDir(t *testing.T, dir string, reg prometheus.Registerer) *replica {
	t.Helper()
	cfg, services, err := maincf.Load(Catalogue(), dir)
	must(t, err)
	must(t, validate(cfg, services))
	set, err := Load(cfg, services)
	must(t, err)
	logs := &logtest.Buffer{}
	srv, err := New(set, Config{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: reg})
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &replica{srv: srv, client: authv1.NewAuthServiceClient(conn), conn: conn, logs: logs}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// exchange runs one SASL exchange: start, then the given responses in
// order (a nil response means cancel), and returns the challenges seen and
// the outcome.
func exchange(t *testing.T, c authv1.AuthServiceClient, sess *authv1.Session, mech string, initial []byte, responses ...[]byte) ([]string, *authv1.Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Authenticate(ctx)
	must(t, err)
	start := &authv1.Start{Session: sess, Mechanism: mech, HasInitialResponse: initial != nil, InitialResponse: initial}
	must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: start}}))
	var challenges []string
	for {
		resp, err := st.Recv()
		must(t, err)
		if o := resp.GetOutcome(); o != nil {
			return challenges, o
		}
		challenges = append(challenges, string(resp.GetChallenge().GetData()))
		if len(responses) == 0 {
			t.Fatalf("unexpected challenge %q", resp.GetChallenge().GetData())
		}
		r := responses[0]
		responses = responses[1:]
		if r == nil {
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Cancel{Cancel: &authv1.Cancel{}}}))
		} else {
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: r}}))
		}
	}
}

func TestAuthenticate(t *testing.T) {
	c, _, logs := startServer(t)
	tls := &authv1.Session{Id: "s1", ClientAddress: "127.0.0.66", Tls: true}
	plaintext := &authv1.Session{Id: "s2", ClientAddress: "127.0.0.66"}
	sub := &authv1.Session{Id: "s3", Listener: "sub", ClientAddress: "127.0.0.66", Tls: true}
	R := authv1.Result_RESULT_SUCCESS
	for _, tc := range []struct {
		name      string
		sess      *authv1.Session
		mech      string
		initial   []byte
		responses [][]byte
		want      authv1.Result
		user      string
	}{
		{"PLAIN initial response", tls, "PLAIN", []byte("\x00john@example.org\x00" + password), nil, R, "john@example.org"},
		{"plain lower-case mechanism", tls, "plain", []byte("\x00john@example.org\x00" + password), nil, R, "john@example.org"},
		{"PLAIN after empty challenge", tls, "PLAIN", nil, [][]byte{[]byte("\x00john@example.org\x00" + password)}, R, "john@example.org"},
		{"PLAIN wrong password", tls, "PLAIN", []byte("\x00john@example.org\x00wrong-password"), nil, authv1.Result_RESULT_FAILURE, ""},
		{"PLAIN unknown user", tls, "PLAIN", []byte("\x00nobody@example.org\x00" + password), nil, authv1.Result_RESULT_FAILURE, ""},
		{"PLAIN malformed", tls, "PLAIN", []byte("john@example.org"), nil, authv1.Result_RESULT_MALFORMED, ""},
		{"PLAIN cancelled", tls, "PLAIN", nil, [][]byte{nil}, authv1.Result_RESULT_CANCELLED, ""},
		{"LOGIN", tls, "LOGIN", nil, [][]byte{[]byte("john@example.org"), []byte(password)}, R, "john@example.org"},
		{"LOGIN wrong password", tls, "LOGIN", nil, [][]byte{[]byte("john@example.org"), []byte("wrong-password")}, authv1.Result_RESULT_FAILURE, ""},
		{"PLAIN without TLS", plaintext, "PLAIN", []byte("\x00john@example.org\x00" + password), nil, authv1.Result_RESULT_ENCRYPTION_REQUIRED, ""},
		{"unknown mechanism", tls, "X-NOPE", nil, nil, authv1.Result_RESULT_UNSUPPORTED_MECHANISM, ""},
		{"listener without PLAIN", sub, "PLAIN", []byte("\x00john@example.org\x00" + password), nil, authv1.Result_RESULT_UNSUPPORTED_MECHANISM, ""},
		{"listener LOGIN", sub, "LOGIN", []byte("john@example.org"), [][]byte{[]byte(password)}, R, "john@example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, o := exchange(t, c, tc.sess, tc.mech, tc.initial, tc.responses...)
			if o.GetResult() != tc.want || o.GetUsername() != tc.user {
				t.Errorf("outcome = %v %q, want %v %q", o.GetResult(), o.GetUsername(), tc.want, tc.user)
			}
		})
	}
	got := logs.String()
	if strings.Contains(got, password) || strings.Contains(got, "wrong-password") {
		t.Errorf("a password appears in the log:\n%s", got)
	}
	if !strings.Contains(got, "result=FAILURE") || !strings.Contains(got, "result=SUCCESS") {
		t.Errorf("outcomes are not logged:\n%s", got)
	}
}

func TestCRAMMD5(t *testing.T) {
	c, _, logs := startServer(t)
	plaintext := &authv1.Session{Id: "c1", ClientAddress: "127.0.0.66"}
	answer := func(user, pw string) func(ch string) []byte {
		return func(ch string) []byte {
			m := hmac.New(md5.New, []byte(pw))
			m.Write([]byte(ch))
			return []byte(user + " " + hex.EncodeToString(m.Sum(nil)))
		}
	}
	for _, tc := range []struct {
		name string
		resp func(string) []byte
		want authv1.Result
	}{
		{"plain-stored user", answer("jane@example.org", "jane-pw"), authv1.Result_RESULT_SUCCESS},
		{"wrong password", answer("jane@example.org", "nope"), authv1.Result_RESULT_FAILURE},
		{"user stored as SHA512-CRYPT cannot do CRAM-MD5", answer("john@example.org", password), authv1.Result_RESULT_FAILURE},
		{"unknown user", answer("nobody@example.org", "x"), authv1.Result_RESULT_FAILURE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := c.Authenticate(ctx)
			must(t, err)
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: plaintext, Mechanism: "CRAM-MD5"}}}))
			r, err := st.Recv()
			must(t, err)
			ch := string(r.GetChallenge().GetData())
			if !strings.HasSuffix(ch, "@mail.example.org>") {
				t.Fatalf("challenge %q", ch)
			}
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: tc.resp(ch)}}))
			r, err = st.Recv()
			must(t, err)
			if got := r.GetOutcome().GetResult(); got != tc.want {
				t.Errorf("result %v, want %v", got, tc.want)
			}
		})
	}
	if strings.Contains(logs.String(), "jane-pw") {
		t.Error("password in the log")
	}
}

// TestSCRAM drives SCRAM-SHA-256 with xdg-go/scram's client over the real
// gRPC stream, and checks the server's signature (mutual authentication).
func TestSCRAM(t *testing.T) {
	c, _, _ := startServer(t)
	sess := &authv1.Session{Id: "s1", ClientAddress: "127.0.0.66"}
	for _, tc := range []struct {
		name, user, pass string
		want             authv1.Result
	}{
		{"stored as SCRAM-SHA-256 by doveadm", "scram@example.org", "test", authv1.Result_RESULT_SUCCESS},
		{"stored as PLAIN", "jane@example.org", "jane-pw", authv1.Result_RESULT_SUCCESS},
		{"wrong password", "scram@example.org", "nope", authv1.Result_RESULT_FAILURE},
		{"stored as SHA512-CRYPT", "john@example.org", password, authv1.Result_RESULT_FAILURE},
		{"unknown user", "nobody@example.org", "test", authv1.Result_RESULT_FAILURE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := scram.SHA256.NewClient(tc.user, tc.pass, "")
			must(t, err)
			conv := client.NewConversation()
			first, err := conv.Step("")
			must(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := c.Authenticate(ctx)
			must(t, err)
			must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{Session: sess, Mechanism: "SCRAM-SHA-256", HasInitialResponse: true, InitialResponse: []byte(first)}}}))
			var result authv1.Result
			for {
				r, err := st.Recv()
				must(t, err)
				if o := r.GetOutcome(); o != nil {
					result = o.GetResult()
					break
				}
				next, err := conv.Step(string(r.GetChallenge().GetData()))
				if conv.Done() && err == nil && next == "" {
					// The server-final message verified: answer it empty.
					must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte{}}}))
					continue
				}
				must(t, err)
				must(t, st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Response{Response: []byte(next)}}))
			}
			if result != tc.want {
				t.Errorf("result %v, want %v", result, tc.want)
			}
			if result == authv1.Result_RESULT_SUCCESS && !conv.Valid() {
				t.Error("success without a valid server signature")
			}
		})
	}
}

func TestMechanisms(t *testing.T) {
	c, conn, _ := startServer(t)
	ctx := context.Background()
	for _, tc := range []struct {
		sess *authv1.Session
		want string
	}{
		{&authv1.Session{}, "CRAM-MD5 SCRAM-SHA-256"},
		{&authv1.Session{Tls: true}, "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256"},
		{&authv1.Session{Listener: "sub", Tls: true}, "LOGIN"},
	} {
		resp, err := c.Mechanisms(ctx, &authv1.MechanismsRequest{Session: tc.sess})
		must(t, err)
		if got := strings.Join(resp.GetMechanisms(), " "); got != tc.want {
			t.Errorf("Mechanisms(%v) = %q, want %q", tc.sess, got, tc.want)
		}
	}
	if _, err := c.Mechanisms(ctx, &authv1.MechanismsRequest{Session: &authv1.Session{Listener: "nosuch"}}); err == nil {
		t.Error("unknown listener accepted")
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "smtpgate.auth.v1.AuthService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	must(t, err)
	must(t, rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	r, err := rs.Recv()
	must(t, err)
	if !strings.Contains(r.String(), "smtpgate.auth.v1.AuthService") {
		t.Errorf("reflection does not list the service: %v", r)
	}
}

func TestLookupUser(t *testing.T) {
	c, _, logs := startServer(t)
	for _, tc := range []struct {
		name   string
		exists bool
		stored string
	}{
		{"john@example.org", true, "john@example.org"},
		{"john@EXAMPLE.org", true, "john@example.org"},
		{"JOHN@example.org", true, "john@example.org"},
		{"lisa@example.org", false, ""},
		{"john", false, ""},
	} {
		resp, err := c.LookupUser(context.Background(), &authv1.LookupUserRequest{Username: tc.name})
		if err != nil {
			t.Fatalf("LookupUser(%q): %v", tc.name, err)
		}
		if resp.GetExists() != tc.exists || resp.GetUsername() != tc.stored {
			t.Errorf("LookupUser(%q) = %v %q, want %v %q", tc.name, resp.GetExists(), resp.GetUsername(), tc.exists, tc.stored)
		}
	}
	for _, bad := range []string{"", "a\x00b", strings.Repeat("x", 1025)} {
		if _, err := c.LookupUser(context.Background(), &authv1.LookupUserRequest{Username: bad}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("LookupUser(%q): %v, want InvalidArgument", bad, err)
		}
	}
	if strings.Contains(logs.String(), "jane-pw") {
		t.Error("a password reached the logs")
	}
}
