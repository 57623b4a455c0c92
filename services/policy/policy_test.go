package policy

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

const mainCF = `
myhostname = mail.example.org
mydomain = example.org
mydestination = $mydomain, localhost
mynetworks = 127.0.0.1/32 [::1]/128
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpgate_policy_listen = 127.0.0.1:0
`

const masterCF = `
127.0.0.1:2525 inet n - n - - smtpd
127.0.0.1:2587 inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
`

func testConfig(t testing.TB) serverSetup {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		t.Fatal(err)
	}
	services, err := maincf.ParseMaster("master.cf", strings.NewReader(masterCF))
	if err != nil {
		t.Fatal(err)
	}
	return serverSetup{Main: maincf.New(Catalogue(), f, t.TempDir()), Services: services}
}

// serverSetup is what the tests build a Server from: the configuration
// Load reads, and New's Config.
type serverSetup struct {
	Main     *maincf.Config
	Services []maincf.Service
	Config
}

// newServer loads setup and builds a Server from it, closed (without
// error) when the test ends.
func newServer(tb testing.TB, setup serverSetup) *Server {
	tb.Helper()
	set, err := Load(setup.Main, setup.Services)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(set, setup.Config)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return srv
}

// startServer runs the real gRPC server on 127.0.0.1:0 and returns a
// client connection to it.
func startServer(t *testing.T) (*grpc.ClientConn, *logtest.Buffer) {
	t.Helper()
	logs := &logtest.Buffer{}
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return serveConn(t, cfg), logs
}

// serveConn runs a server built from cfg on 127.0.0.1:0 and returns a
// connection to it; the server stops when the test ends, and must stop
// cleanly.
func serveConn(t testing.TB, cfg serverSetup) *grpc.ClientConn {
	t.Helper()
	srv := newServer(t, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

// rcptRequest is a RCPT request of a session whose client has no PTR
// record: the edge carries the names its first check got.
func rcptRequest(listener, client, recipient string) *policyv1.CheckRequest {
	return &policyv1.CheckRequest{
		Stage: policyv1.Stage_STAGE_RCPT,
		Session: &policyv1.Session{Id: "sess-1", Listener: listener, ClientAddress: client, HeloName: "client.example.net",
			ClientName: "unknown", ReverseClientName: "unknown",
			ClientNameStatus: policyv1.NameStatus_NAME_STATUS_PERMANENT, ReverseClientNameStatus: policyv1.NameStatus_NAME_STATUS_PERMANENT},
		Transaction: &policyv1.Transaction{Sender: "someone@example.net", Recipient: recipient},
	}
}

func TestCheckOverGRPC(t *testing.T) {
	conn, logs := startServer(t)
	client := policyv1.NewPolicyServiceClient(conn)
	withSASL := rcptRequest("127.0.0.1:2587", "203.0.113.5", "lisa@example.com")
	withSASL.Session.Sasl = &policyv1.SASL{Method: "PLAIN", Username: "john@example.org"}
	for _, tc := range []struct {
		name string
		req  *policyv1.CheckRequest
		want *policyv1.Verdict
	}{
		{"relay refused for a stranger", rcptRequest("127.0.0.1:2525", "203.0.113.5", "lisa@example.com"),
			&policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<lisa@example.com>: Relay access denied",
				Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"relay trick refused", rcptRequest("", "203.0.113.5", `"lisa@example.com"@example.org`),
			&policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: `<"lisa@example.com"@example.org>: Relay access denied`,
				Restriction: "reject_unauth_destination", List: "smtpd_relay_restrictions"}},
		{"relay for mynetworks", rcptRequest("127.0.0.1:2525", "127.0.0.1", "lisa@example.com"),
			&policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT, Restriction: "permit_mynetworks", List: "smtpd_relay_restrictions"}},
		{"local domain for anyone", rcptRequest("", "203.0.113.5", "john@EXAMPLE.org."),
			&policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}},
		{"submission listener: no AUTH, no mail", rcptRequest("127.0.0.1:2587", "127.0.0.1", "john@example.org"),
			&policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1", Text: "<unknown[127.0.0.1]>: Client host rejected: Access denied",
				Restriction: "reject", List: "smtpd_client_restrictions"}},
		{"submission listener: AUTH relays", withSASL,
			&policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT, Restriction: "permit_sasl_authenticated", List: "smtpd_relay_restrictions"}},
		{"CONNECT with delayed rejects", &policyv1.CheckRequest{Stage: policyv1.Stage_STAGE_CONNECT, Session: &policyv1.Session{Id: "s", Listener: "127.0.0.1:2587", ClientAddress: "203.0.113.5"}},
			&policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tc.want, resp.GetVerdict(), protocmp.Transform()); diff != "" {
				t.Errorf("verdict mismatch (-want +got):\n%s", diff)
			}
		})
	}
	got := logs.String()
	for _, want := range []string{`msg=refused`, `session=sess-1`, `stage=RCPT`, `restriction=reject_unauth_destination`, `reply="554 5.7.1 <lisa@example.com>: Relay access denied"`} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "john@example.org\"") || strings.Contains(got, "PLAIN") {
		t.Errorf("logs show SASL data:\n%s", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	conn, _ := startServer(t)
	client := policyv1.NewPolicyServiceClient(conn)
	ok := rcptRequest("", "203.0.113.5", "john@example.org")
	mod := func(f func(r *policyv1.CheckRequest)) *policyv1.CheckRequest {
		r := proto.Clone(ok).(*policyv1.CheckRequest)
		f(r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  *policyv1.CheckRequest
	}{
		{"unspecified stage", mod(func(r *policyv1.CheckRequest) { r.Stage = policyv1.Stage_STAGE_UNSPECIFIED })},
		{"unknown stage", mod(func(r *policyv1.CheckRequest) { r.Stage = 99 })},
		{"no session", mod(func(r *policyv1.CheckRequest) { r.Session = nil })},
		{"unknown listener", mod(func(r *policyv1.CheckRequest) { r.Session.Listener = "127.0.0.1:9999" })},
		{"bad client address", mod(func(r *policyv1.CheckRequest) { r.Session.ClientAddress = "[::1]" })},
		{"RCPT without transaction", mod(func(r *policyv1.CheckRequest) { r.Transaction = nil })},
		{"RCPT without recipient", mod(func(r *policyv1.CheckRequest) { r.Transaction.Recipient = "" })},
		{"MAIL without transaction", mod(func(r *policyv1.CheckRequest) { r.Stage = policyv1.Stage_STAGE_MAIL; r.Transaction = nil })},
		{"HELO without a name", mod(func(r *policyv1.CheckRequest) { r.Stage = policyv1.Stage_STAGE_HELO; r.Session.HeloName = "" })},
		{"ETRN without a domain", mod(func(r *policyv1.CheckRequest) { r.Stage = policyv1.Stage_STAGE_ETRN })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Check(context.Background(), tc.req)
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Errorf("Check: got %v (%v), want InvalidArgument", got, err)
			}
		})
	}
	if _, err := client.Check(context.Background(), ok); err != nil {
		t.Errorf("well-formed request: %v", err)
	}
}

