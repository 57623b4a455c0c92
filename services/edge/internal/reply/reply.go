// Package reply builds every SMTP reply smtpgate-edge sends: the fixed
// replies of the protocol engine (worded as Postfix's smtpd words them), the
// mapping of policy verdicts, auth outcomes and hand-off results to replies,
// and the fail-closed replies for dependencies that did not answer. Nothing
// else in the edge writes reply codes.
//
// A temporary (4xx) reply never carries a 5.x.x enhanced status code
// (RFC 3463 §3.1), and a permanent one never a 4.x.x.
//
// Trust: no code from elsewhere is taken blindly: a policy verdict whose
// code does not match its action is no verdict (ErrNoVerdict, and the
// caller fails closed), an enhanced code that does not parse is replaced,
// and a next hop's reply outside 400-599 becomes a temporary failure. The
// text of a verdict or of a next hop's reply is used as given (policy's
// restriction package makes its text printable).
package reply

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
	"github.com/smtpgate/smtpgate/services/edge/internal/xclient"
)

// Reply is one SMTP reply.
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 status code ("5.7.1"); empty for replies
	// that have none (the greeting, HELO, EHLO).
	Enhanced string
	// Lines of text; more than one makes a multi-line reply.
	Lines []string
	// Close the connection after sending.
	Close bool
}

// New returns a one-line reply; the enhanced code is made to agree with
// the code's class.
func New(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: agree(code, enhanced), Lines: []string{text}}
}

// agree makes the class digit of an enhanced code match the reply code.
func agree(code int, enhanced string) string {
	if enhanced == "" || (code/100 != 4 && code/100 != 5) {
		return enhanced
	}
	return strconv.Itoa(code/100) + enhanced[1:]
}

// Temporary reports whether r is a 4xx reply.
func (r Reply) Temporary() bool { return r.Code/100 == 4 }

// Positive reports whether r is a 2xx or 3xx reply.
func (r Reply) Positive() bool { return r.Code/100 == 2 || r.Code/100 == 3 }

// String formats r for the wire, CRLF-terminated.
func (r Reply) String() string { return string(r.AppendTo(nil)) }

// AppendTo appends r as String formats it to b: the session writes its
// replies this way, into its write buffer, with no string per reply.
func (r Reply) AppendTo(b []byte) []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if i == len(lines)-1 {
			b = append(b, ' ')
		} else {
			b = append(b, '-')
		}
		if r.Enhanced != "" {
			b = append(b, r.Enhanced...)
			b = append(b, ' ')
		}
		b = appendSanitized(b, l)
		b = append(b, "\r\n"...)
	}
	return b
}

// SoftBounced is r as soft_bounce = yes sends it: a 5xx reply becomes
// 4xx, with its enhanced code (Postfix does this to every reply, protocol
// errors included).
func (r Reply) SoftBounced() Reply {
	if r.Code/100 != 5 {
		return r
	}
	r.Code -= 100
	if r.Enhanced != "" {
		r.Enhanced = "4" + r.Enhanced[1:]
	}
	return r
}

// Text returns the reply as one line without CRLF, for logs.
func (r Reply) Text() string {
	return strings.TrimRight(strings.ReplaceAll(r.String(), "\r\n", " "), " ")
}

// appendSanitized appends s to b with its control characters replaced
// by '?', so that no reply text can end the reply early or smuggle one
// in.
func appendSanitized(b []byte, s string) []byte {
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		clean = s[i] >= 0x20 && s[i] < 0x7f
	}
	if clean {
		return append(b, s...)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}

