// Package smtpd is smtpgate-edge's SMTP server engine, written from
// RFC 5321 (SMTP), 3207 (STARTTLS), 4954 (AUTH), 2920 (PIPELINING),
// 3030 (CHUNKING), 3461 (DSN),
// 1870 (SIZE) and 6152 (8BITMIME), with Postfix smtpd's replies.
//
// It trusts nothing the client sends. It asks the policy service for a
// verdict at every stage (connect, HELO/EHLO, MAIL, RCPT, DATA before the
// 354, end of data), the auth service for every AUTH exchange, and hands
// each accepted message to the next hop before it says 250. Any failure of
// those dependencies is a temporary refusal, never a permit.
//
// A policy DISCARD (access(5): "claim successful delivery and silently
// discard the message") gets the replies of a delivery and reaches no
// next hop: at MAIL, RCPT, DATA or end of data it covers that transaction,
// at CONNECT or HELO/EHLO every transaction after it. Policy is not asked
// again about a discarded transaction.
package smtpd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/handoff"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
)

// Policy is the policy service as the engine uses it.
type Policy interface {
	Check(ctx context.Context, req *policyv1.CheckRequest) (*policyv1.CheckResponse, error)
}

// AuthStream is one SASL exchange with the auth service.
type AuthStream interface {
	Send(*authv1.AuthenticateRequest) error
	Recv() (*authv1.AuthenticateResponse, error)
	CloseSend() error
}

// Auth is the auth service as the engine uses it.
type Auth interface {
	Mechanisms(ctx context.Context, req *authv1.MechanismsRequest) (*authv1.MechanismsResponse, error)
	// Authenticate opens an exchange; cancelling ctx ends it.
	Authenticate(ctx context.Context) (AuthStream, error)
}

// TLSLevel is smtpd_tls_security_level.
type TLSLevel int

// The levels.
const (
	TLSNone TLSLevel = iota
	TLSMay
	TLSEncrypt
)

