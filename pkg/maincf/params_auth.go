package maincf

// authParams are the parameters smtpgate-auth reads.
func authParams() []Def {
	return []Def{
		// Where to serve the Dovecot auth protocol for an existing Postfix
		// (smtpd_sasl_type = dovecot): host:port and/or unix:/path; empty
		// for none.
		{Name: "smtpgate_dovecot_auth_listen", Default: "", Owner: Auth},
		// The only TCP callers of smtpgate_dovecot_auth_listen: addresses
		// and networks as in mynetworks (no host names or tables). Anyone
		// else is logged and disconnected: a caller it lets in is trusted
		// to report each SMTP client's address (rip=), which the
		// brute-force throttle counts. Unix sockets are governed by the
		// three parameters below instead.
		{Name: "smtpgate_dovecot_auth_clients", Default: "127.0.0.0/8 [::1]/128", Owner: Auth},
		// The owner, group (names or numeric ids; empty: the process's) and
		// permissions of the unix sockets of smtpgate_dovecot_auth_listen,
		// as Dovecot's unix_listener mode/user/group for Postfix's
		// private/auth socket. Set before the socket appears at its path.
		{Name: "smtpgate_dovecot_auth_socket_mode", Default: "0660", Owner: Auth, Check: CheckFileMode},
		{Name: "smtpgate_dovecot_auth_socket_user", Default: "", Owner: Auth},
		{Name: "smtpgate_dovecot_auth_socket_group", Default: "", Owner: Auth},
		// Users in Dovecot passwd-file format.
		{Name: "smtpgate_passwd_file", Default: "", Owner: Auth},
		// Mechanisms offered, in order, before the security options filter them.
		{Name: "smtpgate_sasl_mechanisms", Default: "PLAIN LOGIN", Owner: Auth, Listener: true},
		{Name: "smtpd_sasl_security_options", Default: "noanonymous, noplaintext", Owner: Auth, Listener: true},
		// Unlike Postfix, plaintext mechanisms are refused before TLS by default.
		{Name: "smtpd_sasl_tls_security_options", Default: "noanonymous", Owner: Auth, Listener: true},
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
		{Name: "smtpgate_auth_redis", Default: "", Owner: Auth, Secret: true},
		// How long each Redis call may take before the process falls back.
		{Name: "smtpgate_auth_redis_timeout", Default: "200ms", Owner: Auth, Check: CheckDuration},
		{Name: "smtpgate_auth_failure_window", Default: "10m", Owner: Auth, Check: CheckDuration},
		{Name: "smtpgate_auth_max_failures_per_client", Default: "10", Owner: Auth, Check: CheckInt},
		{Name: "smtpgate_auth_max_failures_per_network", Default: "30", Owner: Auth, Check: CheckInt},
		{Name: "smtpgate_auth_max_failures_per_user", Default: "10", Owner: Auth, Check: CheckInt},
		{Name: "smtpgate_auth_lockout_time", Default: "15m", Owner: Auth, Check: CheckDuration},
		// Wait before answering a failure: none for a client's or user's
		// first, then smtpgate_auth_failure_delay, doubled for each further
		// one up to smtpgate_auth_max_failure_delay.
		{Name: "smtpgate_auth_failure_delay", Default: "1s", Owner: Auth, Check: CheckDuration},
		{Name: "smtpgate_auth_max_failure_delay", Default: "8s", Owner: Auth, Check: CheckDuration},
		// An address from which a user authenticated successfully stays a
		// known source of that user this long after the last success: the
		// failures of other addresses (and the user's count) never lock the
		// user out from there; 0: no source is ever known.
		{Name: "smtpgate_auth_known_source_time", Default: "30d", Owner: Auth, Check: CheckDuration},
	}
}