// The fixed replies of the protocol engine, as Postfix words them.
var (
	OK         = New(250, "2.0.0", "Ok")
	MailOK     = New(250, "2.1.0", "Ok")
	RcptOK     = New(250, "2.1.5", "Ok")
	StartData  = Reply{Code: 354, Lines: []string{"End data with <CR><LF>.<CR><LF>"}}
	Bye        = Reply{Code: 221, Enhanced: "2.0.0", Lines: []string{"Bye"}, Close: true}
	ReadyTLS   = New(220, "2.0.0", "Ready to start TLS")
	AuthOK     = New(235, "2.7.0", "Authentication successful")
	NeedHELO   = New(503, "5.5.1", "Error: send HELO/EHLO first")
	NestedMail = New(503, "5.5.1", "Error: nested MAIL command")
	NeedMail   = New(503, "5.5.1", "Error: need MAIL command")
	// NoValidRcpts is Postfix's reply to DATA when no RCPT TO was
	// accepted.
	NoValidRcpts = New(554, "5.5.1", "Error: no valid recipients")
	Unrecognized = New(500, "5.5.2", "Error: command not recognized")
	// Postfix's exact reply to STARTTLS where TLS is not offered.
	NotImplemented  = New(502, "5.5.1", "Error: command not implemented")
	BadSyntax       = New(500, "5.5.2", "Error: bad syntax")
	VRFYDisabled    = New(502, "5.5.1", "VRFY command is disabled")
	MailSyntax      = New(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	RcptSyntax      = New(501, "5.5.4", "Syntax: RCPT TO:<address>")
	BadSender       = New(501, "5.1.7", "Bad sender address syntax")
	BadRecipient    = New(501, "5.1.3", "Bad recipient address syntax")
	SizeSyntax      = New(501, "5.5.4", "Bad message size syntax")
	TooBig          = New(552, "5.3.4", "Message size exceeds fixed limit")
	TooManyRcpts    = New(452, "4.5.3", "Error: too many recipients")
	TLSActive       = New(554, "5.5.1", "Error: TLS already active")
	TLSUnavailable  = New(454, "4.7.0", "TLS not available due to local problem")
	NeedSTARTTLS    = New(530, "5.7.0", "Must issue a STARTTLS command first")
	AuthNotEnabled  = New(503, "5.5.1", "Error: authentication not enabled")
	AuthTwice       = New(503, "5.5.1", "Error: already authenticated")
	AuthInMail      = New(503, "5.5.1", "Error: MAIL transaction in progress")
	AuthSyntax      = New(501, "5.5.4", "Syntax: AUTH mechanism")
	AuthFailed      = New(535, "5.7.8", "Error: authentication failed: authentication failure")
	AuthTempFail    = New(454, "4.7.0", "Temporary authentication failure")
	AuthUnsupported = New(504, "5.5.4", "Unsupported authentication mechanism")
	AuthMalformed   = New(501, "5.5.2", "Cannot decode response")
	AuthAborted     = New(501, "5.7.0", "Authentication aborted")
	AuthNeedsTLS    = New(538, "5.7.11", "Encryption required for requested authentication mechanism")
	BareLF          = New(550, "5.5.2", "Error: bare <LF> received")
	WriteError      = New(451, "4.3.0", "Error: queue file write error")
	// InsufficientStorage is Postfix's reply to MAIL when the queue file
	// system is short of space (queue_minfree); the edge gives it to MAIL
	// and RCPT when its sessions hold smtpgate_memory_budget's share.
	InsufficientStorage = New(452, "4.3.1", "Insufficient system storage")
)

// CommandTooLong answers a command line longer than line_length_limit,
// as Postfix 3.12's smtpd ("500 5.5.2 <myhostname> Error: command too
// long"); the session goes on.
func CommandTooLong(host string) Reply {
	return New(500, "5.5.2", host+" Error: command too long")
}

// MailInProgress is Postfix's reply to XCLIENT (and AUTH) inside a mail
// transaction.
var MailInProgress = AuthInMail

// XCLIENT's replies (Postfix smtpd.c xclient_cmd).
var (
	XCLIENTSyntax   = New(501, "5.5.4", "Syntax: XCLIENT attribute=value...")
	XCLIENTExpected = New(501, "5.5.4", "Error: attribute=value expected")
	XCLIENTTooLong  = New(501, "5.5.4", "Error: attribute value too long")
	XCLIENTDenied   = New(550, "5.7.0", "Error: insufficient authorization")
)

// FromXCLIENT maps a refused XCLIENT command (an *xclient.Error) to its
// reply.
func FromXCLIENT(err error) Reply {
	var xe *xclient.Error
	if !errors.As(err, &xe) {
		return XCLIENTExpected
	}
	switch xe.Kind {
	case xclient.NoAttributes:
		return XCLIENTSyntax
	case xclient.TooLong:
		return XCLIENTTooLong
	case xclient.BadName:
		return New(501, "5.5.4", "Bad XCLIENT attribute name: "+xe.Attr)
	case xclient.BadValue:
		return New(501, "5.5.4", "Bad "+xe.Attr+" syntax: "+xe.Value)
	}
	return XCLIENTExpected
}

// ETRN's replies, as Postfix words them (without enhanced status codes).
var (
	ETRNNeedHELO  = Reply{Code: 503, Lines: []string{"Error: send HELO/EHLO first"}}
	ETRNInMail    = Reply{Code: 503, Lines: []string{"Error: MAIL transaction in progress"}}
	ETRNSyntax    = Reply{Code: 500, Lines: []string{"Syntax: ETRN domain"}}
	ETRNBadDomain = Reply{Code: 501, Lines: []string{"Error: invalid parameter syntax"}}
)

// ETRNUnavailable is Postfix's reply to a permitted ETRN for a domain
// that is not in fast_flush_domains: smtpgate has no queue to flush.
func ETRNUnavailable(domain string) Reply {
	return Reply{Code: 459, Lines: []string{"<" + domain + ">: service unavailable"}}
}

// HELOSyntax is the reply to HELO or EHLO without a host name.
func HELOSyntax(verb string) Reply {
	return Reply{Code: 501, Lines: []string{"Syntax: " + verb + " hostname"}}
}

// UnsupportedParam is the reply to an unknown MAIL or RCPT parameter.
func UnsupportedParam(p string) Reply { return New(555, "5.5.4", "Unsupported option: "+p) }

// Syntax is the reply to a command with arguments it does not take
// ("501 5.5.4 Syntax: RSET").
func Syntax(verb string) Reply { return New(501, "5.5.4", "Syntax: "+verb) }

// Greeting is the 220 banner.
func Greeting(banner string) Reply { return Reply{Code: 220, Lines: []string{banner}} }

// Queued is the reply to a message the next hop accepted.
func Queued(id string) Reply { return New(250, "2.0.0", "Ok: queued as "+id) }

// BDAT's replies (RFC 3030), as Postfix 3.7 words them (checked by the
// differential test, e2e/testdata/differential/bdat*.txt).
var (
	// BDATSyntax ends the session: what follows a BDAT whose size
	// cannot be read is message content the server cannot skip.
	BDATSyntax    = Reply{Code: 521, Enhanced: "5.5.4", Lines: []string{"Syntax: BDAT count [LAST]"}, Close: true}
	NeedRcpt      = New(503, "5.5.1", "Error: need RCPT command")
	DataAfterBDAT = New(503, "5.5.1", "Error: DATA after BDAT")
	RcptAfterBDAT = New(503, "5.5.1", "Error: RCPT after BDAT")
	// ChunkTooBig is the reply to one chunk larger than
	// message_size_limit; a message whose chunks together pass it gets
	// TooBig after its last chunk, as after DATA.
	ChunkTooBig = New(552, "5.3.4", "Chunk exceeds message size limit")
)

// ChunkOK accepts a BDAT chunk of n octets that is not the last.
func ChunkOK(n int64) Reply { return New(250, "2.0.0", fmt.Sprintf("Ok: %d bytes", n)) }

// QueuedBytes is the reply to a last BDAT chunk whose message (size
// bytes in all) the next hop accepted.
func QueuedBytes(size int64, id string) Reply {
	return New(250, "2.0.0", fmt.Sprintf("Ok: %d bytes queued as %s", size, id))
}

// ChunkDiscarded is the reply to each chunk after one that was refused,
// up to the last.
func ChunkDiscarded(n int64) Reply {
	return New(551, "5.0.0", fmt.Sprintf("Discarded %d bytes after earlier error", n))
}

// BareNewline refuses content or a command line that ended in a bare LF
// (what is "LF") or, in smtpgate, a bare CR ("CR"), with
// smtpd_forbid_bare_newline = reject, as Postfix 3.7.11 words it (checked
// against it): "550 5.5.2 mail.example.org Error: bare <LF> received".
// A refused command line ends the session whatever the code; refused
// content ends it only when the code is 521, as in Postfix.
func BareNewline(code int, host, what string, command bool) Reply {
	r := New(code, "5.5.2", host+" Error: bare <"+what+"> received")
	r.Close = command || code == 521
	return r
}

// The replies to malformed DSN parameters (RFC 3461), as Postfix 3.7.11
// words them (checked against it): MAIL's without "Error:", RCPT's with.
var (
	BadRET    = New(501, "5.5.4", "Bad RET parameter syntax")
	BadENVID  = New(501, "5.5.4", "Bad ENVID parameter syntax")
	BadNOTIFY = New(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
	BadORCPT  = New(501, "5.5.4", "Error: Bad ORCPT parameter syntax")
)

// TooManyErrors closes a session that made too many errors.
func TooManyErrors(host string) Reply {
	return Reply{Code: 421, Enhanced: "4.7.0", Lines: []string{host + " Error: too many errors"}, Close: true}
}

// Timeout closes an idle session.
func Timeout(host string) Reply {
	return Reply{Code: 421, Enhanced: "4.4.2", Lines: []string{host + " Error: timeout exceeded"}, Close: true}
}

// SyncError closes a session that sent commands ahead of a reply where
// RFC 2920 does not allow it, with smtpd_forbid_unauth_pipelining = yes
// (Postfix 3.7.9's smtpd.c; checked by the differential test).
var SyncError = Reply{Code: 554, Enhanced: "5.5.0", Lines: []string{"Error: SMTP protocol synchronization"}, Close: true}

// TooManyConnections refuses a client over
// smtpd_client_connection_count_limit or smtpd_client_connection_rate_limit;
// Postfix's smtpd gives both the same words.
func TooManyConnections(host, addr string) Reply {
	return Reply{Code: 421, Enhanced: "4.7.0", Lines: []string{host + " Error: too many connections from " + addr}, Close: true}
}

// ServerBusy refuses a connection over smtpgate_max_connections, in
// postscreen's words for a full pool of smtpd processes.
var ServerBusy = Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{"All server ports are busy"}, Close: true}

// ShuttingDown closes a session when the edge stops.
func ShuttingDown(host string) Reply {
	return Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{host + " Service shutting down, closing transmission channel"}, Close: true}
}

