package smtpd

import (
	"context"
	"strconv"
	"strings"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
	"github.com/smtpgate/smtpgate/services/edge/internal/xclient"
)

// hello handles HELO and EHLO (RFC 5321 §4.1.1.1).
func (s *session) hello(ctx context.Context, verb, arg string) reply.Reply {
	if arg == "" {
		return reply.HELOSyntax(verb)
	}
	s.resetTx()
	prevHelo, prevESMTP, prevGreeted := s.helo.name, s.helo.esmtp, s.helo.greeted
	s.helo.name, s.helo.esmtp, s.helo.greeted = arg, verb == "EHLO", true
	r, v, ok := s.askPolicy(ctx, policyv1.Stage_STAGE_HELO, nil, "<"+arg+">")
	if !ok {
		s.helo.name, s.helo.esmtp, s.helo.greeted = prevHelo, prevESMTP, prevGreeted
		return r
	}
	s.verdicts.prepend = append(s.verdicts.prepend, v.GetPrepend()...)
	if verb == "HELO" {
		return reply.Reply{Code: 250, Lines: []string{s.l.Hostname}}
	}
	lines := make([]string, 0, 14)
	lines = append(lines, s.l.Hostname, "PIPELINING")
	if s.l.MaxMessageSize > 0 {
		var b [32]byte
		lines = append(lines, string(strconv.AppendInt(append(b[:0], "SIZE "...), s.l.MaxMessageSize, 10)))
	} else {
		lines = append(lines, "SIZE")
	}
	if !s.l.DisableVRFY {
		lines = append(lines, "VRFY")
	}
	if s.l.ETRN {
		lines = append(lines, "ETRN")
	}
	if s.tls.state == nil && s.l.TLS != nil && s.l.TLSLevel != TLSNone {
		lines = append(lines, "STARTTLS")
	}
	if mechs := s.mechanisms(ctx); len(mechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechs, " "))
	}
	if s.client.xclientOK {
		lines = append(lines, "XCLIENT "+strings.Join(xclient.Attributes, " "))
	}
	lines = append(lines, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN")
	if !s.l.DisableSMTPUTF8 {
		lines = append(lines, "SMTPUTF8")
	}
	lines = append(lines, "CHUNKING")
	return reply.Reply{Code: 250, Lines: lines}
}

// protocol is "SMTP" after HELO, "ESMTP" after EHLO.
func (s *session) protocol() string {
	if s.helo.esmtp {
		return "ESMTP"
	}
	return "SMTP"
}
