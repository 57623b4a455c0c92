package smtpd

import (
	"crypto/tls"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// starttls handles STARTTLS (RFC 3207).
func (s *session) starttls(arg string) reply.Reply {
	switch {
	case arg != "":
		return reply.Syntax("STARTTLS")
	case s.tls.state != nil:
		return reply.TLSActive
	case s.l.TLS == nil || s.l.TLSLevel == TLSNone:
		return reply.NotImplemented
	}
	s.send(reply.ReadyTLS)
	if err := s.flush(); err != nil {
		return reply.Reply{Close: true}
	}
	// Anything the client sent after STARTTLS in plaintext must not be
	// taken as if it came through TLS (RFC 3207 §4.2; CVE-2011-0411).
	if s.wire.pending() > 0 {
		s.unauthPipelining = true
		s.log.Info("discarding plaintext sent after STARTTLS", "bytes", s.wire.pending())
	}
	if !s.handshake() {
		return reply.Reply{Close: true}
	}
	// RFC 3207 §4.2: forget everything learned before TLS.
	s.resetTx()
	s.helo.name, s.helo.esmtp, s.helo.greeted = "", false, false
	s.verdicts.heloDeferIfPermit, s.verdicts.heloChecked, s.verdicts.discardHELO = nil, false, false
	s.sasl = saslInfo{}
	return reply.Reply{}
}

// handshake runs the TLS server handshake on the connection.
func (s *session) handshake() bool {
	if s.l.TLS == nil {
		s.log.Error("TLS requested but no certificate configured")
		return false
	}
	tc := tls.Server(s.wire.conn, s.l.TLS)
	timeout := s.tune().Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		s.log.Info("TLS handshake failed", "err", err)
		s.srv.Metrics.handshaken(s.l.Name, "")
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.srv.Metrics.handshaken(s.l.Name, tlsVersion(st.Version))
	s.tls.state = &st
	// RFC 9266 tls-exporter channel binding for SCRAM-*-PLUS; Go refuses
	// to export keying material where it would be unsafe (TLS 1.2
	// without extended master secret), and then there is none.
	if cb, err := st.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32); err == nil {
		s.tls.channelBinding = cb
	}
	s.wire.setConn(tc)
	s.log.Info("TLS established", "version", tlsVersion(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return true
}

// tlsVersion names a TLS version as Postfix logs it ("TLSv1.3").
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// cipherBits is the symmetric key size of the TLS cipher suites Go offers.
func cipherBits(suite uint16) uint32 {
	name := tls.CipherSuiteName(suite)
	switch {
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "AES_128"):
		return 128
	}
	return 0
}