// AccessDenied answers every command but QUIT after a connect-stage
// refusal (smtpd_delay_reject = no).
func AccessDenied(namaddr string) Reply {
	return New(503, "5.7.0", "Error: access denied for "+namaddr)
}

// PolicyUnavailable is the fail-closed reply when the policy service
// failed, timed out or answered nonsense; subject names what was being
// checked ("<lisa@example.com>"). Never a permit.
func PolicyUnavailable(subject string) Reply {
	return New(451, "4.3.0", subject+": Temporary lookup failure")
}

// PolicyUnavailableAtConnect closes a new session whose connect-stage
// check failed.
func PolicyUnavailableAtConnect(host string) Reply {
	return Reply{Code: 421, Enhanced: "4.3.0", Lines: []string{host + " Service temporarily unavailable, try again later"}, Close: true}
}

// ErrNoVerdict means the policy answered without a usable verdict.
var ErrNoVerdict = errors.New("policy answered without a verdict")

// FromVerdict maps a policy verdict. ok is true for ACTION_PERMIT and for
// ACTION_DISCARD: access(5) DISCARD claims success to the client, so the
// caller gives the command its normal positive reply and drops the
// message itself (Discards). err is ErrNoVerdict for anything the edge
// cannot act on, an unknown action included, which the caller must treat
// as a failed call (fail closed).
func FromVerdict(v *policyv1.Verdict) (r Reply, ok bool, err error) {
	switch v.GetAction() {
	case policyv1.Action_ACTION_PERMIT, policyv1.Action_ACTION_DISCARD:
		return Reply{}, true, nil
	case policyv1.Action_ACTION_REJECT, policyv1.Action_ACTION_DEFER:
	default:
		return Reply{}, false, fmt.Errorf("%w: action %v", ErrNoVerdict, v.GetAction())
	}
	code := int(v.GetCode())
	class := code / 100
	want := 5
	if v.GetAction() == policyv1.Action_ACTION_DEFER {
		want = 4
	}
	if class != want {
		return Reply{}, false, fmt.Errorf("%w: %v with code %d", ErrNoVerdict, v.GetAction(), code)
	}
	enh := v.GetEnhancedCode()
	if !validEnhanced(enh) {
		enh = strconv.Itoa(class) + ".7.1"
	}
	r = New(code, enh, v.GetText())
	r.Close = v.GetDisconnect() || code == 421 || code == 521
	return r, false, nil
}

