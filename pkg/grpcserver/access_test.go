package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	adminv1 "github.com/smtpgate/smtpgate/proto/smtpgate/admin/v1"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// TestEveryMethodHasRoles: every method of every service a smtpgate
// server registers is in the table; a new RPC without an entry would be
// refused to everyone, and this test names it.
func TestEveryMethodHasRoles(t *testing.T) {
	descs := []grpc.ServiceDesc{policyv1.PolicyService_ServiceDesc, authv1.AuthService_ServiceDesc,
		adminv1.AdminService_ServiceDesc, healthpb.Health_ServiceDesc, reflectionpb.ServerReflection_ServiceDesc}
	n := 0
	for _, d := range descs {
		var names []string
		for _, m := range d.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range d.Streams {
			names = append(names, s.StreamName)
		}
		for _, m := range names {
			full := "/" + d.ServiceName + "/" + m
			if MethodRoles(full) == 0 {
				t.Errorf("%s: no roles in methodRoles", full)
			}
			n++
		}
	}
	if n != len(methodRoles)-1 { // + reflection v1alpha
		t.Errorf("methodRoles has %d entries, the services %d methods (+1 for reflection v1alpha): stale entries?", len(methodRoles), n)
	}
}

// fakePolicy and fakeAuth answer every call, so that a call that reaches
// them succeeds: what the test sees is only the authorisation.
type fakePolicy struct {
	policyv1.UnimplementedPolicyServiceServer
}

func (fakePolicy) Check(context.Context, *policyv1.CheckRequest) (*policyv1.CheckResponse, error) {
	return &policyv1.CheckResponse{Verdict: &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}}, nil
}

func (fakePolicy) Explain(context.Context, *policyv1.ExplainRequest) (*policyv1.ExplainResponse, error) {
	return &policyv1.ExplainResponse{Lists: []string{"smtpd_relay_restrictions"}}, nil
}

type fakeAuth struct {
	authv1.UnimplementedAuthServiceServer
	users map[string]bool
}

func (fakeAuth) Mechanisms(context.Context, *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	return &authv1.MechanismsResponse{Mechanisms: []string{"PLAIN"}}, nil
}

func (a fakeAuth) LookupUser(_ context.Context, req *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	return &authv1.LookupUserResponse{Exists: a.users[req.GetUsername()], Username: req.GetUsername()}, nil
}

func (fakeAuth) Authenticate(stream grpc.BidiStreamingServer[authv1.AuthenticateRequest, authv1.AuthenticateResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return stream.Send(&authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Outcome{Outcome: &authv1.Outcome{Result: authv1.Result_RESULT_FAILURE}}})
}

// pki is a CA and the certificates of the callers.
type pki struct {
	dir                   string
	ca                    *certtest.CA
	serverCert, serverKey string
	callers               map[string][2]string // caller → cert, key
}

func newPKI(t *testing.T) *pki {
	dir := t.TempDir()
	p := &pki{dir: dir, ca: certtest.NewCA(t, dir, "ca"), callers: map[string][2]string{}}
	p.serverCert, p.serverKey = p.ca.Server(t, "server")
	add := func(name string, cert, key string) { p.callers[name] = [2]string{cert, key} }
	// The edge by common name, policy by DNS SAN, the operator by URI
	// SAN; the stranger holds a certificate of the same CA with no role.
	c, k := p.ca.Client(t, "smtpgate-edge")
	add("edge", c, k)
	c, k = p.ca.Peer(t, "policy-1", "smtpgate-policy")
	add("policy", c, k)
	c, k = p.ca.Peer(t, "ops", "spiffe://example.org/operator/lisa")
	add("operator", c, k)
	c, k = p.ca.Client(t, "stranger")
	add("stranger", c, k)
	return p
}

