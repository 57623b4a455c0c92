// Package params is smtpgate-auth's parameter catalogue: the main.cf and
// master.cf -o parameters the service owns, with their defaults, value
// checks and whether a listener may override them. The service reads them
// in its settings.go only; every service's command joins the three
// catalogues (and maincf.Shared) so that each rejects a name nobody owns.
// It trusts nothing: the checks here are what `check` reports with
// file:line.
package params

import (
	"fmt"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// checkSASLType accepts the smtpd_sasl_type values smtpgate can honour.
func checkSASLType(v string) error {
	switch v {
	case "smtpgate", "dovecot":
		return nil
	case "cyrus":
		return fmt.Errorf("cyrus cannot be honoured: smtpgate cannot ask Cyrus SASL or saslauthd; use dovecot (with smtpd_sasl_path) or smtpgate (smtpgate_passwd_file)")
	}
	return fmt.Errorf("%q: want dovecot or smtpgate", v)
}

// Defs are the parameters smtpgate-auth reads: their defaults, checks and whether
// a master.cf -o override may set them.
func Defs() []maincf.Def {
	return []maincf.Def{
		// Where to serve the Dovecot auth protocol for an existing Postfix
		// (smtpd_sasl_type = dovecot): host:port and/or unix:/path; empty
		// for none.
		{Name: "smtpgate_dovecot_auth_listen", Default: "", Owner: maincf.Auth},
		// The only TCP callers of smtpgate_dovecot_auth_listen: addresses
		// and networks as in mynetworks (no host names or tables). Anyone
		// else is logged and disconnected: a caller it lets in is trusted
		// to report each SMTP client's address (rip=), which the
		// brute-force throttle counts. Unix sockets are governed by the
		// three parameters below instead.
		{Name: "smtpgate_dovecot_auth_clients", Default: "127.0.0.0/8 [::1]/128", Owner: maincf.Auth},
		// The owner, group (names or numeric ids; empty: the process's) and
		// permissions of the unix sockets of smtpgate_dovecot_auth_listen,
		// as Dovecot's unix_listener mode/user/group for Postfix's
		// private/auth socket. Set before the socket appears at its path.
		{Name: "smtpgate_dovecot_auth_socket_mode", Default: "0660", Owner: maincf.Auth, Check: maincf.CheckFileMode},
		{Name: "smtpgate_dovecot_auth_socket_user", Default: "", Owner: maincf.Auth},
		{Name: "smtpgate_dovecot_auth_socket_group", Default: "", Owner: maincf.Auth},
		// Users in Dovecot passwd-file format.
		{Name: "smtpgate_passwd_file", Default: "", Owner: maincf.Auth},
		// Who checks AUTH passwords, per listener as in Postfix: smtpgate
		// (smtpgate-auth's own users, smtpgate_passwd_file) or dovecot
		// (Dovecot's auth-client socket at smtpd_sasl_path). Postfix's
		// default, cyrus, cannot be honoured: smtpgate cannot ask Cyrus SASL
		// or saslauthd.
		{Name: "smtpd_sasl_type", Default: "smtpgate", Owner: maincf.Auth, Listener: true, Check: checkSASLType},
		// With smtpd_sasl_type = dovecot, Dovecot's auth-client socket:
		// inet:host:port, unix:/path, /path, or a path relative to
		// /var/spool/postfix, Postfix's default queue_directory, where
		// Postfix resolves it (private/auth is the socket the Debian
		// recipes give Postfix). Postfix's default.
		{Name: "smtpd_sasl_path", Default: "smtpd", Owner: maincf.Auth, Listener: true},
		// Dovecot's auth-userdb socket (same forms as smtpd_sasl_path): the
		// users of auth:users tables (valid recipients, sender login maps)
		// are looked up there (Dovecot's USER command) instead of in
		// smtpgate_passwd_file. Empty: not asked.
		{Name: "smtpgate_dovecot_userdb_path", Default: "", Owner: maincf.Auth},
		// How long smtpgate-auth waits for Dovecot to connect, to answer a
		// handshake and to answer each request (Postfix: 10 s, fixed);
		// past it, the AUTH is answered 454 4.7.0.
		{Name: "smtpgate_dovecot_timeout", Default: "10s", Owner: maincf.Auth, Check: maincf.CheckDuration},
		// Mechanisms offered, in order, before the security options filter them.
		{Name: "smtpgate_sasl_mechanisms", Default: "PLAIN LOGIN", Owner: maincf.Auth, Listener: true},
		{Name: "smtpd_sasl_security_options", Default: "noanonymous, noplaintext", Owner: maincf.Auth, Listener: true},
		// Unlike Postfix, plaintext mechanisms are refused before TLS by default.
		{Name: "smtpd_sasl_tls_security_options", Default: "noanonymous", Owner: maincf.Auth, Listener: true},
		// Brute-force throttling. Failed authentications are counted per
		// client address, per client network (IPv4 /24, IPv6 /64) and per
		// user name; a count reaching its maximum (0: no maximum) within
		// the window locks that key for the lockout time, answered with
		// 454 4.7.0 without checking the password. A user's known sources
		// count against their own address only (see
		// services/auth/README.md).
		//
		// Where the counts are shared by every replica: a Redis URL such as
		// redis://127.0.0.1:6379/0 (rediss:// for TLS; it may hold a
		// password). Empty: each process counts alone. When Redis fails,
		// each process falls back to its own counts.
		{Name: "smtpgate_auth_redis", Default: "", Owner: maincf.Auth, Secret: true},
		// How long each Redis call may take before the process falls back.
		{Name: "smtpgate_auth_redis_timeout", Default: "200ms", Owner: maincf.Auth, Check: maincf.CheckDuration},
		{Name: "smtpgate_auth_failure_window", Default: "10m", Owner: maincf.Auth, Check: maincf.CheckDuration},
		{Name: "smtpgate_auth_max_failures_per_client", Default: "10", Owner: maincf.Auth, Check: maincf.CheckInt},
		{Name: "smtpgate_auth_max_failures_per_network", Default: "30", Owner: maincf.Auth, Check: maincf.CheckInt},
		{Name: "smtpgate_auth_max_failures_per_user", Default: "10", Owner: maincf.Auth, Check: maincf.CheckInt},
		{Name: "smtpgate_auth_lockout_time", Default: "15m", Owner: maincf.Auth, Check: maincf.CheckDuration},
		// Wait before answering a failure: none for a client's or user's
		// first, then smtpgate_auth_failure_delay, doubled for each further
		// one up to smtpgate_auth_max_failure_delay.
		{Name: "smtpgate_auth_failure_delay", Default: "1s", Owner: maincf.Auth, Check: maincf.CheckDuration},
		{Name: "smtpgate_auth_max_failure_delay", Default: "8s", Owner: maincf.Auth, Check: maincf.CheckDuration},
		// An address from which a user authenticated successfully stays a
		// known source of that user this long after the last success: the
		// failures of other addresses (and the user's count) never lock the
		// user out from there; 0: no source is ever known.
		{Name: "smtpgate_auth_known_source_time", Default: "30d", Owner: maincf.Auth, Check: maincf.CheckDuration},
		// The authentication cache (Dovecot's auth_cache_size and
		// auth_cache_ttl, but counted in entries, about 200 bytes each):
		// a successful password verification is remembered, as an HMAC
		// under a per-process random key, for the TTL from when it was
		// made, so that the same user, password and stored hash are not
		// hashed again. A changed or removed passwd-file user is honoured
		// at the next reload (within a second); a backend that cannot
		// tell a change is honoured within the TTL. 0 in either turns the
		// cache off. Per replica; failures are never cached.
		{Name: "smtpgate_auth_cache_size", Default: "10000", Owner: maincf.Auth, Check: maincf.CheckIntRange(0, 10_000_000)},
		{Name: "smtpgate_auth_cache_ttl", Default: "5m", Owner: maincf.Auth, Check: maincf.CheckDuration},
	}
}
