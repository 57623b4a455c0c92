package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/listener"
	"github.com/smtpgate/smtpgate/services/edge/internal/maillog"
	"github.com/smtpgate/smtpgate/services/edge/internal/reply"
)

// session is one SMTP connection: who the client is, what it said
// (HELO/EHLO, TLS, AUTH, the transaction), what policy said that later
// stages carry, and the command loop's counts. The connection itself
// (buffers, deadlines, the drain) is the last group.
//
// This file has the session's state, its command loop (run) and the
// dispatch of each command (command). The commands are in files of
// their own: HELO/EHLO in helo.go, MAIL and RCPT in transaction.go,
// DATA and the end of data in data.go, BDAT in bdat.go, STARTTLS in
// starttls.go, AUTH in auth.go, XCLIENT in xclient.go, ETRN in etrn.go.
// Every verdict comes through askPolicy (policy.go), every reply from
// the reply package; the Received header is made in received.go, the
// mail log's lines in the maillog package; the connection below the
// session is wire.go's, with idle.go's pools and worker goroutines.
type session struct {
	srv *Server
	l   *Listener
	id  string
	// log is held by value: one allocation less per session, which pays
	// for idle's callback (idle.go).
	log slog.Logger

	client clientInfo
	// local is the address the client connected to (the PROXY header's
	// or XCLIENT's when they say so).
	local struct{ addr, port string }
	helo  heloInfo
	tls   tlsInfo
	sasl  saslInfo
	// verdicts is what policy said at CONNECT and HELO/EHLO that later
	// stages carry.
	verdicts sessionVerdicts
	tx       *transaction
	// bdatFailed: a BDAT chunk was refused; the chunks after it, up to
	// the last, are discarded (RFC 3030 §2, as Postfix).
	bdatFailed bool
	// etrnDomain is the ETRN argument while its stage is evaluated.
	etrnDomain string

	// unauthPipelining: the client sent ahead where it may not.
	unauthPipelining bool
	errors           int
	// junk counts smtpd_junk_command_limit's commands.
	junk     int
	commands int
	// cmds counts the commands for the mail log's disconnect line.
	cmds maillog.Commands
	// mlog is the mail log under the listener's syslog_name.
	mlog *maillog.Log
	// where is the last command's verb as Postfix's smtpd names it in
	// "lost connection after RCPT": "CONNECT" before any, "UNKNOWN" for
	// a verb it does not know.
	where string
	// release gives back the session's place in Server.Limits.
	release func()
	// span is the session's span; nil when the server does not trace.
	span trace.Span

	// wire is the connection below the session (wire.go).
	wire wireConn
	// chunkBuf is the buffer BDAT chunks are read through.
	chunkBuf []byte
	// drain is what Drain and stress need of the session (drain.go).
	drain drainState
	// onWorker: a command of the session runs on a worker (offStack),
	// whose goroutine then writes the session's log records itself.
	onWorker atomic.Bool
	// connectLogged: the mail log has the session's "connect from".
	connectLogged bool
}

// drainState is what Drain and stress (drain.go, stress.go) read and
// set from other goroutines.
type drainState struct {
	// mu guards betweenTx and waitSince and orders touch's read deadline
	// with Drain's.
	mu sync.Mutex
	// waitSince is when the session last began to wait for its client
	// (touch), for Drain.shorten under stress.
	waitSince time.Time
	// betweenTx: the session waits for a command and has no transaction.
	betweenTx bool
	// shutDown: the session ended with reply.ShuttingDown, at the drain's
	// deadline when shutDownAtDeadline.
	shutDown, shutDownAtDeadline bool
}

