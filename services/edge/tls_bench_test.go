package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// benchCert is a self-signed certificate for mail.example.org with key.
func benchCert(b *testing.B, key crypto.Signer) tls.Certificate {
	b.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.org"},
		DNSNames:     []string{"mail.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// BenchmarkTLSHandshake: one STARTTLS handshake as scenario d's clients
// make it (TLS 1.3, X25519, the certificate not verified, as an SMTP
// client doing opportunistic TLS), client and server in this process over
// an in-memory pipe: ns/op is both sides' work. "full" is a new client;
// "resumed" a client that kept the ticket of its previous session, under
// smtpd_tls_session_cache_timeout's default. "sign" is the server's
// CertificateVerify signature alone, what a full handshake costs the
// server beyond a resumed one besides sending the certificate.
//
//	go test -run '^$' -bench TLSHandshake .
func BenchmarkTLSHandshake(b *testing.B) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []struct {
		name string
		key  crypto.Signer
		opts crypto.SignerOpts
	}{
		{"ecdsa-p256", ecKey, crypto.SHA256},
		{"rsa-2048", rsaKey, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
	} {
		cert := benchCert(b, k.key)
		server := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		sessionTickets{timeout: time.Hour}.apply(server)
		for _, resume := range []bool{false, true} {
			name := k.name + "/full"
			if resume {
				name = k.name + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				client := &tls.Config{ServerName: "mail.example.org", InsecureSkipVerify: true, //nolint:gosec // as scenario d's clients
					CurvePreferences: []tls.CurveID{tls.X25519}}
				if resume {
					client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				}
				resumed := 0
				for b.Loop() {
					if pipeHandshake(b, server, client) {
						resumed++
					}
				}
				if resume && resumed < b.N-1 || !resume && resumed > 0 {
					b.Fatalf("%d of %d handshakes resumed", resumed, b.N)
				}
			})
		}
		b.Run(k.name+"/sign", func(b *testing.B) {
			digest := sha256.Sum256([]byte("TLS 1.3, server CertificateVerify"))
			for b.Loop() {
				if _, err := k.key.Sign(rand.Reader, digest[:], k.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pipeHandshake runs one handshake between server and client over
// net.Pipe; the server then writes a byte, so that the client takes in
// its TLS 1.3 ticket. It says whether the session was resumed.
func pipeHandshake(b *testing.B, server, client *tls.Config) bool {
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		_, err := s.Write([]byte{'2'})
		done <- err
	}()
	c := tls.Client(cc, client)
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return c.ConnectionState().DidResume
}
