// Package throttle slows down and then locks out password guessing. Failed
// authentications are counted per client address, per client network (the
// /24 of an IPv4 address, the /64 of an IPv6 one) and per user name; each
// count lives for a fixed window (smtpgate_auth_failure_window) from its
// first failure. When a count reaches its limit the key is locked for
// smtpgate_auth_lockout_time and the count starts again. Every failure
// after the first is answered late: smtpgate_auth_failure_delay, doubled
// for each further failure of the same client or user, up to
// smtpgate_auth_max_failure_delay.
//
// The counts live in Redis (smtpgate_auth_redis) so that every replica of
// smtpgate-auth sees every failure, or in process memory, where each replica
// counts only what it saw (a client spreading its guesses over N replicas
// gets N times the limit).
//
// Fail mode: Redis is asked with a short timeout (smtpgate_auth_redis_timeout,
// 200ms by default). When it fails or is slow, the Limiter answers from its
// in-process counts instead, logs the degradation once per minute, and leaves
// Redis alone for a few seconds before trying again, so authentication is
// never held up for long and never goes unlimited: the in-process counts are
// kept all along (also while Redis is healthy), so they already hold this
// replica's recent failures when Redis goes away. A lockout found in either
// place holds. Failures counted only in process memory during an outage are
// not copied to Redis afterwards.
//
// What is stored: addresses, networks and, for users, the SHA-256 of the
// normalised user name (lower-case, trimmed); never a password.
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"time"
)

// ErrLocked ends an exchange refused because of a lockout; the caller
// answers it as a temporary failure (454 4.7.0) without checking the
// password.
var ErrLocked = errors.New("too many failed authentications; locked out")

// Store counts failures. Memory and Redis implement it; Limiter is the
// decorator that picks between them.
type Store interface {
	// Check reports whether any of the keys is locked.
	Check(ctx context.Context, k Keys) (Decision, error)
	// Fail records a failed authentication and returns how long to wait
	// before answering it, and whether it started a lockout.
	Fail(ctx context.Context, k Keys) (Decision, error)
	// Succeed forgets the failures of the client and of the user (not
	// those of the network, shared with strangers).
	Succeed(ctx context.Context, k Keys) error
}

// Decision is a Store's answer.
type Decision struct {
	// Locked: refuse without checking credentials.
	Locked bool
	// Kind and Key name the locked key (when Locked): Kind is "client",
	// "network" or "user"; Key the address, network or user name.
	Kind, Key string
	// RetryAfter is how long the lockout still lasts, when known.
	RetryAfter time.Duration
	// Tripped: this failure started the lockout (Fail only).
	Tripped bool
	// Delay is how long to wait before answering the failure (Fail only).
	Delay time.Duration
}

// Params are the limits.
type Params struct {
	// Window is how long a failure counts.
	Window time.Duration
	// MaxPerClient, MaxPerNetwork and MaxPerUser are the failures within
	// Window that lock a key; 0 never locks it.
	MaxPerClient, MaxPerNetwork, MaxPerUser int64
	// Lockout is how long a key stays locked.
	Lockout time.Duration
	// Delay is the wait after the second failure of a client or user,
	// doubled for each further one up to MaxDelay. 0 disables delays.
	Delay, MaxDelay time.Duration
}

// delay is the wait after the n-th failure (n counts from 1): none for
// the first, then Delay, 2×Delay, 4×Delay… up to MaxDelay.
func (p Params) delay(n int64) time.Duration {
	if n < 2 || p.Delay <= 0 {
		return 0
	}
	d := p.Delay
	for i := int64(2); i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, max(p.MaxDelay, p.Delay))
}

// Keys identify one authentication attempt.
type Keys struct {
	client  netip.Addr
	network netip.Prefix
	user    string
}

// KeysFor builds the keys of an attempt from the client address (an IP
// address, optionally with a port or in brackets; anything else is
// ignored) and the user name tried ("" when none).
func KeysFor(client, user string) Keys {
	var k Keys
	client = strings.TrimSpace(client)
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(client, "["), "]"))
	if err != nil {
		if ap, err := netip.ParseAddrPort(client); err == nil {
			a = ap.Addr()
		}
	}
	if a.IsValid() {
		a = a.Unmap().WithZone("")
		bits := 64
		if a.Is4() {
			bits = 24
		}
		k.client = a
		k.network, _ = a.Prefix(bits)
	}
	k.user = strings.ToLower(strings.TrimSpace(user))
	return k
}

// User is the normalised user name.
func (k Keys) User() string { return k.user }

// key is one counted thing.
type key struct {
	kind  string // "client", "network" or "user"
	name  string // what is logged
	id    string // what is stored: the name, or the hash of a user name
	limit int64
}

// list returns the keys present in k with their limits, client first.
func (k Keys) list(p Params) []key {
	var out []key
	if k.client.IsValid() {
		out = append(out,
			key{"client", k.client.String(), k.client.String(), p.MaxPerClient},
			key{"network", k.network.String(), k.network.String(), p.MaxPerNetwork})
	}
	if k.user != "" {
		h := sha256.Sum256([]byte(k.user))
		out = append(out, key{"user", k.user, hex.EncodeToString(h[:16]), p.MaxPerUser})
	}
	return out
}