// clientInfo is the SMTP client as the edge knows it.
type clientInfo struct {
	addr, port string
	// origin says where addr came from (the socket, a PROXY header,
	// XCLIENT).
	origin policyv1.Origin
	// name and reverseName: as policy resolved them at the session's
	// first check (smtpd_peername_lookup), or as XCLIENT NAME= and
	// REVERSE_NAME= set them; empty with nameStatus UNSPECIFIED, before
	// that first check.
	name, reverseName         string
	nameStatus, reverseStatus policyv1.NameStatus
	// xclientOK: the client (the socket's, the PROXY header's, or the
	// one the last XCLIENT named) is in smtpd_authorized_xclient_hosts.
	// As in Postfix 3.7 (checked by the differential test), an XCLIENT
	// that names another client takes the right to the next XCLIENT
	// away unless that client is authorized too.
	xclientOK bool
}

// heloInfo is what the client said with HELO or EHLO.
type heloInfo struct {
	name string
	// esmtp: the greeting was EHLO (or XCLIENT PROTO=ESMTP).
	esmtp   bool
	greeted bool
	// protoSet: XCLIENT PROTO= set the protocol before any HELO/EHLO.
	protoSet bool
}

// tlsInfo is the TLS session, after STARTTLS or on a wrapper-mode
// listener; state is nil before.
type tlsInfo struct {
	state *tls.ConnectionState
	// channelBinding is the tls-exporter value of the TLS session.
	channelBinding []byte
}

// saslInfo is who the client authenticated as (AUTH); user is empty
// before.
type saslInfo struct {
	mech, user string
}

// sessionVerdicts is what policy said at the session's stages that
// later stages carry.
type sessionVerdicts struct {
	// denied is set when the connect-stage check refused the client
	// (smtpd_delay_reject = no): only QUIT is answered normally then.
	denied bool
	// prepend are headers policy asked for at session stages.
	prepend []*policyv1.Header
	// The defer_if_permit carried between stages when policy evaluates
	// each stage as it happens (smtpd_delay_reject = no), as Postfix's
	// smtpd_check.c carries defer_if_permit_client and _helo: CONNECT's
	// goes with HELO/EHLO; HELO's (which includes CONNECT's) or, when
	// there was no HELO, CONNECT's goes with every MAIL.
	connectDeferIfPermit *policyv1.DeferredReply
	heloDeferIfPermit    *policyv1.DeferredReply
	heloChecked          bool
	// discardConnect and discardHELO: policy said DISCARD (access(5)) at
	// CONNECT or at the last HELO/EHLO; every transaction is discarded.
	discardConnect, discardHELO bool
}

func newSession(srv *Server, l *Listener, conn net.Conn, peer listener.Peer) *session {
	s := &session{srv: srv, l: l, id: newID(), client: clientInfo{origin: policyv1.Origin_ORIGIN_SOCKET}, mlog: srv.MailLog.Named(l.SyslogName)}
	s.client.addr, s.client.port = splitHostPort(peer.Client)
	s.local.addr, s.local.port = splitHostPort(peer.Server)
	attrs := []slog.Attr{slog.String("session", s.id), slog.String("listener", l.Name), slog.String("client", s.client.addr)}
	if peer.Proxied {
		s.client.origin = policyv1.Origin_ORIGIN_PROXY
		attrs = append(attrs, slog.String("client_port", s.client.port), slog.String("proxy", peer.Proxy.String()))
	}
	if ip, err := netip.ParseAddr(s.client.addr); err == nil {
		s.client.xclientOK = l.XCLIENTHosts.Contains(ip)
	}
	log := srv.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Records are written off the session's goroutine (idle.go).
	s.log = *slog.New(&offStackHandler{h: log.Handler(), w: srv.workers(), attrs: attrs, onWorker: &s.onWorker})
	s.wire.init(conn, &srv.bufs)
	return s
}

func splitHostPort(a net.Addr) (host, port string) {
	if a == nil {
		return "", ""
	}
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), ""
	}
	return h, p
}

// newID returns a unique upper-case hex id, used as session and queue id.
func newID() string {
	const digits = "0123456789ABCDEF"
	var b [6]byte
	_, _ = rand.Read(b[:])
	var id [2 * len(b)]byte
	for i, c := range b {
		id[2*i], id[2*i+1] = digits[c>>4], digits[c&0xf]
	}
	return string(id[:])
}