func (p *pki) config(t *testing.T, extra string) *maincf.Config {
	t.Helper()
	text := fmt.Sprintf(`smtpgate_policy_listen = 127.0.0.1:10040
smtpgate_grpc_tls_cert_file = %s
smtpgate_grpc_tls_key_file = %s
smtpgate_grpc_tls_client_ca_file = %s
smtpgate_grpc_operator_identities = spiffe://example.org/operator/lisa
%s`, p.serverCert, p.serverKey, p.ca.CertFile, extra)
	f, err := maincf.Parse("main.cf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := maincf.New(maincf.NewCatalogue(maincf.Shared()...), f, p.dir)
	if err := c.Validate(maincf.All); err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a server with every smtpgate service registered and access
// as configured, and returns its address and log.
func serve(t *testing.T, c *maincf.Config, limit int) (string, *logtest.Buffer) {
	t.Helper()
	addr, logs, _ := serveWithMetrics(t, c, limit)
	return addr, logs
}

// serveWithMetrics is serve, with the server's metrics registry.
func serveWithMetrics(t *testing.T, c *maincf.Config, limit int) (string, *logtest.Buffer, *prometheus.Registry) {
	t.Helper()
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	sec, err := grpctls.ServerSecurity(c, "smtpgate_policy_listen")
	creds, mode := sec.Credentials(log), sec.Mode
	if err != nil {
		t.Fatal(err)
	}
	access, err := NewAccess(c, "smtpgate_policy_listen", mode, log)
	if err != nil {
		t.Fatal(err)
	}
	access.WithRateLimit(authv1.AuthService_LookupUser_FullMethodName, limit)
	reg := prometheus.NewRegistry()
	s := New(WithCredentials(creds), WithAccess(access), WithMetrics(reg), WithAdmin(&Admin{Service: "policy", Owner: maincf.Policy, Main: c}))
	policyv1.RegisterPolicyServiceServer(s.GRPC, fakePolicy{})
	authv1.RegisterAuthServiceServer(s.GRPC, fakeAuth{users: map[string]bool{"john@example.org": true}})
	return serveLoopback(t, s), logs, reg
}

// serveLoopback serves s on a free loopback port until the test ends
// and returns its address.
func serveLoopback(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return lis.Addr().String()
}

// refusedCount is smtpgate_grpc_server_refused_total{method,code}.
func refusedCount(t *testing.T, reg *prometheus.Registry, method string, code codes.Code) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "smtpgate_grpc_server_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code.String() {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// dial connects as caller ("" for no client certificate).
func (p *pki) dial(t *testing.T, addr, caller string) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.ca.Pool(), ServerName: "localhost"}
	if caller != "" {
		kp, err := tls.LoadX509KeyPair(p.callers[caller][0], p.callers[caller][1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// calls are every method a caller could try, each returning the call's
// error.
var calls = map[string]func(context.Context, *grpc.ClientConn) error{
	"Check": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := policyv1.NewPolicyServiceClient(c).Check(ctx, &policyv1.CheckRequest{Stage: policyv1.Stage_STAGE_RCPT})
		return err
	},
	"Explain": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := policyv1.NewPolicyServiceClient(c).Explain(ctx, &policyv1.ExplainRequest{})
		return err
	},
	"Status": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := adminv1.NewAdminServiceClient(c).Status(ctx, &adminv1.StatusRequest{})
		return err
	},
	"Mechanisms": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := authv1.NewAuthServiceClient(c).Mechanisms(ctx, &authv1.MechanismsRequest{})
		return err
	},
	"LookupUser": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := authv1.NewAuthServiceClient(c).LookupUser(ctx, &authv1.LookupUserRequest{Username: "john@example.org"})
		return err
	},
	"Authenticate": func(ctx context.Context, c *grpc.ClientConn) error {
		st, err := authv1.NewAuthServiceClient(c).Authenticate(ctx)
		if err != nil {
			return err
		}
		if err := st.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: &authv1.Start{
			Mechanism: "PLAIN", Session: &authv1.Session{ClientAddress: "192.0.2.1", Tls: true}}}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = st.Recv()
		return err
	},
	"reflection": func(ctx context.Context, c *grpc.ClientConn) error {
		st, err := reflectionpb.NewServerReflectionClient(c).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		resp, err := st.Recv()
		if err == nil && len(resp.GetListServicesResponse().GetService()) == 0 {
			return errors.New("no services listed")
		}
		return err
	},
	"health": func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	},
}

