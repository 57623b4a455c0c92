package auth

import (
	"strings"

	"github.com/xdg-go/scram"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
)

// This file holds every conversion between the proto messages of
// smtpgate.auth.v1 and the authority's values.

// sessionListener returns the SASL settings of the session's listener;
// a missing session or an unknown listener is InvalidArgument.
func sessionListener(a *authority, sess *authv1.Session) (listener, error) {
	if sess == nil {
		return listener{}, status.Error(codes.InvalidArgument, "session is required")
	}
	l, ok := a.listenerNamed(sess.GetListener())
	if !ok {
		return listener{}, status.Errorf(codes.InvalidArgument, "unknown listener %q", sess.GetListener())
	}
	return l, nil
}

// channelBinding returns the session's channel binding: only RFC 9266
// tls-exporter is taken (tls-unique is unsafe with TLS 1.3 resumption and
// the edge does not send it).
func channelBinding(sess *authv1.Session) (scram.ChannelBinding, bool) {
	if sess.GetChannelBindingType() != string(scram.ChannelBindingTLSExporter) || len(sess.GetChannelBinding()) == 0 || !sess.GetTls() {
		return scram.ChannelBinding{}, false
	}
	return scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: sess.GetChannelBinding()}, true
}

// sessionOf is what a relayed exchange tells Dovecot about the session.
func sessionOf(sess *authv1.Session) session {
	return session{client: sess.GetClientAddress(), clientPort: int(sess.GetClientPort()), server: sess.GetServerAddress(), serverPort: int(sess.GetServerPort()), tls: sess.GetTls()}
}

// findMechanism returns the mechanism named name (upper case) in ms.
func findMechanism(ms []sasl.Mechanism, name string) (sasl.Mechanism, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return sasl.Mechanism{}, false
}

// mechanismNames returns the names of ms, in order.
func mechanismNames(ms []sasl.Mechanism) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// resultName is r as the log shows it (SUCCESS, FAILED, ...).
func resultName(r authv1.Result) string { return strings.TrimPrefix(r.String(), "RESULT_") }

// outcomeResponse ends an exchange with r; the user name goes only with
// a success.
func outcomeResponse(r authv1.Result, user string) *authv1.AuthenticateResponse {
	return &authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Outcome{Outcome: &authv1.Outcome{Result: r, Username: map[bool]string{true: user}[r == authv1.Result_RESULT_SUCCESS]}}}
}

// challengeResponse carries the mechanism's next challenge.
func challengeResponse(data []byte) *authv1.AuthenticateResponse {
	return &authv1.AuthenticateResponse{Step: &authv1.AuthenticateResponse_Challenge{Challenge: &authv1.Challenge{Data: data}}}
}