func (s *session) close() {
	s.resetTx()
	if s.release != nil {
		s.release()
	}
	// A fresh write deadline: the last one may have run out while the
	// session waited for the client (the 421 of a timeout).
	_ = s.flush()
	if !s.cmds.Quit() {
		s.wire.discardPending()
	}
	s.wire.close()
	s.log.Info("disconnect", "commands", s.commands, "errors", s.errors)
	s.logConnect()
	s.mlog.Disconnect(s.peer(), &s.cmds)
}

// whereNow is where the session is, as Postfix's smtpd says it.
func (s *session) whereNow() string {
	if s.where == "" {
		return "CONNECT"
	}
	return s.where
}

// namaddr is Postfix's "name[addr]": the name is "unknown" until the
// session's first check (policy resolves it) or XCLIENT NAME= gave it.
func (s *session) namaddr() string { return s.name() + "[" + s.client.addr + "]" }

// peer is the client as the mail log names it (namaddr).
func (s *session) peer() maillog.Peer { return maillog.Peer{Name: s.name(), Addr: s.client.addr} }

// name is the client's host name as far as the edge knows it.
func (s *session) name() string {
	if s.client.name != "" {
		return s.client.name
	}
	return "unknown"
}

// logConnect writes the mail log's "connect from name[addr]", once.
func (s *session) logConnect() {
	if !s.connectLogged {
		s.connectLogged = true
		s.mlog.Connect(s.peer())
	}
}

// setNames keeps the client's names policy resolved, and logs, as
// Postfix's smtpd_peer.c does, a PTR name that does not resolve back.
func (s *session) setNames(c *policyv1.ClientNames) {
	s.client.name, s.client.reverseName = c.GetName(), c.GetReverseName()
	s.client.nameStatus, s.client.reverseStatus = c.GetNameStatus(), c.GetReverseNameStatus()
	if s.client.nameStatus == policyv1.NameStatus_NAME_STATUS_FORGED {
		s.mlog.Forged(c.GetReverseName(), s.client.addr)
	}
}

// send writes r; it is flushed before the next read or at once when close.
func (s *session) send(r reply.Reply) {
	if r.Code == 0 {
		return // nothing to say (STARTTLS done, or a connection to close)
	}
	if s.l.SoftBounce {
		r = r.SoftBounced()
	}
	s.srv.Metrics.replied(r.Code)
	// Postfix's smtpd_chat_reply: past smtpd_soft_error_limit every
	// reply is delayed.
	if t := s.tune(); t.SoftErrorLimit > 0 && t.ErrorSleep > 0 && s.errors >= t.SoftErrorLimit {
		time.Sleep(t.ErrorSleep)
	}
	s.wire.write(r)
	if r.Code >= 400 {
		s.log.Info("reply", "reply", r.Text())
	}
}

// flush writes the replies sent so far, within smtpd_timeout.
func (s *session) flush() error { return s.wire.flush(s.tune().Timeout) }

func (s *session) touch() {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	s.drain.waitSince = time.Now()
	// Read under drainMu: stress shortens the deadline of the waiting
	// sessions after it turned on (Drain.shorten).
	if t := s.tune().Timeout; t > 0 {
		_ = s.wire.conn.SetReadDeadline(s.drain.waitSince.Add(t))
	}
	// A draining server may want this read to end at once (drain.go).
	if s.srv.Drain.stops(s) {
		_ = s.wire.conn.SetReadDeadline(time.Now())
	}
}

// errBareLF: a command line ended in a bare LF, with
// smtpd_forbid_bare_newline = reject.
var errBareLF = errors.New("bare <LF> received")

