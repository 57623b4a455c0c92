// Package throttle slows down and then locks out password guessing,
// without handing the attacker a way to lock the user out.
//
// Keys. Every attempt is counted against its client address, its client
// network (the /24 of an IPv4 address, the /64 of an IPv6 one) and the
// user name tried. Each key has a count of failures, living for a fixed
// window (smtpgate_auth_failure_window) from its first failure; when it
// reaches its maximum (smtpgate_auth_max_failures_per_client, _network,
// _user; 0: none) the key is locked for smtpgate_auth_lockout_time and
// its count starts again. Every failure after the first is answered late:
// smtpgate_auth_failure_delay, doubled for each further failure of the
// same client or user, up to smtpgate_auth_max_failure_delay.
//
// Known sources. An address from which a user authenticated successfully
// within smtpgate_auth_known_source_time is a known source of that user.
// An attempt of a user from one of its known sources is counted against
// the client address only: failures elsewhere (other addresses, even in
// the same network, and the user's count) never lock it; only its own
// address's failures do. So the user lock is a lock of the user's unknown
// sources: an attacker who guesses at a user from anywhere can keep the
// user from logging in from a new address while the attack lasts, never
// from where the user logged in before. A success resets the client's
// count, never the user's or the network's (a legitimate login must not
// re-arm the attacker's guesses).
//
// Exact limits. An attempt reserves its place in every count before any
// credential is looked at (Limiter.Reserve): a key is refused when it is
// locked or when its failures plus the attempts in flight reach its
// maximum, so that a maximum of 10 lets exactly 10 passwords be checked,
// however many attempts arrive at once. The reservation becomes a failure
// (Hold.Fail), is dropped by a success (Hold.Succeed), or is given back
// when the exchange ends without a verdict on the credentials
// (Hold.Release). A reservation a crashed replica never gave back expires
// on its own after DefaultMaxHold.
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
//
// Trust: the client address and the user name come from the SMTP client
// (through the edge, or Postfix's rip= over the Dovecot protocol) and are
// untrusted: they are only ever keys, the user name only as its hash, and
// the in-process counts are bounded in size. Redis is trusted to count,
// not to be there (see Fail mode).
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
	// Reserve admits one attempt or refuses it (Decision.Locked) because
	// a key is locked or full (its failures and the attempts in flight
	// reach its maximum). An admitted attempt holds a place in the counts
	// of r.Keys until Fail, Succeed or Release. known, when set, treats
	// the client address as a known source of the user (the caller knows
	// it from elsewhere).
	Reserve(ctx context.Context, k Keys, known bool) (r Reservation, d Decision, err error)
	// Fail turns r into a failure and returns how long to wait before
	// answering it, and whether it started a lockout.
	Fail(ctx context.Context, r Reservation) (Decision, error)
	// Succeed drops r, forgets the failures of its client (never those of
	// the network or the user) and remembers its client address as a
	// known source of its user.
	Succeed(ctx context.Context, r Reservation) error
	// Release drops r: the exchange ended without a verdict on the
	// credentials.
	Release(ctx context.Context, r Reservation) error
}

// Reservation is an admitted attempt: the keys it was counted against.
type Reservation struct {
	Keys
	// Known: the client address is a known source of the user, and the
	// attempt is counted against the client address only.
	Known bool
	// id names the reservation in Redis.
	id string
}

// DefaultMaxHold is how long a reservation lasts when its exchange never
// ends (its replica crashed, or Redis failed as it ended) and
// Params.MaxHold is zero: longer than any SASL exchange, whose steps the
// edge bounds by smtpd_timeout (300s).
const DefaultMaxHold = 10 * time.Minute

// Decision is a Store's answer.
type Decision struct {
	// Locked: refuse without checking credentials.
	Locked bool
	// Kind and Key name the locked key (when Locked): Kind is "client",
	// "network" or "user"; Key the address, network or user name.
	Kind, Key string
	// Full: not locked, but the key's failures and attempts in flight
	// have reached its maximum (Reserve only).
	Full bool
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
	// KnownSource is how long an address stays a known source of a user
	// after the user's last success from it; 0: no address is ever known.
	KnownSource time.Duration
	// MaxHold is how long a reservation never given back holds its place
	// (DefaultMaxHold when zero).
	MaxHold time.Duration
}

// maxHold is MaxHold or its default.
func (p Params) maxHold() time.Duration {
	if p.MaxHold > 0 {
		return p.MaxHold
	}
	return DefaultMaxHold
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

// userID is what is stored for the user: a hash of its name.
func (k Keys) userID() string {
	h := sha256.Sum256([]byte(k.user))
	return hex.EncodeToString(h[:16])
}

// knownID names the (user, address) pair a success makes known; "" when
// the attempt lacks either.
func (k Keys) knownID() string {
	if !k.client.IsValid() || k.user == "" {
		return ""
	}
	return k.userID() + ":" + k.client.String()
}

// list returns the keys present in k with their limits, client first;
// for a known source, the client only.
func (k Keys) list(p Params, known bool) []key {
	var out []key
	if k.client.IsValid() {
		out = append(out, key{"client", k.client.String(), k.client.String(), p.MaxPerClient})
		if known {
			return out
		}
		out = append(out, key{"network", k.network.String(), k.network.String(), p.MaxPerNetwork})
	}
	if k.user != "" {
		out = append(out, key{"user", k.user, k.userID(), p.MaxPerUser})
	}
	return out
}
