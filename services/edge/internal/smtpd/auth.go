package smtpd

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"time"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// auth handles AUTH (RFC 4954) through the auth service.
func (s *session) auth(ctx context.Context, arg string) reply.Reply {
	switch {
	case !s.authAllowed():
		return reply.AuthNotEnabled
	case !s.helo.greeted:
		return reply.NeedHELO
	case s.sasl.user != "":
		return reply.AuthTwice
	case s.tx != nil:
		return reply.AuthInMail
	}
	fields := strings.Fields(arg)
	if len(fields) == 0 || len(fields) > 2 {
		return reply.AuthSyntax
	}
	mech := strings.ToUpper(fields[0])
	start := &authv1.Start{Session: s.authSession(), Mechanism: mech}
	if len(fields) == 2 {
		start.HasInitialResponse = true
		if fields[1] != "=" {
			b, err := base64.StdEncoding.DecodeString(fields[1])
			if err != nil {
				return reply.AuthMalformed
			}
			start.InitialResponse = b
		}
	}
	// The exchange may wait for the client between steps; each wait on
	// the auth service is bounded by authTimeout.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.srv.Auth.Authenticate(ctx)
	if err != nil {
		s.log.Error("auth unavailable", "err", err)
		return reply.AuthTempFail
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&authv1.AuthenticateRequest{Step: &authv1.AuthenticateRequest_Start{Start: start}}); err != nil {
		s.log.Error("auth unavailable", "err", err)
		return reply.AuthTempFail
	}
	for {
		resp, err := s.recvAuth(stream, cancel)
		if err != nil {
			s.log.Error("auth failed to answer", "err", err)
			return reply.AuthTempFail
		}
		if o := resp.GetOutcome(); o != nil {
			// The service ends the call right after the outcome: its
			// end is read, so that the call counts as handled OK
			// (grpc_client_handled_total) rather than cancelled.
			_ = stream.CloseSend()
			if _, err := s.recvAuth(stream, cancel); !errors.Is(err, io.EOF) {
				s.log.Warn("auth call did not end after the outcome", "err", err)
			}
			r := reply.FromAuthResult(o.GetResult())
			switch o.GetResult() {
			case authv1.Result_RESULT_SUCCESS:
				s.sasl.mech, s.sasl.user = mech, o.GetUsername()
				s.log.Info("authenticated", "sasl_method", mech, "sasl_username", s.sasl.user)
			case authv1.Result_RESULT_FAILURE:
				// Postfix's words with Dovecot's reason (the line
				// fail2ban's postfix[mode=auth] filter counts).
				s.mlog.SASLFailed(s.peer(), mech, "authentication failure")
			case authv1.Result_RESULT_TEMPORARY_FAILURE:
				s.mlog.SASLFailed(s.peer(), mech, "Temporary authentication failure")
			case authv1.Result_RESULT_CANCELLED:
				s.mlog.SASLAborted(s.peer(), mech)
			}
			return r
		}
		ch := resp.GetChallenge()
		if ch == nil {
			s.log.Error("auth answered neither challenge nor outcome")
			return reply.AuthTempFail
		}
		s.send(reply.Reply{Code: 334, Lines: []string{base64.StdEncoding.EncodeToString(ch.GetData())}})
		line, err := s.readLine()
		if errors.Is(err, errBareLF) {
			return s.refuseBareNewline("LF", true)
		}
		if err != nil {
			return reply.Reply{Close: true}
		}
		next := &authv1.AuthenticateRequest{}
		if line == "*" {
			next.Step = &authv1.AuthenticateRequest_Cancel{Cancel: &authv1.Cancel{}}
		} else {
			b, err := base64.StdEncoding.DecodeString(line)
			if err != nil {
				return reply.AuthMalformed
			}
			next.Step = &authv1.AuthenticateRequest_Response{Response: b}
		}
		if err := stream.Send(next); err != nil {
			s.log.Error("auth unavailable", "err", err)
			return reply.AuthTempFail
		}
	}
}

// authAllowed reports whether AUTH may be used now.
func (s *session) authAllowed() bool {
	return s.l.SASL && (s.tls.state != nil || !s.l.TLSAuthOnly)
}

// mechanisms asks auth what to advertise; on failure none are advertised.
func (s *session) mechanisms(ctx context.Context) []string {
	if !s.authAllowed() || s.sasl.user != "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.authTimeout())
	defer cancel()
	resp, err := s.srv.Auth.Mechanisms(ctx, &authv1.MechanismsRequest{Session: s.authSession()})
	if err != nil {
		s.log.Error("auth mechanisms failed; AUTH not advertised", "err", err)
		return nil
	}
	return resp.GetMechanisms()
}

func (s *session) authTimeout() time.Duration {
	if s.srv.AuthTimeout > 0 {
		return s.srv.AuthTimeout
	}
	return 10 * time.Second
}

func (s *session) authSession() *authv1.Session {
	sess := &authv1.Session{Id: s.id, Listener: s.l.Name, ClientAddress: s.client.addr, ClientPort: port(s.client.port), ServerAddress: s.local.addr, ServerPort: port(s.local.port), Tls: s.tls.state != nil}
	if s.tls.channelBinding != nil {
		sess.ChannelBindingType, sess.ChannelBinding = "tls-exporter", s.tls.channelBinding
	}
	return sess
}

// recvAuth waits for the auth service's next message for at most
// authTimeout; on timeout it cancels the exchange.
func (s *session) recvAuth(stream AuthStream, cancel context.CancelFunc) (*authv1.AuthenticateResponse, error) {
	t := time.AfterFunc(s.authTimeout(), cancel)
	defer t.Stop()
	return stream.Recv()
}