// readLine reads one command line of at most LineLimit bytes; a longer one
// is consumed to its end and reported as errLineTooLong. A bare LF ends a
// line as CRLF does (Postfix's normalize), or, with
// smtpd_forbid_bare_newline = reject, is errBareLF.
func (s *session) readLine() (string, error) {
	// Flush pending replies first, unless the client already sent the
	// next command (RFC 2920 §3.2: replies may be grouped).
	if s.wire.pending() == 0 {
		if err := s.flush(); err != nil {
			return "", err
		}
	}
	s.touch()
	// Waiting for the client, an idle session holds no buffers (idle.go).
	if err := s.wire.idle(); err != nil {
		return "", err
	}
	limit := s.l.LineLimit
	if limit <= 0 {
		limit = 2048
	}
	line, bareLF, err := s.wire.readLine(limit)
	if bareLF && s.bareNewline() == BareNewlineReject {
		return "", errBareLF
	}
	return line, err
}

// bareNewline is the smtpd_forbid_bare_newline setting for this client
// (the socket's, the PROXY header's or the one XCLIENT named): "no" for
// one in smtpd_forbid_bare_newline_exclusions, as in Postfix.
func (s *session) bareNewline() BareNewline {
	if ip, err := netip.ParseAddr(s.client.addr); err == nil && s.l.BareNewlineExclusions.Contains(ip) {
		return BareNewlineNo
	}
	return s.l.BareNewline
}

// refuseBareNewline is the reply to a bare LF ("LF") or bare CR ("CR")
// with smtpd_forbid_bare_newline = reject, logged as Postfix does.
func (s *session) refuseBareNewline(what string, command bool) reply.Reply {
	code := s.l.BareNewlineCode
	if code == 0 {
		code = 550
	}
	r := reply.BareNewline(code, s.l.Hostname, what, command)
	s.log.Info("reject: bare <"+what+"> received", "reply", r.Text())
	// Postfix: "NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: bare
	// <LF> received; proto=SMTP" for a command line, "QUEUEID: reject:
	// END-OF-MESSAGE from ...; from=<a> to=<b> proto=ESMTP helo=<x>" for
	// content.
	e := maillog.Reject{Stage: "CONNECT", Client: s.peer(), Reason: "bare <" + what + "> received", Proto: s.protocol(), Helo: s.helo.name}
	if !command && s.tx != nil {
		e.QueueID, e.Stage = s.tx.queueID, "END-OF-MESSAGE"
		e.Envelope, e.From = true, s.tx.sender
		if len(s.tx.rcpts) > 0 {
			e.To = s.tx.rcpts[0]
		}
	}
	s.mlog.Reject(e)
	return r
}

