package policy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/pkg/redistest"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// loadMain parses mainCF plus extra as main.cf in dir.
func loadMain(t *testing.T, extra, dir string) *maincf.Config {
	t.Helper()
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+extra))
	if err != nil {
		t.Fatal(err)
	}
	return maincf.New(Catalogue(), f, dir)
}

// TestLoadReportsEveryBadValue: Load reports every bad value at once,
// each with its file:line, and never shows a Redis URL (it may hold a
// password).
func TestLoadReportsEveryBadValue(t *testing.T) {
	main := loadMain(t, `smtpgate_greylist_delay = 0s
smtpgate_rate_limit_redis = http://user:s3cret@example.net
smtpgate_greylist_redis = ftp://example.net
smtpd_client_restrictions = permit_foo
smtpgate_dns_timeout = soon
`, t.TempDir())
	_, err := Load(main, nil)
	if err == nil {
		t.Fatal("Load: no error")
	}
	for _, want := range []string{
		"main.cf:8: smtpgate_greylist_delay: want a positive time",
		"main.cf:9: smtpgate_rate_limit_redis: redis URL: want redis://",
		"main.cf:10: smtpgate_greylist_redis: redis URL: want redis://",
		`main.cf:11: smtpd_client_restrictions: unknown restriction "permit_foo"`,
		"main.cf:12: smtpgate_dns_timeout",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Load error shows a Redis password:\n%v", err)
	}
	if verr := validate(main, nil); verr == nil || verr.Error() != err.Error() {
		t.Errorf("Validate = %v, want Load's error", verr)
	}
}

// TestTableWarningsReachTheLog: a table's load warnings, found while
// Load compiles the lists, are logged once by the Server New builds.
func TestTableWarningsReachTheLog(t *testing.T) {
	dir := t.TempDir()
	access := filepath.Join(dir, "client_access")
	if err := os.WriteFile(access, []byte("192.0.2.1 REJECT\n192.0.2.1 OK\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	main := loadMain(t, "smtpd_client_restrictions = check_client_access texthash:"+access+"\n", dir)
	set, err := Load(main, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	srv, err := New(set, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if n := strings.Count(logs.String(), `msg="table entry"`); n != 1 || !strings.Contains(logs.String(), "duplicate entry") {
		t.Errorf("%d table entry warnings, want the duplicate once:\n%s", n, logs.String())
	}
}

// TestCloseClosesWhatNewOpened: Serve closes nothing New opened; Close
// closes the smtpgate-auth connection and every Redis client, once; a
// Settings serves one Server.
func TestCloseClosesWhatNewOpened(t *testing.T) {
	rs := redistest.Start(t)
	main := loadMain(t, "smtpgate_dns_redis = "+rs.URL()+"\nsmtpgate_rate_limit_redis = "+rs.URL()+
		"\nsmtpgate_greylist_redis = "+rs.URL()+"\n", t.TempDir())
	set, err := Load(main, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(set, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(set, Config{}); err == nil {
		t.Error("New with used settings: no error")
	}
	clients := append([]redis.UniversalClient{srv.dnsRedis}, srv.shared.clients...)
	if len(clients) != 3 {
		t.Fatalf("%d Redis clients, want 3", len(clients))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	stop()
	if err := srv.Serve(sctx, lis); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ctx := context.Background()
	for _, c := range clients {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("Redis after Serve, before Close: %v", err)
		}
	}
	if st := srv.authConn.GetState(); st == connectivity.Shutdown {
		t.Errorf("smtpgate-auth connection shut down by Serve")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, c := range clients {
		if err := c.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
			t.Errorf("Redis client %d after Close: %v, want %v", i, err, redis.ErrClosed)
		}
	}
	if st := srv.authConn.GetState(); st != connectivity.Shutdown {
		t.Errorf("smtpgate-auth connection after Close: %v, want SHUTDOWN", st)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestTLSFilesReadByLoad: the gRPC listener's and the auth client's TLS
// files are read by Load, once: a Server built after they are gone
// starts, and serves TLS with the pair Load read.
func TestTLSFilesReadByLoad(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "ca")
	cert, key := ca.Server(t, "policy")
	main := loadMain(t, "smtpgate_grpc_tls_cert_file = "+cert+"\nsmtpgate_grpc_tls_key_file = "+key+
		"\nsmtpgate_grpc_tls_ca_file = "+ca.CertFile+"\n", dir)
	set, err := Load(main, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(ca.CertFile); err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA certificate: %v", err)
	}
	for _, f := range []string{cert, key, ca.CertFile} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(set, Config{})
	if err != nil {
		t.Fatalf("New after the TLS files are gone: %v", err)
	}
	defer srv.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := policyv1.NewPolicyServiceClient(conn).Check(ctx, rcptRequest("", "127.0.0.1", "john@example.org"))
	if err != nil || resp.GetVerdict().GetAction() != policyv1.Action_ACTION_PERMIT {
		t.Fatalf("Check over TLS: %v %v", resp.GetVerdict(), err)
	}
}

// validate is check: Load with the settings dropped.
func validate(main *maincf.Config, services []maincf.Service) error {
	_, err := Load(main, services)
	return err
}