// TestAccessByCertificate plays every caller against every method over
// real mutual TLS: each gets exactly what the method table gives its
// certificate, the rest is PermissionDenied with nothing in the message,
// logged with the caller's names; a client without a certificate does
// not get past the handshake, not even to health.
func TestAccessByCertificate(t *testing.T) {
	p := newPKI(t)
	addr, logs, reg := serveWithMetrics(t, p.config(t, ""), 0)
	allowed := map[string][]string{
		"edge":     {"Check", "Mechanisms", "LookupUser", "Authenticate", "health"},
		"policy":   {"LookupUser", "health"},
		"operator": {"Check", "Explain", "Status", "Mechanisms", "reflection", "health"},
		"stranger": {"health"},
	}
	for caller, ok := range allowed {
		conn := p.dial(t, addr, caller)
		for name, call := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := call(ctx, conn)
			cancel()
			want := codes.PermissionDenied
			for _, o := range ok {
				if o == name {
					want = codes.OK
				}
			}
			if got := status.Code(err); got != want {
				t.Errorf("%s calls %s: %v, want %v", caller, name, err, want)
			}
			if want == codes.PermissionDenied && status.Convert(err).Message() != "permission denied" {
				t.Errorf("%s calls %s: refusal says %q", caller, name, status.Convert(err).Message())
			}
		}
	}
	for _, w := range []string{`msg="gRPC call refused" method=/smtpgate.auth.v1.AuthService/LookupUser caller=stranger names=[stranger]`,
		`method=/smtpgate.admin.v1.AdminService/Status caller=smtpgate-policy names="[localhost smtpgate-policy policy-1]"`,
		`method=/grpc.reflection.v1.ServerReflection/ServerReflectionInfo caller=smtpgate-edge`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs)
		}
	}
	// Refused: by the stranger and the operator (LookupUser), and by
	// the edge, policy and the stranger (Status).
	if n := refusedCount(t, reg, authv1.AuthService_LookupUser_FullMethodName, codes.PermissionDenied); n != 2 {
		t.Errorf("smtpgate_grpc_server_refused_total for LookupUser = %v, want 2", n)
	}
	if n := refusedCount(t, reg, adminv1.AdminService_Status_FullMethodName, codes.PermissionDenied); n != 3 {
		t.Errorf("smtpgate_grpc_server_refused_total for Status = %v, want 3", n)
	}
	conn := p.dial(t, addr, "")
	for _, name := range []string{"health", "LookupUser"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := calls[name](ctx, conn)
		cancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("no client certificate, %s: %v, want the handshake refused (Unavailable)", name, err)
		}
	}
}

// TestAccessNotEnumerable: a caller without the role learns nothing from
// LookupUser: the same refusal for a user that exists and one that does
// not, where the edge's certificate tells them apart.
func TestAccessNotEnumerable(t *testing.T) {
	p := newPKI(t)
	addr, _ := serve(t, p.config(t, ""), 0)
	lookup := func(caller, user string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := authv1.NewAuthServiceClient(p.dial(t, addr, caller)).LookupUser(ctx, &authv1.LookupUserRequest{Username: user})
		return fmt.Sprint(resp.GetExists()), err
	}
	for _, caller := range []string{"stranger", "operator"} {
		a, errA := lookup(caller, "john@example.org")
		b, errB := lookup(caller, "nobody@example.org")
		if status.Code(errA) != codes.PermissionDenied || errA.Error() != errB.Error() || a != b {
			t.Errorf("%s: john: %s %v; nobody: %s %v", caller, a, errA, b, errB)
		}
	}
	if a, err := lookup("edge", "john@example.org"); err != nil || a != "true" {
		t.Errorf("edge, john: %s %v", a, err)
	}
	if b, err := lookup("edge", "nobody@example.org"); err != nil || b != "false" {
		t.Errorf("edge, nobody: %s %v", b, err)
	}
}

