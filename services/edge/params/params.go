// Package params is smtpgate-edge's parameter catalogue: the main.cf and
// master.cf -o parameters the service owns, with their defaults, value
// checks and whether a listener may override them. The service reads them
// in its settings.go only; every service's command joins the three
// catalogues (and maincf.Shared) so that each rejects a name nobody owns.
// It trusts nothing: the checks here are what `check` reports with
// file:line.
package params

import (
	"fmt"
	"strings"
	"time"

	"github.com/smtpgate/smtpgate/pkg/maincf"
)

// Defs are the parameters smtpgate-edge reads: their defaults, checks and whether
// a master.cf -o override may set them.
func Defs() []maincf.Def {
	return []maincf.Def{
		{Name: "smtpd_banner", Default: "$myhostname ESMTP $mail_name", Owner: maincf.Edge, Listener: true},
		// smtpgate-auth reads the listeners' TLS and SASL switches too, to
		// refuse a listener on which AUTH can never succeed.
		{Name: "smtpd_tls_cert_file", Default: "", Owner: maincf.Edge | maincf.Auth, Listener: true},
		{Name: "smtpd_tls_key_file", Default: "$smtpd_tls_cert_file", Owner: maincf.Edge, Listener: true},
		// none, may (STARTTLS offered) or encrypt (STARTTLS required).
		{Name: "smtpd_tls_security_level", Default: "", Owner: maincf.Edge | maincf.Auth, Listener: true, Check: maincf.CheckOneOf("", "none", "may", "encrypt")},
		// Implicit TLS from the first byte (port 465, "submissions").
		{Name: "smtpd_tls_wrappermode", Default: "no", Owner: maincf.Edge | maincf.Auth, Listener: true, Check: maincf.CheckBool},
		// Offer AUTH only after STARTTLS.
		{Name: "smtpd_tls_auth_only", Default: "no", Owner: maincf.Edge | maincf.Auth, Listener: true, Check: maincf.CheckBool},
		{Name: "smtpd_sasl_auth_enable", Default: "no", Owner: maincf.Edge | maincf.Auth, Listener: true, Check: maincf.CheckBool},
		{Name: "message_size_limit", Default: "10240000", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpd_recipient_limit", Default: "1000", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// RCPTs past smtpd_recipient_limit (each "452 4.5.3 Error: too
		// many recipients") that do not count as errors, per message.
		{Name: "smtpd_recipient_overshoot_limit", Default: "1000", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// Postfix's stress-dependent default (STRESS_README): 10s while
		// the edge is under stress (smtpgate_stress_threshold), 300s
		// otherwise.
		{Name: "smtpd_timeout", Default: "${stress?{10}:{300}}s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration, Stress: true},
		// Longest command line accepted (Postfix: line_length_limit).
		{Name: "line_length_limit", Default: "2048", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// Error limits as Postfix's smtpd: from smtpd_soft_error_limit
		// errors on every reply waits smtpd_error_sleep_time; at
		// smtpd_hard_error_limit the session ends (421 4.7.0); each
		// HELO/EHLO/RSET/NOOP/VRFY/ETRN past smtpd_junk_command_limit is
		// an error. 0 turns a limit off (unlike Postfix). The hard and junk
		// limits drop to 1 under stress, as in Postfix.
		{Name: "smtpd_hard_error_limit", Default: "${stress?{1}:{20}}", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt, Stress: true},
		{Name: "smtpd_soft_error_limit", Default: "10", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt, Stress: true},
		{Name: "smtpd_error_sleep_time", Default: "1s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration, Stress: true},
		{Name: "smtpd_junk_command_limit", Default: "${stress?{1}:{100}}", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt, Stress: true},
		// "yes" while the edge is under stress, empty otherwise (see
		// maincf.StressParam); only master.cf may set it (-o stress=yes
		// or -o stress= force it on one listener).
		{Name: maincf.StressParam, Default: "", Owner: maincf.Edge, Listener: true, Check: maincf.CheckOneOf("", "yes")},
		// The edge is under stress from this percentage of
		// smtpgate_max_connections open at once, until the count has
		// stayed below it for smtpgate_stress_hold_time (Postfix: all
		// smtpd processes busy, and 1000 s). 0: never. Not Postfix
		// parameters.
		{Name: "smtpgate_stress_threshold", Default: "80", Owner: maincf.Edge, Check: maincf.CheckPercent},
		{Name: "smtpgate_stress_hold_time", Default: "1000s", Owner: maincf.Edge, Check: maincf.CheckDuration},
		// Connections of smtpgate_max_connections kept for this listener
		// (set it with -o on submission): the other listeners cannot take
		// them. Not a Postfix parameter. 0: none.
		{Name: "smtpgate_connection_reserve", Default: "0", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// yes: a client that pipelines where RFC 2920 does not allow it
		// is disconnected (554 5.5.0), as Postfix 3.7.9 and later.
		{Name: "smtpd_forbid_unauth_pipelining", Default: "no", Owner: maincf.Edge, Listener: true, Check: maincf.CheckBool},
		// SMTPUTF8 (RFC 6531) advertised and accepted on MAIL FROM, as
		// Postfix's default. With no, a command that is not valid UTF-8
		// gets its syntax reply instead of "500 5.5.2 Error: bad UTF-8
		// syntax" (policy cannot be asked about it either way).
		{Name: "smtputf8_enable", Default: "yes", Owner: maincf.Edge, Listener: true, Check: maincf.CheckBool},
		// A non-ASCII MAIL FROM or RCPT TO address only in an SMTPUTF8
		// transaction ("553 5.6.7 Must declare SMTPUTF8 to send unicode
		// address"). Postfix's default is no (8-bit local parts were
		// always taken); smtpgate's is yes, see docs/postfix-differences.md.
		{Name: "strict_smtputf8", Default: "yes", Owner: maincf.Edge, Listener: true, Check: maincf.CheckBool},
		// How long to wait before the 220 for a client that talks first
		// (reported as unauthorized pipelining). Not a Postfix
		// parameter (postscreen_greet_wait is the nearest). 0: no wait.
		{Name: "smtpgate_greet_pause", Default: "0s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration},
		// Connection limits per client address and listener, counted in
		// each edge process, or across the edges sharing
		// smtpgate_connection_limit_redis. 0: no limit.
		{Name: "smtpd_client_connection_count_limit", Default: "50", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpd_client_connection_rate_limit", Default: "0", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "anvil_rate_time_unit", Default: "60s", Owner: maincf.Edge, Check: maincf.CheckDuration},
		// Connections open at once per listener from one client network:
		// the /smtpgate_network_ipv4_prefix (24) of an IPv4 address, the
		// /smtpgate_network_ipv6_prefix (64) of an IPv6 one; counted and
		// exempted as smtpd_client_connection_count_limit. Not Postfix
		// parameters. 0: no limit.
		{Name: "smtpgate_network_connection_count_limit", Default: "100", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpgate_network_ipv4_prefix", Default: "24", Owner: maincf.Edge, Listener: true, Check: maincf.CheckIntRange(1, 32)},
		{Name: "smtpgate_network_ipv6_prefix", Default: "64", Owner: maincf.Edge, Listener: true, Check: maincf.CheckIntRange(1, 128)},
		// Clients the connection limits do not apply to: addresses and
		// networks only (no host names or tables).
		{Name: "smtpd_client_event_limit_exceptions", Default: "$mynetworks", Owner: maincf.Edge, Listener: true},
		// A redis:// or rediss:// URL (it may hold a password): count the
		// two limits above across every edge sharing it. Empty: each edge
		// counts alone. Redis failing: each edge counts alone meanwhile.
		{Name: "smtpgate_connection_limit_redis", Default: "", Owner: maincf.Edge, Secret: true, Check: maincf.CheckRedisURL},
		// All connections one edge process serves at once; beyond it
		// "421 4.3.2 All server ports are busy" (postscreen's words).
		// Not a Postfix parameter (master.cf's process limit). 0: none.
		{Name: "smtpgate_max_connections", Default: "1000", Owner: maincf.Edge, Check: maincf.CheckInt},
		// How long the edge drains on SIGTERM: sessions inside a
		// transaction may finish it; then every session still waiting
		// for its client gets "421 4.3.2" (hand-offs under way get 5 s
		// more). Not a Postfix parameter. 15s fits Kubernetes' default
		// 30 s terminationGracePeriodSeconds with a 5 s preStop.
		{Name: "smtpgate_shutdown_timeout", Default: "15s", Owner: maincf.Edge, Check: maincf.CheckDuration},
		// TLS session resumption (RFC 5077 tickets, and TLS 1.3's): a
		// ticket is honoured for this long after it was issued (each
		// resumption issues a new one); 0 turns resumption off. As in
		// Postfix, main.cf only (one value for every listener), at
		// least 2 minutes when set, at most 100 days.
		{Name: "smtpd_tls_session_cache_timeout", Default: "3600s", Owner: maincf.Edge, Check: checkSessionCacheTimeout},
		// A file of ticket keys that every edge replica shares, so a
		// client resumes on whichever replica the load balancer picks:
		// one key a line, 32 random bytes as 64 hex digits (openssl
		// rand -hex 32); the first encrypts new tickets, all decrypt.
		// Read at start and on every reload. Empty: each process makes
		// its own keys and rotates them itself. Not a Postfix parameter
		// (Postfix's tlsmgr keeps its keys in memory).
		{Name: "smtpgate_tls_session_ticket_keys_file", Default: "", Owner: maincf.Edge},
		// The most of a message's content held in memory: past it, the
		// content streams to the next hop while the client sends it
		// (the next hop sees its end, and the client gets 250, only
		// after end-of-data policy and the next hop's own 250).
		{Name: "smtpgate_memory_message_limit", Default: "65536", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// The memory (bytes) the edge process is to stay under; set it
		// below the container's or unit's memory limit. Go's garbage
		// collector is held to it less 24 MiB for the program's own
		// pages (as by GOMEMLIMIT, unless that is lower), and the
		// sessions together may hold a quarter of it of what clients
		// sent: recipients, headers, and message content (an eighth at
		// most; beyond that content streams to the next hop). When that
		// quarter is held, MAIL and RCPT get "452 4.3.1 Insufficient
		// system storage". Not a Postfix parameter. 0: no budget; else
		// at least 64 MiB (the edge is about 20 MiB at rest). The
		// default (768 MiB) fits deploy/k8s's 1 GiB limit.
		{Name: "smtpgate_memory_budget", Default: "805306368", Owner: maincf.Edge, Check: maincf.CheckZeroOrAtLeast(64 << 20)},
		{Name: "smtpd_helo_required", Default: "no", Owner: maincf.Edge, Listener: true, Check: maincf.CheckBool},
		{Name: "disable_vrfy_command", Default: "yes", Owner: maincf.Edge, Listener: true, Check: maincf.CheckBool},
		// Where accepted mail goes: maildir:PATH, smtp://host:port,
		// lmtp://host:port or lmtp+unix:///path.
		{Name: "smtpgate_next_hop", Default: "maildir:var/maildir", Owner: maincf.Edge, Listener: true},
		{Name: "smtpgate_next_hop_timeout", Default: "300s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration},
		// Lines of content longer than this many bytes (CRLF not
		// counted) are broken with <CR><LF><SPACE> on their way to an
		// SMTP (smtp_) or LMTP (lmtp_) next hop, as Postfix's smtp(8)
		// does; 0: sent whole. A Maildir gets every line whole.
		{Name: "smtp_line_length_limit", Default: "998", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "lmtp_line_length_limit", Default: "998", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		// Connections to an SMTP or LMTP next hop kept open between
		// messages (0: one per message), and how long an unused one is
		// kept.
		{Name: "smtpgate_next_hop_idle_connections", Default: "20", Owner: maincf.Edge, Listener: true, Check: maincf.CheckInt},
		{Name: "smtpgate_next_hop_idle_timeout", Default: "10s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration},
		// PROXY protocol (v1 and v2) from a load balancer before the
		// first SMTP byte: "" (off) or "haproxy", as Postfix.
		{Name: "smtpd_upstream_proxy_protocol", Default: "", Owner: maincf.Edge, Listener: true, Check: maincf.CheckOneOf("", "haproxy")},
		// How long to wait for the PROXY header.
		{Name: "smtpd_upstream_proxy_timeout", Default: "5s", Owner: maincf.Edge, Listener: true, Check: maincf.CheckDuration},
		// The load balancers whose PROXY headers are believed, a
		// mynetworks-style list of addresses and networks (no host names
		// or tables). Empty: nobody, so a listener with the protocol on
		// drops every connection. Not a Postfix parameter: Postfix
		// believes any peer of such a listener.
		{Name: "smtpgate_proxy_networks", Default: "", Owner: maincf.Edge, Listener: true},
		// The clients that may use XCLIENT, a mynetworks-style list as
		// above. Empty: nobody.
		{Name: "smtpd_authorized_xclient_hosts", Default: "", Owner: maincf.Edge, Listener: true},
		// What a listener is for: mx (mail from the Internet) or
		// submission (mail from users: a missing Message-Id and Date are
		// added, as Postfix's cleanup adds them for local clients).
		// Empty: submission where smtpd_sasl_auth_enable = yes, mx
		// elsewhere.
		{Name: "smtpgate_listener_mode", Default: "", Owner: maincf.Edge, Listener: true, Check: maincf.CheckOneOf("", "mx", "submission")},
		// Lines ending in a bare LF (Postfix 3.9): normalize (the
		// default; yes is its alias) takes them as CRLF but ends DATA
		// only at <CR><LF>.<CR><LF>; reject refuses them with
		// smtpd_forbid_bare_newline_reject_code ("550 5.5.2 ... Error:
		// bare <LF> received"; a command line also ends the session);
		// no takes them as CRLF everywhere, "<LF>.<LF>" ending DATA.
		// smtpgate treats a bare CR as it treats a bare LF, except that
		// it never ends DATA.
		{Name: "smtpd_forbid_bare_newline", Default: "normalize", Owner: maincf.Edge, Listener: true, Check: maincf.CheckOneOf("normalize", "yes", "reject", "no")},
		{Name: "smtpd_forbid_bare_newline_reject_code", Default: "550", Owner: maincf.Edge, Listener: true, Check: maincf.CheckReplyCode("5")},
		// Clients that get "no" whatever smtpd_forbid_bare_newline says,
		// a mynetworks-style list of addresses and networks (no host
		// names or tables).
		{Name: "smtpd_forbid_bare_newline_exclusions", Default: "$mynetworks", Owner: maincf.Edge, Listener: true},
		// The mail log, in Postfix's words and program names (for
		// pflogsumm and fail2ban's postfix filters): Postfix 3.4's
		// maillog_file, a file appended to (reopened on SIGUSR1 and
		// SIGHUP), "/dev/stdout" or "/dev/stderr"; empty: syslog, as
		// Postfix, through smtpgate_syslog_socket.
		{Name: "maillog_file", Default: "", Owner: maincf.Edge},
		// maillog_file's old name, read when maillog_file is not set.
		{Name: "smtpgate_maillog_file", Default: "", Owner: maincf.Edge},
		// The syslog socket the mail log goes to when maillog_file is
		// empty (a Unix datagram socket, as syslog(3)'s).
		{Name: "smtpgate_syslog_socket", Default: "/dev/log", Owner: maincf.Edge},
		// Postfix's: the mail log's program names are syslog_name/smtpd,
		// syslog_name/qmgr, ...; syslog_facility its syslog facility.
		// A master.cf -o syslog_name=postfix/submission names that
		// listener's lines postfix/submission/smtpd, as Postfix does.
		{Name: "syslog_name", Default: "postfix", Owner: maincf.Edge, Listener: true, Check: checkSyslogName},
		{Name: "syslog_facility", Default: "mail", Owner: maincf.Edge, Check: maincf.CheckOneOf("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
			"uucp", "cron", "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")},
		// For how long the edge answers the stages policy said it always
		// permits (nothing to evaluate) without asking; 0: always ask.
		{Name: "smtpgate_policy_skip_time", Default: "5s", Owner: maincf.Edge, Check: maincf.CheckDuration},
		// The deadline of each call to policy (0 is refused: every call
		// has a deadline); smtpgate_auth_timeout is auth's.
		{Name: "smtpgate_policy_timeout", Default: "10s", Owner: maincf.Edge, Check: maincf.CheckPositiveDuration},
	}
}

// checkSyslogName checks syslog_name: the mail log's program names are
// NAME/smtpd[PID], so NAME holds no white space, ':', '[' or ']'.
func checkSyslogName(v string) error {
	if v == "" || strings.ContainsAny(v, " \t:[]") {
		return fmt.Errorf("want a name without white space, ':', '[' or ']', got %q", v)
	}
	return nil
}

// checkSessionCacheTimeout is smtpd_tls_session_cache_timeout's check: a
// time of at most 100 days, as Postfix's.
func checkSessionCacheTimeout(v string) error {
	d, err := maincf.ParseDuration(v)
	if err != nil {
		return err
	}
	if d > 100*24*time.Hour {
		return fmt.Errorf("at most 100 days, got %q", v)
	}
	return nil
}
