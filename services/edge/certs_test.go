package edge

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgate/smtpgate/pkg/certtest"
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
