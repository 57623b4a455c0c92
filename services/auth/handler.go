package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// handler is the gRPC face of the authority: it implements
// authv1.AuthServiceServer by converting each request (convert.go),
// asking the authority and converting the answer back. It owns nothing.
type handler struct {
	authv1.UnimplementedAuthServiceServer
	auth *authority
}

// LookupUser implements AuthService.LookupUser: whether a user exists.
// The name is tried as given, then with its domain lower-cased, then all
// lower-case (Dovecot's default auth_username_format is %Lu).
func (h handler) LookupUser(ctx context.Context, req *authv1.LookupUserRequest) (*authv1.LookupUserResponse, error) {
	name := req.GetUsername()
	if name == "" || len(name) > 1024 || strings.ContainsAny(name, "\x00\r\n") {
		return nil, status.Error(codes.InvalidArgument, "username: want a user name of at most 1024 octets without NUL, CR or LF")
	}
	c, ok, err := h.auth.findUser(ctx, name)
	if err != nil {
		// Fail closed: the caller answers a temporary error, never
		// "unknown user".
		h.auth.log.WarnContext(ctx, "user lookup failed", "err", err)
		return nil, status.Error(codes.Unavailable, "the user database could not be asked")
	}
	if ok {
		return &authv1.LookupUserResponse{Exists: true, Username: c}, nil
	}
	return &authv1.LookupUserResponse{}, nil
}

// Mechanisms implements authv1.AuthServiceServer.
func (h handler) Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error) {
	l, err := sessionListener(h.auth, req.GetSession())
	if err != nil {
		return nil, err
	}
	_, binding := channelBinding(req.GetSession())
	ms, err := h.auth.offeredBy(ctx, l, req.GetSession().GetTls(), binding)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &authv1.MechanismsResponse{Mechanisms: mechanismNames(ms)}, nil
}

// Authenticate implements authv1.AuthServiceServer: one SASL exchange per
// stream.
func (h handler) Authenticate(stream grpc.BidiStreamingServer[authv1.AuthenticateRequest, authv1.AuthenticateResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message must be start")
	}
	l, err := sessionListener(h.auth, start.GetSession())
	if err != nil {
		return err
	}
	sess := start.GetSession()
	mech := strings.ToUpper(start.GetMechanism())
	logAttrs := []any{"session", sess.GetId(), "client", sess.GetClientAddress(), "mechanism", mech}

	var ex *attempt
	end := func(r authv1.Result, user string) error {
		if ex != nil {
			// Before the answer: the caller's next attempt finds the
			// place given back.
			ex.End(ctx)
		}
		h.auth.metrics.authenticated(mech, r)
		lv := slog.LevelInfo
		h.auth.log.Log(ctx, lv, "authentication", append(logAttrs, "username", user, "result", resultName(r))...)
		return stream.Send(outcomeResponse(r, user))
	}

	cb, binding := channelBinding(sess)
	offered, err := h.auth.offeredBy(ctx, l, sess.GetTls(), binding)
	if err != nil {
		h.auth.log.WarnContext(ctx, "authentication could not be checked", append(logAttrs, "err", err)...)
		return end(authv1.Result_RESULT_TEMPORARY_FAILURE, "")
	}
	m, found := findMechanism(offered, mech)
	if !found {
		if !sess.GetTls() {
			if withTLS, err := h.auth.offeredBy(ctx, l, true, false); err == nil {
				if _, ok := findMechanism(withTLS, mech); ok {
					return end(authv1.Result_RESULT_ENCRYPTION_REQUIRED, "")
				}
			}
		}
		return end(authv1.Result_RESULT_UNSUPPORTED_MECHANISM, "")
	}

	if l.dovecot != "" {
		ex = h.auth.startRelay(l, m, sessionOf(sess))
	} else {
		ex = h.auth.startWith(m, sess.GetClientAddress(), cb)
	}
	defer ex.End(ctx)
	var resp []byte
	if start.GetHasInitialResponse() {
		resp = start.GetInitialResponse()
		if resp == nil {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := ex.Next(ctx, resp)
		if done {
			switch {
			case err == nil:
				return end(authv1.Result_RESULT_SUCCESS, ex.Username())
			case errors.Is(err, sasl.ErrMalformed):
				return end(authv1.Result_RESULT_MALFORMED, ex.Username())
			case errors.Is(err, sasl.ErrFailed):
				return end(authv1.Result_RESULT_FAILURE, ex.Username())
			case errors.Is(err, throttle.ErrLocked):
				// Logged once by the limiter when the lockout began.
				h.auth.log.DebugContext(ctx, "authentication refused", append(logAttrs, "err", err)...)
				h.auth.metrics.lockedOut.Inc()
				return end(authv1.Result_RESULT_TEMPORARY_FAILURE, ex.Username())
			default:
				h.auth.log.WarnContext(ctx, "authentication could not be checked", append(logAttrs, "err", err)...)
				return end(authv1.Result_RESULT_TEMPORARY_FAILURE, ex.Username())
			}
		}
		if err := stream.Send(challengeResponse(challenge)); err != nil {
			return err
		}
		next, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Error(codes.Canceled, "the edge ended the exchange")
		}
		if err != nil {
			return err
		}
		switch step := next.GetStep().(type) {
		case *authv1.AuthenticateRequest_Cancel:
			return end(authv1.Result_RESULT_CANCELLED, ex.Username())
		case *authv1.AuthenticateRequest_Response:
			resp = step.Response
			if resp == nil {
				resp = []byte{}
			}
		default:
			return status.Error(codes.InvalidArgument, "expected a response or cancel")
		}
	}
}

var _ authv1.AuthServiceServer = handler{}
