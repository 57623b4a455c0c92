package sasl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// SCRAMSecrets gives SCRAM-SHA-256 the stored credentials of a user. For
// a user it cannot serve (unknown, or stored in another form) it must
// return convincing fake credentials with ok == false, so that the exchange
// fails at the proof like a wrong password and does not reveal whether the
// user exists (RFC 5802 §9 discusses e=unknown-user; this server never
// sends it).
type SCRAMSecrets interface {
	SCRAMSHA256(ctx context.Context, user string) (cred scram.StoredCredentials, ok bool, err error)
}

// scramSHA256 is RFC 5802 / RFC 7677 on github.com/xdg-go/scram. The
// server-final message goes out as a last challenge, answered by an empty
// response (RFC 4954 §4).
type scramSHA256 struct {
	b     Backend
	conv  *scram.ServerConversation
	final bool
	user  string
	known bool
	err   error
}

func (s *scramSHA256) Username() string { return s.user }

func (s *scramSHA256) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	switch {
	case s.conv == nil && resp == nil:
		// No initial response: an empty challenge asks for client-first.
		srv, err := scram.SHA256.NewServer(s.lookup(ctx))
		if err != nil {
			return nil, true, fmt.Errorf("scram: %w", err)
		}
		s.conv = srv.NewConversation()
		return []byte{}, false, nil
	case s.conv == nil:
		srv, err := scram.SHA256.NewServer(s.lookup(ctx))
		if err != nil {
			return nil, true, fmt.Errorf("scram: %w", err)
		}
		s.conv = srv.NewConversation()
		fallthrough
	case !s.final && s.user == "":
		out, err := s.conv.Step(string(resp))
		if s.err != nil {
			return nil, true, s.err
		}
		if err != nil {
			return nil, true, ErrMalformed
		}
		s.user = s.conv.Username()
		return []byte(out), false, nil
	case !s.final:
		out, err := s.conv.Step(string(resp))
		if err != nil || !s.conv.Valid() {
			if strings.HasPrefix(out, "e=invalid-proof") || !s.known {
				return nil, true, ErrFailed
			}
			return nil, true, ErrMalformed
		}
		if !s.known {
			return nil, true, ErrFailed
		}
		s.final = true
		return []byte(out), false, nil
	default:
		if len(resp) != 0 {
			return nil, true, ErrMalformed
		}
		return nil, true, nil
	}
}

// lookup adapts the backend to the library's callback.
func (s *scramSHA256) lookup(ctx context.Context) scram.CredentialLookup {
	return func(user string) (scram.StoredCredentials, error) {
		sec, ok := s.b.(SCRAMSecrets)
		if !ok {
			s.err = errors.New("scram: backend has no SCRAM secrets")
			return scram.StoredCredentials{}, s.err
		}
		cred, known, err := sec.SCRAMSHA256(ctx, user)
		if err != nil {
			s.err = fmt.Errorf("scram %s: %w", user, err)
			return scram.StoredCredentials{}, s.err
		}
		s.known = known
		return cred, nil
	}
}
