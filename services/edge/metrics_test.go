package edge

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/certtest"
)

// TestCertificateExpiryMetric: the expiry of each listener's certificate
// is exported from New on, by listener and file, and a reload that
// serves another file replaces the series (none is left of the old
// file, which would keep an expiry alert firing).
func TestCertificateExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	notAfter := func(certFile, keyFile string) float64 {
		t.Helper()
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return float64(kp.Leaf.NotAfter.Unix())
	}
	oldCert, oldKey := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old.key")
	certtest.SelfSigned(t, oldCert, oldKey, "old.example")
	ca := certtest.NewCA(t, dir, "ca")
	newCert, newKey := ca.Server(t, "new.example")
	mainFor := func(cert, key string) string {
		return "myhostname = h.example\nsmtpd_tls_cert_file = " + cert + "\nsmtpd_tls_key_file = " + key + "\n"
	}
	master := "127.0.0.1:2525 inet n - n - - smtpd\n127.0.0.1:2526 inet n - n - - smtpd -o smtpd_tls_cert_file= -o smtpd_tls_security_level=none\n"
	set, err := Load(load(t, mainFor(oldCert, oldKey), master))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(set, Config{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	expiry := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "smtpgate_edge_tls_certificate_expiry_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				key := ""
				for _, lp := range m.GetLabel() {
					key += lp.GetName() + "=" + lp.GetValue() + " "
				}
				got[key] = m.GetGauge().GetValue()
			}
		}
		return got
	}
	want := map[string]float64{"cert_file=" + oldCert + " listener=127.0.0.1:2525 ": notAfter(oldCert, oldKey)}
	if diff := cmp.Diff(want, expiry()); diff != "" {
		t.Errorf("before the reload (-want +got):\n%s", diff)
	}

	set, err = Load(load(t, mainFor(newCert, newKey), master))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	want = map[string]float64{"cert_file=" + newCert + " listener=127.0.0.1:2525 ": notAfter(newCert, newKey)}
	if diff := cmp.Diff(want, expiry()); diff != "" {
		t.Errorf("after the reload (-want +got):\n%s", diff)
	}
}
