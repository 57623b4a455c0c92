package edge

import (
	"crypto/tls"
)

// certificate is a listener's server certificate, read from its files
// when the configuration is loaded: at start and on every reload (SIGHUP,
// Server.Reload), so a renewed pair is picked up by new sessions; a pair
// that does not load fails the reload and the old one stays in use.
type certificate struct {
	certFile, keyFile string
	pair              *tls.Certificate
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &certificate{certFile: certFile, keyFile: keyFile, pair: &kp}, nil
}

// get is tls.Config.GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.pair, nil
}
