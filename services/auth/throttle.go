package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/services/auth/internal/dovecotclient"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// attempt is one SASL exchange under the throttle. Its mechanism checks
// credentials through it, so that each check first reserves its place in
// the counts (a locked or full client, network or user is refused before
// any password is looked at, whether the user exists or not); the
// exchange's end turns the reservation into a failure (answered after the
// delay the limiter asks for), a success, or gives it back.
type attempt struct {
	s      *authority
	ex     sasl.Exchange
	client string
	hold   *throttle.Hold // the reservation of the check in progress
}

// start begins an exchange of m for a client at client (an IP address,
// or "" when unknown).
func (s *authority) start(m sasl.Mechanism, client string) sasl.Exchange {
	return s.startWith(m, client, scram.ChannelBinding{})
}

// startWith is start with the connection's channel binding.
func (s *authority) startWith(m sasl.Mechanism, client string, cb scram.ChannelBinding) *attempt {
	a := &attempt{s: s, client: client}
	a.ex = m.StartWith(a, sasl.Params{Hostname: s.hostname, ChannelBinding: cb})
	return a
}

// startRelay begins an exchange of m relayed to the Dovecot of listener
// l, under the throttle.
func (s *authority) startRelay(l listener, m sasl.Mechanism, sess session) *attempt {
	a := &attempt{s: s, client: sess.client}
	a.ex = &relay{at: a, client: s.dovecot[l.dovecot], req: dovecotclient.Request{
		Mechanism: m.Name, Service: "smtp", LocalIP: sess.server, RemoteIP: sess.client,
		LocalPort: sess.serverPort, RemotePort: sess.clientPort, Secured: sess.tls,
	}}
	return a
}

// admit reserves user's check from the client, or refuses it.
func (a *attempt) admit(ctx context.Context, user string) error {
	a.hold.Release(ctx) // a mechanism asks once; never leak a place
	h, d, err := a.s.limiter.Reserve(ctx, throttle.KeysFor(a.client, user))
	if err != nil {
		return err
	}
	if d.Locked {
		what := "locked"
		if d.Full {
			what = "at its maximum with attempts in flight"
		}
		return fmt.Errorf("%s %s %s: %w", d.Kind, d.Key, what, throttle.ErrLocked)
	}
	a.hold = h
	return nil
}

// Verify implements sasl.Verifier.
func (a *attempt) Verify(ctx context.Context, user string, password []byte) (bool, error) {
	if err := a.admit(ctx, user); err != nil {
		return false, err
	}
	return a.s.Verify(ctx, user, password)
}

// CRAMMD5 implements sasl.Secrets.
func (a *attempt) CRAMMD5(ctx context.Context, user string, challenge []byte) ([]byte, bool, error) {
	if err := a.admit(ctx, user); err != nil {
		return nil, false, err
	}
	return a.s.CRAMMD5(ctx, user, challenge)
}

// SCRAM implements sasl.SCRAMSecrets.
func (a *attempt) SCRAM(ctx context.Context, hash, user string) (scram.StoredCredentials, bool, error) {
	if err := a.admit(ctx, user); err != nil {
		return scram.StoredCredentials{}, false, err
	}
	return a.s.SCRAM(ctx, hash, user)
}

// Username implements sasl.Exchange.
func (a *attempt) Username() string { return a.ex.Username() }

// Next implements sasl.Exchange: the mechanism's step, then, at the end,
// the bookkeeping. Wrong passwords and unknown users reach the same
// ErrFailed and so the same count and the same delay.
func (a *attempt) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	ch, done, err := a.ex.Next(ctx, resp)
	if !done {
		return ch, done, err
	}
	switch {
	case err == nil:
		a.hold.Succeed(ctx)
	case errors.Is(err, sasl.ErrFailed):
		if a.hold == nil {
			// Failed before asking for credentials (PLAIN acting as
			// another user): it counts as a failure, and a locked
			// client still hears 454.
			if lerr := a.admit(ctx, a.ex.Username()); lerr != nil {
				return nil, true, lerr
			}
		}
		d := a.hold.Fail(ctx)
		if d.Tripped {
			a.s.metrics.lockouts.WithLabelValues(d.Kind).Inc()
		}
		if serr := a.s.sleep(ctx, d.Delay); serr != nil {
			return nil, true, serr
		}
	default:
		a.hold.Release(ctx)
	}
	return ch, done, err
}

// End gives back the reservation of an exchange abandoned before its end
// (the client cancelled or went away), and ends what the exchange holds
// (a relayed exchange at Dovecot); after the end it does nothing.
func (a *attempt) End(ctx context.Context) {
	a.hold.Release(ctx)
	if e, ok := a.ex.(interface{ End(context.Context) }); ok {
		e.End(ctx)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