// Listener holds one listener's settings (main.cf with its master.cf -o
// overrides).
type Listener struct {
	// SyslogName is syslog_name when this listener's master.cf -o sets
	// it ("postfix/submission"): its sessions' smtpd lines are
	// SyslogName/smtpd[PID] (cleanup, qmgr and delivery lines keep
	// main.cf's name, as in Postfix); empty: main.cf's.
	SyslogName string
	// Name is the master.cf service name, sent to policy and auth.
	Name     string
	Hostname string // myhostname
	Banner   string // smtpd_banner, expanded
	// TLS is nil when no certificate is configured.
	TLS      *tls.Config
	TLSLevel TLSLevel
	// Wrapper is smtpd_tls_wrappermode: TLS from the first byte.
	Wrapper        bool
	SASL           bool // smtpd_sasl_auth_enable
	TLSAuthOnly    bool // smtpd_tls_auth_only
	MaxMessageSize int64
	MaxRecipients  int
	LineLimit      int
	Timeout        time.Duration // smtpd_timeout
	DisableVRFY    bool
	// HELORequired is smtpd_helo_required: MAIL before HELO/EHLO is
	// refused (Postfix's default, no, accepts it).
	HELORequired bool
	// RecipientOvershootLimit is smtpd_recipient_overshoot_limit: how
	// many RCPTs past MaxRecipients a transaction may send before each
	// one counts as an error (towards HardErrorLimit), as in Postfix.
	RecipientOvershootLimit int
	// HardErrorLimit is smtpd_hard_error_limit: at this many errors the
	// session ends with "421 4.7.0 <host> Error: too many errors".
	// SoftErrorLimit is smtpd_soft_error_limit: from this many errors on,
	// every reply waits ErrorSleep (smtpd_error_sleep_time) first, as
	// Postfix's smtpd_chat_reply does. JunkCommandLimit is
	// smtpd_junk_command_limit: each HELO, EHLO, RSET, NOOP, VRFY or ETRN
	// beyond it counts as an error. Zero turns each off.
	HardErrorLimit   int
	SoftErrorLimit   int
	ErrorSleep       time.Duration
	JunkCommandLimit int
	// ForbidUnauthPipelining is smtpd_forbid_unauth_pipelining: a client
	// that sends ahead where RFC 2920 does not allow it is disconnected
	// with "554 5.5.0 Error: SMTP protocol synchronization" instead of
	// only being reported to policy (reject_unauth_pipelining).
	ForbidUnauthPipelining bool
	// DisableSMTPUTF8 is smtputf8_enable = no: SMTPUTF8 is neither
	// advertised nor accepted on MAIL FROM. StrictSMTPUTF8 is
	// strict_smtputf8: a non-ASCII address outside an SMTPUTF8
	// transaction is refused (553 5.6.7).
	DisableSMTPUTF8 bool
	StrictSMTPUTF8  bool
	// GreetPause is smtpgate_greet_pause: how long to wait before the
	// 220 greeting for a client that talks first (a pregreet, reported as
	// unauthorized pipelining). Zero: no pause.
	GreetPause time.Duration
	// ConnectionCountLimit (smtpd_client_connection_count_limit) and
	// ConnectionRateLimit (smtpd_client_connection_rate_limit per
	// RateTimeUnit, anvil_rate_time_unit) limit each client address on
	// this listener, counted in Server.Limits; clients in
	// EventLimitExceptions (smtpd_client_event_limit_exceptions) and
	// XCLIENTHosts are exempt, as in Postfix. Zero: no limit.
	ConnectionCountLimit int
	ConnectionRateLimit  int
	RateTimeUnit         time.Duration
	EventLimitExceptions *listener.Networks
	// NetworkCountLimit is smtpgate_network_connection_count_limit:
	// connections open at once on this listener from the client's
	// network, its /IPv4Prefix (smtpgate_network_ipv4_prefix, 0: 24) or
	// /IPv6Prefix (smtpgate_network_ipv6_prefix, 0: 64); counted and
	// exempted as ConnectionCountLimit. Zero: no limit.
	NetworkCountLimit      int
	IPv4Prefix, IPv6Prefix int
	// ConnectionReserve is smtpgate_connection_reserve: connections of
	// Server.Limits.Max that the other listeners cannot take (set with
	// ConnLimits.SetReserves).
	ConnectionReserve int
	// UnderStress are the settings of Adaptive (Timeout, the error
	// limits) under stress (maincf's ${stress} = yes) while
	// Server.Limits.Stress is active; nil: the same as normally (or
	// stress forced one way by master.cf -o stress).
	UnderStress *Adaptive
	// MemoryMessageLimit is smtpgate_memory_message_limit: the most of
	// a message's content held in memory; a message whose content grows
	// past it streams to the next hop while the client sends it
	// (stream.go). Zero: 64 KiB.
	MemoryMessageLimit int64
	// SoftBounce is soft_bounce: every 5xx reply is sent as 4xx.
	SoftBounce bool
	NextHop    handoff.Target
	// Submission is smtpgate_listener_mode = submission: a message
	// without Message-Id or Date (or, resent, Resent-Message-Id or
	// Resent-Date) gets them, after the Received header, as Postfix's
	// cleanup adds them. An MX listener never adds them.
	Submission bool
	// ETRN: advertise ETRN in the EHLO reply (MX listeners; the
	// command itself is answered everywhere, policy decides).
	ETRN bool
	// XCLIENTHosts is smtpd_authorized_xclient_hosts: the clients that
	// may use XCLIENT. Nil or empty: nobody.
	XCLIENTHosts *listener.Networks
	// BareNewline is smtpd_forbid_bare_newline: what a line ending in a
	// bare LF (or, in smtpgate, a bare CR) does to a command line, DATA
	// and BDAT content. BareNewlineCode is
	// smtpd_forbid_bare_newline_reject_code (0: 550). Clients in
	// BareNewlineExclusions (smtpd_forbid_bare_newline_exclusions) get
	// BareNewlineNo, as in Postfix.
	BareNewline           BareNewline
	BareNewlineCode       int
	BareNewlineExclusions *listener.Networks
}

// BareNewline is a smtpd_forbid_bare_newline setting (Postfix 3.9,
// also in 3.7.10 and later).
type BareNewline int

