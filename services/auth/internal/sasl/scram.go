package sasl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// SCRAMSecrets gives SCRAM the stored credentials of a user for a hash
// ("SHA-1" or "SHA-256"). For a user it cannot serve (unknown, or stored in
// another form) it must return convincing fake credentials with ok ==
// false, so that the exchange fails at the proof like a wrong password and
// does not reveal whether the user exists (RFC 5802 §9 discusses
// e=unknown-user; this server never sends it).
type SCRAMSecrets interface {
	SCRAM(ctx context.Context, hash, user string) (cred scram.StoredCredentials, ok bool, err error)
}

// scramSHA256 is SCRAM (RFC 5802, RFC 7677 for SHA-256) on
// github.com/xdg-go/scram, with channel binding for the -PLUS variants
// (RFC 9266 tls-exporter). The server-final message goes out as a last
// challenge, answered by an empty response (RFC 4954 §4).
type scramSHA256 struct {
	b    Backend
	hash string // "SHA-1" or "SHA-256"
	// plus: the -PLUS mechanism, channel binding required; cb is the
	// channel's binding (zero when the edge has none).
	plus  bool
	cb    scram.ChannelBinding
	nonce scram.NonceGeneratorFcn
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
		if err := s.begin(ctx); err != nil {
			return nil, true, err
		}
		return []byte{}, false, nil
	case s.conv == nil:
		if err := s.begin(ctx); err != nil {
			return nil, true, err
		}
		fallthrough
	case !s.final && s.user == "":
		out, err := s.conv.Step(string(resp))
		if s.err != nil {
			return nil, true, s.err
		}
		if err != nil {
			return nil, true, refusal(out)
		}
		s.user = s.conv.Username()
		return []byte(out), false, nil
	case !s.final:
		out, err := s.conv.Step(string(resp))
		if err != nil || !s.conv.Valid() {
			if !s.known {
				return nil, true, ErrFailed
			}
			return nil, true, refusal(out)
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

// refusal classifies a failed step by the server-error the library
// answered: a refused proof or channel binding (RFC 5802 §7 "e=" values
// such as invalid-proof, channel-bindings-dont-match,
// server-does-support-channel-binding) is a failed authentication (535);
// anything else is a malformed message (501).
func refusal(serverMessage string) error {
	if strings.HasPrefix(serverMessage, "e=") {
		return ErrFailed
	}
	return ErrMalformed
}

// begin starts the library's conversation: with the channel binding
// required for -PLUS; with it offered otherwise, so that a client that
// could bind but was told the server cannot ("y" in the GS2 header) is
// refused as a downgrade (RFC 5802 §6).
func (s *scramSHA256) begin(ctx context.Context) error {
	h := scram.SHA256
	if s.hash == "SHA-1" {
		h = scram.SHA1
	}
	srv, err := h.NewServer(s.lookup(ctx))
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	if s.nonce != nil {
		srv = srv.WithNonceGenerator(s.nonce)
	}
	switch {
	case s.plus && !s.cb.IsSupported():
		return ErrFailed
	case s.plus:
		s.conv = srv.NewConversationWithChannelBindingRequired(s.cb)
	case s.cb.IsSupported():
		s.conv = srv.NewConversationWithChannelBinding(s.cb)
	default:
		s.conv = srv.NewConversation()
	}
	return nil
}

// lookup adapts the backend to the library's callback.
func (s *scramSHA256) lookup(ctx context.Context) scram.CredentialLookup {
	return func(user string) (scram.StoredCredentials, error) {
		sec, ok := s.b.(SCRAMSecrets)
		if !ok {
			s.err = errors.New("scram: backend has no SCRAM secrets")
			return scram.StoredCredentials{}, s.err
		}
		cred, known, err := sec.SCRAM(ctx, s.hash, user)
		if err != nil {
			s.err = fmt.Errorf("scram %s: %w", user, err)
			return scram.StoredCredentials{}, s.err
		}
		s.known = known
		return cred, nil
	}
}
