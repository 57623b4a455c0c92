package edge

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// writePair writes a self-signed certificate for name and its key.
func writePair(t *testing.T, certFile, keyFile, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedName(t *testing.T, c *certificate) string {
	t.Helper()
	kp, err := c.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.DNSNames[0]
}

func TestReloadCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "old.example")
	c, err := loadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil)), certs: []*certificate{c}}
	ctx := context.Background()

	writePair(t, certFile, keyFile, "new.example")
	if err := s.ReloadCertificates(ctx); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, c); got != "new.example" {
		t.Errorf("after reload: %s", got)
	}

	// A key that does not match: the old pair stays, and it is logged.
	writePair(t, certFile, filepath.Join(dir, "other-key.pem"), "bad.example")
	if err := s.ReloadCertificates(ctx); err == nil {
		t.Error("a mismatched pair was accepted")
	}
	if got := servedName(t, c); got != "new.example" {
		t.Errorf("after a bad reload: %s", got)
	}
	if !bytes.Contains(logs.Bytes(), []byte("the old certificate stays in use")) {
		t.Errorf("bad reload not logged: %s", logs.String())
	}

	// SIGHUP to this process reaches reloadOnHUP.
	writePair(t, certFile, keyFile, "hup.example")
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.reloadOnHUP(hctx)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for servedName(t, c) != "hup.example" {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