// Discards reports whether v is an access(5) DISCARD: "claim successful
// delivery and silently discard the message". FromVerdict says ok for it.
func Discards(v *policyv1.Verdict) bool {
	return v.GetAction() == policyv1.Action_ACTION_DISCARD
}

func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// FromAuthResult maps the outcome of a SASL exchange.
func FromAuthResult(r authv1.Result) Reply {
	switch r {
	case authv1.Result_RESULT_SUCCESS:
		return AuthOK
	case authv1.Result_RESULT_FAILURE:
		return AuthFailed
	case authv1.Result_RESULT_UNSUPPORTED_MECHANISM:
		return AuthUnsupported
	case authv1.Result_RESULT_MALFORMED:
		return AuthMalformed
	case authv1.Result_RESULT_ENCRYPTION_REQUIRED:
		return AuthNeedsTLS
	case authv1.Result_RESULT_CANCELLED:
		return AuthAborted
	}
	// RESULT_TEMPORARY_FAILURE and anything unknown: fail closed.
	return AuthTempFail
}

// NextHopError is a reply from the next hop, or the failure to reach it.
type NextHopError struct {
	Reply Reply
	// Err is the underlying error, for logs.
	Err error
}

func (e *NextHopError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("next hop: %s: %v", e.Reply.Text(), e.Err)
	}
	return "next hop: " + e.Reply.Text()
}

