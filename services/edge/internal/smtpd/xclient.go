package smtpd

import (
	"context"
	"net/netip"
	"strings"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
	"github.com/smtpgate/smtpgate/services/edge/internal/xclient"
)

// xclient handles XCLIENT (Postfix XCLIENT_README): an authorized client
// says whom it speaks for, the session goes back to the greeting stage,
// and from then on it is evaluated as that client (ORIGIN_XCLIENT). The
// checks come in Postfix's order: transaction, syntax, authorization.
// A command is applied whole or not at all. TLS is not reset; SASL is: a
// LOGIN= is as if that user had authenticated (method "XCLIENT"), and an
// XCLIENT without LOGIN= forgets an earlier login, as Postfix does.
func (s *session) xclient(ctx context.Context, arg string) reply.Reply {
	switch {
	case s.tx != nil:
		return reply.MailInProgress
	case strings.TrimSpace(arg) == "":
		return reply.XCLIENTSyntax
	case !s.client.xclientOK:
		s.log.InfoContext(ctx, "XCLIENT refused: client not in smtpd_authorized_xclient_hosts")
		return reply.XCLIENTDenied
	}
	c, err := xclient.Parse(arg)
	if err != nil {
		return reply.FromXCLIENT(err)
	}
	s.applyXCLIENT(c)
	s.log.InfoContext(ctx, "xclient", "client", s.namaddr(), "client_port", s.client.port, "helo", s.helo.name, "proto", s.protocol(), "sasl_username", s.sasl.user, "server", s.local.addr)
	// Back to the greeting stage: the connect-stage check runs again on
	// the new identity, and its refusal replaces the 220.
	if r, ok := s.connectCheck(ctx); !ok {
		return r
	}
	return reply.Greeting(s.l.Banner)
}

// nameStatus is the status of an XCLIENT NAME= or REVERSE_NAME= value.
func nameStatus(st xclient.NameStatus) policyv1.NameStatus {
	switch st {
	case xclient.NameOK:
		return policyv1.NameStatus_NAME_STATUS_OK
	case xclient.NameTempFail:
		return policyv1.NameStatus_NAME_STATUS_TEMPORARY
	}
	return policyv1.NameStatus_NAME_STATUS_PERMANENT
}

// applyXCLIENT takes the command's values and resets the session to its
// state after the greeting, keeping what XCLIENT set.
func (s *session) applyXCLIENT(c *xclient.Command) {
	if c.Addr.Set && !c.Name.Set {
		// The old names belonged to the old address: the connect check
		// that follows resolves the new one's (Postfix keeps the old).
		s.client.name, s.client.reverseName = "", ""
		s.client.nameStatus, s.client.reverseStatus = policyv1.NameStatus_NAME_STATUS_UNSPECIFIED, policyv1.NameStatus_NAME_STATUS_UNSPECIFIED
	}
	if c.Name.Set {
		// As Postfix's xclient_cmd: a known NAME is the reverse name too.
		s.client.name, s.client.nameStatus = c.Name.Value, nameStatus(c.Name.Status)
		if c.Name.Status == xclient.NameOK {
			s.client.reverseName, s.client.reverseStatus = c.Name.Value, s.client.nameStatus
		} else if s.client.reverseStatus == policyv1.NameStatus_NAME_STATUS_UNSPECIFIED {
			s.client.reverseName, s.client.reverseStatus = xclient.Unknown, policyv1.NameStatus_NAME_STATUS_PERMANENT
		}
	}
	if c.ReverseName.Set {
		s.client.reverseName, s.client.reverseStatus = c.ReverseName.Value, nameStatus(c.ReverseName.Status)
		if s.client.nameStatus == policyv1.NameStatus_NAME_STATUS_UNSPECIFIED {
			s.client.name, s.client.nameStatus = xclient.Unknown, policyv1.NameStatus_NAME_STATUS_PERMANENT
		}
	}
	if c.Addr.Set {
		s.client.addr = c.Addr.Value
	}
	if ip, err := netip.ParseAddr(s.client.addr); err == nil {
		s.client.xclientOK = s.l.XCLIENTHosts.Contains(ip)
	} else {
		s.client.xclientOK = false
	}
	if c.Port.Set {
		s.client.port = c.Port.Value
	}
	if c.DestAddr.Set {
		s.local.addr = c.DestAddr.Value
	}
	if c.DestPort.Set {
		s.local.port = c.DestPort.Value
	}
	s.client.origin = policyv1.Origin_ORIGIN_XCLIENT

	s.resetTx()
	s.helo = heloInfo{}
	if c.HELO.Set && c.HELO.Value != "" {
		s.helo.name, s.helo.greeted = c.HELO.Value, true
	}
	if c.Proto.Set {
		s.helo.esmtp, s.helo.protoSet = c.Proto.Value == "ESMTP", true
	}
	s.sasl = saslInfo{}
	if c.Login.Set && c.Login.Value != "" {
		s.sasl.mech, s.sasl.user = "XCLIENT", c.Login.Value
	}
	s.verdicts = sessionVerdicts{}
	s.log = *s.log.With("xclient_client", s.client.addr)
}
