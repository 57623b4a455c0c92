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
	case !s.xclientOK:
		s.log.InfoContext(ctx, "XCLIENT refused: client not in smtpd_authorized_xclient_hosts")
		return reply.XCLIENTDenied
	}
	c, err := xclient.Parse(arg)
	if err != nil {
		return reply.FromXCLIENT(err)
	}
	s.applyXCLIENT(c)
	s.log.InfoContext(ctx, "xclient", "client", s.namaddr(), "client_port", s.clientPort, "helo", s.helo, "proto", s.protocol(), "sasl_username", s.saslUser, "server", s.serverAddr)
	// Back to the greeting stage: the connect-stage check runs again on
	// the new identity, and its refusal replaces the 220.
	if r, ok := s.connectCheck(ctx); !ok {
		return r
	}
	return reply.Greeting(s.l.Banner)
}

// applyXCLIENT takes the command's values and resets the session to its
// state after the greeting, keeping what XCLIENT set.
func (s *session) applyXCLIENT(c *xclient.Command) {
	if c.Name.Set {
		s.clientName = c.Name.Value
		if c.Name.Status == xclient.NameOK {
			s.reverseName = c.Name.Value
		}
	}
	if c.ReverseName.Set {
		s.reverseName = c.ReverseName.Value
	}
	if c.Addr.Set {
		s.clientAddr = c.Addr.Value
		if !c.Name.Set {
			// The old name belonged to the old address.
			s.clientName, s.reverseName = "", ""
		}
	}
	if ip, err := netip.ParseAddr(s.clientAddr); err == nil {
		s.xclientOK = s.l.XCLIENTHosts.Contains(ip)
	} else {
		s.xclientOK = false
	}
	if c.Port.Set {
		s.clientPort = c.Port.Value
	}
	if c.DestAddr.Set {
		s.serverAddr = c.DestAddr.Value
	}
	if c.DestPort.Set {
		s.serverPort = c.DestPort.Value
	}
	s.origin = policyv1.Origin_ORIGIN_XCLIENT

	s.resetTx()
	s.helo, s.esmtp, s.greeted, s.protoSet = "", false, false, false
	if c.HELO.Set && c.HELO.Value != "" {
		s.helo, s.greeted = c.HELO.Value, true
	}
	if c.Proto.Set {
		s.esmtp, s.protoSet = c.Proto.Value == "ESMTP", true
	}
	s.saslMech, s.saslUser = "", ""
	if c.Login.Set && c.Login.Value != "" {
		s.saslMech, s.saslUser = "XCLIENT", c.Login.Value
	}
	s.denied = false
	s.prepend = nil
	s.connectDeferIfPermit, s.heloDeferIfPermit, s.heloChecked = nil, nil, false
	s.discardConnect, s.discardHELO = false, false
	s.log = *s.log.With("xclient_client", s.clientAddr)
}