func TestHealthAndReflection(t *testing.T) {
	conn, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"", "smtpgate.policy.v1.PolicyService"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, want SERVING", svc, resp.GetStatus())
		}
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "smtpgate.policy.v1.PolicyService") {
		t.Errorf("reflection lists %v, want smtpgate.policy.v1.PolicyService", names)
	}
}

func TestValidateReportsListenerErrors(t *testing.T) {
	cfg := testConfig(t)
	services, err := maincf.ParseMaster("master.cf", strings.NewReader(`
127.0.0.1:2588 inet n - n - - smtpd
  -o smtpd_relay_restrictions=permit_sasl_authenticated
  -o smtpd_client_restrictions=permit_foo
`))
	if err != nil {
		t.Fatal(err)
	}
	err = validate(cfg.Main, services)
	want := []string{
		`service 127.0.0.1:2588: master.cf:2: smtpd_client_restrictions: unknown restriction "permit_foo"`,
		"service 127.0.0.1:2588: master.cf:2: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit",
	}
	if err == nil {
		t.Fatal("Validate: no error")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if err := validate(cfg.Main, cfg.Services); err != nil {
		t.Errorf("validate(good config): %v", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	f, _ := maincf.Parse("main.cf", strings.NewReader(mainCF))
	srv := newServer(b, serverSetup{Main: maincf.New(Catalogue(), f, "")})
	req := rcptRequest("", "203.0.113.5", "lisa@example.com")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.handler.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckNamesPermitStages: every answer names the stages its listener
// always permits, per listener (the edge skips asking about them).
func TestCheckNamesPermitStages(t *testing.T) {
	cfg := testConfig(t)
	// One listener where nothing is delayed and the client list has
	// something to evaluate.
	services, err := maincf.ParseMaster("master.cf", strings.NewReader(masterCF+`127.0.0.1:2526 inet n - n - - smtpd
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=reject_unauth_pipelining
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Services = services
	client := policyv1.NewPolicyServiceClient(serveConn(t, cfg))
	const (
		CONNECT = policyv1.Stage_STAGE_CONNECT
		HELO    = policyv1.Stage_STAGE_HELO
		MAIL    = policyv1.Stage_STAGE_MAIL
		DATA    = policyv1.Stage_STAGE_DATA
		EOD     = policyv1.Stage_STAGE_END_OF_DATA
	)
	for listener, want := range map[string][]policyv1.Stage{
		"127.0.0.1:2525": {CONNECT, HELO, MAIL, DATA, EOD},
		// smtpd_client_restrictions is set, but delayed to RCPT TO.
		"127.0.0.1:2587": {CONNECT, HELO, MAIL, DATA, EOD},
		"127.0.0.1:2526": {HELO, MAIL, EOD},
	} {
		resp, err := client.Check(context.Background(), rcptRequest(listener, "203.0.113.5", "john@example.org"))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if diff := cmp.Diff(want, resp.GetPermitStages()); diff != "" {
			t.Errorf("%s: permit_stages (-want +got):\n%s", listener, diff)
		}
	}
}
