package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// certificate is a listener's server certificate, reloaded from its files
// on SIGHUP (ReloadCertificates). A new pair that does not load leaves
// the old one in use.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.current.Store(&kp)
	return nil
}

// get is tls.Config.GetCertificate: each handshake takes the pair in use.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// ReloadCertificates reads every listener's smtpd_tls_cert_file and
// smtpd_tls_key_file again. New sessions get the new pair; a pair that
// fails to load is logged and the old one stays. The error joins the
// failures.
func (s *Server) ReloadCertificates(ctx context.Context) error {
	var failed []error
	for _, c := range s.certs {
		if err := c.reload(); err != nil {
			s.log.ErrorContext(ctx, "TLS certificate reload failed; the old certificate stays in use", "cert_file", c.certFile, "key_file", c.keyFile, "err", err)
			failed = append(failed, fmt.Errorf("%s: %w", c.certFile, err))
			continue
		}
		s.log.InfoContext(ctx, "TLS certificate reloaded", "cert_file", c.certFile)
	}
	if len(failed) > 0 {
		return fmt.Errorf("certificate reload: %v", failed)
	}
	return nil
}

// reloadOnHUP calls ReloadCertificates at each SIGHUP until ctx ends.
func (s *Server) reloadOnHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.InfoContext(ctx, "SIGHUP: reloading TLS certificates", slog.Int("listeners", len(s.certs)))
				_ = s.ReloadCertificates(ctx)
			}
		}
	}()
}