func (s *session) run(ctx context.Context) {
	s.log.Info("connect", "server", net.JoinHostPort(s.local.addr, s.local.port))
	// "connect from name[addr]" is written once the name is known (the
	// connect stage's check resolves it), or before the session ends
	// without that check.
	if s.l.Wrapper {
		if ok, _ := offStack(s.srv.workers(), func() (bool, struct{}) { return s.handshake(), struct{}{} }); !ok {
			s.logConnect()
			return
		}
	}
	if r, ok := s.admit(ctx); !ok {
		s.logConnect()
		s.send(r)
		return
	}
	if s.pregreet() && s.l.ForbidUnauthPipelining {
		s.logConnect()
		s.send(reply.SyncError)
		return
	}
	// Commands, and the connect stage's check, run on goroutines of
	// their own: the session's keeps a small stack (idle.go).
	r, ok := s.offStack(ctx, "", true)
	s.logConnect()
	if !ok {
		s.send(r)
		if r.Close {
			return
		}
	} else {
		if s.spokeFirst() && s.l.ForbidUnauthPipelining {
			s.send(reply.SyncError)
			return
		}
		s.send(reply.Greeting(s.l.Banner))
	}
	for {
		// As Postfix's smtpd_proto: the limit is checked before each
		// command is read.
		if limit := s.tune().HardErrorLimit; limit > 0 && s.errors >= limit {
			s.send(reply.TooManyErrors(s.l.Hostname))
			s.log.Info("too many errors", "errors", s.errors)
			s.mlog.Ended(s.peer(), maillog.TooManyErrors, s.whereNow())
			return
		}
		s.waitCommand(true)
		if ctx.Err() != nil || s.mustStop() {
			s.send(s.shutdown())
			return
		}
		line, err := s.readLine()
		stop := s.mustStop()
		s.waitCommand(false)
		switch {
		case errors.Is(err, errLineTooLong):
			s.send(reply.CommandTooLong(s.l.Hostname))
			s.errors++
			continue
		case errors.Is(err, errBareLF):
			s.send(s.refuseBareNewline("LF", true))
			return
		case isTimeout(err) && stop:
			s.send(s.shutdown())
			return
		case isTimeout(err):
			s.send(reply.Timeout(s.l.Hostname))
			s.log.Info("timeout", "after", s.tune().Timeout, "stress", s.srv.Limits.stressed())
			s.mlog.Ended(s.peer(), maillog.Timeout, s.whereNow())
			return
		case err != nil:
			if !errors.Is(err, io.EOF) {
				s.log.Info("read", "err", err)
			}
			s.mlog.Ended(s.peer(), maillog.LostConnection, s.whereNow())
			return
		}
		s.commands++
		denied := s.verdicts.denied
		verb, _ := splitCommand(line)
		s.where = verb
		if !knownCommands[verb] {
			s.where = "UNKNOWN"
		}
		cctx, span := s.startCommand(ctx, verb)
		r, _ := s.offStack(cctx, line, false)
		if r.Close && (r.Code == 0 || r.Code == 421) && s.srv.Drain.closing() {
			// The drain's deadline ended the command's wait for the
			// client (DATA content, a BDAT chunk, an AUTH response).
			r = s.shutdown()
		}
		s.send(r)
		s.endCommand(verb, span, r)
		s.cmds.Count(verb, r.Code < 400)
		if r.Close {
			if r.Code == 0 && !s.srv.Drain.closing() {
				// The client went away in the middle of the command
				// (DATA content, a BDAT chunk, an AUTH response).
				s.mlog.Ended(s.peer(), maillog.LostConnection, s.whereNow())
			}
			return
		}
		if r.Code >= 400 {
			s.errors++
		}
		// smtpd_junk_command_limit: commands that can be repeated
		// without end and cost the client nothing (Postfix's
		// SMTPD_CMD_FLAG_LIMIT); each one past the limit is an error.
		if limit := s.tune().JunkCommandLimit; junkCommands[verb] && !denied && limit > 0 {
			if s.junk > limit {
				s.errors++
			}
			s.junk++
		}
	}
}

// junkCommands are the commands smtpd_junk_command_limit counts.
var junkCommands = map[string]bool{"HELO": true, "EHLO": true, "RSET": true, "NOOP": true, "VRFY": true, "ETRN": true}

// admit applies the connection limits (Server.Limits). The session
// releases its place when it closes.
func (s *session) admit(ctx context.Context) (reply.Reply, bool) {
	exempt := s.client.xclientOK
	if ip, err := netip.ParseAddr(s.client.addr); err == nil && s.l.EventLimitExceptions.Contains(ip) {
		exempt = true
	}
	a := s.srv.Limits.admit(ctx, s.l, s.client.addr, exempt)
	s.release = a.release
	if a.stressed {
		// The sessions that wait for their clients get the stress
		// timeout now, not at their next command.
		n := s.srv.Drain.shorten()
		s.log.Info("stress: shortened the timeout of the sessions waiting for their client", "sessions", n)
	}
	if !a.ok {
		s.log.Warn("connection limit exceeded", "reply", a.r.Text(), "shared", a.shared)
	}
	return a.r, a.ok
}

