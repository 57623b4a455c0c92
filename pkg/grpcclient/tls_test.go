package grpcclient

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/grpcserver"
	"github.com/smtpgate/smtpgate/pkg/grpctls"
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
	c, _, err := maincf.Load(maincf.Params(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(maincf.All); err != nil {
		t.Fatal(err)
	}
	return c
}

// startAuth serves whoAmI, secured as serverMain says, on loopback, and
// returns its address.
func startAuth(t *testing.T, dir, serverMain string) string {
	t.Helper()
	c := configIn(t, dir, serverMain)
	creds, _, err := grpctls.Server(c, "smtpgate_auth_listen", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := grpcserver.New(grpcserver.WithCredentials(creds))
	authv1.RegisterAuthServiceServer(s.GRPC, whoAmI{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// ask dials addr as clientMain says and returns what Mechanisms answered
// and whether health says SERVING.
func ask(t *testing.T, dir, addr, clientMain string) (string, error) {
	t.Helper()
	c := configIn(t, dir, "smtpgate_auth_service = "+addr+"\nsmtpgate_auth_timeout = 5s\n"+clientMain)
	conn, err := DialService(c, "smtpgate_auth_service", "smtpgate_auth_timeout", nil)
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
		addr := startAuth(t, dir, mutual)
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
	creds, mode, err := grpctls.Server(c, "smtpgate_auth_listen", nil)
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
	conn, err := DialService(c, "smtpgate_auth_service", "smtpgate_auth_timeout", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp, err := authv1.NewAuthServiceClient(conn).Mechanisms(ctx, &authv1.MechanismsRequest{}); err != nil || resp.GetMechanisms()[0] != "-" {
		t.Errorf("Mechanisms over a unix socket: %v, %v", resp, err)
	}
}
