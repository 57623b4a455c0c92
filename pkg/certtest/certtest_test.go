package certtest

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
)

// TestSelfSigned: the pair loads, and its certificate names the host,
// localhost and the loopback addresses for a server.
func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	SelfSigned(t, certFile, keyFile, "mail.example.org")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"mail.example.org", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if leaf.DNSNames[0] != "mail.example.org" || leaf.Subject.CommonName != "mail.example.org" {
		t.Errorf("names %v, common name %q", leaf.DNSNames, leaf.Subject.CommonName)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool}); err == nil {
		t.Error("verifies for other.example")
	}
}
