package edge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgate/smtpgate/pkg/telemetry"
)

var certExpiryDesc = prometheus.NewDesc("smtpgate_edge_tls_certificate_expiry_timestamp_seconds",
	"When the certificate a listener serves (smtpd_tls_cert_file, its first certificate) expires, in seconds since the Unix epoch, by listener and file; read again at every reload.",
	[]string{"listener", "cert_file"}, nil)

// certificateCollector exports the expiry of the certificates of the
// configuration in use (certificates returns them), as they are at
// scrape time: a reload that renews a certificate, or drops a listener,
// shows at the next scrape, and no series of an old configuration stays.
type certificateCollector func() []certificateOf

// certificateOf is a listener's certificate.
type certificateOf struct {
	listener string
	cert     *certificate
}

func (c certificateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certificateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, lc := range c() {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue,
			float64(lc.cert.notAfter.Unix()), lc.listener, lc.cert.certFile)
	}
}

// certificateMetrics exports smtpgate_edge_tls_certificate_expiry_timestamp_seconds.
func certificateMetrics(r prometheus.Registerer, certificates func() []certificateOf) {
	telemetry.Register(r, certificateCollector(certificates))
}

// certificates are the listeners' certificates of the configuration in
// use (none before New has built it).
func (s *Server) certificates() []certificateOf {
	s.mu.Lock()
	g := s.current
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []certificateOf
	for _, b := range g.bindings {
		if b.cert != nil {
			out = append(out, certificateOf{b.l.Name, b.cert})
		}
	}
	return out
}