// TestLookupRateLimitPerCaller: a caller past its LookupUser limit gets
// ResourceExhausted; another caller's calls still pass.
func TestLookupRateLimitPerCaller(t *testing.T) {
	p := newPKI(t)
	const perSecond = 5
	addr, logs := serve(t, p.config(t, ""), perSecond)
	policy := authv1.NewAuthServiceClient(p.dial(t, addr, "policy"))
	start := time.Now()
	passed, refused := 0, 0
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := policy.LookupUser(ctx, &authv1.LookupUserRequest{Username: "john@example.org"})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			passed++
		case codes.ResourceExhausted:
			refused++
		default:
			t.Fatalf("LookupUser: %v", err)
		}
		if refused > 0 {
			break
		}
	}
	// A burst of a second's worth, and what refilled meanwhile.
	if most := perSecond + int(time.Since(start).Seconds()*perSecond) + 1; refused == 0 || passed > most {
		t.Errorf("policy: %d calls passed, %d refused; want a refusal after at most %d", passed, refused, most)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := authv1.NewAuthServiceClient(p.dial(t, addr, "edge")).LookupUser(ctx, &authv1.LookupUserRequest{Username: "john@example.org"}); err != nil {
		t.Errorf("edge, while policy is limited: %v", err)
	}
	if w := "caller=smtpgate-policy"; !strings.Contains(logs.String(), w) || !strings.Contains(logs.String(), "code=ResourceExhausted") {
		t.Errorf("log lacks the limited caller:\n%s", logs)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(2, 2, func() time.Time { return now })
	var got []bool
	for range 3 {
		got = append(got, l.allow("a"))
	}
	got = append(got, l.allow("b"))
	now = now.Add(500 * time.Millisecond)
	got = append(got, l.allow("a"), l.allow("a"))
	want := []bool{true, true, false, true, true, false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("allow = %v, want %v", got, want)
	}
}

// TestAccessWithoutClientCertificates: plaintext callers all have every
// role (the loopback-only local example); identities without mutual TLS
// are a configuration error with file:line; off loopback, a warning.
func TestAccessWithoutClientCertificates(t *testing.T) {
	parse := func(text string) *maincf.Config {
		f, err := maincf.Parse("main.cf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return maincf.New(maincf.NewCatalogue(maincf.Shared()...), f, t.TempDir())
	}
	c := parse("smtpgate_policy_listen = 127.0.0.1:10040\n")
	a, err := NewAccess(c, "smtpgate_policy_listen", grpctls.Plaintext, nil)
	if err != nil || a.Warning() != "" {
		t.Fatalf("loopback plaintext: %v, warning %q", err, a.Warning())
	}
	s := New(WithAccess(a), WithAdmin(&Admin{Service: "policy", Owner: maincf.Policy, Main: c}))
	conn, err := grpc.NewClient(serveLoopback(t, s), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := calls["Status"](cctx, conn); err != nil {
		t.Errorf("plaintext loopback Status: %v", err)
	}

	_, err = NewAccess(parse("smtpgate_policy_listen = 127.0.0.1:10040\n\nsmtpgate_grpc_operator_identities = ops\n"), "smtpgate_policy_listen", grpctls.TLS, nil)
	if err == nil || !strings.Contains(err.Error(), "main.cf:3: smtpgate_grpc_operator_identities: identities are client certificate names: they need mutual TLS (set smtpgate_grpc_tls_client_ca_file)") {
		t.Errorf("identities without mutual TLS: %v", err)
	}
	a, err = NewAccess(parse("smtpgate_policy_listen = 0.0.0.0:10040\n"), "smtpgate_policy_listen", grpctls.TLS, nil)
	if err != nil || !strings.Contains(a.Warning(), "every caller that can connect may call every method") {
		t.Errorf("TLS without client certificates off loopback: %v, warning %q", err, a.Warning())
	}
}

// TestRefusalSeriesFromTheStart: once serving, the refusal counter has
// its series at zero for every method that can be refused, before any
// refusal; health checks, which answer anyone, have none.
func TestRefusalSeriesFromTheStart(t *testing.T) {
	p := newPKI(t)
	addr, _, reg := serveWithMetrics(t, p.config(t, ""), 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(p.dial(t, addr, "edge")).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	series := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "smtpgate_grpc_server_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if m.GetCounter().GetValue() != 0 {
				t.Errorf("%v = %v before any refusal", labels, m.GetCounter().GetValue())
			}
			series[labels["method"]+" "+labels["code"]] = true
		}
	}
	for _, want := range []string{
		policyv1.PolicyService_Explain_FullMethodName + " PermissionDenied",
		authv1.AuthService_Authenticate_FullMethodName + " PermissionDenied",
		authv1.AuthService_LookupUser_FullMethodName + " ResourceExhausted",
	} {
		if !series[want] {
			t.Errorf("no series for %s in %v", want, series)
		}
	}
	for s := range series {
		if strings.HasPrefix(s, "/grpc.health.v1.") || strings.HasSuffix(s, "/Check ResourceExhausted") {
			t.Errorf("series %s: that refusal cannot happen", s)
		}
	}
}