// The settings. The zero value is Postfix 3.9's default.
const (
	// BareNewlineNormalize ("normalize", or "yes"): a bare LF or bare CR
	// ends a line as CRLF does, and only <CR><LF>.<CR><LF> ends DATA.
	BareNewlineNormalize BareNewline = iota
	// BareNewlineReject ("reject"): a command line ending in a bare LF
	// is refused and the session ends; content with a bare LF or CR is
	// read to <CR><LF>.<CR><LF> (or to the end of its BDAT chunk) and
	// refused; only <CR><LF>.<CR><LF> ends DATA.
	BareNewlineReject
	// BareNewlineNo ("no"): a bare LF is a CRLF everywhere, so that
	// "<LF>.<LF>" ends DATA too (a bare CR still ends no DATA). What a
	// client in smtpd_forbid_bare_newline_exclusions gets.
	BareNewlineNo
)

// Server runs sessions.
type Server struct {
	// Config is what the Server is built from; Reconfigured swaps it
	// whole.
	Config

	// skipped are the stages policy always permits (skip.go).
	skipped skipped
	// names are the clients' names of recent sessions (knownNames).
	names knownNames

	// bufs are the sessions' read and write buffers, work the
	// goroutines that run their commands (idle.go).
	bufs     bufPools
	workOnce sync.Once
	work     *workers
}

// Config is what a Server is built from: its seams (Policy, Auth), the
// parts every configuration shares (logs, limits, memory, drain) and the
// settings a reload may change (the timeouts).
type Config struct {
	Policy        Policy
	Auth          Auth
	Logger        *slog.Logger
	PolicyTimeout time.Duration
	// PolicySkipTime is smtpgate_policy_skip_time: for how long after
	// an answer of policy the stages it said it always permits (nothing
	// to evaluate on that listener) are answered without asking, as
	// policy would (skip.go). Zero: always ask.
	PolicySkipTime time.Duration
	AuthTimeout    time.Duration
	// Limits counts connections across all listeners; nil: no limits.
	Limits *ConnLimits
	// Memory is smtpgate_memory_budget, shared by all listeners; nil:
	// no budget (memory.go).
	Memory *Memory
	// Tracer makes a span per session, per command and per hand-off, and
	// the command's context (carrying its span) goes to policy and auth;
	// nil: no spans (leave it nil when tracing is off, see
	// telemetry.Recording).
	Tracer trace.Tracer
	// Metrics counts connections, commands, replies and hand-offs; nil:
	// none.
	Metrics *Metrics
	// MailLog gets Postfix smtpd's lines (connect, reject, client=,
	// from=, disconnect); nil: none.
	MailLog *maillog.Log
	// Drain stops the sessions gracefully when the edge shuts down;
	// nil: they are not tracked. Servers built from one configuration
	// after another (a reload) share one.
	Drain *Drain
}

func (s *Server) workers() *workers {
	s.workOnce.Do(func() { s.work = newWorkers() })
	return s.work
}

// Reconfigured returns a Server for a new configuration (a reload): c
// swapped in whole, usually s.Config with the settings of the new
// main.cf, and the worker goroutines of s. What policy said it always
// permits is forgotten. The sessions of s go on with s.
func (s *Server) Reconfigured(c Config) *Server {
	r := &Server{Config: c}
	r.work = s.workers()
	r.workOnce.Do(func() {})
	return r
}

// Serve runs one SMTP session on conn to its end and closes conn. ctx
// ending asks the session to stop after the current command (and cancels
// what the command waits for); Drain is the graceful way.
//
// On a listener wrapped by listener.Proxy (smtpd_upstream_proxy_protocol
// = haproxy) it first waits for the PROXY header; without a valid one the
// connection is closed without a word and logged with the peer's address.
func (s *Server) Serve(ctx context.Context, conn net.Conn, l *Listener) {
	peer, err := listener.Handshake(conn)
	if err != nil {
		s.logger().WarnContext(ctx, "PROXY protocol: connection dropped", "peer", peer.Proxy.String(), "listener", l.Name, "err", err)
		_ = conn.Close()
		return
	}
	sess := newSession(s, l, conn, peer)
	s.Drain.add(sess)
	defer s.Drain.remove(sess)
	ctx = sess.startSession(ctx)
	s.Metrics.connected(l.Name, originName(sess.client.origin.String()))
	defer func() {
		sess.close()
		sess.endSession()
		s.Metrics.disconnected()
	}()
	sess.run(ctx)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
