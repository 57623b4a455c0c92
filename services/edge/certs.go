package edge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// certificate is a listener's server certificate, read from its files
// when the configuration is loaded: at start and on every reload (SIGHUP,
// Server.Reload), so a renewed pair is picked up by new sessions; a pair
// that does not load fails the reload and the old one stays in use.
type certificate struct {
	certFile, keyFile string
	pair              *tls.Certificate
	// notAfter is when the leaf certificate (the file's first) expires.
	notAfter time.Time
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	leaf := kp.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(kp.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", certFile, err)
		}
	}
	return &certificate{certFile: certFile, keyFile: keyFile, pair: &kp, notAfter: leaf.NotAfter}, nil
}

// get is tls.Config.GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.pair, nil
}