func (e *NextHopError) Unwrap() error { return e.Err }

// IsRefusal reports whether err is a refusal (the next hop's own 4xx/5xx
// reply, or NeedsSMTPUTF8), not a failure to reach or talk to it: an
// outcome a client can cause at will, logged without alarm.
func IsRefusal(err error) bool {
	var nh *NextHopError
	return errors.As(err, &nh) && nh.Err == nil
}

// NextHopRefused passes a next hop's own 4xx/5xx reply through; a code
// outside 400-599 is treated as a temporary failure.
func NextHopRefused(code int, enhanced, text string) *NextHopError {
	if code < 400 || code > 599 {
		return NextHopUnavailable(fmt.Errorf("unexpected reply %d %s", code, text))
	}
	if enhanced == "" || !validEnhanced(enhanced) {
		enhanced = strconv.Itoa(code/100) + ".0.0"
	}
	return &NextHopError{Reply: New(code, enhanced, text)}
}

// NextHopUnavailable is the reply when the next hop cannot be reached or
// did not answer in time.
func NextHopUnavailable(err error) *NextHopError {
	return &NextHopError{Reply: New(451, "4.4.1", "Error: next hop not available, try again later"), Err: err}
}

// NextHopFailed is the reply when the transfer to the next hop broke off.
func NextHopFailed(err error) *NextHopError {
	return &NextHopError{Reply: New(451, "4.4.2", "Error: connection to next hop lost, try again later"), Err: err}
}

// FromHandoff maps a hand-off error to a reply: the next hop's own reply,
// or a temporary failure for anything else.
func FromHandoff(err error) Reply {
	var nh *NextHopError
	if errors.As(err, &nh) {
		return nh.Reply
	}
	return WriteError
}

// Internationalised mail (RFC 6531), as Postfix's smtpd words it.
var (
	// BadUTF8 answers a command line that is not valid UTF-8, with
	// smtputf8_enable = yes (smtpd.c: "protect internal interfaces
	// against malformed UTF-8").
	BadUTF8 = New(500, "5.5.2", "Error: bad UTF-8 syntax")
	// MustDeclareSMTPUTF8 answers a non-ASCII MAIL FROM or RCPT TO
	// address in a transaction without SMTPUTF8, with strict_smtputf8 =
	// yes.
	MustDeclareSMTPUTF8 = New(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
)

// NeedsSMTPUTF8 refuses what only a next hop with SMTPUTF8 could take
// (a non-ASCII address or header in an SMTPUTF8 transaction) when the
// next hop does not offer it: Postfix's smtp(8) gives up on such a
// message with "5.6.7 message requires SMTPUTF8, but no server was found
// that supports SMTPUTF8" (smtp_proto.c) and bounces it; the edge, which
// has no queue to bounce from, says it to the client: 553 for an address
// ("<address>: ..."; RFC 6531 §3.5), 550 at the end of data (subject
// empty). The next hop is not named to the client.
func NeedsSMTPUTF8(subject string, code int) *NextHopError {
	text := "message requires SMTPUTF8, but no server was found that supports SMTPUTF8"
	if subject != "" {
		text = subject + ": " + text
	}
	return &NextHopError{Reply: New(code, "5.6.7", text)}
}
