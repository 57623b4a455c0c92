package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xdg-go/scram"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/auth/internal/sasl"
	"github.com/smtpgate/smtpgate/services/auth/internal/throttle"
)

// throttleOptions reads the smtpgate_auth_* throttling parameters.
func throttleOptions(c *maincf.Config) throttle.Options {
	return throttle.Options{
		Params: throttle.Params{
			Window:        c.Duration("smtpgate_auth_failure_window"),
			MaxPerClient:  c.Int("smtpgate_auth_max_failures_per_client"),
			MaxPerNetwork: c.Int("smtpgate_auth_max_failures_per_network"),
			MaxPerUser:    c.Int("smtpgate_auth_max_failures_per_user"),
			Lockout:       c.Duration("smtpgate_auth_lockout_time"),
			Delay:         c.Duration("smtpgate_auth_failure_delay"),
			MaxDelay:      c.Duration("smtpgate_auth_max_failure_delay"),
		},
		RedisURL: c.Get("smtpgate_auth_redis"),
		Timeout:  c.Duration("smtpgate_auth_redis_timeout"),
	}
}

// validateThrottle checks what the catalogue's checks cannot.
func validateThrottle(c *maincf.Config) error {
	if u := c.Get("smtpgate_auth_redis"); u != "" {
		if _, err := throttle.NewRedisClient(u, time.Second); err != nil {
			return fmt.Errorf("%s: smtpgate_auth_redis: %w", c.Pos("smtpgate_auth_redis"), err)
		}
	}
	return nil
}

// attempt is one SASL exchange under the throttle. Its mechanism checks
// credentials through it, so that a locked client, network or user is
// refused before any password is looked at, whether the user exists or
// not; when the exchange fails the failure is counted and the answer held
// back by the delay the limiter asks for.
type attempt struct {
	s       *Server
	ex      sasl.Exchange
	client  string
	checked bool
}

// start begins an exchange of m for a client at client (an IP address,
// or "" when unknown).
func (s *Server) start(m sasl.Mechanism, client string) sasl.Exchange {
	return s.startWith(m, client, scram.ChannelBinding{})
}

// startWith is start with the connection's channel binding.
func (s *Server) startWith(m sasl.Mechanism, client string, cb scram.ChannelBinding) sasl.Exchange {
	a := &attempt{s: s, client: client}
	a.ex = m.StartWith(a, sasl.Params{Hostname: s.cfg.Main.Get("myhostname"), ChannelBinding: cb})
	return a
}

// admit asks the limiter whether user may try from the client.
func (a *attempt) admit(ctx context.Context, user string) error {
	a.checked = true
	d, err := a.s.limiter.Check(ctx, throttle.KeysFor(a.client, user))
	if err != nil {
		return err
	}
	if d.Locked {
		return fmt.Errorf("%s %s: %w", d.Kind, d.Key, throttle.ErrLocked)
	}
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
	k := throttle.KeysFor(a.client, a.ex.Username())
	switch {
	case err == nil:
		if serr := a.s.limiter.Succeed(ctx, k); serr != nil {
			return nil, true, serr
		}
	case errors.Is(err, sasl.ErrFailed):
		if !a.checked {
			// Failed before asking for credentials (PLAIN acting as
			// another user): a locked client still hears 454.
			if lerr := a.admit(ctx, a.ex.Username()); lerr != nil {
				return nil, true, lerr
			}
		}
		d, ferr := a.s.limiter.Fail(ctx, k)
		if ferr != nil {
			return nil, true, ferr
		}
		if d.Tripped {
			a.s.metrics.lockouts.WithLabelValues(d.Kind).Inc()
		}
		if serr := a.s.sleep(ctx, d.Delay); serr != nil {
			return nil, true, serr
		}
	}
	return ch, done, err
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
