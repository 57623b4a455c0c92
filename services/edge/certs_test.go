package edge

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/smtpgate/smtpgate/pkg/certtest"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// TestReloadCertificates: a reload reads the listeners' certificates
// again; a pair that does not load fails the reload, is reported with
// its file and leaves the old pair in use.
func TestReloadCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certtest.SelfSigned(t, certFile, keyFile, "old.example")
	main := "myhostname = h.example\nsmtpd_tls_cert_file = " + certFile + "\nsmtpd_tls_key_file = " + keyFile + "\n"
	master := "127.0.0.1:2525 inet n - n - - smtpd\n"
	set, err := Load(load(t, main, master))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(set, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	served := func() string {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		kp, err := s.current.bindings[0].l.TLS.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.DNSNames[0]
	}
	ctx := context.Background()
	// What SIGHUP does: load the files again, reload what loaded.
	reload := func(ctx context.Context, s *Server, main, master string) error {
		set, err := Load(load(t, main, master))
		if err != nil {
			return err
		}
		return s.Reload(ctx, set)
	}

	certtest.SelfSigned(t, certFile, keyFile, "new.example")
	if err := reload(ctx, s, main, master); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "new.example" {
		t.Errorf("after reload: %s", got)
	}

	// A key that does not match: the old pair stays.
	certtest.SelfSigned(t, certFile, filepath.Join(dir, "other-key.pem"), "bad.example")
	err = reload(ctx, s, main, master)
	if err == nil || !strings.Contains(err.Error(), "main.cf:2: smtpd_tls_cert_file") {
		t.Errorf("reload with a mismatched pair = %v, want an error at main.cf:2", err)
	}
	if got := served(); got != "new.example" {
		t.Errorf("after a bad reload: %s", got)
	}
}

// TestReloadSwapsSettings: a reload gives new connections everything the
// new Settings say (listener settings and the engine's timeouts), keeps
// what lives as long as the process, and names the restart-only
// parameters that changed, without their values.
func TestReloadSwapsSettings(t *testing.T) {
	master := "127.0.0.1:2525 inet n - n - - smtpd\n"
	set, err := Load(load(t, "myhostname = h.example\n", master))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	s, err := New(set, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := s.current.bindings[0]
	set, err = Load(load(t, `myhostname = h.example
smtpd_banner = $myhostname ESMTP reloaded
smtpgate_policy_timeout = 7s
smtpgate_policy_skip_time = 0
smtpgate_auth_timeout = 3s
smtpgate_shutdown_timeout = 2s
smtpgate_max_connections = 10
smtpgate_connection_limit_redis = redis://:s3cret@127.0.0.1:1/0
`, master))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	b := s.current.bindings[0]
	if b.l.Banner != "h.example ESMTP reloaded" || first.l.Banner != "h.example ESMTP smtpgate" {
		t.Errorf("banner: new %q, old %q", b.l.Banner, first.l.Banner)
	}
	if b.engine.PolicyTimeout != 7*time.Second || b.engine.PolicySkipTime != 0 || b.engine.AuthTimeout != 3*time.Second || s.current.set.shutdownTimeout != 2*time.Second {
		t.Errorf("engine settings after reload: policy %v, skip %v, auth %v, shutdown %v",
			b.engine.PolicyTimeout, b.engine.PolicySkipTime, b.engine.AuthTimeout, s.current.set.shutdownTimeout)
	}
	if first.engine.PolicyTimeout != 10*time.Second || first.engine.PolicySkipTime != 5*time.Second {
		t.Errorf("the old generation changed: policy %v, skip %v", first.engine.PolicyTimeout, first.engine.PolicySkipTime)
	}
	if b.engine.Limits != first.engine.Limits || b.engine.Drain != first.engine.Drain || b.engine.Policy != first.engine.Policy {
		t.Error("the process's parts (limits, drain, policy client) are not shared by the new generation")
	}
	const warn = "reload: a parameter read only at start changed"
	for _, name := range []string{"smtpgate_max_connections", "smtpgate_connection_limit_redis"} {
		if !strings.Contains(logs.String(), warn+"; it takes effect at the next restart\" name="+name+"\n") {
			t.Errorf("no restart warning for %s:\n%s", name, logs.String())
		}
	}
	if n := strings.Count(logs.String(), warn); n != 2 || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("%d restart warnings (want 2), or a secret logged:\n%s", n, logs.String())
	}
}

// TestNewSetsEngineWhole: with every dependency given, New sets every
// field of the engine's Config, so that a field added to smtpd.Config
// and not built here (from the process's parts or from Settings, in
// engineFor, the same way for New and Reload) fails here rather than
// being silently zero.
func TestNewSetsEngineWhole(t *testing.T) {
	set, err := Load(load(t, "myhostname = h.example\n", "127.0.0.1:2525 inet n - n - - smtpd\n"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	s, err := New(set, Config{Logger: slog.New(slog.DiscardHandler), TracerProvider: tp, Metrics: prometheus.NewRegistry(), MailLog: maillog.New(io.Discard, "mx", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := reflect.ValueOf(s.current.bindings[0].engine.Config)
	for i := range c.NumField() {
		if c.Field(i).IsZero() {
			t.Errorf("New leaves smtpd.Config.%s unset", c.Type().Field(i).Name)
		}
	}
}