// pregreet waits up to GreetPause before the greeting and reports
// whether the client talked first; that is unauthorized pipelining
// (RFC 5321 §4.3.1: the client waits for the greeting).
func (s *session) pregreet() bool {
	if s.l.GreetPause <= 0 {
		return false
	}
	if !s.wire.sendsWithin(s.l.GreetPause) {
		return false
	}
	s.unauthPipelining = true
	s.log.Info("pregreet: client talked before the greeting", "bytes", s.wire.pending())
	return true
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// mustBeLast are the commands that end a pipelined group (RFC 2920
// §3.1) as Postfix's command table flags them (SMTPD_CMD_FLAG_LAST);
// STARTTLS is judged by starttls itself.
var mustBeLast = map[string]bool{"EHLO": true, "HELO": true, "DATA": true, "VRFY": true, "NOOP": true}

// knownCommands are the commands the engine implements; pipelining is
// judged for these only, as in Postfix.
var knownCommands = map[string]bool{"BDAT": true, "HELO": true, "EHLO": true, "MAIL": true, "RCPT": true, "DATA": true, "RSET": true, "NOOP": true, "QUIT": true, "VRFY": true, "STARTTLS": true, "AUTH": true, "ETRN": true, "XCLIENT": true}

// printable escapes control characters for a log line.
func printable(b []byte) string {
	q := strconv.Quote(string(b))
	return q[1 : len(q)-1]
}

// command dispatches one command line.
func (s *session) command(ctx context.Context, line string) reply.Reply {
	if strings.IndexByte(line, 0) >= 0 {
		return reply.BadSyntax
	}
	verb, arg := splitCommand(line)
	if !utf8.ValidString(line) {
		return s.badBytes(verb)
	}
	// XCLIENT from an authorized client passes a connect-stage refusal:
	// the refusal was about the proxy, and XCLIENT says whom it speaks
	// for (the new identity gets its own connect-stage check).
	if s.verdicts.denied && verb != "QUIT" && (verb != "XCLIENT" || !s.client.xclientOK) {
		return reply.AccessDenied(s.namaddr())
	}
	// Commands sent ahead of a reply where that is not allowed (RFC 2920
	// §3.1), judged as Postfix's smtpd_proto does: before EHLO every
	// command must wait for its reply, after it those that end a group.
	// Reported to policy (reject_unauth_pipelining), or, with
	// smtpd_forbid_unauth_pipelining, the end of the session.
	// A BDAT chunk follows its command at once (RFC 3030 §2): it is not
	// sending ahead.
	if knownCommands[verb] && verb != "BDAT" && !s.unauthPipelining && s.wire.pending() > 0 && (!s.helo.esmtp || mustBeLast[verb]) {
		s.unauthPipelining = true
		pending := s.wire.peekPending(100)
		s.log.Info("improper command pipelining after "+verb, "next", printable(pending))
		s.mlog.Pipelining(s.peer(), verb, pending)
		if s.l.ForbidUnauthPipelining {
			return reply.SyncError
		}
	}
	switch verb {
	case "HELO", "EHLO":
		return s.hello(ctx, verb, arg)
	case "MAIL":
		return s.mail(ctx, arg)
	case "RCPT":
		return s.rcpt(ctx, arg)
	case "DATA":
		return s.data(ctx, arg)
	case "BDAT":
		return s.bdat(ctx, arg)
	case "RSET":
		if arg != "" {
			return reply.Syntax("RSET")
		}
		s.resetTx()
		return reply.OK
	case "NOOP":
		return reply.OK
	case "QUIT":
		s.resetTx()
		return reply.Bye
	case "VRFY":
		if s.l.DisableVRFY {
			return reply.VRFYDisabled
		}
		return reply.New(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
	case "STARTTLS":
		return s.starttls(arg)
	case "AUTH":
		return s.auth(ctx, arg)
	case "ETRN":
		return s.etrn(ctx, arg)
	case "XCLIENT":
		return s.xclient(ctx, arg)
	case "":
		return reply.BadSyntax
	}
	return reply.Unrecognized
}
