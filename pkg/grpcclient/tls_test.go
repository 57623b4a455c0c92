package grpcclient

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/dnstest"
	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
)

// whoAmI answers Mechanisms with the common name of the client's
// certificate, as the server verified it ("-" without one).
type whoAmI struct {
	authv1.UnimplementedAuthServiceServer
}

func (whoAmI) Mechanisms(ctx context.Context, _ *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	name := "-"
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			name = ti.State.VerifiedChains[0][0].Subject.CommonName
		}
	}
	return &authv1.MechanismsResponse{Mechanisms: []string{name}}, nil
}

func configIn(t *testing.T, dir, text string) *maincf.Config {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := maincf.Load(maincf.NewCatalogue(maincf.Shared()...), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(maincf.All); err != nil {
		t.Fatal(err)
	}
	return c
}

// startAuth serves whoAmI, secured as serverMain says, on loopback, and
// returns its address; log, when not nil, gets the server's log.
func startAuth(t *testing.T, dir, serverMain string, log ...*logtest.Buffer) string {
	t.Helper()
	c := configIn(t, dir, serverMain)
	logger := slog.New(slog.DiscardHandler)
	if len(log) > 0 {
		logger = slog.New(slog.NewTextHandler(log[0], nil))
	}
	sec, err := grpctls.ServerSecurity(c, "smtpgate_auth_listen")
	creds := sec.Credentials(logger)
	if err != nil {
		t.Fatal(err)
	}
	s := grpcserver.New(grpcserver.WithCredentials(creds))
	authv1.RegisterAuthServiceServer(s.GRPC, whoAmI{})
	return serveLoopback(t, s)
}

// serveLoopback serves s on a free loopback port until the test ends
// and returns its address.
func serveLoopback(t *testing.T, s *grpcserver.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilEnd(t, s, ln)
	return ln.Addr().String()
}

// serveUntilEnd serves s on ln until the test ends.
func serveUntilEnd(t *testing.T, s *grpcserver.Server, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
}

// ask dials addr as clientMain says and returns what Mechanisms answered
// and whether health says SERVING.
func ask(t *testing.T, dir, addr, clientMain string) (string, error) {
	t.Helper()
	c := configIn(t, dir, "smtpgate_auth_service = "+addr+"\nsmtpgate_auth_timeout = 5s\n"+clientMain)
	conn, err := dialService(c, "smtpgate_auth_service", "smtpgate_auth_timeout", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv1.NewAuthServiceClient(conn).Mechanisms(context.Background(), &authv1.MechanismsRequest{})
	if err != nil {
		return "", err
	}
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health over the same connection: %v, %v", h, err)
	}
	return strings.Join(resp.GetMechanisms(), " "), nil
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	other := certtest.NewCA(t, dir, "other-ca")
	ca.Server(t, "auth")
	ca.Client(t, "edge")
	other.Client(t, "intruder")
	other.Server(t, "impostor")
	const server = "smtpgate_grpc_tls_cert_file = auth.pem\nsmtpgate_grpc_tls_key_file = auth-key.pem\n"
	const mutual = server + "smtpgate_grpc_tls_client_ca_file = ca.pem\n"
	const client = "smtpgate_grpc_tls_ca_file = ca.pem\n"
	const clientCert = client + "smtpgate_grpc_tls_client_cert_file = edge.pem\nsmtpgate_grpc_tls_client_key_file = edge-key.pem\n"

	t.Run("mutual TLS", func(t *testing.T) {
		var log logtest.Buffer
		addr := startAuth(t, dir, mutual, &log)
		got, err := ask(t, dir, addr, clientCert)
		if err != nil || got != "edge" {
			t.Errorf("with the edge's certificate: %q, %v; want the server to see edge", got, err)
		}
		// Refused: no certificate, plaintext, another CA's certificate.
		for name, cm := range map[string]string{
			"no client certificate": client,
			"plaintext":             "",
			"unknown client CA":     client + "smtpgate_grpc_tls_client_cert_file = intruder.pem\nsmtpgate_grpc_tls_client_key_file = intruder-key.pem\n",
		} {
			if got, err := ask(t, dir, addr, cm); status.Code(err) != codes.Unavailable {
				t.Errorf("%s: %q, %v; want UNAVAILABLE", name, got, err)
			}
		}
		// The server says why (the refusals may be logged a moment after
		// the clients saw them).
		for _, want := range []string{"client didn't provide a certificate", "certificate signed by unknown authority"} {
			for i := 0; !strings.Contains(log.String(), want); i++ {
				if i == 500 {
					t.Fatalf("the server's log does not say %q:\n%s", want, log.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if !strings.Contains(log.String(), "gRPC TLS handshake refused") {
			t.Errorf("refusals not logged as such:\n%s", log.String())
		}
	})
	t.Run("TLS", func(t *testing.T) {
		addr := startAuth(t, dir, server)
		if got, err := ask(t, dir, addr, client); err != nil || got != "-" {
			t.Errorf("TLS without a client certificate: %q, %v", got, err)
		}
		// The server's name is verified: 127.0.0.1 is in the certificate,
		// auth.invalid is not.
		if got, err := ask(t, dir, addr, client+"smtpgate_grpc_tls_server_name = auth.invalid\n"); status.Code(err) != codes.Unavailable ||
			!strings.Contains(err.Error(), "certificate is valid for") {
			t.Errorf("wrong server name: %q, %v", got, err)
		}
		if got, err := ask(t, dir, addr, client+"smtpgate_grpc_tls_server_name = localhost\n"); err != nil {
			t.Errorf("server name localhost: %q, %v", got, err)
		}
	})
	t.Run("untrusted server", func(t *testing.T) {
		addr := startAuth(t, dir, "smtpgate_grpc_tls_cert_file = impostor.pem\nsmtpgate_grpc_tls_key_file = impostor-key.pem\n")
		if got, err := ask(t, dir, addr, client); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "unknown authority") {
			t.Errorf("server of another CA: %q, %v", got, err)
		}
	})
	t.Run("TLS 1.2 at least", func(t *testing.T) {
		addr := startAuth(t, dir, server)
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// A client offering TLS 1.1 at most is refused.
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, NextProtos: []string{"h2"}})
		err = tc.Handshake()
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS 1.1 handshake: %v", err)
		}
	})
}

// A unix socket is local: plaintext is allowed there without the switch,
// and grpcserver.Listen serves it.
func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "auth.sock")
	c := configIn(t, dir, "smtpgate_auth_listen = unix:"+sock+"\nsmtpgate_auth_service = unix:"+sock+"\n")
	sec, err := grpctls.ServerSecurity(c, "smtpgate_auth_listen")
	creds, mode := sec.Credentials(nil), sec.Mode
	if err != nil || mode != grpctls.Plaintext {
		t.Fatalf("server on a unix socket: %v, %v", mode, err)
	}
	s := grpcserver.New(grpcserver.WithCredentials(creds))
	authv1.RegisterAuthServiceServer(s.GRPC, whoAmI{})
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := grpcserver.Listen(ctx, c.Get("smtpgate_auth_listen"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	conn, err := dialService(c, "smtpgate_auth_service", "smtpgate_auth_timeout", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp, err := authv1.NewAuthServiceClient(conn).Mechanisms(ctx, &authv1.MechanismsRequest{}); err != nil || resp.GetMechanisms()[0] != "-" {
		t.Errorf("Mechanisms over a unix socket: %v, %v", resp, err)
	}
}

// replica counts the calls it answers and the client names it verified.
type replica struct {
	authv1.UnimplementedAuthServiceServer
	mu    sync.Mutex
	calls map[string]int
}

func (r *replica) Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	resp, err := whoAmI{}.Mechanisms(ctx, req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[resp.GetMechanisms()[0]]++
	return resp, err
}

// serveZone answers A queries for name with ips (NODATA for other
// types of name, NXDOMAIN for other names), as the DNS of a headless
// Kubernetes Service would.
func serveZone(t *testing.T, name string, ips ...string) string {
	t.Helper()
	return dnstest.ServeUDP(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch {
		case !strings.EqualFold(q.Name, name):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			for _, ip := range ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	}))
}

// Two replicas behind one DNS name, as with a headless Service: the
// client verifies each against the name in the target, presents its
// certificate to both, and spreads its calls over them.
func TestMutualTLSReplicasByDNS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	ca.Server(t, "auth", "auth.test")
	ca.Client(t, "edge")
	c := configIn(t, dir, "smtpgate_grpc_tls_cert_file = auth.pem\nsmtpgate_grpc_tls_key_file = auth-key.pem\nsmtpgate_grpc_tls_client_ca_file = ca.pem\n")
	var lns []net.Listener
	for attempt := 0; len(lns) < 2 && attempt < 20; attempt++ {
		for _, l := range lns {
			l.Close()
		}
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = []net.Listener{a}
		if b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(a.Addr().(*net.TCPAddr).Port))); err == nil {
			lns = append(lns, b)
		}
	}
	if len(lns) < 2 {
		t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	}
	var replicas []*replica
	for _, ln := range lns {
		sec, err := grpctls.ServerSecurity(c, "smtpgate_auth_listen")
		creds := sec.Credentials(nil)
		if err != nil {
			t.Fatal(err)
		}
		s := grpcserver.New(grpcserver.WithCredentials(creds))
		r := &replica{calls: map[string]int{}}
		authv1.RegisterAuthServiceServer(s.GRPC, r)
		replicas = append(replicas, r)
		serveUntilEnd(t, s, ln)
	}
	zone := serveZone(t, "auth.test.", "127.0.0.1", "127.0.0.2")
	port := strconv.Itoa(lns[0].Addr().(*net.TCPAddr).Port)
	cc := configIn(t, dir, "smtpgate_auth_service = dns://"+zone+"/auth.test:"+port+"\n"+
		"smtpgate_grpc_tls_ca_file = ca.pem\nsmtpgate_grpc_tls_client_cert_file = edge.pem\nsmtpgate_grpc_tls_client_key_file = edge-key.pem\n")
	conn, err := dialService(cc, "smtpgate_auth_service", "smtpgate_auth_timeout", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv1.NewAuthServiceClient(conn)
	call := func() {
		t.Helper()
		if _, err := client.Mechanisms(context.Background(), &authv1.MechanismsRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(r *replica) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.calls["edge"]
	}
	// The first calls go to whichever replica is ready first; wait until
	// both are in the rotation, then count.
	for i := 0; answered(replicas[0]) == 0 || answered(replicas[1]) == 0; i++ {
		if i == 1000 {
			t.Fatalf("after 1000 calls one replica still has none: %d, %d", answered(replicas[0]), answered(replicas[1]))
		}
		call()
	}
	for _, r := range replicas {
		r.mu.Lock()
		r.calls = map[string]int{}
		r.mu.Unlock()
	}
	for range 20 {
		call()
	}
	for i, r := range replicas {
		r.mu.Lock()
		if r.calls["edge"] < 5 || len(r.calls) != 1 {
			t.Errorf("replica %d answered %v, want 5 or more calls, all from the verified client edge", i, r.calls)
		}
		r.mu.Unlock()
	}
}

// dialService dials the service main.cf names in param, as a service does:
// LoadTarget, then Dial.
func dialService(c *maincf.Config, param, timeoutParam string, log *slog.Logger) (*grpc.ClientConn, error) {
	t, err := LoadTarget(c, param, timeoutParam)
	if err != nil {
		return nil, err
	}
	return t.Dial(log)
}
